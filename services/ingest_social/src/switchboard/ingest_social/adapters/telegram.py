"""Telegram Bot API updates delivered by ``setWebhook``.

The bot registers its webhook with a ``secret_token``; Telegram sends it back in
``X-Telegram-Bot-Api-Secret-Token`` on every update, checked in constant time (the body
itself is not signed). Each update carries a unique, increasing ``update_id``, which is
the provider message id: a redelivered update is dropped as a duplicate.

``message`` updates from people are published (text, or a caption with photo, document,
audio, voice, video and sticker references by ``file_id``, never downloaded); edited
messages, channel posts, callback queries, member updates and unknown update types are
skipped, as are messages sent by bots.
"""

from __future__ import annotations

from typing import Any, ClassVar

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters._util import arr, compact, from_epoch, obj, text
from switchboard.ingest_social.sdk import ChannelAdapter, Tenant, TenantConfig, WebhookRequest, verify_token

__all__ = ["TelegramAdapter"]

_FILE_KINDS = ("document", "audio", "voice", "video", "video_note", "animation", "sticker")


class TelegramAdapter(ChannelAdapter):
    name: ClassVar[str] = "telegram"
    channel: ClassVar[Channel] = Channel.TELEGRAM
    required_secrets: ClassVar[frozenset[str]] = frozenset({"secret_token"})
    signs_public_url: ClassVar[bool] = False

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        presented = request.headers.get("X-Telegram-Bot-Api-Secret-Token")
        verify_token(presented, tenant.secret("secret_token"), what="X-Telegram-Bot-Api-Secret-Token")

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        update = self.load_json(raw_body)
        update_id = update.get("update_id")
        message = update.get("message")
        if not isinstance(update_id, int) or not isinstance(message, dict):
            return []
        sender = obj(message.get("from"))
        chat = obj(message.get("chat"))
        user_id = text(sender.get("id"))
        if not user_id or sender.get("is_bot") is True:
            return []
        name = " ".join(p for p in (text(sender.get("first_name")), text(sender.get("last_name"))) if p) or None
        handles = [ContactHandle(kind="telegram", value=user_id, verified=True)]
        username = text(sender.get("username"))
        if username:
            handles.append(ContactHandle(kind="telegram_username", value=username))
        reply_to = obj(message.get("reply_to_message")).get("message_id")
        chat_id = text(chat.get("id"))
        return [
            self.message(
                request,
                tenant,
                provider_message_id=str(update_id),
                handles=handles,
                display_name=name,
                thread_ref=chat_id,
                text=text(message.get("text")) or text(message.get("caption")) or "",
                attachments=self._attachments(message),
                references=(f"{chat_id}:{reply_to}",) if isinstance(reply_to, int) else (),
                sent_at=from_epoch(message.get("date")),
                language=text(sender.get("language_code")),
                provider_metadata=compact(
                    {"message_id": message.get("message_id"), "chat_id": chat_id, "chat_type": text(chat.get("type"))}
                ),
            )
        ]

    @staticmethod
    def _attachments(message: dict[str, Any]) -> tuple[Attachment, ...]:
        found: list[Attachment] = []
        photos = [obj(p) for p in arr(message.get("photo"))]
        if photos:  # several sizes of one photo: keep the largest
            best = max(photos, key=lambda p: p.get("file_size") or 0)
            found.append(_file(best, "image/jpeg"))
        for kind in _FILE_KINDS:
            part = message.get(kind)
            if isinstance(part, dict):
                found.append(_file(part, "application/octet-stream"))
        return tuple(f for f in found if f.url)


def _file(part: dict[str, Any], default_type: str) -> Attachment:
    file_id = text(part.get("file_id"))
    size = part.get("file_size")
    return Attachment(
        filename=text(part.get("file_name")),
        content_type=text(part.get("mime_type")) or default_type,
        size=size if isinstance(size, int) and size >= 0 else 0,
        url=f"telegram-file:{file_id}" if file_id else None,
    )
