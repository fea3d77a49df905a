"""An example Switchboard channel adapter package (the fictional Postbox provider)."""

from switchboard_channel_example.adapter import PostboxAdapter, sign

__all__ = ["PostboxAdapter", "sign"]
