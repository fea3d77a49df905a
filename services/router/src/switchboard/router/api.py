"""The router's HTTP API (``openapi.yaml`` beside this module documents it).

Writes validate the request, write one agent event to ``agent-events.v1`` and answer
``202`` with the event id: the router applies it when it consumes it, on whichever
instance owns the tenant, in order with everything else of that tenant. Reads answer
from the in-memory state of the instance that owns the tenant; any other instance
proxies the request to the owner (found in the consumer group's owner directory).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from switchboard.common.events import (
    AgentRemoved,
    AgentUpserted,
    ContactsLinked,
    ConversationResolved,
    ConversationTransferred,
    OfferAccepted,
    OfferDeclined,
    PresenceChanged,
    Record,
    ReplySent,
    RoutingDecision,
    RoutingLogEntry,
)
from switchboard.common.kafka import BrokerUnavailable, RecordTooLarge
from switchboard.common.logging import get_logger
from switchboard.common.runtime import KAFKA, TOPICS
from switchboard.router.service import RouterService
from switchboard.router.state import Agent, Conversation, ConversationStatus

__all__ = ["ROUTER", "SELF_URL", "add_routes"]

log = get_logger(__name__)

ROUTER = web.AppKey("router", RouterService)
SELF_URL = web.AppKey("self_url", str)
HTTP = web.AppKey("http_session", aiohttp.ClientSession)

OwnedRead = Callable[[web.Request, RouterService, str], Awaitable[web.Response]]
_PROXIED = "X-Switchboard-Proxied-By"
_SERVER_SET = frozenset({"schema", "schema_", "id", "tenant_id", "created_at"})
_SLA_DECISIONS = frozenset({RoutingDecision.ESCALATED, RoutingDecision.SLA_BREACHED})
_OPEN = (
    ConversationStatus.QUEUED,
    ConversationStatus.OFFERED,
    ConversationStatus.ASSIGNED,
    ConversationStatus.WAITING_FOR_CUSTOMER,
)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------------------- writes


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    if request.can_read_body and request.content_type != "application/json":
        return _error(415, f"expected application/json, got {request.content_type!r}")
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"the body is over {request.client_max_size} bytes")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return _error(400, "the body must be a JSON object")
    return data


def _tenant_known(request: web.Request) -> str | web.Response:
    tenant = request.match_info["tenant"]
    if request.app[ROUTER].engine.rules.tenant(tenant) is None:
        return _error(404, f"tenant {tenant!r} is not in the routing rules")
    return tenant


def _writer(
    event_type: type[Record], *, path_fields: dict[str, str], fixed: dict[str, Any] | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that turns path + body into ``event_type`` and writes it to agent-events."""
    allowed = set(event_type.model_fields) - _SERVER_SET - set(path_fields.values())

    async def handler(request: web.Request) -> web.Response:
        tenant = _tenant_known(request)
        if isinstance(tenant, web.Response):
            return tenant
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        unknown = sorted(set(body) - allowed)
        if unknown:
            return _error(422, "unknown fields", details=[{"field": f, "error": "not accepted here"} for f in unknown])
        data = {**body, **(fixed or {}), "tenant_id": tenant}
        for param, field_name in path_fields.items():
            data[field_name] = request.match_info[param]
        try:
            event = event_type.model_validate(data)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "error": err["msg"]} for err in exc.errors()
            ]
            return _error(422, "the request is not valid", details=details)
        try:
            await request.app[KAFKA].producer.send(request.app[TOPICS].agent_events, event)
        except RecordTooLarge:
            log.info("agent event refused: over the record size limit", schema=event.schema_id())
            return _error(413, "the event is larger than the broker's record size limit")
        except BrokerUnavailable as exc:
            log.warning("agent event not written: broker unavailable", schema=event.schema_id(), error=str(exc))
            return _error(503, "the broker is unavailable; retry", retry_after_seconds=1)
        return web.json_response({"event_id": event.id, "schema": event.schema_id()}, status=202)

    return handler


# ---------------------------------------------------------------------------- reads


def agent_json(agent: Agent) -> dict[str, Any]:
    return {
        "agent_id": agent.id,
        "display_name": agent.display_name,
        "presence": agent.presence.value,
        "skills": dict(agent.skills),
        "capacity": {c.value: n for c, n in agent.capacity.items()},
        "load": {c.value: n for c, n in agent.load.items()},
        "idle_since": _iso(agent.idle_since),
        "offline_since": _iso(agent.offline_since),
        "endpoints": [e.kind.value for e in agent.endpoints],
        "attributes": agent.attributes,
    }


def conversation_json(service: RouterService, tenant: str, conv: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": conv.id,
        "status": conv.status.value,
        "channel": conv.channel.value,
        "provider": conv.provider,
        "queue_id": conv.queue_id,
        "rule": conv.route_rule,
        "priority": conv.priority,
        "step": conv.step,
        "agent_id": conv.agent_id,
        "offer_id": conv.offer_id,
        "offer_expires_at": _iso(conv.offer_expires_at),
        "declined_by": sorted(conv.declined_by),
        "last_agent_id": conv.last_agent_id,
        "opened_at": _iso(conv.opened_at),
        "enqueued_at": _iso(conv.enqueued_at),
        "assigned_at": _iso(conv.assigned_at),
        "resolved_at": _iso(conv.resolved_at),
        "subject": conv.subject,
        "customer_name": conv.customer_name,
        "language": conv.language,
        "sla_policy": conv.sla_policy,
        "sla": [
            {
                "target": s.target,
                "policy": s.policy,
                "due_at": _iso(s.due_at),
                "breached": s.breached,
                "paused": s.paused,
            }
            for s in service.engine.sla_status(tenant, conv.id)
        ],
        "breaches": list(conv.breaches),
    }


def log_json(entry: RoutingLogEntry) -> dict[str, Any]:
    data: dict[str, Any] = entry.model_dump(mode="json", by_alias=True, exclude={"schema_", "tenant_id"})
    return data


