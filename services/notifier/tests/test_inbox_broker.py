"""The agent inbox end to end: dispatches from the real broker, the page, its JSON, its live
events, and actions forwarded to a fake router (a real aiohttp server started here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from switchboard.common.events import DeliveryEndpoint, DeliveryResult, DeliveryStatus, DispatchKind, EndpointKind
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_records, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.notifier.app import NOTIFIER, build_app
from switchboard.notifier.settings import NotifierSettings

from .conftest import DispatchFactory  # type: ignore[import-not-found]
from .test_inbox import XSS, read_event  # type: ignore[import-not-found]

pytestmark = pytest.mark.broker

INBOX = (DeliveryEndpoint(kind=EndpointKind.INBOX, target="acme/alice"),)


class FakeRouter:
    """The router API's conversation actions: records each call, answers 202 (or 404 for tenant ``nope``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def action(self, request: web.Request) -> web.Response:
        self.calls.append((request.raw_path, await request.json()))
        if request.match_info["tenant"] == "nope":
            return web.json_response({"error": "unknown tenant"}, status=404)
        return web.json_response({"event_id": "ev-1", "schema": "offer_accepted.v1"}, status=202)


@pytest.fixture
async def fake_router() -> AsyncIterator[tuple[FakeRouter, str]]:
    router = FakeRouter()
    app = web.Application()
    app.router.add_post("/v1/tenants/{tenant}/conversations/{conversation}/{action}", router.action)
    async with running_app(app) as base:
        yield router, base


async def test_dispatches_reach_the_inbox_page_json_and_live_stream_and_actions_reach_the_router(
    kafka_settings: KafkaSettings,
    topic_prefix: str,
    make_dispatch: DispatchFactory,
    fake_router: tuple[FakeRouter, str],
) -> None:
    router, router_url = fake_router
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    settings = NotifierSettings(
        topic_prefix=topic_prefix,
        kafka=kafka_settings,
        consumer_group=f"notifier-{uuid.uuid4().hex[:8]}",
        http_port=0,
        teams_enabled=False,
        router_url=router_url,
    )
    offer = make_dispatch(DispatchKind.OFFER, INBOX, conversation_id="conv-a", customer_name=XSS)
    follow_up = make_dispatch(DispatchKind.FOLLOW_UP, INBOX, conversation_id="conv-b")
    app = build_app(settings)
    async with (
        running_app(app) as base,
        aiohttp.ClientSession() as http,
        RecordProducer(kafka_settings) as producer,
    ):
        await eventually(lambda: app[NOTIFIER].handler.ready.is_set(), timeout=30)
        inbox_url = f"{base}/inbox/acme/alice"
        async with http.get(f"{base}/inbox/acme/nobody.json") as r:
            assert (r.status, await r.json()) == (200, {"tenant": "acme", "agent": "nobody", "items": []})
        async with http.get(f"{base}/inbox/unknown-tenant/alice") as r:
            assert r.status == 200
            assert "Nothing here yet." in await r.text()

        # A live reader is connected before the dispatch is written.
        stream = await http.get(f"{inbox_url}/events")
        assert stream.status == 200
        await producer.send(topics.dispatch, offer)
        event = await read_event(stream)
        live = orjson.loads(event["data"])
        assert (event["event"], event["id"]) == ("item", "1")
        assert live["item"]["dispatch_id"] == offer.dispatch_id
        assert live["item"]["customer_name"] == XSS  # JSON carries the text as it is ...
        assert "<script>" not in live["html"]  # ... the HTML fragment escapes it
        assert "&lt;script&gt;" in live["html"]

        await producer.send(topics.dispatch, follow_up)
        event = await read_event(stream)
        assert orjson.loads(event["data"])["item"]["dispatch_id"] == follow_up.dispatch_id
        stream.close()

        async with http.get(f"{inbox_url}.json") as r:
            assert r.status == 200
            listed = (await r.json())["items"]
        assert [(i["dispatch_id"], i["kind"], i["actions"]) for i in listed] == [
            (follow_up.dispatch_id, "follow_up", ["resolve"]),
            (offer.dispatch_id, "offer", ["accept", "decline"]),
        ]
        assert listed[1]["offer_expires_at"] == "2026-01-01T12:05:00+00:00"
        assert listed[1]["customer_name"] == XSS

        async with http.get(inbox_url) as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            csp = r.headers["Content-Security-Policy"]
            page = await r.text()
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert page.count(f'nonce="{nonce}"') == 2
        assert XSS not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
        assert page.index('data-conversation="conv-b"') < page.index('data-conversation="conv-a"')  # newest first
        assert 'data-action="accept"' in page
        assert 'data-action="resolve"' in page

        # An action goes to the router with the inbox's agent and source; its answer comes back.
        action = {"action": "accept", "conversation_id": "conv-a", "offer_id": "offer-9"}
        async with http.post(f"{inbox_url}/actions", json=action) as r:
            assert (r.status, await r.json()) == (202, {"event_id": "ev-1", "schema": "offer_accepted.v1"})
        async with http.post(f"{inbox_url}/actions", json={"action": "resolve", "conversation_id": "conv-b"}) as r:
            assert r.status == 202
        async with http.post(
            f"{base}/inbox/nope/alice/actions", json={"action": "decline", "conversation_id": "c", "reason": "busy"}
        ) as r:
            assert (r.status, await r.json()) == (404, {"error": "unknown tenant"})
        async with http.post(f"{inbox_url}/actions", json={"action": "snooze", "conversation_id": "conv-a"}) as r:
            assert r.status == 400
            assert "'action'" in (await r.json())["error"]

        results = await consume_records(kafka_settings.bootstrap, topics.delivery, count=2, timeout=30)
    assert router.calls == [
        (
            "/v1/tenants/acme/conversations/conv-a/accept",
            {"agent_id": "alice", "source": "inbox", "offer_id": "offer-9"},
        ),
        ("/v1/tenants/acme/conversations/conv-b/resolve", {"agent_id": "alice", "source": "inbox"}),
        (
            "/v1/tenants/nope/conversations/c/decline",
            {"agent_id": "alice", "source": "inbox", "reason": "busy"},
        ),
    ]
    delivered = [r for r in results if isinstance(r, DeliveryResult)]
    assert [(r.dispatch_id, r.status, r.external_ref) for r in delivered] == [
        (offer.dispatch_id, DeliveryStatus.DELIVERED, "inbox:1"),
        (follow_up.dispatch_id, DeliveryStatus.DELIVERED, "inbox:2"),
    ]


async def test_the_inbox_can_be_switched_off(kafka_settings: KafkaSettings, topic_prefix: str) -> None:
    settings = NotifierSettings(
        topic_prefix=topic_prefix,
        kafka=kafka_settings,
        consumer_group=f"notifier-{uuid.uuid4().hex[:8]}",
        http_port=0,
        inbox_enabled=False,
    )
    app = build_app(settings)
    async with running_app(app) as base, aiohttp.ClientSession() as http:
        await eventually(lambda: app[NOTIFIER].handler.ready.is_set(), timeout=30)
        assert EndpointKind.INBOX not in app[NOTIFIER].sinks.kinds()
        async with http.get(f"{base}/inbox/acme/alice.json") as r:
            assert r.status == 404
