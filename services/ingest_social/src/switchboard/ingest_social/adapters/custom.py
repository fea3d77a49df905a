"""The custom channel: signed JSON pushed by any system, in the Standard Webhooks style.

Headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds, within 5 minutes of now) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>``,
several space-separated signatures allowed). Each tenant may configure several
``signing_secret`` values during a rotation; ``whsec_``-prefixed secrets are base64. Body::

    {"type": "message.created",
     "data": {"id": "crm-msg-991", "channel": "chat",
              "contact": {"display_name": "Lee", "handles": [{"kind": "email", "value": "lee@example.com"}],
                          "attributes": {"tier": "platinum", "regions": ["eu", "us"]}},
              "text": "Hello", "subject": null, "thread_id": "case-12", "sent_at": "2026-03-02T11:59:00Z",
              "attachments": [{"url": "https://files.example.com/a.pdf", "content_type": "application/pdf",
                               "filename": "a.pdf", "size": 1024}],
              "metadata": {"crm": "acme"}}}

``contact.attributes`` become the contact's attributes (what routing rules match on), within
the SDK's bounds (422 ``invalid_contact_attributes`` otherwise). Other ``type`` values are
accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from switchboard.common.events import Attachment, Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters._models import validate
from switchboard.ingest_social.sdk import (
    ChannelAdapter,
    Tenant,
    TenantConfig,
    WebhookRequest,
    verify_standard_webhook,
)

__all__ = ["CustomChannelAdapter", "CustomMessage"]


class _Contact(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    display_name: str | None = None
    handles: tuple[ContactHandle, ...] = Field(min_length=1, max_length=20)
    attributes: dict[str, JsonValue] = Field(default_factory=dict)


class _Attachment(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    url: Annotated[str, StringConstraints(max_length=4096)]
    content_type: str = "application/octet-stream"
    filename: str | None = None
    size: Annotated[int, Field(ge=0)] = 0


class CustomMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    channel: Channel = Channel.CUSTOM
    contact: _Contact
    text: str = ""
    html: str | None = None
    subject: str | None = None
    thread_id: str | None = None
    in_reply_to: tuple[str, ...] = ()
    sent_at: AwareDatetime | None = None
    language: str | None = None
    attachments: tuple[_Attachment, ...] = Field(default=(), max_length=50)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    data: CustomMessage


class CustomChannelAdapter(ChannelAdapter):
    name: ClassVar[str] = "custom"
    channel: ClassVar[Channel] = Channel.CUSTOM
    required_secrets: ClassVar[frozenset[str]] = frozenset({"signing_secret"})
    signs_public_url: ClassVar[bool] = False

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        verify_standard_webhook(
            request.headers, raw_body, tenant.secret_values("signing_secret"), now=request.received_at
        )

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        data = self.load_json(raw_body)
        if data.get("type") != "message.created":
            return []
        msg = validate(_Envelope, data).data
        return [
            self.message(
                request,
                tenant,
                provider_message_id=msg.id,
                handles=msg.contact.handles,
                display_name=msg.contact.display_name,
                contact_attributes=msg.contact.attributes,
                channel=msg.channel,
                thread_ref=msg.thread_id,
                references=msg.in_reply_to,
                subject=msg.subject,
                text=msg.text,
                html=msg.html,
                sent_at=msg.sent_at,
                language=msg.language,
                attachments=tuple(
                    Attachment(url=a.url, content_type=a.content_type, filename=a.filename, size=a.size)
                    for a in msg.attachments
                ),
                provider_metadata=msg.metadata,
            )
        ]