async def _owner_or_proxy(request: web.Request) -> str | web.Response:
    """The tenant when this instance owns it; otherwise the owner's answer (or why there is none)."""
    tenant = _tenant_known(request)
    if isinstance(tenant, web.Response):
        return tenant
    service = request.app[ROUTER]
    if service.owns(tenant):
        return tenant
    owner = service.owner_url(tenant)
    me = request.app[SELF_URL]
    if owner is None or owner == me or request.headers.get(_PROXIED):
        return _error(
            503,
            "no instance owns this tenant right now (starting or rebalancing); retry",
            tenant=tenant,
            owner=owner,
            retry_after_seconds=2,
        )
    try:
        async with request.app[HTTP].get(
            owner + request.rel_url.path_qs, headers={_PROXIED: me}, allow_redirects=False
        ) as answer:
            body = await answer.read()
            return web.Response(
                body=body,
                status=answer.status,
                content_type=answer.content_type,
                headers={"X-Switchboard-Owner": owner},
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _error(502, f"the owner of this tenant did not answer: {type(exc).__name__}", owner=owner)


def _owned_read(handler: OwnedRead) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run a read for a tenant this instance owns; otherwise answer with the owner's reply (or why not)."""

    async def read(request: web.Request) -> web.Response:
        tenant = await _owner_or_proxy(request)
        if isinstance(tenant, web.Response):
            return tenant
        return await handler(request, request.app[ROUTER], tenant)

    return read


@_owned_read
async def get_conversation(request: web.Request, service: RouterService, tenant: str) -> web.Response:
    conv_id = request.match_info["conversation_id"]
    conv = service.engine.conversation(tenant, conv_id)
    if conv is None:
        return _error(404, f"conversation {conv_id!r} is not known to tenant {tenant!r}")
    data = conversation_json(service, tenant, conv)
    data["explanation"] = [log_json(e) for e in service.explanations.of(tenant, conv_id)]
    return web.json_response(data)


@_owned_read
async def get_queue(request: web.Request, service: RouterService, tenant: str) -> web.Response:
    queue_id = request.match_info["queue_id"]
    stats = next((q for q in service.engine.queue_stats(tenant) if q.queue_id == queue_id), None)
    if stats is None:
        return _error(404, f"queue {queue_id!r} is not in tenant {tenant!r}'s rules")
    try:
        limit = min(1000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        return _error(400, "limit must be an integer")
    waiting = service.engine.waiting(tenant, queue_id, limit=limit)
    return web.json_response(
        {
            "queue_id": queue_id,
            "depth": stats.depth,
            "oldest_enqueued_at": _iso(stats.oldest_enqueued_at),
            "offered": stats.offered,
            "assigned": stats.assigned,
            "waiting": [
                {
                    "conversation_id": c.id,
                    "channel": c.channel.value,
                    "priority": c.priority,
                    "step": c.step,
                    "enqueued_at": _iso(c.enqueued_at),
                }
                for c in waiting
            ],
        }
    )


@_owned_read
async def get_agent(request: web.Request, service: RouterService, tenant: str) -> web.Response:
    agent_id = request.match_info["agent_id"]
    agent = service.engine.agent(tenant, agent_id)
    if agent is None:
        return _error(404, f"agent {agent_id!r} is not known to tenant {tenant!r}")
    data = agent_json(agent)
    data["conversations"] = [
        {"conversation_id": c.id, "status": c.status.value, "channel": c.channel.value}
        for c in service.engine.held_by(tenant, agent_id)
    ]
    return web.json_response(data)


def _routing_explanation(entries: list[RoutingLogEntry]) -> dict[str, Any] | None:
    """The latest routing decision (the overview lists SLA escalations apart); else the latest entry."""
    routing = [e for e in entries if e.decision not in _SLA_DECISIONS] or entries
    return log_json(routing[-1]) if routing else None


@_owned_read
async def get_overview(request: web.Request, service: RouterService, tenant: str) -> web.Response:
    engine = service.engine
    conversations = []
    for conv in engine.conversations(tenant, statuses=_OPEN, limit=200):
        data = conversation_json(service, tenant, conv)
        data["explanation"] = _routing_explanation(service.explanations.of(tenant, conv.id))
        conversations.append(data)
    return web.json_response(
        {
            "tenant": tenant,
            "queues": [
                {
                    "queue_id": q.queue_id,
                    "depth": q.depth,
                    "oldest_enqueued_at": _iso(q.oldest_enqueued_at),
                    "offered": q.offered,
                    "assigned": q.assigned,
                }
                for q in engine.queue_stats(tenant)
            ],
            "agents": [agent_json(a) for a in engine.agents(tenant)],
            "conversations": conversations,
            "escalations": [log_json(e) for e in service.explanations.escalations(tenant)[:50]],
        }
    )


async def list_tenants(request: web.Request) -> web.Response:
    service = request.app[ROUTER]
    return web.json_response(
        {
            "tenants": [
                {
                    "tenant": tenant,
                    "partition": service.partition_for(tenant),
                    "owned_here": service.owns(tenant),
                    "owner": service.owner_url(tenant),
                }
                for tenant in sorted(service.engine.rules.tenants)
            ]
        }
    )


async def openapi(_request: web.Request) -> web.Response:
    text = resources.files("switchboard.router").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml")


def add_routes(app: web.Application) -> None:
    conversation = "/v1/tenants/{tenant}/conversations/{conversation_id}"
    agent = "/v1/tenants/{tenant}/agents/{agent_id}"
    conv_path = {"conversation_id": "conversation_id"}
    agent_path = {"agent_id": "agent_id"}
    app.router.add_put(agent, _writer(AgentUpserted, path_fields=agent_path))
    app.router.add_delete(agent, _writer(AgentRemoved, path_fields=agent_path))
    app.router.add_put(agent + "/presence", _writer(PresenceChanged, path_fields=agent_path))
    app.router.add_post(conversation + "/accept", _writer(OfferAccepted, path_fields=conv_path))
    app.router.add_post(conversation + "/decline", _writer(OfferDeclined, path_fields=conv_path))
    app.router.add_post(conversation + "/reply", _writer(ReplySent, path_fields=conv_path))
    app.router.add_post(conversation + "/resolve", _writer(ConversationResolved, path_fields=conv_path))
    app.router.add_post(conversation + "/transfer", _writer(ConversationTransferred, path_fields=conv_path))
    app.router.add_post("/v1/tenants/{tenant}/contacts/link", _writer(ContactsLinked, path_fields={}))
    app.router.add_get("/v1/tenants", list_tenants)
    app.router.add_get(conversation, get_conversation)
    app.router.add_get("/v1/tenants/{tenant}/queues/{queue_id}", get_queue)
    app.router.add_get(agent, get_agent)
    app.router.add_get("/v1/tenants/{tenant}/overview", get_overview)
    app.router.add_get("/openapi.yaml", openapi)
