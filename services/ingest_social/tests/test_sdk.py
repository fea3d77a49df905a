"""The SDK's parts on their own: config file, registry and entry points, dedupe cache, host errors."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import ClassVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from switchboard.common.events import Channel, ContactHandle, InboundMessage
from switchboard.ingest_social.adapters import BUILTIN_ADAPTERS, TelegramAdapter
from switchboard.ingest_social.sdk import (
    AdapterMetrics,
    AdapterRegistry,
    AdapterServices,
    BadSignature,
    ChannelAdapter,
    ChannelsConfig,
    ConfigError,
    DedupeCache,
    Tenant,
    TenantConfig,
    WebhookRequest,
    build_webhook_app,
    hmac_sha256,
    load_channels_config,
    mount_adapters,
    verify_prefixed_signature,
    verify_token,
)
from switchboard.ingest_social.sdk.testing import RecordingPublisher


class EchoAdapter(ChannelAdapter):
    """A minimal adapter used to test the registry and host."""

    name: ClassVar[str] = "echo"
    channel: ClassVar[Channel] = Channel.CUSTOM
    required_secrets: ClassVar[frozenset[str]] = frozenset({"token"})

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        verify_token(request.headers.get("x-token"), tenant.secret("token"))

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        data = self.load_json(raw_body)
        return [
            self.message(
                request, tenant, provider_message_id=str(i), handles=[ContactHandle(kind="echo", value="v")], text=t
            )
            for i, t in enumerate(data.get("texts", []))
        ]


def test_channels_file_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "channels.yaml"
    good.write_text(
        "adapters:\n"
        "  telegram:\n"
        "    tenants:\n"
        "      acme: {secrets: {secret_token: abc}, inbox: bots}\n"
        "  custom:\n"
        "    enabled: false\n"
        "    tenants:\n"
        "      acme: {secrets: {signing_secret: [new, old]}}\n"
    )
    config = load_channels_config(good)
    assert list(config.enabled()) == ["telegram"]
    acme = config.adapters["custom"].tenants["acme"]
    assert acme.secret_values("signing_secret") == ("new", "old")
    assert "new" not in repr(acme)  # secrets are SecretStr
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapters:\n  telegram:\n    tenants:\n      Not_A_Tenant!: {}\n")
    with pytest.raises(ConfigError, match="invalid channels file"):
        load_channels_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_channels_config(tmp_path / "missing.yaml")


def test_registry_creates_enabled_adapters_and_checks_secrets() -> None:
    registry = AdapterRegistry(BUILTIN_ADAPTERS)
    assert "telegram" in registry
    assert set(registry) >= {"messenger", "instagram", "whatsapp", "telegram", "x", "twilio-sms", "webchat", "custom"}
    ok = ChannelsConfig.model_validate(
        {"adapters": {"telegram": {"tenants": {"acme": {"secrets": {"secret_token": "t"}}}}}}
    )
    (adapter,) = registry.create_enabled(ok)
    assert isinstance(adapter, TelegramAdapter)
    missing = ChannelsConfig.model_validate({"adapters": {"telegram": {"tenants": {"acme": {"secrets": {}}}}}})
    with pytest.raises(ConfigError, match="missing secrets"):
        registry.create_enabled(missing)
    unknown = ChannelsConfig.model_validate({"adapters": {"pager": {}}})
    with pytest.raises(ConfigError, match="no adapter named 'pager'"):
        registry.create_enabled(unknown)


def test_entry_point_discovery_and_name_clash() -> None:
    registry = AdapterRegistry(BUILTIN_ADAPTERS)
    ep = EntryPoint(name="echo", value=f"{__name__}:EchoAdapter", group="switchboard.channels")
    assert registry.discover(eps=[ep]) == ["echo"]
    assert registry.get("echo") is EchoAdapter
    assert registry.discover(eps=[ep]) == []  # the same class twice is fine

    class Impostor(EchoAdapter):
        pass

    with pytest.raises(ConfigError, match="taken by"):
        registry.register(Impostor)
    broken = EntryPoint(name="broken", value="no_such_module_xyz:Adapter", group="switchboard.channels")
    with pytest.raises(ConfigError, match="failed to load"):
        registry.discover(eps=[broken])
    not_adapter = EntryPoint(name="bad", value="os.path:join", group="switchboard.channels")
    with pytest.raises(ConfigError, match="not a ChannelAdapter"):
        registry.discover(eps=[not_adapter])


def test_dedupe_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache = DedupeCache(max_entries=2, ttl_seconds=10, clock=lambda: now[0])
    cache.add("a")
    cache.add("b")
    cache.add("c")
    assert "a" not in cache
    assert "b" in cache
    assert len(cache) == 2
    now[0] = 11.0
    assert "b" not in cache
    assert "c" not in cache


def test_prefixed_signature_checks() -> None:
    with pytest.raises(BadSignature, match="missing"):
        verify_prefixed_signature(None, b"x", ["k"])
    with pytest.raises(BadSignature, match="does not start"):
        verify_prefixed_signature("md5=abc", b"x", ["k"])
    # HMAC-SHA256 of "The quick brown fox jumps over the lazy dog" keyed "key" (the well-known HMAC example)
    sig = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    verify_prefixed_signature(sig, b"The quick brown fox jumps over the lazy dog", ["other", "key"])
    with pytest.raises(BadSignature, match="does not match"):
        verify_prefixed_signature(sig, b"The quick brown fox jumps over the lazy cat", ["key"])


@pytest.mark.parametrize("key_length", [0, 1, 63, 64, 65, 200])
def test_hmac_sha256_matches_the_one_shot_hmac_for_any_key_and_stays_correct_when_reused(key_length: int) -> None:
    # The keyed state is cached per secret and copied for each message: a copy must start
    # from the key alone, whatever the messages signed before it (and keys longer than the
    # block size are hashed first, as RFC 2104 says).
    key = bytes(range(256))[:key_length]
    for body in (b"", b"first", b"second" * 100, b"first"):
        assert hmac_sha256(key, body) == hmac.digest(key, body, "sha256")
    assert hmac_sha256("key", b"x") == hmac_sha256(b"key", b"x") != hmac_sha256("other", b"x")


async def test_a_tenant_id_outside_the_pattern_is_not_found_even_when_configured() -> None:
    publisher = RecordingPublisher()
    services = AdapterServices(publisher=publisher, metrics=AdapterMetrics(CollectorRegistry()))
    config = TenantConfig(secrets={"token": "t"})
    app = build_webhook_app([EchoAdapter()], {"echo": {"acme": config, "Bad-Tenant": config}}, services)
    headers = {"x-token": "t", "Content-Type": "application/json"}
    async with TestClient(TestServer(app)) as client:
        async with client.post("/v1/echo/Bad-Tenant", data=b'{"texts": ["a"]}', headers=headers) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "unknown_tenant"
        async with client.post("/v1/echo/acme", data=b'{"texts": ["a"]}', headers=headers) as resp:
            assert resp.status == 200
    assert [m.tenant_id for m in publisher.records] == ["acme"]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[TestClient[web.Request, web.Application], RecordingPublisher]]:
    publisher = RecordingPublisher()
    services = AdapterServices(publisher=publisher, metrics=AdapterMetrics(CollectorRegistry()))
    app = build_webhook_app([EchoAdapter()], {"echo": {"acme": TenantConfig(secrets={"token": "t"})}}, services)
    async with TestClient(TestServer(app)) as client:
        yield client, publisher


async def test_host_answers_json_for_unknown_routes_and_methods(
    echo: tuple[TestClient[web.Request, web.Application], RecordingPublisher],
) -> None:
    client, _ = echo
    async with client.post("/v1/nope/acme") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"
    async with client.put("/v1/echo/acme") as resp:
        assert resp.status == 405
        assert (await resp.json())["error"] == "method_not_allowed"
        assert resp.headers["Allow"] == "GET, POST"
    async with client.get("/v1/echo/acme") as resp:  # no handshake declared
        assert resp.status == 405
    async with client.post("/v1/echo/ACME!", data=b"{}", headers={"x-token": "t"}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "unknown_tenant"


async def test_the_json_404_and_405_cover_the_application_s_own_routes_and_a_second_mount() -> None:
    async def ping(_request: web.Request) -> web.Response:
        return web.Response(text="pong")

    services = AdapterServices(publisher=RecordingPublisher(), metrics=AdapterMetrics(CollectorRegistry()))
    app = web.Application()
    app.router.add_get("/ping", ping)
    mount_adapters(app, [EchoAdapter()], {"echo": {"acme": TenantConfig(secrets={"token": "t"})}}, services)
    mount_adapters(app, [TelegramAdapter()], {}, services)  # a second mount adds no second catch-all
    app.router.add_get("/v2/status", ping)  # a route added afterwards still wins over the catch-all
    async with TestClient(TestServer(app)) as client:
        async with client.get("/ping") as resp:
            assert (resp.status, await resp.text()) == (200, "pong")
        async with client.get("/v2/status") as resp:
            assert resp.status == 200
        async with client.post("/ping") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET, HEAD"
            assert (await resp.json())["error"] == "method_not_allowed"
        async with client.delete("/v1/telegram/acme") as resp:
            assert (resp.status, (await resp.json())["error"]) == (405, "method_not_allowed")
        async with client.get("/v1/echo") as resp:
            assert (resp.status, (await resp.json())["error"]) == (404, "not_found")


async def test_duplicates_within_one_request_are_published_once(
    echo: tuple[TestClient[web.Request, web.Application], RecordingPublisher],
) -> None:
    client, publisher = echo
    headers = {"x-token": "t", "Content-Type": "application/json"}
    async with client.post("/v1/echo/acme", data=b'{"texts": ["a", "b"]}', headers=headers) as resp:
        assert await resp.json() == {"accepted": 2, "duplicates": 0}
    async with client.post("/v1/echo/acme", data=b'{"texts": ["a", "b", "c"]}', headers=headers) as resp:
        assert await resp.json() == {"accepted": 1, "duplicates": 2}
    assert [m.text for m in publisher.records] == ["a", "b", "c"]
    assert publisher.calls == 2


class UrlEchoAdapter(EchoAdapter):
    """Puts the public URL it was given into the message text."""

    name: ClassVar[str] = "urlecho"

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        handles = [ContactHandle(kind="echo", value="v")]
        return [self.message(request, tenant, provider_message_id="1", handles=handles, text=request.public_url)]


class NoUrlEchoAdapter(UrlEchoAdapter):
    name: ClassVar[str] = "nourlecho"
    signs_public_url: ClassVar[bool] = False


async def test_public_url_is_built_only_for_adapters_that_sign_it() -> None:
    publisher = RecordingPublisher()
    services = AdapterServices(publisher=publisher, metrics=AdapterMetrics(CollectorRegistry()))
    tenants = {name: {"acme": TenantConfig(secrets={"token": "t"})} for name in ("urlecho", "nourlecho")}
    app = build_webhook_app([UrlEchoAdapter(), NoUrlEchoAdapter()], tenants, services)
    headers = {"x-token": "t", "Content-Type": "application/json"}
    async with TestClient(TestServer(app)) as client:
        for name in ("urlecho", "nourlecho"):
            async with client.post(f"/v1/{name}/acme?a=1", data=b"{}", headers=headers) as resp:
                assert resp.status == 200
    signed_url, unsigned_url = (m.text for m in publisher.records)
    assert signed_url.startswith("http://")
    assert signed_url.endswith("/v1/urlecho/acme?a=1")
    assert unsigned_url == ""


def test_message_helper_fills_schema_id_and_creation_time_and_lets_fields_override_them() -> None:
    adapter = EchoAdapter()
    request = WebhookRequest(
        adapter="echo",
        tenant_id="acme",
        method="POST",
        public_url="",
        headers={},
        query={},
        content_type="application/json",
        received_at=datetime(2026, 3, 1, tzinfo=UTC),
    )
    tenant = Tenant("acme", TenantConfig(secrets={"token": "t"}))
    handles = [ContactHandle(kind="echo", value="v")]
    first = adapter.message(request, tenant, provider_message_id="1", handles=handles)
    second = adapter.message(request, tenant, provider_message_id="2", handles=handles)
    assert first.schema_ == InboundMessage.schema_id()
    assert first.id != second.id
    assert first.created_at.tzinfo is not None
    given = adapter.message(
        request, tenant, provider_message_id="3", handles=handles, id="fixed", created_at=request.received_at
    )
    assert (given.id, given.created_at) == ("fixed", request.received_at)


async def test_metric_children_are_resolved_once_and_count_every_outcome() -> None:
    registry = CollectorRegistry()
    metrics = AdapterMetrics(registry)
    assert metrics.adapter("echo") is metrics.adapter("echo")
    assert metrics.adapter("echo").outcome("bad_signature") is metrics.adapter("echo").outcome("bad_signature")
    services = AdapterServices(publisher=RecordingPublisher(), metrics=metrics)
    app = build_webhook_app([EchoAdapter()], {"echo": {"acme": TenantConfig(secrets={"token": "t"})}}, services)
    headers = {"x-token": "t", "Content-Type": "application/json"}
    async with TestClient(TestServer(app)) as client:
        async with client.post("/v1/echo/acme", data=b'{"texts": ["a"]}', headers=headers) as resp:
            assert resp.status == 200
        async with client.post("/v1/echo/acme", data=b'{"texts": ["a"]}', headers=headers) as resp:
            assert await resp.json() == {"accepted": 0, "duplicates": 1}
        async with client.post("/v1/echo/acme", data=b"{}", headers={**headers, "x-token": "wrong"}) as resp:
            assert resp.status == 401
        async with client.post("/v1/echo/other", data=b"{}", headers=headers) as resp:
            assert resp.status == 404

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("switchboard_webhook_requests_total", adapter="echo", outcome="ok") == 2
    assert value("switchboard_webhook_requests_total", adapter="echo", outcome="bad_signature") == 1
    assert value("switchboard_webhook_requests_total", adapter="echo", outcome="unknown_tenant") == 1
    assert value("switchboard_webhook_messages_total", adapter="echo") == 1
    assert value("switchboard_webhook_duplicates_total", adapter="echo") == 1
    assert value("switchboard_webhook_seconds_count", adapter="echo") == 3
