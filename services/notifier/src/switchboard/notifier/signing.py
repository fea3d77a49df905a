"""Standard Webhooks signatures (https://www.standardwebhooks.com), several secrets during rotation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


class WebhookSigner:
    """Signs ``{id}.{timestamp}.{body}`` with HMAC-SHA256 under every configured secret.

    Secrets are in the Standard Webhooks form (``whsec_`` + base64). During a rotation list
    the new and the old secret: the ``webhook-signature`` header then carries one
    ``v1,<signature>`` per secret, separated by spaces, and a receiver holding either accepts.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("a webhook signer needs at least one secret")
        try:
            self._hooks = [Webhook(s) for s in secrets]
        except Exception as exc:
            raise ValueError(f"invalid webhook secret ({type(exc).__name__}); expected whsec_<base64>") from None

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        when = datetime.fromtimestamp(timestamp, UTC)
        text = body.decode()
        return " ".join(h.sign(msg_id=msg_id, timestamp=when, data=text) for h in self._hooks)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }
