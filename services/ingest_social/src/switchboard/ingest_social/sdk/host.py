"""The webhook host: mounts adapters on an aiohttp application under ``/v1/<adapter>/<tenant>``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial

from aiohttp import web

from switchboard.ingest_social.sdk.adapter import AdapterServices, ChannelAdapter, Route, Tenant
from switchboard.ingest_social.sdk.config import TENANT_PATTERN, TenantConfig
from switchboard.ingest_social.sdk.errors import ConfigError, UnknownTenant, json_error

__all__ = ["build_webhook_app", "json_http_errors", "mount_adapters"]

_TENANT_RE = re.compile(TENANT_PATTERN)


def mount_adapters(
    app: web.Application,
    adapters: Sequence[ChannelAdapter],
    tenants: Mapping[str, Mapping[str, TenantConfig]],
    services: AdapterServices,
) -> None:
    """Add every adapter's routes to ``app``; ``tenants`` maps adapter name to tenant id to config.

    A request to a tenant not configured for that adapter is answered 404 before any body is
    read: the tenant, and so the secret that authenticates the request, come from the path.
    Requests for a path or a method no route has are answered in JSON too (404, or 405 with
    ``Allow``), by a catch-all route added once per application.
    """
    seen: set[str] = set()
    for adapter in adapters:
        if adapter.name in seen:
            raise ConfigError(f"adapter {adapter.name!r} mounted twice")
        seen.add(adapter.name)
        adapter.attach(services)
        # Resolved once: a request only looks its tenant up. Only ids the pattern allows are
        # kept, so any other path segment is not found, whatever the configuration holds.
        adapter_tenants = {
            tenant_id: Tenant(tenant_id, config)
            for tenant_id, config in tenants.get(adapter.name, {}).items()
            if _TENANT_RE.match(tenant_id)
        }
        for route in adapter.routes():
            path = f"/v1/{adapter.name}/{{tenant}}{route.suffix}"
            app.router.add_route(route.method, path, partial(_handle, adapter, route, adapter_tenants))
    if not any(getattr(r, "handler", None) is _not_routed for r in app.router.routes()):
        # Last in aiohttp's look-up (it tries the longest path prefixes first), so it only
        # sees requests no other route took: a JSON 404, or a JSON 405 where another route
        # has the path. A route rather than a middleware, which every request would pay for.
        app.router.add_route("*", "/{path:.*}", _not_routed)


async def _handle(
    adapter: ChannelAdapter, route: Route, tenants: Mapping[str, Tenant], request: web.Request
) -> web.StreamResponse:
    tenant_id = request.match_info["tenant"]
    tenant = tenants.get(tenant_id)
    if tenant is None:
        adapter.counters.outcome(UnknownTenant.code).inc()
        return UnknownTenant(f"tenant {tenant_id!r} is not configured for {adapter.name}").response()
    return await adapter.dispatch(route, request, tenant)


async def _not_routed(request: web.Request) -> web.Response:
    """A request no route took: 405 (with ``Allow``) when some route has its path, else 404."""
    allowed: set[str] = set()
    own = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        response = json_error(405, "method_not_allowed", f"{request.method} is not allowed here")
        response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    return json_error(404, "not_found", "Not Found")


@web.middleware
async def json_http_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's HTTP errors raised by a handler as JSON errors like the adapters'.

    Not needed for the adapters' routes: :func:`mount_adapters` answers unknown paths and
    methods in JSON itself, and the adapters' own errors are JSON already. For an
    application that adds routes of its own that raise aiohttp's HTTP exceptions.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status, "error")
        return json_error(exc.status, code, exc.reason)


def build_webhook_app(
    adapters: Sequence[ChannelAdapter],
    tenants: Mapping[str, Mapping[str, TenantConfig]],
    services: AdapterServices,
    *,
    app: web.Application | None = None,
) -> web.Application:
    """A new (or the given) application with the adapters mounted (unknown paths and methods answered in JSON).

    A new application's ``client_max_size`` is the largest adapter body cap, so aiohttp never
    buffers more than an adapter would accept.
    """
    if app is None:
        cap = max((a.max_body_bytes for a in adapters), default=1024 * 1024)
        app = web.Application(client_max_size=cap + 1)
    mount_adapters(app, adapters, tenants, services)
    return app
