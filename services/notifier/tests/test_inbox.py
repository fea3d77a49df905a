"""The agent inbox without a broker: the bounded store, the sink, the page's escaping, the HTTP routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from switchboard.common.broker import free_port
from switchboard.common.events import DeliveryEndpoint, DispatchKind, EndpointKind
from switchboard.common.runtime import running_app
from switchboard.notifier.inbox import InboxClosed, InboxStore, InboxTargetError, TooManySubscribers, parse_target
from switchboard.notifier.inbox_page import render_page
from switchboard.notifier.inbox_routes import InboxHttp, add_inbox_routes
from switchboard.notifier.outcome import OutcomeKind
from switchboard.notifier.router_client import RouterClient
from switchboard.notifier.sinks.inbox import InboxSink

from .conftest import DispatchFactory  # type: ignore[import-not-found]

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def store(**kwargs: Any) -> InboxStore:
    return InboxStore(clock=lambda: NOW, **kwargs)


# --------------------------------------------------------------------------- the store


def test_items_are_newest_first_bounded_per_agent_and_idempotent(make_dispatch: DispatchFactory) -> None:
    inbox = store(max_items=3)
    dispatches = [make_dispatch(conversation_id=f"c{i}") for i in range(5)]
    for d in dispatches:
        inbox.add("acme", "alice", d)
    again = inbox.add("acme", "alice", dispatches[4])  # a redelivery of the newest
    items = inbox.items("acme", "alice")
    assert [i.conversation_id for i in items] == ["c4", "c3", "c2"]
    assert again.seq == items[0].seq == 5
    assert [i.conversation_id for i in inbox.items("acme", "alice", after=4)] == ["c4"]
    assert inbox.items("acme", "bob") == []
    assert inbox.items("globex", "alice") == []


def test_least_recently_written_inboxes_are_forgotten(make_dispatch: DispatchFactory) -> None:
    inbox = store(max_agents=2)
    inbox.add("acme", "a", make_dispatch())
    inbox.add("acme", "b", make_dispatch())
    inbox.add("acme", "a", make_dispatch())  # a is now the most recent
    inbox.add("acme", "c", make_dispatch())
    assert len(inbox) == 2
    assert inbox.items("acme", "b") == []
    assert len(inbox.items("acme", "a")) == 2


def test_an_item_shows_what_the_agent_needs(make_dispatch: DispatchFactory) -> None:
    inbox = store()
    offer = inbox.add("acme", "alice", make_dispatch(DispatchKind.OFFER))
    assert offer.actions == ("accept", "decline")
    assert offer.to_json() | {"dispatch_id": "-"} == {
        "seq": 1,
        "dispatch_id": "-",
        "kind": "offer",
        "headline": "New email conversation offered to you",
        "conversation_id": "conv-1",
        "channel": "email",
        "customer_name": "Dana Customer",
        "subject": "Order 1234 never arrived",
        "preview": "Hello,\nmy order has not arrived yet.",
        "queue_id": None,
        "priority": 0,
        "sla_due_at": "2026-01-01T13:00:00+00:00",
        "offer_id": "offer-9",
        "offer_expires_at": "2026-01-01T12:05:00+00:00",
        "escalation": None,
        "link": "https://desk.example.com/c/conv-1",
        "received_at": "2026-01-01T12:00:00+00:00",
        "actions": ["accept", "decline"],
    }
    assert inbox.add("acme", "alice", make_dispatch(DispatchKind.FOLLOW_UP)).actions == ("resolve",)
    escalation = inbox.add("acme", "alice", make_dispatch(DispatchKind.ESCALATION))
    assert escalation.actions == ()
    assert escalation.escalation is not None
    assert escalation.escalation["policy"] == "gold"


async def test_live_readers_get_new_items_and_end_when_closed(make_dispatch: DispatchFactory) -> None:
    inbox = store(max_subscribers=2, max_backlog=2)
    reader = inbox.subscribe("acme", "alice")
    other_agent = inbox.subscribe("acme", "bob")
    item = inbox.add("acme", "alice", make_dispatch())
    assert reader.queue.get_nowait() is item
    assert other_agent.queue.empty()
    inbox.subscribe("acme", "alice")
    with pytest.raises(TooManySubscribers):
        inbox.subscribe("acme", "alice")
    inbox.close()
    assert reader.queue.get_nowait() is None
    assert inbox.subscribers("acme", "alice") == 0
    with pytest.raises(InboxClosed):
        inbox.subscribe("acme", "alice")


def test_a_reader_that_falls_behind_is_dropped(make_dispatch: DispatchFactory) -> None:
    inbox = store(max_backlog=2)
    reader = inbox.subscribe("acme", "alice")
    for i in range(3):
        inbox.add("acme", "alice", make_dispatch(conversation_id=f"c{i}"))
    assert reader.closed
    assert [reader.queue.get_nowait() for _ in range(3)][2] is None
    assert inbox.subscribers("acme", "alice") == 0


def test_targets_name_an_inbox_of_the_dispatch_tenant() -> None:
    assert parse_target("acme/alice", "acme") == ("acme", "alice")
    assert parse_target("alice", "acme") == ("acme", "alice")
    for bad in ("globex/alice", "acme/", "acme/a/b", "acme/ alice"):
        with pytest.raises(InboxTargetError):
            parse_target(bad, "acme")


async def test_the_sink_stores_and_refuses_another_tenants_inbox(make_dispatch: DispatchFactory) -> None:
    inbox = store()
    sink = InboxSink(inbox)
    dispatch = make_dispatch()
    outcome = await sink.deliver(dispatch, DeliveryEndpoint(kind=EndpointKind.INBOX, target="acme/alice"))
    assert (outcome.kind, outcome.external_ref) == (OutcomeKind.DELIVERED, "inbox:1")
    assert [i.dispatch_id for i in inbox.items("acme", "alice")] == [dispatch.dispatch_id]
    refused = await sink.deliver(dispatch, DeliveryEndpoint(kind=EndpointKind.INBOX, target="globex/alice"))
    assert refused.kind is OutcomeKind.FAILED
    assert inbox.items("globex", "alice") == []


# --------------------------------------------------------------------------- the page


def test_the_page_escapes_customer_text_and_drops_unsafe_links(make_dispatch: DispatchFactory) -> None:
    inbox = store()
    inbox.add(
        "acme",
        "alice",
        make_dispatch(
            DispatchKind.OFFER,
            customer_name=XSS,
            subject='"><svg onload=alert(2)>',
            preview="</p><script>alert(3)</script>",
            link="javascript:alert(4)",
        ),
    )
    html = render_page("acme", "al<i>ce", inbox.items("acme", "alice"), "NONCE")
    assert "<script>alert" not in html
    assert "<img" not in html
    assert "<svg" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&quot;&gt;&lt;svg onload=alert(2)&gt;" in html
    assert "javascript:" not in html
    assert "Inbox of al&lt;i&gt;ce" in html
    assert html.count('nonce="NONCE"') == 2  # the one style and the one script


def test_a_withdrawn_offer_is_shown_without_live_buttons(make_dispatch: DispatchFactory) -> None:
    inbox = store()
    inbox.add("acme", "alice", make_dispatch(DispatchKind.OFFER, conversation_id="c1"))
    inbox.add("acme", "alice", make_dispatch(DispatchKind.OFFER, conversation_id="c2"))
    inbox.add("acme", "alice", make_dispatch(DispatchKind.OFFER_WITHDRAWN, conversation_id="c1"))
    html = render_page("acme", "alice", inbox.items("acme", "alice"), "n")
    c1 = html[html.index('data-conversation="c1" data-offer') :]
    c2 = html[html.index('data-conversation="c2"') :]
    assert '<button type="button" data-action="accept" disabled>' in c1[: c1.index("</li>")]
    assert '<button type="button" data-action="accept">' in c2[: c2.index("</li>")]


def test_router_urls_quote_every_segment() -> None:
    client = RouterClient("http://router.test:8083/base/")
    url = client.conversation_url("acme", "conv/1 ?#", "accept")
    assert str(url) == "http://router.test:8083/base/v1/tenants/acme/conversations/conv%2F1%20%3F%23/accept"
    with pytest.raises(ValueError, match="unknown conversation action"):
        client.conversation_url("acme", "c", "delete")
    with pytest.raises(ValueError, match="absolute http"):
        RouterClient("file:///etc/passwd")


# --------------------------------------------------------------------------- the routes (no broker)


@pytest.fixture
async def inbox_only() -> AsyncIterator[tuple[InboxStore, str]]:
    """The inbox routes alone, with a router URL nobody listens on."""
    inbox = store()
    app = web.Application()
    add_inbox_routes(app, InboxHttp(inbox, f"http://127.0.0.1:{free_port()}", 2.0, ping_interval=0.05))
    async with running_app(app) as base:
        yield inbox, base


async def test_malformed_requests_get_clear_errors(inbox_only: tuple[InboxStore, str]) -> None:
    _inbox, base = inbox_only
    actions = f"{base}/inbox/acme/alice/actions"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/inbox/ACME!/alice.json") as r:
            assert (r.status, await r.json()) == (400, {"error": "not a valid tenant id"})
        async with http.get(f"{base}/inbox/acme/alice/events?after=x") as r:
            assert r.status == 400
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
            ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "not JSON"),
            ({"json": [1]}, 400, "not a JSON object"),
            ({"json": {"action": "delete", "conversation_id": "c"}}, 400, "'action'"),
            ({"json": {"action": "accept"}}, 400, "'conversation_id'"),
            ({"json": {"action": "resolve", "conversation_id": "c", "offer_id": "o"}}, 400, "'offer_id'"),
            ({"json": {"action": "accept", "conversation_id": "c", "reason": "x"}}, 400, "'reason'"),
            (
                {"json": {"action": "accept", "conversation_id": "c"}, "headers": {"Origin": "http://evil.test"}},
                403,
                "",
            ),
            ({"data": b"{" + b" " * 20_000 + b"}", "headers": {"Content-Type": "application/json"}}, 413, ""),
        ]
        for kwargs, status, error in cases:
            async with http.post(actions, **kwargs) as r:
                body = await r.json()
                assert r.status == status, (kwargs, body)
                assert error in body["error"]
        # A well-formed action while the router is down: 502 with a reason.
        async with http.post(actions, json={"action": "accept", "conversation_id": "c"}) as r:
            body = await r.json()
            assert r.status == 502
            assert body["error"] == "the router cannot be reached"
            assert body["reason"]


async def test_an_event_stream_replays_after_a_sequence_and_ends_at_shutdown(make_dispatch: DispatchFactory) -> None:
    inbox = store()
    app = web.Application()
    add_inbox_routes(app, InboxHttp(inbox, "http://127.0.0.1:1", 2.0, ping_interval=0.05))
    first = inbox.add("acme", "alice", make_dispatch(conversation_id="c1"))
    inbox.add("acme", "alice", make_dispatch(conversation_id="c2"))
    async with running_app(app) as base, aiohttp.ClientSession() as http:
        stream = await http.get(f"{base}/inbox/acme/alice/events", headers={"Last-Event-ID": str(first.seq)})
        assert stream.headers["Content-Type"] == "text/event-stream"
        event = await read_event(stream)
        assert (event["id"], event["event"]) == ("2", "item")
        assert '"conversation_id":"c2"' in event["data"]
    # Leaving running_app shut the server down: the open stream was ended, not waited for.
    assert inbox.subscribers("acme", "alice") == 0
    stream.close()


async def read_event(response: aiohttp.ClientResponse, timeout: float = 20.0) -> dict[str, str]:
    """The next Server-Sent Event of ``response`` (comments such as pings are skipped)."""
    fields: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        while True:
            raw = await response.content.readline()
            if not raw:
                raise EOFError("the event stream ended")
            line = raw.decode().rstrip("\r\n")
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
