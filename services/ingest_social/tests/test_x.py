"""X direct messages: the contract kit, the CRC challenge and DM normalization."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.x import XAdapter
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


def x_sign(secret: str, body: bytes) -> str:
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class TestXContract(AdapterContract):
    def make_adapter(self) -> ChannelAdapter:
        return XAdapter()

    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"consumer_secret": "acme-consumer-secret"})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"consumer_secret": "globex-consumer-secret"})

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        return request.with_headers(
            {"x-twitter-webhooks-signature": x_sign(config.secret("consumer_secret"), request.body)}
        )

    def message_body(self) -> bytes:
        return (FIXTURES / "x_dm.json").read_bytes()

    def non_message_body(self) -> bytes:
        return (FIXTURES / "x_other_events.json").read_bytes()

    def malformed_body(self) -> bytes:
        return b"\x00not json"

    def check_message(self, message: InboundMessage) -> None:
        assert message.contact.handle("x_screen_name") == "furiouscamper"


def test_dm_is_normalized_and_echo_skipped() -> None:
    request = WebhookRequest("x", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    messages = XAdapter().parse((FIXTURES / "x_dm.json").read_bytes(), request, Tenant("acme", TenantConfig()))
    (msg,) = messages
    assert msg.channel is Channel.X
    assert msg.provider_message_id == "1896231223456789504"
    assert msg.contact.display_name == "Jordan Brinks"
    assert msg.contact.handle("x") == "3001969357"
    assert msg.recipient == "4337869213"
    assert msg.text.startswith("My refund is missing")
    assert msg.attachments[0].url == "https://ton.twitter.com/1.1/ton/data/dm/1/951/photo.jpg"
    assert msg.sent_at == NOW


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    tenants = {"x": {"acme": TenantConfig(secrets={"consumer_secret": "consumer-secret-1"})}}
    services = AdapterServices(publisher=RecordingPublisher(), metrics=AdapterMetrics(CollectorRegistry()))
    async with TestClient(TestServer(build_webhook_app([XAdapter()], tenants, services))) as c:
        yield c


async def test_crc_challenge_is_answered_with_the_hmac(client: TestClient[web.Request, web.Application]) -> None:
    async with client.get("/v1/x/acme", params={"crc_token": "Y3JjLXRva2VuLWZyb20teA"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    expected = hmac.new(b"consumer-secret-1", b"Y3JjLXRva2VuLWZyb20teA", hashlib.sha256).digest()
    assert body == {"response_token": "sha256=" + base64.b64encode(expected).decode()}


async def test_crc_without_token_is_400(client: TestClient[web.Request, web.Application]) -> None:
    async with client.get("/v1/x/acme") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "malformed_payload"
