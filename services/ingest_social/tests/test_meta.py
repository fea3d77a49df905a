"""Messenger and Instagram: the contract kit, the handshake, and what a batched webhook yields."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.meta import InstagramAdapter, MessengerAdapter
from switchboard.ingest_social.sdk import (
    AdapterMetrics,
    AdapterServices,
    ChannelAdapter,
    Tenant,
    TenantConfig,
    WebhookRequest,
    build_webhook_app,
)
from switchboard.ingest_social.sdk.contract import AdapterContract, SignedRequest
from switchboard.ingest_social.sdk.testing import RecordingPublisher

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def meta_sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class MetaContract(AdapterContract):
    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"app_secret": "acme-app-secret", "verify_token": "acme-verify"})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"app_secret": "globex-app-secret", "verify_token": "globex-verify"})

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        return request.with_headers({"X-Hub-Signature-256": meta_sign(config.secret("app_secret"), request.body)})

    def malformed_body(self) -> bytes:
        return b'{"object": "page", "entry": [{"messaging": [{"sender": '


class TestMessengerContract(MetaContract):
    def make_adapter(self) -> ChannelAdapter:
        return MessengerAdapter()

    def message_body(self) -> bytes:
        return (FIXTURES / "messenger_batch.json").read_bytes()

    def non_message_body(self) -> bytes:
        return b'{"object": "page", "entry": [{"id": "1", "time": 1, "changes": [{"field": "feed", "value": {}}]}]}'

    def check_message(self, message: InboundMessage) -> None:
        assert message.recipient == "104592862334411"
        assert message.contact.handles[0].kind == "messenger"


class TestInstagramContract(MetaContract):
    def make_adapter(self) -> ChannelAdapter:
        return InstagramAdapter()

    def message_body(self) -> bytes:
        return (FIXTURES / "instagram_message.json").read_bytes()

    def non_message_body(self) -> bytes:
        return b'{"object": "instagram", "entry": [{"id": "1", "time": 1, "changes": [{"field": "comments"}]}]}'


def _request() -> WebhookRequest:
    return WebhookRequest("messenger", "acme", "POST", "https://h/v1/messenger/acme", {}, {}, "application/json", NOW)


def test_messenger_batch_yields_customer_messages_only() -> None:
    adapter = MessengerAdapter()
    tenant = Tenant("acme", TenantConfig(inbox="support"))
    body = (FIXTURES / "messenger_batch.json").read_bytes()
    messages = adapter.parse(body, _request(), tenant)
    # two messages and one postback; the echo, reaction, read and delivery are not customer messages
    assert [m.provider_message_id for m in messages] == [
        "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
        "m_second_with_image",
        "m_postback_1",
    ]
    first, second, postback = messages
    assert first.channel is Channel.MESSENGER
    assert first.provider == "meta"
    assert first.text == "Hi, my order has not arrived"
    assert first.references == ("m_previous_message_id",)
    assert first.contact.handle("messenger") == "6543210987654321"
    assert first.thread_ref == "6543210987654321"
    assert first.inbox == "support"
    assert first.sent_at == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert second.text == ""
    assert second.attachments[0].url is not None
    assert second.attachments[0].url.startswith("https://scontent")
    assert second.attachments[0].content_type.startswith("image/")
    assert postback.text == "Track my order"
    assert postback.provider_metadata["postback_payload"] == "TRACK_ORDER"


def test_instagram_skips_deleted_and_ignores_page_objects() -> None:
    adapter = InstagramAdapter()
    tenant = Tenant("acme", TenantConfig())
    messages = adapter.parse((FIXTURES / "instagram_message.json").read_bytes(), _request(), tenant)
    assert len(messages) == 1
    assert messages[0].channel is Channel.INSTAGRAM
    assert messages[0].contact.handle("instagram") == "1234567890123456"
    # a Messenger payload sent to the Instagram endpoint carries no Instagram messages
    assert adapter.parse((FIXTURES / "messenger_batch.json").read_bytes(), _request(), tenant) == []


@pytest.fixture
async def client() -> AsyncIterator[TestClient[object, object]]:
    adapter = MessengerAdapter()
    tenants = {"messenger": {"acme": TenantConfig(secrets={"app_secret": "s", "verify_token": "the-token"})}}
    services = AdapterServices(publisher=RecordingPublisher(), metrics=AdapterMetrics(CollectorRegistry()))
    app = build_webhook_app([adapter], tenants, services)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_subscription_handshake_echoes_the_challenge(client: TestClient[object, object]) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "the-token", "hub.challenge": "1158201444"}
    async with client.get("/v1/messenger/acme", params=params) as resp:
        assert resp.status == 200
        assert await resp.text() == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "the-token", "hub.challenge": "1"},
    ],
)
async def test_handshake_with_a_wrong_token_is_403(client: TestClient[object, object], params: dict[str, str]) -> None:
    async with client.get("/v1/messenger/acme", params=params) as resp:
        assert resp.status == 403
        body = await resp.json()
        assert body["error"] == "forbidden"
        assert "1" not in (await resp.text()).split('"reason"')[0]
