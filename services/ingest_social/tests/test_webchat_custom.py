"""Web chat and the custom (Standard Webhooks) channel: the contract kit and normalization."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from switchboard.common.events import Channel, InboundMessage
from switchboard.ingest_social.adapters.custom import CustomChannelAdapter
from switchboard.ingest_social.adapters.webchat import WebChatAdapter
from switchboard.ingest_social.sdk import (
    AdapterMetrics,
    AdapterServices,
    BadSignature,
    ChannelAdapter,
    ConfigError,
    InvalidContactAttributes,
    MalformedPayload,
    Tenant,
    TenantConfig,
    WebhookRequest,
    build_webhook_app,
    sign_standard_webhook,
    verify_standard_webhook,
)
from switchboard.ingest_social.sdk.contract import (
    ContactAttributesContract,
    ContractEnv,
    SignedRequest,
    TimestampedContract,
)
from switchboard.ingest_social.sdk.testing import RecordingPublisher

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CHAT = {
    "type": "message",
    "message_id": "c0ffee-1",
    "visitor_id": "v-8d1f",
    "text": "Hello, can I change my plan?",
    "name": "Robin",
    "email": "robin@example.com",
    "page_url": "https://shop.example.com/pricing",
    "widget_version": "2.3.1",
}


class TestWebChatContract(ContactAttributesContract):
    signs_body: ClassVar[bool] = False  # a site key, not a body signature

    def make_adapter(self) -> ChannelAdapter:
        return WebChatAdapter()

    def tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"site_key": "pk_acme_123"}, inbox="website")

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"site_key": "pk_globex_456"})

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        return request.with_headers({"X-Switchboard-Chat-Key": config.secret("site_key")})

    def message_body(self) -> bytes:
        return orjson.dumps(CHAT)

    def message_body_with_attributes(self, attributes: Mapping[str, object]) -> bytes:
        return orjson.dumps({**CHAT, "attributes": attributes})

    def non_message_body(self) -> bytes:
        return b'{"type": "typing", "visitor_id": "v-8d1f"}'

    def malformed_body(self) -> bytes:
        return b'{"type": "message", "visitor_id": "v-8d1f", "text": "no message id"}'

    def check_message(self, message: InboundMessage) -> None:
        assert message.contact.handle("chat") == "v-8d1f"


def test_chat_message_normalized() -> None:
    request = WebhookRequest("webchat", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    (msg,) = WebChatAdapter().parse(orjson.dumps(CHAT), request, Tenant("acme", TenantConfig(inbox="website")))
    assert msg.channel is Channel.CHAT
    assert msg.provider_message_id == "v-8d1f:c0ffee-1"
    assert msg.thread_ref == "v-8d1f"
    assert msg.inbox == "website"
    assert msg.contact.display_name == "Robin"
    assert msg.contact.handle("email") == "robin@example.com"
    assert msg.provider_metadata == {"page_url": "https://shop.example.com/pricing"}


def test_invalid_chat_message_names_fields_but_not_values() -> None:
    request = WebhookRequest("webchat", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    body = orjson.dumps({**CHAT, "email": "not-an-address-secret"})
    with pytest.raises(MalformedPayload) as exc:
        WebChatAdapter().parse(body, request, Tenant("acme", TenantConfig()))
    assert "email" in exc.value.reason
    assert "not-an-address-secret" not in exc.value.reason


CUSTOM: dict[str, Any] = {
    "type": "message.created",
    "data": {
        "id": "crm-msg-991",
        "contact": {"display_name": "Lee", "handles": [{"kind": "crm_customer", "value": "C-1001"}]},
        "text": "My invoice is wrong",
        "thread_id": "case-12",
        "sent_at": "2026-03-02T11:59:00Z",
        "attachments": [{"url": "https://files.example.com/a.pdf", "content_type": "application/pdf", "size": 1024}],
        "metadata": {"crm": "acme"},
        "unknown_field": {"nested": True},
    },
}


class TestCustomChannelContract(ContactAttributesContract, TimestampedContract):
    def make_adapter(self) -> ChannelAdapter:
        return CustomChannelAdapter()

    def tenant_config(self) -> TenantConfig:
        # rotation: the new secret first, the old one still accepted
        return TenantConfig(secrets={"signing_secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "old-secret"]})

    def other_tenant_config(self) -> TenantConfig:
        return TenantConfig(secrets={"signing_secret": "whsec_Z2xvYmV4LXNlY3JldC1rZXk="})

    def sign_at(self, request: SignedRequest, config: TenantConfig, at: datetime) -> SignedRequest:
        ts = int(at.timestamp())
        msg_id = "msg_" + hashlib.sha256(request.body).hexdigest()[:24]
        return request.with_headers(
            {
                "webhook-id": msg_id,
                "webhook-timestamp": str(ts),
                "webhook-signature": sign_standard_webhook(config.secret("signing_secret"), msg_id, ts, request.body),
            }
        )

    def message_body(self) -> bytes:
        return orjson.dumps(CUSTOM)

    async def test_a_message_too_large_to_publish_is_413_not_a_503_retried_forever(self, env: ContractEnv) -> None:
        data: dict[str, Any] = CUSTOM["data"]
        big = {**CUSTOM, "data": {**data, "text": "x" * 480_000, "html": "<p>" + "y" * 480_000}}
        body = orjson.dumps(big)
        assert len(body) <= env.adapter.max_body_bytes  # within the body cap, over the broker's record size
        status, answer, ctype = await self.send(env, self.signed(env.adapter, body))
        self.assert_json_error(status, answer, ctype, {413})
        assert env.publisher.records == []

    def message_body_with_attributes(self, attributes: Mapping[str, object]) -> bytes:
        data: dict[str, Any] = CUSTOM["data"]
        return orjson.dumps({**CUSTOM, "data": {**data, "contact": {**data["contact"], "attributes": attributes}}})

    def non_message_body(self) -> bytes:
        return b'{"type": "contact.updated", "data": {"id": "C-1001"}}'

    def malformed_body(self) -> bytes:
        return b'{"type": "message.created", "data": {"id": "x", "contact": {"handles": []}}}'


def test_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification and its reference libraries' tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = sign_standard_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,bm9ldHUjKzFob2VudXRob2VodWUzMjRvdWVvdW9ldQo= " + sig,
    }
    at = datetime.fromtimestamp(1614265330, UTC) + timedelta(seconds=30)
    assert verify_standard_webhook(headers, body, [secret], now=at) == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    with pytest.raises(BadSignature):
        verify_standard_webhook(headers, body + b" ", [secret], now=at)
    with pytest.raises(BadSignature):
        verify_standard_webhook({**headers, "webhook-timestamp": "abc"}, body, [secret], now=at)


def test_old_secret_still_verifies_during_rotation() -> None:
    body = orjson.dumps(CUSTOM)
    ts = int(NOW.timestamp())
    headers = {
        "webhook-id": "m1",
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard_webhook("old-secret", "m1", ts, body),
    }
    config = TenantConfig(secrets={"signing_secret": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "old-secret"]})
    request = WebhookRequest("custom", "acme", "POST", "https://h/", headers, {}, "application/json", NOW)
    CustomChannelAdapter().verify(request, body, config)
    with pytest.raises(BadSignature):
        CustomChannelAdapter().verify(
            request, body, TenantConfig(secrets={"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
        )


def test_custom_message_normalized() -> None:
    request = WebhookRequest("custom", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    (msg,) = CustomChannelAdapter().parse(orjson.dumps(CUSTOM), request, Tenant("acme", TenantConfig()))
    assert msg.channel is Channel.CUSTOM
    assert msg.provider == "custom"
    assert msg.provider_message_id == "crm-msg-991"
    assert msg.contact.handle("crm_customer") == "C-1001"
    assert msg.thread_ref == "case-12"
    assert msg.sent_at == datetime(2026, 3, 2, 11, 59, tzinfo=UTC)
    assert msg.attachments[0].size == 1024
    assert msg.provider_metadata == {"crm": "acme"}


def test_chat_attributes_become_contact_attributes() -> None:
    request = WebhookRequest("webchat", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    body = orjson.dumps({**CHAT, "attributes": {"tier": "gold", "seats": 12, "teams": ["ops", "it"]}})
    (msg,) = WebChatAdapter().parse(body, request, Tenant("acme", TenantConfig()))
    assert msg.contact.attributes == {"tier": "gold", "seats": 12, "teams": ["ops", "it"]}
    (plain,) = WebChatAdapter().parse(orjson.dumps(CHAT), request, Tenant("acme", TenantConfig()))
    assert plain.contact.attributes == {}


def test_chat_attributes_that_are_not_an_object_are_malformed() -> None:
    request = WebhookRequest("webchat", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    with pytest.raises(MalformedPayload) as exc:
        WebChatAdapter().parse(orjson.dumps({**CHAT, "attributes": ["vip"]}), request, Tenant("acme", TenantConfig()))
    assert "attributes" in exc.value.reason


def test_chat_nested_attributes_are_refused_with_422() -> None:
    request = WebhookRequest("webchat", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    body = orjson.dumps({**CHAT, "attributes": {"tier": {"level": "gold"}}})
    with pytest.raises(InvalidContactAttributes) as exc:
        WebChatAdapter().parse(body, request, Tenant("acme", TenantConfig()))
    assert exc.value.status == 422
    assert "'tier'" in exc.value.reason


def test_custom_contact_attributes_become_contact_attributes() -> None:
    request = WebhookRequest("custom", "acme", "POST", "https://h/", {}, {}, "application/json", NOW)
    data = {**CUSTOM["data"]}
    data["contact"] = {**data["contact"], "attributes": {"tier": "platinum", "account": "A-77"}}
    (msg,) = CustomChannelAdapter().parse(
        orjson.dumps({**CUSTOM, "data": data}), request, Tenant("acme", TenantConfig())
    )
    assert msg.contact.attributes == {"tier": "platinum", "account": "A-77"}
    assert msg.provider_metadata == {"crm": "acme"}


# ------------------------------------------------------------------ web chat from a browser (CORS)

SHOP = "https://shop.example.com"


@pytest.fixture
async def chat_client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    services = AdapterServices(publisher=RecordingPublisher(), metrics=AdapterMetrics(CollectorRegistry()))
    tenants = {
        "acme": TenantConfig(secrets={"site_key": "pk_acme"}, options={"allowed_origins": [SHOP]}),
        "open": TenantConfig(secrets={"site_key": "pk_open"}, options={"allowed_origins": ["*"]}),
        "relay": TenantConfig(secrets={"site_key": "pk_relay"}),  # no browser origins: a server posts
    }
    app = build_webhook_app([WebChatAdapter()], {"webchat": tenants}, services)
    async with TestClient(TestServer(app)) as client:
        yield client


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-switchboard-chat-key",
    }


async def test_a_browser_on_an_allowed_origin_may_post_and_reads_every_answer(
    chat_client: TestClient[web.Request, web.Application],
) -> None:
    async with chat_client.options("/v1/webchat/acme", headers=_preflight(SHOP)) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == SHOP
        assert resp.headers["Access-Control-Allow-Methods"] == "POST"
        assert {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")} >= {
            "content-type",
            "x-switchboard-chat-key",
        }
        assert resp.headers["Vary"] == "Origin"
    body = orjson.dumps(CHAT)
    headers = {"Origin": SHOP, "Content-Type": "application/json", "X-Switchboard-Chat-Key": "pk_acme"}
    async with chat_client.post("/v1/webchat/acme", data=body, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == SHOP
    wrong_key = {**headers, "X-Switchboard-Chat-Key": "pk_wrong"}
    async with chat_client.post("/v1/webchat/acme", data=body, headers=wrong_key) as resp:
        assert resp.status == 401  # an error the widget can read too
        assert resp.headers["Access-Control-Allow-Origin"] == SHOP
    async with chat_client.options("/v1/webchat/open", headers=_preflight("https://anywhere.example")) as resp:
        assert (resp.status, resp.headers["Access-Control-Allow-Origin"]) == (204, "https://anywhere.example")


async def test_other_origins_and_tenants_without_origins_get_no_cors(
    chat_client: TestClient[web.Request, web.Application],
) -> None:
    async with chat_client.options("/v1/webchat/acme", headers=_preflight("https://evil.example")) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"] == "forbidden"
        assert "Access-Control-Allow-Origin" not in resp.headers
    headers = {
        "Origin": "https://evil.example",
        "Content-Type": "application/json",
        "X-Switchboard-Chat-Key": "pk_acme",
    }
    async with chat_client.post("/v1/webchat/acme", data=orjson.dumps(CHAT), headers=headers) as resp:
        assert resp.status == 200  # a server may post; a browser on that origin cannot read this
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert resp.headers["Vary"] == "Origin"
    async with chat_client.options("/v1/webchat/relay", headers=_preflight(SHOP)) as resp:
        assert resp.status == 403
    relay = {"Content-Type": "application/json", "X-Switchboard-Chat-Key": "pk_relay"}
    async with chat_client.post("/v1/webchat/relay", data=orjson.dumps(CHAT), headers=relay) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert "Vary" not in resp.headers


@pytest.mark.parametrize(
    ("origins", "error"),
    [
        ("https://shop.example.com", "must be a list"),
        (["https://shop.example.com/"], "not an origin"),
        (["https://Shop.example.com"], "not an origin"),
        (["shop.example.com"], "not an origin"),
    ],
)
def test_allowed_origins_are_checked_at_start(origins: object, error: str) -> None:
    config = TenantConfig(secrets={"site_key": "k"}, options={"allowed_origins": origins})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=error):
        WebChatAdapter().check_tenant("acme", config)
    WebChatAdapter().check_tenant("acme", TenantConfig(secrets={"site_key": "k"}, options={"allowed_origins": [SHOP]}))
