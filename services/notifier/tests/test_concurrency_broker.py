"""Conversations are delivered side by side, each in order: the real broker, a real webhook receiver."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from switchboard.common.events import DeliveryEndpoint, DeliveryResult, DeliveryStatus, DispatchKind, EndpointKind
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume_records, eventually
from switchboard.common.topics import Topics, ensure_topics
from switchboard.notifier.app import NOTIFIER, build_app
from switchboard.notifier.settings import NotifierSettings

from .conftest import WEBHOOK_SECRET, DispatchFactory  # type: ignore[import-not-found]

pytestmark = pytest.mark.broker


class GatedReceiver:
    """A helpdesk webhook that holds conversation ``a``'s first request until the test releases it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []  # (conversation id, dispatch id), in arrival order
        self.a_blocked = asyncio.Event()
        self.release_a = asyncio.Event()
        self.b_done = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        payload: dict[str, Any] = Webhook(WEBHOOK_SECRET).verify(await request.read(), dict(request.headers))
        data = payload["data"]
        conversation = data["conversation"]["conversation_id"]
        self.received.append((conversation, data["dispatch_id"]))
        if conversation == "a" and not self.a_blocked.is_set():
            self.a_blocked.set()
            await self.release_a.wait()
        if conversation == "b" and sum(1 for c, _ in self.received if c == "b") == 3:
            self.b_done.set()
        return web.json_response({"ok": True})


async def test_a_slow_conversation_does_not_hold_back_another_and_each_keeps_its_order(
    kafka_settings: KafkaSettings, topic_prefix: str, make_dispatch: DispatchFactory
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    receiver = GatedReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with running_app(app) as base:
        hook = (DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"{base}/hook"),)
        kinds = (DispatchKind.ASSIGNMENT, DispatchKind.FOLLOW_UP, DispatchKind.FOLLOW_UP)
        a = [make_dispatch(kind, hook, conversation_id="a") for kind in kinds]
        b = [make_dispatch(kind, hook, conversation_id="b") for kind in kinds]
        # Written before the notifier starts, so one poll reads them all: a1 b1 a2 b2 a3 b3 on one partition.
        async with RecordProducer(kafka_settings) as producer:
            for pair in zip(a, b, strict=True):
                for dispatch in pair:
                    await producer.send(topics.dispatch, dispatch)
        settings = NotifierSettings(
            topic_prefix=topic_prefix,
            kafka=kafka_settings,
            consumer_group=f"notifier-{uuid.uuid4().hex[:8]}",
            http_port=0,
            webhook_secrets=[SecretStr(WEBHOOK_SECRET)],
            webhook_allowed_hosts=["127.0.0.1"],
            webhook_allow_private=True,
            teams_enabled=False,
            inbox_enabled=False,
            retry_max_attempts=1,
        )
        notifier = build_app(settings)
        async with running_app(notifier):
            await eventually(lambda: notifier[NOTIFIER].handler.ready.is_set(), timeout=30)
            await asyncio.wait_for(receiver.a_blocked.wait(), 30)
            # a1 is held at the receiver; all of b is delivered meanwhile.
            await asyncio.wait_for(receiver.b_done.wait(), 30)
            assert receiver.received[0] == ("a", a[0].dispatch_id)
            assert [d for c, d in receiver.received if c == "b"] == [d.dispatch_id for d in b]
            assert [d for c, d in receiver.received if c == "a"] == [a[0].dispatch_id]  # a2 waits for a1
            receiver.release_a.set()
            records = await consume_records(kafka_settings.bootstrap, topics.delivery, count=6, timeout=30)
    assert [d for c, d in receiver.received if c == "a"] == [d.dispatch_id for d in a]
    results = [r for r in records if isinstance(r, DeliveryResult)]
    assert all(r.status is DeliveryStatus.DELIVERED for r in results)
    # The results are written as each conversation finishes: b's before a's, each in order.
    assert [r.dispatch_id for r in results] == [d.dispatch_id for d in (*b, *a)]
