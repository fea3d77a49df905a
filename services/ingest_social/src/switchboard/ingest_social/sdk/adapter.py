"""The channel adapter interface and the base class that does the common parts.

An adapter declares its ``name`` (the path segment of ``/v1/<name>/<tenant>``), its
``channel``, the secrets each tenant must configure, and implements two pure methods:

* :meth:`ChannelAdapter.verify` checks the request's signature over the raw body with the
  tenant's secret and raises :class:`~switchboard.ingest_social.sdk.errors.BadSignature`;
* :meth:`ChannelAdapter.parse` turns the raw body into zero or more
  :class:`~switchboard.common.events.InboundMessage` (zero for events that are not
  customer messages: deliveries, reads, statuses, unknown event types).

The base class :meth:`ChannelAdapter.receive` does everything else: the body size cap (413),
the content-type check (415), JSON errors, dropping provider retries already published,
publishing (503 when the broker does not acknowledge), and metrics. Adapters with a GET
handshake override :meth:`ChannelAdapter.handshake`; adapters with several endpoints
override :meth:`ChannelAdapter.routes`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDictProxy
from pydantic import JsonValue

from switchboard.common.events import (
    Channel,
    ContactHandle,
    InboundMessage,
    encode,
    new_id,
    utcnow,
)
from switchboard.common.logging import get_logger
from switchboard.ingest_social.sdk.attributes import (
    DEFAULT_ATTRIBUTE_LIMITS,
    AttributeLimits,
    allowed_attribute_keys,
    validate_contact_attributes,
)
from switchboard.ingest_social.sdk.config import TenantConfig
from switchboard.ingest_social.sdk.dedupe import DedupeCache
from switchboard.ingest_social.sdk.errors import (
    ConfigError,
    MalformedPayload,
    MethodNotAllowed,
    PayloadTooLarge,
    PublishFailed,
    UnsupportedMediaType,
    WebhookError,
)
from switchboard.ingest_social.sdk.metrics import AdapterCounters, AdapterMetrics
from switchboard.ingest_social.sdk.publisher import Publisher

__all__ = [
    "AdapterServices",
    "ChannelAdapter",
    "Route",
    "RouteHandler",
    "Tenant",
    "WebhookRequest",
]

log = get_logger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_RECORD_BYTES = 900 * 1024
"""An inbound record's encoded size at most: a broker's ``message.max.bytes`` and the
producer's ``max_request_size`` are 1 MiB by default, and a record over them is refused on
every try (a 503 the provider would retry until it gives up). A message that large gets a
413 instead."""
_CHECK_RECORDS_FROM_BYTES = MAX_RECORD_BYTES // 4
"""Bodies at least this large have their records' sizes checked: a record holds what its
body held (an adapter may copy a field into metadata too), so a smaller body cannot make a
record over :data:`MAX_RECORD_BYTES`, and most requests skip the second encoding."""
_INBOUND_SCHEMA = InboundMessage.schema_id()
_JSON_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
"""The acknowledgement's headers, given as is (aiohttp copies them into each response) rather
than through ``content_type=``, which parses and rebuilds the header on every response."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """The tenant named by the authenticated path, with its configuration for this adapter."""

    id: str
    config: TenantConfig


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """What ``verify`` and ``parse`` may look at: no aiohttp request, so they stay pure and testable."""

    adapter: str
    tenant_id: str
    method: str
    public_url: str
    headers: CIMultiDictProxy[str] | Mapping[str, str]
    query: MultiDictProxy[str] | Mapping[str, str]
    content_type: str
    received_at: datetime


RouteHandler = Callable[[web.Request, Tenant], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: ``method`` on ``/v1/<adapter>/<tenant><suffix>``."""

    method: str
    suffix: str
    handler: RouteHandler


@dataclass(slots=True)
class AdapterServices:
    """What the host lends an adapter when it mounts it."""

    publisher: Publisher
    metrics: AdapterMetrics
    dedupe: DedupeCache = field(default_factory=DedupeCache)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    public_base_url: str | None = None


