"""The Postbox adapter.

Postbox posts JSON events to ``/v1/postbox/<tenant>``::

    {"event": "message.received", "id": "evt_1",
     "message": {"id": "pm_123", "conversation": "conv_9", "text": "Hi",
                 "sender": {"id": "u_42", "name": "Lee", "phone": "+14155550100"},
                 "media": [{"url": "https://media.postbox.example/m/1", "type": "image/png", "bytes": 2048}],
                 "sent_at": 1772452800}}

signed with ``Postbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``.
Events other than ``message.received`` (``message.read``, ``conversation.closed``, future
ones) are acknowledged and ignored.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, ClassVar

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.sdk import (
    BadSignature,
    ChannelAdapter,
    MalformedPayload,
    Tenant,
    TenantConfig,
    WebhookRequest,
    constant_time_equals,
)

__all__ = ["PostboxAdapter", "sign"]

TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Postbox-Signature`` header value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class PostboxAdapter(ChannelAdapter):
    name: ClassVar[str] = "postbox"
    channel: ClassVar[Channel] = Channel.CUSTOM
    provider: ClassVar[str] = "postbox"
    required_secrets: ClassVar[frozenset[str]] = frozenset({"signing_secret"})
    max_body_bytes: ClassVar[int] = 256 * 1024

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        header = request.headers.get("Postbox-Signature")
        if not header:
            raise BadSignature("missing Postbox-Signature")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise BadSignature("Postbox-Signature has no valid t=") from None
        if abs(request.received_at.timestamp() - timestamp) > TOLERANCE_SECONDS:
            raise BadSignature("Postbox-Signature timestamp outside the 5 minute tolerance")
        for secret in tenant.secret_values("signing_secret"):  # several during a rotation
            if constant_time_equals(header, sign(secret, timestamp, raw_body)):
                return
        raise BadSignature("Postbox-Signature does not match")

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        event = self.load_json(raw_body)
        if event.get("event") != "message.received":
            return []
        message = event.get("message")
        if not isinstance(message, dict):
            raise MalformedPayload("message.received without a message object")
        raw_sender = message.get("sender")
        sender: dict[str, Any] = raw_sender if isinstance(raw_sender, dict) else {}
        message_id, sender_id = message.get("id"), sender.get("id")
        if not isinstance(message_id, str) or not isinstance(sender_id, str) or not message_id or not sender_id:
            raise MalformedPayload("message.id and message.sender.id are required strings")
        handles = [ContactHandle(kind="postbox", value=sender_id, verified=True)]
        if isinstance(sender.get("phone"), str) and sender["phone"]:
            handles.append(ContactHandle(kind="phone", value=sender["phone"]))
        return [
            self.message(
                request,
                tenant,
                provider_message_id=message_id,
                handles=handles,
                display_name=sender.get("name") if isinstance(sender.get("name"), str) else None,
                thread_ref=message.get("conversation") if isinstance(message.get("conversation"), str) else None,
                text=message.get("text") if isinstance(message.get("text"), str) else "",
                attachments=tuple(
                    _media(m) for m in message.get("media") or [] if isinstance(m, dict) and m.get("url")
                ),
                sent_at=_epoch(message.get("sent_at")),
            )
        ]


def _media(item: dict[str, Any]) -> Attachment:
    size = item.get("bytes")
    return Attachment(
        url=str(item["url"]),  # referenced, never downloaded
        content_type=str(item.get("type") or "application/octet-stream"),
        size=size if isinstance(size, int) and size >= 0 else 0,
    )


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return None
