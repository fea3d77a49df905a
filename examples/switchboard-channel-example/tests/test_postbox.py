"""The Postbox adapter against the Switchboard contract kit, plus its own checks."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import entry_points

import orjson
from switchboard_channel_example import PostboxAdapter, sign

from switchboard.common.events import InboundMessage
from switchboard.ingest_social.sdk import (
    ENTRY_POINT_GROUP,
    AdapterRegistry,
    ChannelAdapter,
    Tenant,
    TenantConfig,
    WebhookRequest,
)
from switchboard.ingest_social.sdk.contract import SignedRequest, TimestampedContract

EVENT = {
    "event": "message.received",
    "id": "evt_1",
    "message": {
        "id": "pm_123",
        "conversation": "conv_9",
        "text": "Hi, my parcel is late",
        "sender": {"id": "u_42", "name": "Lee", "phone": "+14155550100"},
        "media": [{"url": "https://media.postbox.example/m/1", "type": "image/png", "bytes": 2048}],
        "sent_at": 1772452800,
        "a_future_field": [1, 2],
    },
}


class TestPostboxContract(TimestampedContract):
    def make_adapter(self) -> ChannelAdapter:
        return PostboxAdapter()

    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"signing_secret": ["pbx_new", "pbx_old"]})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"signing_secret": "pbx_globex"})

    def sign_at(self, request: SignedRequest, config: TenantConfig, at: datetime) -> SignedRequest:
        header = sign(config.secret("signing_secret"), int(at.timestamp()), request.body)
        return request.with_headers({"Postbox-Signature": header})

    def message_body(self) -> bytes:
        return orjson.dumps(EVENT)

    def non_message_body(self) -> bytes:
        return b'{"event": "conversation.closed", "id": "evt_2", "conversation": "conv_9"}'

    def malformed_body(self) -> bytes:
        return b'{"event": "message.received", "message": {"text": "no ids"}}'

    def check_message(self, message: InboundMessage) -> None:
        assert message.provider_message_id == "pm_123"
        assert message.thread_ref == "conv_9"


def test_entry_point_is_published() -> None:
    names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert names.get("postbox") == "switchboard_channel_example:PostboxAdapter"
    registry = AdapterRegistry()
    assert "postbox" in registry.discover()
    assert registry.get("postbox") is PostboxAdapter


def test_message_normalized() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    request = WebhookRequest("postbox", "acme", "POST", "https://h/", {}, {}, "application/json", now)
    (msg,) = PostboxAdapter().parse(orjson.dumps(EVENT), request, Tenant("acme", TenantConfig()))
    assert msg.contact.display_name == "Lee"
    assert msg.contact.handle("phone") == "+14155550100"
    assert msg.attachments[0].url == "https://media.postbox.example/m/1"
    assert msg.attachments[0].size == 2048
    assert msg.sent_at == now
