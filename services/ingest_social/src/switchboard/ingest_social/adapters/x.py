"""X (Twitter) direct messages through the Account Activity API.

* GET ``?crc_token=...``: the challenge-response check, answered with
  ``{"response_token": "sha256=<base64 HMAC-SHA256(consumer_secret, crc_token)>"}``.
* POST: ``x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256(consumer_secret, body)>``.
  ``direct_message_events[]`` of type ``message_create`` sent to the subscribed account
  (``for_user_id``) are published; the account's own messages (echoes), typing and read
  indicators, tweets, likes, follows and unknown events are skipped.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import orjson
from aiohttp import web

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters._util import arr, compact, from_epoch, obj, text
from switchboard.ingest_social.sdk import (
    ChannelAdapter,
    MalformedPayload,
    Tenant,
    TenantConfig,
    WebhookRequest,
    hmac_sha256,
    verify_prefixed_signature,
)

__all__ = ["XAdapter", "crc_response_token"]


def crc_response_token(consumer_secret: str, crc_token: str) -> str:
    return "sha256=" + base64.b64encode(hmac_sha256(consumer_secret, crc_token.encode())).decode()


class XAdapter(ChannelAdapter):
    name: ClassVar[str] = "x"
    channel: ClassVar[Channel] = Channel.X
    required_secrets: ClassVar[frozenset[str]] = frozenset({"consumer_secret"})
    signs_public_url: ClassVar[bool] = False

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        verify_prefixed_signature(
            request.headers.get("x-twitter-webhooks-signature"),
            raw_body,
            tenant.secret_values("consumer_secret"),
            encoding="base64",
            header_name="x-twitter-webhooks-signature",
        )

    async def handshake(self, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        crc_token = request.query.get("crc_token")
        if not crc_token:
            raise MalformedPayload("missing crc_token")
        token = crc_response_token(tenant.config.secret("consumer_secret"), crc_token)
        return web.Response(body=orjson.dumps({"response_token": token}), content_type="application/json")

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        data = self.load_json(raw_body)
        account = text(data.get("for_user_id"))
        users = obj(data.get("users"))
        out: list[InboundMessage] = []
        for event in map(obj, arr(data.get("direct_message_events"))):
            if event.get("type") != "message_create":
                continue
            create = obj(event.get("message_create"))
            sender = text(create.get("sender_id"))
            event_id = text(event.get("id"))
            if not sender or not event_id or sender == account:
                continue
            user = obj(users.get(sender))
            handles = [ContactHandle(kind="x", value=sender, verified=True)]
            screen_name = text(user.get("screen_name"))
            if screen_name:
                handles.append(ContactHandle(kind="x_screen_name", value=screen_name))
            message_data = obj(create.get("message_data"))
            out.append(
                self.message(
                    request,
                    tenant,
                    provider_message_id=event_id,
                    handles=handles,
                    display_name=text(user.get("name")),
                    thread_ref=sender,
                    recipient=text(obj(create.get("target")).get("recipient_id")) or account,
                    text=text(message_data.get("text")) or "",
                    attachments=self._attachments(message_data),
                    sent_at=from_epoch(event.get("created_timestamp"), millis=True),
                    provider_metadata=compact({"for_user_id": account}),
                )
            )
        return out

    @staticmethod
    def _attachments(message_data: dict[str, Any]) -> tuple[Attachment, ...]:
        media = obj(obj(message_data.get("attachment")).get("media"))
        url = text(media.get("media_url_https"))
        if not url:
            return ()
        kind = text(media.get("type")) or ""
        content_type = {"photo": "image/jpeg", "video": "video/mp4", "animated_gif": "video/mp4"}.get(
            kind, "application/octet-stream"
        )
        return (Attachment(content_type=content_type, size=0, url=url),)