class ChannelAdapter:
    """Base class of every channel adapter (built-in or from a third-party package)."""

    name: ClassVar[str] = ""
    """Path segment and registry name: lower-case letters, digits and ``-``."""
    channel: ClassVar[Channel] = Channel.CUSTOM
    provider: ClassVar[str] = ""
    """``InboundMessage.provider``; defaults to ``name``."""
    required_secrets: ClassVar[frozenset[str]] = frozenset()
    content_types: ClassVar[frozenset[str]] = frozenset({"application/json"})
    """Accepted request media types (415 otherwise); empty accepts any."""
    max_body_bytes: ClassVar[int] = DEFAULT_MAX_BODY_BYTES
    attribute_limits: ClassVar[AttributeLimits] = DEFAULT_ATTRIBUTE_LIMITS
    """Bounds on the ``contact_attributes`` given to :meth:`message` (422 beyond them)."""
    signs_public_url: ClassVar[bool] = True
    """Whether ``verify`` reads ``WebhookRequest.public_url`` (Twilio signs it). Adapters that
    never do set this to ``False`` and get an empty ``public_url``, which saves rebuilding the
    request URL on every request."""

    def __init__(self, options: Mapping[str, JsonValue] | None = None) -> None:
        self.options: Mapping[str, JsonValue] = dict(options or {})
        self._services: AdapterServices | None = None
        self._counters: AdapterCounters | None = None

    # ------------------------------------------------------------------ to implement

    def verify(self, request: WebhookRequest, raw_body: bytes, tenant: TenantConfig) -> None:
        """Raise ``BadSignature`` (401) or ``Forbidden`` (403) unless the request is authentic."""
        raise NotImplementedError

    def parse(self, raw_body: bytes, request: WebhookRequest, tenant: Tenant) -> list[InboundMessage]:
        """The customer messages in an authentic request (none for other events).

        Raise ``MalformedPayload`` for a body that cannot be read.
        """
        raise NotImplementedError

    async def handshake(self, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        """Answer a GET on the webhook URL (subscription challenges); 405 unless overridden."""
        raise MethodNotAllowed(f"{self.name} has no GET handshake")

    def routes(self) -> Sequence[Route]:
        """The endpoints under ``/v1/<name>/<tenant>``: by default POST (receive) and GET (handshake)."""
        return (Route("POST", "", self.receive), Route("GET", "", self.handshake))

    def on_response(self, request: web.Request, tenant: Tenant, response: web.StreamResponse) -> None:
        """Called with every response of this adapter's routes, errors included, before it is
        sent: add headers all of them need (the web chat's CORS headers). Nothing by default."""

    def acknowledge(self, request: WebhookRequest, published: int, duplicates: int) -> web.StreamResponse:
        """The 2xx sent once the broker acknowledged; override where the provider expects a given body."""
        return web.Response(body=orjson.dumps({"accepted": published, "duplicates": duplicates}), headers=_JSON_HEADERS)

    # ------------------------------------------------------------------ helpers for subclasses

    @classmethod
    def provider_name(cls) -> str:
        return cls.provider or cls.name

    def check_tenant(self, tenant_id: str, config: TenantConfig) -> None:
        """Called at start for each configured tenant; raises ``ConfigError`` for a missing secret."""
        missing = sorted(s for s in self.required_secrets if not config.secrets.get(s))
        if missing:
            raise ConfigError(f"adapter {self.name!r}, tenant {tenant_id!r}: missing secrets {missing}")
        try:
            allowed_attribute_keys(config.options)
        except ValueError as exc:
            raise ConfigError(f"adapter {self.name!r}, tenant {tenant_id!r}: {exc}") from None

    @staticmethod
    def load_json(raw_body: bytes) -> dict[str, Any]:
        """The body as a JSON object, or ``MalformedPayload``."""
        try:
            data = orjson.loads(raw_body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayload(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedPayload(f"body is a JSON {type(data).__name__}, not an object")
        return data

    def message(
        self,
        request: WebhookRequest,
        tenant: Tenant,
        *,
        provider_message_id: str,
        handles: Sequence[ContactHandle],
        display_name: str | None = None,
        contact_attributes: Mapping[str, object] | None = None,
        channel: Channel | None = None,
        **fields: Any,
    ) -> InboundMessage:
        """An ``InboundMessage`` with tenant, channel, provider, inbox and received_at filled in.

        ``contact_attributes`` (customer facts the routing rules match on, such as
        ``{"tier": "gold"}``) are checked against :attr:`attribute_limits` (at most 32 keys of
        short names, each value a JSON scalar or a list of scalars) and the tenant's
        ``allowed_contact_attributes`` option. Anything else raises
        :class:`~switchboard.ingest_social.sdk.errors.InvalidContactAttributes` (422).
        """
        attributes: dict[str, JsonValue] = {}
        if contact_attributes is not None:
            attributes = validate_contact_attributes(
                contact_attributes, self.attribute_limits, allowed=allowed_attribute_keys(tenant.config.options)
            )
        # schema, id and created_at are given rather than defaulted: pydantic's default factories
        # and the schema check's copy of the input cost a third of the model's construction.
        # The contact is given as its fields, validated into a ContactIdentity by the same
        # validator call: building it first was a second Python-level validation per message.
        contact: dict[str, Any] = {"display_name": display_name, "handles": tuple(handles), "attributes": attributes}
        return InboundMessage(
            tenant_id=tenant.id,
            channel=channel or self.channel,
            provider=self.provider_name(),
            provider_message_id=provider_message_id,
            inbox=tenant.config.inbox,
            contact=contact,  # validated into a ContactIdentity
            received_at=request.received_at,
            **{"schema": _INBOUND_SCHEMA, "id": new_id(), "created_at": utcnow(), **fields},
        )

    # ------------------------------------------------------------------ the common pipeline

    def attach(self, services: AdapterServices) -> None:
        self._services = services
        self._counters = services.metrics.adapter(self.name)

    @property
    def counters(self) -> AdapterCounters:
        """This adapter's metric children (resolved once when the adapter is mounted)."""
        if self._counters is None:
            raise RuntimeError(f"adapter {self.name!r} is not mounted on a host")
        return self._counters

    @property
    def services(self) -> AdapterServices:
        if self._services is None:
            raise RuntimeError(f"adapter {self.name!r} is not mounted on a host")
        return self._services

    def webhook_request(self, request: web.Request, tenant_id: str) -> WebhookRequest:
        services = self.services
        if not self.signs_public_url:
            public_url = ""
        elif services.public_base_url:
            public_url = services.public_base_url.rstrip("/") + request.path_qs
        else:
            public_url = str(request.url)
        return WebhookRequest(
            adapter=self.name,
            tenant_id=tenant_id,
            method=request.method,
            public_url=public_url,
            headers=request.headers,
            query=request.query,
            content_type=request.content_type,
            received_at=services.clock(),
        )

    async def read_body(self, request: web.Request) -> bytes:
        """The raw body, refused with 413 past ``max_body_bytes`` and 415 for another media type."""
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise PayloadTooLarge(f"body of {length} bytes exceeds {self.max_body_bytes}")
        if self.content_types and request.content_type not in self.content_types:
            raise UnsupportedMediaType(
                f"content type {request.content_type!r} is not one of {sorted(self.content_types)}"
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise PayloadTooLarge(f"body exceeds {self.max_body_bytes} bytes") from None
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"body of {len(body)} bytes exceeds {self.max_body_bytes}")
        return body

    async def receive(self, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        """POST: size and type checks, verify, parse, drop retries, publish, acknowledge."""
        services = self.services
        body = await self.read_body(request)
        wreq = self.webhook_request(request, tenant.id)
        self.verify(wreq, body, tenant.config)
        try:
            messages = self.parse(body, wreq, tenant)
        except WebhookError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            # A payload the adapter could not read (pydantic's ValidationError is a ValueError).
            log.info("webhook_unreadable", adapter=self.name, tenant=tenant.id, error_type=type(exc).__name__)
            raise MalformedPayload(f"payload could not be read ({type(exc).__name__})") from None
        fresh: list[InboundMessage] = []
        keys: list[tuple[str, str, str]] = []
        for msg in messages:
            key = (self.name, tenant.id, msg.provider_message_id)
            if key in services.dedupe or key in keys:
                continue
            keys.append(key)
            fresh.append(msg)
        duplicates = len(messages) - len(fresh)
        if len(body) >= _CHECK_RECORDS_FROM_BYTES:
            for msg in fresh:
                if (size := len(encode(msg))) > MAX_RECORD_BYTES:
                    raise PayloadTooLarge(
                        f"message {msg.provider_message_id!r} makes a record of {size} bytes; "
                        f"at most {MAX_RECORD_BYTES} can be published"
                    )
        if fresh:
            try:
                await services.publisher.publish(fresh)
            except Exception as exc:
                log.warning("publish_failed", adapter=self.name, tenant=tenant.id, error_type=type(exc).__name__)
                raise PublishFailed("the broker did not acknowledge the messages; retry later") from None
            for key in keys:
                services.dedupe.add(key)
            self.counters.messages.inc(len(fresh))
        if duplicates:
            self.counters.duplicates.inc(duplicates)
        return self.acknowledge(wreq, len(fresh), duplicates)

    async def dispatch(self, route: Route, request: web.Request, tenant: Tenant) -> web.StreamResponse:
        """Run one route with JSON errors and metrics (used by the host for every route)."""
        counters = self.counters
        started = time.perf_counter()
        try:
            response = await route.handler(request, tenant)
        except WebhookError as exc:
            counters.outcome(exc.code).inc()
            response = exc.response()
            self.on_response(request, tenant, response)
            return response
        finally:
            counters.seconds.observe(time.perf_counter() - started)
        counters.ok.inc()
        self.on_response(request, tenant, response)
        return response
