"""The contract-test kit every channel adapter must pass, built-in or third-party.

Subclass :class:`AdapterContract` in a test module under a name starting with ``Test``,
and provide the adapter, two tenants' configurations and three payloads::

    class TestMyAdapter(AdapterContract):
        def make_adapter(self) -> ChannelAdapter:
            return MyAdapter()

        def tenant_config(self) -> TenantConfig:
            return TenantConfig(secrets={"signing_key": "s3cret"})

        def other_tenant_config(self) -> TenantConfig:
            return TenantConfig(secrets={"signing_key": "another"})

        def message_body(self) -> bytes: ...        # one or more customer messages
        def non_message_body(self) -> bytes: ...    # an event type the adapter ignores
        def malformed_body(self) -> bytes: ...      # a body the adapter cannot read

        def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
            return request.with_headers({"x-signature": my_signature(config, request.body)})

Each test starts the adapter on a real aiohttp server (``aiohttp.test_utils.TestServer``)
with a :class:`RecordingPublisher` and talks to it over HTTP. Adapters whose signature
carries a timestamp also subclass :class:`TimestampedContract` for the replay window.
Adapters whose payload carries customer attributes (passed to ``ChannelAdapter.message`` as
``contact_attributes``) also subclass :class:`ContactAttributesContract` and provide
``message_body_with_attributes(attributes)``.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import JsonValue

from switchboard.common.events import InboundMessage
from switchboard.ingest_social.sdk.adapter import AdapterServices, ChannelAdapter
from switchboard.ingest_social.sdk.attributes import validate_contact_attributes
from switchboard.ingest_social.sdk.config import TenantConfig
from switchboard.ingest_social.sdk.dedupe import DedupeCache
from switchboard.ingest_social.sdk.host import build_webhook_app
from switchboard.ingest_social.sdk.metrics import AdapterMetrics
from switchboard.ingest_social.sdk.testing import RecordingPublisher

__all__ = ["AdapterContract", "ContactAttributesContract", "ContractEnv", "SignedRequest", "TimestampedContract"]

PUBLIC_BASE_URL = "https://hooks.example.test"


@dataclass(frozen=True)
class SignedRequest:
    """A request as the provider would send it; ``public_url`` is what the provider signed."""

    path: str
    public_url: str
    body: bytes
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)

    def with_headers(self, headers: Mapping[str, str]) -> SignedRequest:
        return dataclasses.replace(self, headers={**self.headers, **headers})

    def with_body(self, body: bytes) -> SignedRequest:
        return dataclasses.replace(self, body=body)


@dataclass
class ContractEnv:
    client: TestClient[web.Request, web.Application]
    publisher: RecordingPublisher
    adapter: ChannelAdapter
    registry: CollectorRegistry


class AdapterContract:
    """Behaviour every adapter shares. Not collected itself (its name does not start with ``Test``)."""

    tenant_id: ClassVar[str] = "acme"
    other_tenant_id: ClassVar[str] = "globex"
    now: ClassVar[datetime] = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
    suffix: ClassVar[str] = ""
    """The route under ``/v1/<adapter>/<tenant>`` that receives messages."""
    signs_body: ClassVar[bool] = True
    """False for schemes that authenticate with a static token (a changed body still passes)."""

    # ------------------------------------------------------------------ to provide

    def make_adapter(self) -> ChannelAdapter:
        raise NotImplementedError

    def tenant_config(self) -> TenantConfig:
        raise NotImplementedError

    def other_tenant_config(self) -> TenantConfig:
        """Another tenant of the same adapter, with different secrets."""
        raise NotImplementedError

    def message_body(self) -> bytes:
        raise NotImplementedError

    def non_message_body(self) -> bytes:
        raise NotImplementedError

    def malformed_body(self) -> bytes:
        raise NotImplementedError

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        raise NotImplementedError

    def content_type(self) -> str:
        return "application/json"

    def check_message(self, message: InboundMessage) -> None:
        """Adapter-specific assertions on each message parsed from ``message_body``."""

    # ------------------------------------------------------------------ plumbing

    @pytest.fixture
    async def env(self) -> AsyncIterator[ContractEnv]:
        adapter = self.make_adapter()
        publisher = RecordingPublisher()
        registry = CollectorRegistry()
        services = AdapterServices(
            publisher=publisher,
            metrics=AdapterMetrics(registry),
            dedupe=DedupeCache(max_entries=1000),
            clock=lambda: self.now,
            public_base_url=PUBLIC_BASE_URL,
        )
        tenants = {
            adapter.name: {self.tenant_id: self.tenant_config(), self.other_tenant_id: self.other_tenant_config()}
        }
        for tenant_id, cfg in tenants[adapter.name].items():
            adapter.check_tenant(tenant_id, cfg)
        app = build_webhook_app([adapter], tenants, services)
        async with TestClient(TestServer(app)) as client:
            yield ContractEnv(client, publisher, adapter, registry)

    def request(self, adapter: ChannelAdapter, body: bytes, *, tenant_id: str | None = None) -> SignedRequest:
        path = f"/v1/{adapter.name}/{tenant_id or self.tenant_id}{self.suffix}"
        return SignedRequest(
            path=path, public_url=PUBLIC_BASE_URL + path, body=body, headers={"Content-Type": self.content_type()}
        )

    def signed(self, adapter: ChannelAdapter, body: bytes, *, config: TenantConfig | None = None) -> SignedRequest:
        return self.sign(self.request(adapter, body), config or self.tenant_config())

    @staticmethod
    async def send(env: ContractEnv, req: SignedRequest) -> tuple[int, bytes, str]:
        data: bytes | io.BytesIO = io.BytesIO(req.body) if len(req.body) > 256 * 1024 else req.body
        async with env.client.request(req.method, req.path, data=data, headers=dict(req.headers)) as resp:
            return resp.status, await resp.read(), resp.content_type

    @staticmethod
    def assert_json_error(status: int, body: bytes, content_type: str, expected: set[int]) -> None:
        assert status in expected, (status, body[:300])
        assert content_type == "application/json", content_type
        assert b'"error"' in body
        assert b'"reason"' in body

    # ------------------------------------------------------------------ the contract

    async def test_signed_message_is_published_normalized(self, env: ContractEnv) -> None:
        status, body, _ = await self.send(env, self.signed(env.adapter, self.message_body()))
        assert 200 <= status < 300, body[:300]
        assert env.publisher.records, "a signed message event published nothing"
        for msg in env.publisher.records:
            assert msg.tenant_id == self.tenant_id
            assert msg.channel == env.adapter.channel
            assert msg.provider == env.adapter.provider_name()
            assert msg.provider_message_id
            assert msg.contact.handles
            assert all(h.value for h in msg.contact.handles)
            assert msg.received_at == self.now
            # whatever attributes an adapter attaches stay within the SDK's bounds
            assert validate_contact_attributes(msg.contact.attributes, env.adapter.attribute_limits) == (
                msg.contact.attributes
            )
            self.check_message(msg)
        ids = [m.provider_message_id for m in env.publisher.records]
        assert len(ids) == len(set(ids)), "one provider message id published twice in one request"

    async def test_wrong_secret_is_rejected(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body(), config=self.other_tenant_config())
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {401, 403})
        assert env.publisher.records == []

    async def test_missing_signature_is_rejected(self, env: ContractEnv) -> None:
        status, body, ctype = await self.send(env, self.request(env.adapter, self.message_body()))
        self.assert_json_error(status, body, ctype, {401, 403})
        assert env.publisher.records == []

    async def test_changed_body_after_signing(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body())
        status, body, ctype = await self.send(env, req.with_body(req.body + b" "))
        if self.signs_body:
            self.assert_json_error(status, body, ctype, {401, 403})
            assert env.publisher.records == []
        else:
            assert 200 <= status < 300, body[:300]

    async def test_tenant_comes_from_the_path_and_its_secret(self, env: ContractEnv) -> None:
        # Signed with acme's secret but sent to globex's endpoint: globex's secret does not match.
        req = self.sign(
            self.request(env.adapter, self.message_body(), tenant_id=self.other_tenant_id), self.tenant_config()
        )
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {401, 403})
        # Signed with globex's secret for globex: published as globex, whatever the body says.
        req = self.sign(
            self.request(env.adapter, self.message_body(), tenant_id=self.other_tenant_id), self.other_tenant_config()
        )
        status, body, _ = await self.send(env, req)
        assert 200 <= status < 300, body[:300]
        assert env.publisher.records
        assert {m.tenant_id for m in env.publisher.records} == {self.other_tenant_id}

    async def test_unknown_tenant_is_404(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body())
        req = dataclasses.replace(req, path=req.path.replace(f"/{self.tenant_id}", "/nobody", 1))
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {404})
        assert env.publisher.records == []

    async def test_duplicate_delivery_publishes_once(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body())
        status1, body1, _ = await self.send(env, req)
        first = list(env.publisher.records)
        status2, body2, _ = await self.send(env, req)
        assert 200 <= status1 < 300, body1[:300]
        assert 200 <= status2 < 300, body2[:300]
        assert first
        assert env.publisher.records == first, "a provider retry published a second event"

    async def test_broker_down_is_503_and_the_retry_publishes(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body())
        env.publisher.fail = True
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {503})
        env.publisher.fail = False
        status, body, _ = await self.send(env, req)
        assert 200 <= status < 300, body[:300]
        assert env.publisher.records, "the retry after a 503 was wrongly taken for a duplicate"

    async def test_oversize_body_is_413(self, env: ContractEnv) -> None:
        big = self.message_body() + b" " * (env.adapter.max_body_bytes + 1)
        status, body, ctype = await self.send(env, self.signed(env.adapter, big))
        self.assert_json_error(status, body, ctype, {413})
        assert env.publisher.records == []

    async def test_wrong_content_type_is_415(self, env: ContractEnv) -> None:
        req = self.signed(env.adapter, self.message_body()).with_headers({"Content-Type": "text/x-unexpected"})
        status, body, ctype = await self.send(env, req)
        if env.adapter.content_types:
            self.assert_json_error(status, body, ctype, {415})
            assert env.publisher.records == []
        else:  # the adapter accepts any media type
            assert 200 <= status < 300, body[:300]

    async def test_malformed_body_is_400(self, env: ContractEnv) -> None:
        status, body, ctype = await self.send(env, self.signed(env.adapter, self.malformed_body()))
        self.assert_json_error(status, body, ctype, {400})
        assert env.publisher.records == []

    async def test_unknown_event_type_is_accepted_and_ignored(self, env: ContractEnv) -> None:
        status, body, _ = await self.send(env, self.signed(env.adapter, self.non_message_body()))
        assert 200 <= status < 300, body[:300]
        assert env.publisher.records == []

    @pytest.mark.parametrize(
        "junk", [b"", b"null", b"[]", b"{}", b'{"a": [1, {"b": null}]}', b"\xff\xfe\x00garbage", b"[" * 5000]
    )
    async def test_junk_is_never_a_server_error(self, env: ContractEnv, junk: bytes) -> None:
        status, body, _ = await self.send(env, self.signed(env.adapter, junk))
        assert status < 500, (status, body[:300])
        if status >= 400:
            assert b'"error"' in body

    async def test_metrics_count_outcomes_per_adapter(self, env: ContractEnv) -> None:
        await self.send(env, self.signed(env.adapter, self.message_body()))
        await self.send(env, self.request(env.adapter, self.message_body()))
        ok = env.registry.get_sample_value(
            "switchboard_webhook_requests_total", {"adapter": env.adapter.name, "outcome": "ok"}
        )
        rejected = sum(
            env.registry.get_sample_value(
                "switchboard_webhook_requests_total", {"adapter": env.adapter.name, "outcome": code}
            )
            or 0.0
            for code in ("bad_signature", "forbidden")
        )
        published = env.registry.get_sample_value("switchboard_webhook_messages_total", {"adapter": env.adapter.name})
        assert ok == 1.0
        assert rejected == 1.0
        assert published == float(len(env.publisher.records))


class TimestampedContract(AdapterContract):
    """For schemes that sign a timestamp: a request outside the tolerance is a replay."""

    tolerance: ClassVar[timedelta] = timedelta(minutes=5)

    def sign_at(self, request: SignedRequest, config: TenantConfig, at: datetime) -> SignedRequest:
        raise NotImplementedError

    def sign(self, request: SignedRequest, config: TenantConfig) -> SignedRequest:
        return self.sign_at(request, config, self.now)

    async def test_stale_timestamp_is_rejected_as_replay(self, env: ContractEnv) -> None:
        at = self.now - self.tolerance - timedelta(seconds=1)
        req = self.sign_at(self.request(env.adapter, self.message_body()), self.tenant_config(), at)
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {401})
        assert env.publisher.records == []

    async def test_future_timestamp_is_rejected(self, env: ContractEnv) -> None:
        at = self.now + self.tolerance + timedelta(seconds=1)
        req = self.sign_at(self.request(env.adapter, self.message_body()), self.tenant_config(), at)
        status, body, ctype = await self.send(env, req)
        self.assert_json_error(status, body, ctype, {401})

    async def test_timestamp_within_tolerance_is_accepted(self, env: ContractEnv) -> None:
        at = self.now - self.tolerance + timedelta(seconds=5)
        req = self.sign_at(self.request(env.adapter, self.message_body()), self.tenant_config(), at)
        status, body, _ = await self.send(env, req)
        assert 200 <= status < 300, body[:300]


_LEAK = "do-not-echo-this-value"
"""A marker in every refused attribute value: an error reason must never repeat it."""


def _invalid_attributes() -> dict[str, dict[str, object]]:
    return {
        "too_many_keys": {f"k{i}": _LEAK for i in range(33)},
        "key_too_long": {"k" * 65: _LEAK},
        "key_not_a_name": {"tier level!": _LEAK},
        "empty_key": {"": _LEAK},
        "string_too_long": {"note": _LEAK + "x" * 257},
        "nested_object": {"tier": {"name": _LEAK}},
        "list_of_lists": {"tags": [[_LEAK]]},
        "list_of_objects": {"tags": [{"t": _LEAK}]},
        "list_too_long": {"tags": [_LEAK] * 33},
        "too_large_in_total": {f"k{i}": _LEAK + "x" * 220 for i in range(20)},
    }


class ContactAttributesContract(AdapterContract):
    """For adapters that attach customer attributes (``contact_attributes``) to the contact."""

    valid_attributes: ClassVar[dict[str, JsonValue]] = {
        "tier": "gold",
        "plan": "pro",
        "seats": 25,
        "score": 4.5,
        "beta": True,
        "churn_risk": None,
        "regions": ["eu", "us"],
    }

    def message_body_with_attributes(self, attributes: Mapping[str, object]) -> bytes:
        """One customer message whose contact carries ``attributes`` as given."""
        raise NotImplementedError

    async def test_contact_attributes_are_published_on_the_contact(self, env: ContractEnv) -> None:
        body = self.message_body_with_attributes(self.valid_attributes)
        status, resp, _ = await self.send(env, self.signed(env.adapter, body))
        assert 200 <= status < 300, resp[:300]
        assert env.publisher.records
        for msg in env.publisher.records:
            assert msg.contact.attributes == self.valid_attributes
            # and they survive the wire format the router reads
            assert orjson.loads(msg.model_dump_json())["contact"]["attributes"] == self.valid_attributes

    async def test_no_attributes_give_an_empty_mapping(self, env: ContractEnv) -> None:
        body = self.message_body_with_attributes({})
        status, resp, _ = await self.send(env, self.signed(env.adapter, body))
        assert 200 <= status < 300, resp[:300]
        assert env.publisher.records
        assert all(msg.contact.attributes == {} for msg in env.publisher.records)

    @pytest.mark.parametrize("case", sorted(_invalid_attributes()))
    async def test_invalid_attributes_are_422_and_publish_nothing(self, env: ContractEnv, case: str) -> None:
        body = self.message_body_with_attributes(_invalid_attributes()[case])
        status, resp, ctype = await self.send(env, self.signed(env.adapter, body))
        self.assert_json_error(status, resp, ctype, {422})
        error = orjson.loads(resp)
        assert error["error"] == "invalid_contact_attributes"
        assert "contact attributes" in error["reason"]
        assert _LEAK not in error["reason"], "an error reason repeated an attribute value"
        assert env.publisher.records == []
        refused = env.registry.get_sample_value(
            "switchboard_webhook_requests_total",
            {"adapter": env.adapter.name, "outcome": "invalid_contact_attributes"},
        )
        assert refused == 1.0
