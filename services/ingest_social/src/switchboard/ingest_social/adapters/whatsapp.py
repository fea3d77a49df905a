"""WhatsApp Cloud API webhooks.

Same handshake and ``X-Hub-Signature-256`` scheme as Messenger. The body is
``entry[].changes[].value`` with ``messages[]`` (text, image, audio, video, document,
sticker, location, contacts, interactive button and list replies, template button
replies) and ``contacts[]`` (the sender's profile name). ``statuses[]`` (sent, delivered,
read, failed) change nothing in routing and are skipped, as are reactions and fields
other than ``messages``. A message of a type this build does not know is still the
customer writing: it is published with empty text and a parser defect.

Media is referenced by the provider's media id (``whatsapp-media:<id>``), never fetched.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, ClassVar

from aiohttp import web

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters._util import arr, compact, from_epoch, obj, text
from switchboard.ingest_social.adapters.meta import meta_handshake, verify_meta_signature
from switchboard.ingest_social.sdk import ChannelAdapter, Tenant, TenantConfig, WebhookRequest

__all__ = ["WhatsAppAdapter"]

_MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha256_hex(value: Any) -> str | None:
    """WhatsApp sends the media hash base64-encoded; the schema wants hex."""
    raw = text(value)
    if raw is None:
        return None
    if _HEX64.match(raw):
        return raw
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest.hex() if len(digest) == 32 else None


class WhatsAppAdapter(ChannelAdapter):
    name: ClassVar[str] = "whatsapp"
    channel: ClassVar[Channel] = Channel.WHATSAPP
    provider: ClassVar[str] = "meta"
    required_secrets: ClassVar[frozenset[str]] = frozenset({"app_secret", "verify_token"})
    signs_public_url: ClassVar[bool] = False

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        verify_meta_signature(request, raw_body, tenant)

    async def handshake(self, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        return await meta_handshake(request, tenant)

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        data = self.load_json(raw_body)
        if data.get("object") != "whatsapp_business_account":
            return []
        out: list[InboundMessage] = []
        for entry in arr(data.get("entry")):
            for change in arr(obj(entry).get("changes")):
                change = obj(change)
                if change.get("field") != "messages":
                    continue
                value = obj(change.get("value"))
                names = {
                    text(c.get("wa_id")): text(obj(c.get("profile")).get("name"))
                    for c in map(obj, arr(value.get("contacts")))
                }
                metadata = obj(value.get("metadata"))
                for message in arr(value.get("messages")):
                    msg = self._message(obj(message), names, metadata, request, tenant)
                    if msg is not None:
                        out.append(msg)
        return out

    def _message(
        self,
        message: dict[str, Any],
        names: dict[str | None, str | None],
        metadata: dict[str, Any],
        request: WebhookRequest,
        tenant: Tenant,
    ) -> InboundMessage | None:
        wamid = text(message.get("id"))
        sender = text(message.get("from"))
        kind = text(message.get("type")) or "unknown"
        if not wamid or not sender or kind == "reaction":
            return None
        body, attachments, extra, defects = self._content(kind, message)
        context = obj(message.get("context"))
        replied_to = text(context.get("id"))
        return self.message(
            request,
            tenant,
            provider_message_id=wamid,
            handles=[ContactHandle(kind="whatsapp", value=sender, verified=True)],
            display_name=names.get(sender),
            thread_ref=sender,
            recipient=text(metadata.get("display_phone_number")),
            text=body,
            attachments=attachments,
            references=(replied_to,) if replied_to else (),
            sent_at=from_epoch(message.get("timestamp")),
            parser_defects=defects,
            provider_metadata=compact(
                {"type": kind, "phone_number_id": text(metadata.get("phone_number_id")), **extra}
            ),
        )

    @staticmethod
    def _content(
        kind: str, message: dict[str, Any]
    ) -> tuple[str, tuple[Attachment, ...], dict[str, Any], tuple[str, ...]]:
        part = obj(message.get(kind))
        if kind == "text":
            return text(part.get("body")) or "", (), {}, ()
        if kind in _MEDIA_TYPES:
            media_id = text(part.get("id"))
            attachment = Attachment(
                filename=text(part.get("filename")),
                content_type=text(part.get("mime_type")) or "application/octet-stream",
                size=0,
                sha256=_sha256_hex(part.get("sha256")),
                url=f"whatsapp-media:{media_id}" if media_id else None,
            )
            extra = {"voice": part.get("voice")} if isinstance(part.get("voice"), bool) else {}
            return text(part.get("caption")) or "", (attachment,), extra, ()
        if kind == "location":
            parts = [text(part.get(k)) for k in ("name", "address")]
            lat, lon = part.get("latitude"), part.get("longitude")
            body = " ".join(p for p in parts if p) or f"Location {lat},{lon}"
            return body, (), {"latitude": lat, "longitude": lon, "location_url": text(part.get("url"))}, ()
        if kind == "interactive":
            reply = obj(part.get("button_reply")) or obj(part.get("list_reply"))
            return (
                text(reply.get("title")) or "",
                (),
                {"reply_id": text(reply.get("id")), "interactive_type": text(part.get("type"))},
                (),
            )
        if kind == "button":
            return text(part.get("text")) or "", (), {"button_payload": text(part.get("payload"))}, ()
        if kind == "contacts":
            shared = [obj(c) for c in arr(message.get("contacts"))]
            names = [text(obj(c.get("name")).get("formatted_name")) for c in shared]
            phones = [text(obj(p).get("phone")) for c in shared for p in arr(c.get("phones"))]
            body = "Shared contact: " + ", ".join(n for n in names if n) if any(names) else "Shared contact"
            return body, (), {"shared_contacts": [p for p in phones if p]}, ()
        return "", (), {}, (f"unsupported WhatsApp message type {kind!r}",)
