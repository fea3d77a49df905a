"""The inbox over HTTP: the page, its JSON, its live events and its actions.

- ``GET /inbox/{tenant}/{agent}``: the page (HTML);
- ``GET /inbox/{tenant}/{agent}.json``: the same items as JSON, newest first;
- ``GET /inbox/{tenant}/{agent}/events``: Server-Sent Events, one ``item`` event per new item
  (``id`` = the item's sequence number; ``?after=<seq>`` or ``Last-Event-ID`` replays what came
  after it, so a reconnecting browser misses nothing the inbox still holds);
- ``POST /inbox/{tenant}/{agent}/actions``: ``{"action": "accept|decline|resolve",
  "conversation_id": ..., "offer_id"?: ..., "reason"?: ...}``, forwarded to the router API with
  ``"source": "inbox"``; the answer is the router's status and JSON body (502 when the router
  cannot be reached).

An unknown tenant or agent has an empty inbox (200); a malformed one is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from switchboard.common.logging import get_logger
from switchboard.notifier.inbox import (
    MAX_AGENT_ID,
    InboxClosed,
    InboxItem,
    InboxStore,
    Subscription,
    TooManySubscribers,
    valid_agent,
    valid_tenant,
)
from switchboard.notifier.inbox_page import (
    content_security_policy,
    new_nonce,
    render_item,
    render_page,
    security_headers,
)
from switchboard.notifier.router_client import CONVERSATION_ACTIONS, RouterClient, RouterUnreachable

log = get_logger(__name__)

MAX_ACTION_BODY = 16 * 1024
_JSON_HEADERS = security_headers()


class InboxRequestError(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


@dataclass
class InboxHttp:
    """What the inbox handlers share: the store and (once the app runs) the router client."""

    store: InboxStore
    router_url: str
    router_timeout: float
    ping_interval: float = 15.0
    router: RouterClient | None = None


INBOX_HTTP = web.AppKey("inbox_http", InboxHttp)


def _error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=_JSON_HEADERS)


def _inbox_of(request: web.Request) -> tuple[str, str]:
    tenant, agent = request.match_info["tenant"], request.match_info["agent"]
    if not valid_tenant(tenant):
        raise InboxRequestError(400, "not a valid tenant id")
    if not valid_agent(agent):
        raise InboxRequestError(400, f"not a valid agent id (1 to {MAX_AGENT_ID} characters, no '/')")
    return tenant, agent


def _after(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    try:
        after = int(raw)
    except ValueError:
        raise InboxRequestError(400, "'after' must be a sequence number") from None
    if after < 0:
        raise InboxRequestError(400, "'after' must be a sequence number")
    return after


async def page(request: web.Request) -> web.Response:
    try:
        tenant, agent = _inbox_of(request)
    except InboxRequestError as exc:
        return _error(exc.status, exc.error)
    items = request.app[INBOX_HTTP].store.items(tenant, agent)
    nonce = new_nonce()
    return web.Response(
        text=render_page(tenant, agent, items, nonce),
        content_type="text/html",
        charset="utf-8",
        headers=security_headers(content_security_policy(nonce)),
    )


async def page_json(request: web.Request) -> web.Response:
    try:
        tenant, agent = _inbox_of(request)
    except InboxRequestError as exc:
        return _error(exc.status, exc.error)
    items = request.app[INBOX_HTTP].store.items(tenant, agent)
    body = {"tenant": tenant, "agent": agent, "items": [item.to_json() for item in items]}
    return web.json_response(body, dumps=lambda v: orjson.dumps(v).decode(), headers=_JSON_HEADERS)


def _event_data(item: InboxItem) -> str:
    return orjson.dumps({"item": item.to_json(), "html": render_item(item)}).decode()


async def events(request: web.Request) -> web.StreamResponse:
    try:
        tenant, agent = _inbox_of(request)
        after = _after(request)
    except InboxRequestError as exc:
        return _error(exc.status, exc.error)
    inbox = request.app[INBOX_HTTP]
    try:
        sub = inbox.store.subscribe(tenant, agent)
    except TooManySubscribers as exc:
        return _error(429, str(exc))
    except InboxClosed as exc:
        return _error(503, str(exc))
    stream = EventSourceResponse(headers=_JSON_HEADERS, ping_interval=inbox.ping_interval)
    try:
        await stream.prepare(request)
        async with stream:
            await _follow(stream, inbox.store, sub, after)
    except (ConnectionResetError, TimeoutError):
        pass  # the reader went away mid-write
    finally:
        inbox.store.unsubscribe(sub)
    return stream


async def _follow(stream: EventSourceResponse, store: InboxStore, sub: Subscription, after: int) -> None:
    """Replay what the reader has not seen (oldest first), then send live items until either side ends."""
    tenant, agent = sub.key
    last = after
    for replayed in reversed(store.items(tenant, agent, after=after)):
        await stream.send(_event_data(replayed), id=str(replayed.seq), event="item")
        last = replayed.seq
    closed = asyncio.ensure_future(stream.wait())
    try:
        while True:
            getter = asyncio.ensure_future(sub.queue.get())
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():  # the reader went away
                getter.cancel()
                return
            item = getter.result()
            if item is None:  # the store closed this subscription (shutdown, or a reader too slow)
                return
            if item.seq > last:  # not already replayed
                await stream.send(_event_data(item), id=str(item.seq), event="item")
                last = item.seq
    finally:
        closed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closed


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _action_body(raw: bytes, agent: str) -> tuple[str, str, dict[str, Any]]:
    """(action, conversation id, the router's body) from the posted JSON; raises InboxRequestError."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InboxRequestError(400, "body is not JSON") from None
    if not isinstance(data, dict):
        raise InboxRequestError(400, "body is not a JSON object")
    action = data.get("action")
    if action not in CONVERSATION_ACTIONS:
        raise InboxRequestError(400, "'action' must be one of accept, decline, resolve")
    conversation_id = data.get("conversation_id")
    if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= 256:
        raise InboxRequestError(400, "'conversation_id' must be a string of 1 to 256 characters")
    body: dict[str, Any] = {"agent_id": agent, "source": "inbox"}
    offer_id = data.get("offer_id")
    if offer_id is not None:
        if action == "resolve" or not isinstance(offer_id, str) or not 0 < len(offer_id) <= 256:
            raise InboxRequestError(400, "'offer_id' must be a string of 1 to 256 characters (accept, decline)")
        body["offer_id"] = offer_id
    reason = data.get("reason")
    if reason is not None:
        if action != "decline" or not isinstance(reason, str) or len(reason) > 500:
            raise InboxRequestError(400, "'reason' must be a string of at most 500 characters (decline)")
        body["reason"] = reason
    return str(action), conversation_id, body


async def actions(request: web.Request) -> web.Response:
    try:
        tenant, agent = _inbox_of(request)
        if not _same_origin(request):
            raise InboxRequestError(403, "cross-origin actions are refused")
        if request.content_type != "application/json":
            raise InboxRequestError(415, "send the action as application/json")
        if request.content_length is not None and request.content_length > MAX_ACTION_BODY:
            raise InboxRequestError(413, f"an action is at most {MAX_ACTION_BODY} bytes")
        raw = await request.content.read(MAX_ACTION_BODY + 1)
        if len(raw) > MAX_ACTION_BODY:
            raise InboxRequestError(413, f"an action is at most {MAX_ACTION_BODY} bytes")
        action, conversation_id, body = _action_body(raw, agent)
    except InboxRequestError as exc:
        return _error(exc.status, exc.error)
    router = request.app[INBOX_HTTP].router
    try:
        if router is None:
            raise RouterUnreachable("not started")
        answer = await router.conversation_action(tenant, conversation_id, action, body)
    except RouterUnreachable as exc:
        log.warning("inbox action not forwarded: router unreachable", tenant=tenant, action=action, error=str(exc))
        return web.json_response(
            {"error": "the router cannot be reached", "reason": str(exc)}, status=502, headers=_JSON_HEADERS
        )
    log.info("inbox action forwarded", tenant=tenant, action=action, status=answer.status)
    if answer.content_type == "application/json":
        return web.Response(
            status=answer.status, body=answer.body, content_type="application/json", headers=_JSON_HEADERS
        )
    return web.json_response(
        {"error": f"the router answered HTTP {answer.status} without JSON"}, status=answer.status, headers=_JSON_HEADERS
    )


async def _router_ctx(app: web.Application) -> AsyncIterator[None]:
    inbox = app[INBOX_HTTP]
    async with RouterClient(inbox.router_url, timeout=inbox.router_timeout) as client:
        inbox.router = client
        try:
            yield
        finally:
            inbox.router = None


async def _close_streams(app: web.Application) -> None:
    app[INBOX_HTTP].store.close()


def add_inbox_routes(app: web.Application, inbox: InboxHttp) -> None:
    """Serve ``inbox`` under ``/inbox/``; open event streams end when the app shuts down."""
    app[INBOX_HTTP] = inbox
    # The .json route first: ``{agent}`` alone would also match ``alice.json``.
    app.router.add_get("/inbox/{tenant}/{agent}.json", page_json)
    app.router.add_get("/inbox/{tenant}/{agent}", page)
    app.router.add_get("/inbox/{tenant}/{agent}/events", events)
    app.router.add_post("/inbox/{tenant}/{agent}/actions", actions)
    app.cleanup_ctx.append(_router_ctx)
    app.on_shutdown.append(_close_streams)
