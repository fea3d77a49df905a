"""The built-in channel adapters."""

from switchboard.ingest_social.adapters.custom import CustomChannelAdapter
from switchboard.ingest_social.adapters.meta import InstagramAdapter, MessengerAdapter
from switchboard.ingest_social.adapters.telegram import TelegramAdapter
from switchboard.ingest_social.adapters.twilio import TwilioSmsAdapter, TwilioVoiceAdapter
from switchboard.ingest_social.adapters.webchat import WebChatAdapter
from switchboard.ingest_social.adapters.whatsapp import WhatsAppAdapter
from switchboard.ingest_social.adapters.x import XAdapter
from switchboard.ingest_social.sdk import ChannelAdapter

__all__ = [
    "BUILTIN_ADAPTERS",
    "CustomChannelAdapter",
    "InstagramAdapter",
    "MessengerAdapter",
    "TelegramAdapter",
    "TwilioSmsAdapter",
    "TwilioVoiceAdapter",
    "WebChatAdapter",
    "WhatsAppAdapter",
    "XAdapter",
]

BUILTIN_ADAPTERS: tuple[type[ChannelAdapter], ...] = (
    MessengerAdapter,
    InstagramAdapter,
    WhatsAppAdapter,
    TelegramAdapter,
    XAdapter,
    TwilioSmsAdapter,
    TwilioVoiceAdapter,
    WebChatAdapter,
    CustomChannelAdapter,
)
