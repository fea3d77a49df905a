"""Meta Messenger and Instagram messaging webhooks.

* GET ``?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``: the subscription
  handshake, answered with the challenge when the token is the tenant's ``verify_token``.
* POST: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``; the body
  batches ``entry[]``, each with ``messaging[]`` events. Messages and postbacks from the
  customer are published; echoes (``message.is_echo``: the page's own sends), deletions,
  reactions, read receipts and deliveries are not customer messages and are skipped.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters._util import arr, compact, from_epoch, obj, text
from switchboard.ingest_social.sdk import (
    BadSignature,
    ChannelAdapter,
    Forbidden,
    Tenant,
    TenantConfig,
    WebhookRequest,
    verify_prefixed_signature,
    verify_token,
)

__all__ = ["InstagramAdapter", "MessengerAdapter", "verify_meta_signature"]

_ATTACHMENT_TYPES = {"image": "image/*", "audio": "audio/*", "video": "video/*", "file": "application/octet-stream"}


def verify_meta_signature(request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
    """``X-Hub-Signature-256`` over the raw body with the app secret (any configured value, for rotation)."""
    verify_prefixed_signature(
        request.headers.get("X-Hub-Signature-256"),
        raw_body,
        tenant.secret_values("app_secret"),
        header_name="X-Hub-Signature-256",
    )


async def meta_handshake(request: web.Request, tenant: Tenant) -> web.Response:
    """Answer ``hub.challenge`` when ``hub.verify_token`` is the tenant's (Meta and WhatsApp)."""
    query = request.query
    if query.get("hub.mode") != "subscribe":
        raise Forbidden("hub.mode is not 'subscribe'")
    try:
        verify_token(query.get("hub.verify_token"), tenant.config.secret("verify_token"), what="hub.verify_token")
    except BadSignature as exc:
        raise Forbidden(exc.reason) from None
    return web.Response(text=query.get("hub.challenge", ""), content_type="text/plain")


class MessengerAdapter(ChannelAdapter):
    name: ClassVar[str] = "messenger"
    channel: ClassVar[Channel] = Channel.MESSENGER
    provider: ClassVar[str] = "meta"
    required_secrets: ClassVar[frozenset[str]] = frozenset({"app_secret", "verify_token"})
    signs_public_url: ClassVar[bool] = False
    object_type: ClassVar[str] = "page"
    handle_kind: ClassVar[str] = "messenger"

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        verify_meta_signature(request, raw_body, tenant)

    async def handshake(self, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        return await meta_handshake(request, tenant)

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        data = self.load_json(raw_body)
        if data.get("object") != self.object_type:
            return []
        messages: list[InboundMessage] = []
        for entry in arr(data.get("entry")):
            entry = obj(entry)
            for event in arr(entry.get("messaging")):
                msg = self._event(obj(event), entry, request, tenant)
                if msg is not None:
                    messages.append(msg)
        return messages

    def _event(
        self, event: dict[str, Any], entry: dict[str, Any], request: WebhookRequest, tenant: Tenant
    ) -> InboundMessage | None:
        sender = text(obj(event.get("sender")).get("id"))
        recipient = text(obj(event.get("recipient")).get("id")) or text(entry.get("id"))
        if not sender:
            return None
        sent_at = from_epoch(event.get("timestamp"), millis=True)
        message = event.get("message")
        if isinstance(message, dict):
            if message.get("is_echo") or message.get("is_deleted") or message.get("is_unsupported"):
                return None
            mid = text(message.get("mid"))
            if not mid:
                return None
            attachments = tuple(self._attachment(obj(a)) for a in arr(message.get("attachments")))
            reply_to = text(obj(message.get("reply_to")).get("mid"))
            quick_reply = obj(message.get("quick_reply")).get("payload")
            return self.message(
                request,
                tenant,
                provider_message_id=mid,
                handles=[ContactHandle(kind=self.handle_kind, value=sender, verified=True)],
                thread_ref=sender,
                recipient=recipient,
                text=text(message.get("text")) or "",
                attachments=attachments,
                references=(reply_to,) if reply_to else (),
                sent_at=sent_at,
                provider_metadata=compact({"page_id": recipient, "quick_reply_payload": text(quick_reply)}),
            )
        postback = event.get("postback")
        if isinstance(postback, dict):
            # A button the customer pressed: a customer action with a stable mid.
            mid = text(postback.get("mid")) or f"postback:{sender}:{event.get('timestamp')}"
            return self.message(
                request,
                tenant,
                provider_message_id=mid,
                handles=[ContactHandle(kind=self.handle_kind, value=sender, verified=True)],
                thread_ref=sender,
                recipient=recipient,
                text=text(postback.get("title")) or "",
                sent_at=sent_at,
                provider_metadata=compact({"page_id": recipient, "postback_payload": text(postback.get("payload"))}),
            )
        return None  # delivery, read, reaction, referral, optin, unknown: not a customer message

    @staticmethod
    def _attachment(att: dict[str, Any]) -> Attachment:
        kind = text(att.get("type")) or "file"
        payload = obj(att.get("payload"))
        return Attachment(
            content_type=_ATTACHMENT_TYPES.get(kind, "application/octet-stream"),
            size=0,
            url=text(payload.get("url")),
            filename=text(payload.get("title")),
        )


class InstagramAdapter(MessengerAdapter):
    """Instagram messaging: Messenger's format with ``object: instagram`` and IG-scoped ids."""

    name: ClassVar[str] = "instagram"
    channel: ClassVar[Channel] = Channel.INSTAGRAM
    object_type: ClassVar[str] = "instagram"
    handle_kind: ClassVar[str] = "instagram"
