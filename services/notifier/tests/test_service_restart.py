"""The notifier process killed mid-stream and restarted: nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from aiohttp import web
from aiokafka import ConsumerRecord

from switchboard.common.events import (
    Channel,
    ConversationSummary,
    DeliveryEndpoint,
    DeliveryResult,
    DeliveryStatus,
    Dispatch,
    DispatchKind,
    EndpointKind,
    RecordCodec,
)
from switchboard.common.kafka import RecordProducer
from switchboard.common.runtime import running_app
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume, eventually
from switchboard.common.topics import Topics, ensure_topics

from .conftest import WEBHOOK_SECRET, HelpdeskReceiver  # type: ignore[import-not-found]

pytestmark = [pytest.mark.broker, pytest.mark.slow]

COUNT = 40
MAX_POLL_RECORDS = 5
CODEC = RecordCodec()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def notifier_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard.notifier"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def _ready(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _wait_ready(port: int) -> None:
    for _ in range(300):
        if await _ready(port):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("notifier did not become ready")


async def test_killed_and_restarted_notifier_loses_nothing_and_resends_at_most_the_batch_in_flight(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics, partitions=3)
    receiver = HelpdeskReceiver()

    async def slow_receiver(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)  # keep the stream going long enough to be cut in the middle
        return await receiver.handle(request)

    app = web.Application()
    app.router.add_post("/hook", slow_receiver)
    async with running_app(app) as base:
        endpoint = DeliveryEndpoint(kind=EndpointKind.WEBHOOK, target=f"{base}/hook")
        dispatches = [
            Dispatch(
                tenant_id=f"t{i % 3}",
                kind=DispatchKind.ASSIGNMENT,
                agent_id="agent-1",
                conversation=ConversationSummary(conversation_id=f"c{i}", channel=Channel.CHAT),
                endpoints=(endpoint,),
            )
            for i in range(COUNT)
        ]
        port = _free_port()
        env = {
            "SWITCHBOARD_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": "10",
            "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "SWITCHBOARD_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "SWITCHBOARD_KAFKA_MAX_POLL_RECORDS": str(MAX_POLL_RECORDS),
            "SWITCHBOARD_TOPIC_PREFIX": topic_prefix,
            "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
            "SWITCHBOARD_HTTP_PORT": str(port),
            "SWITCHBOARD_CONSUMER_GROUP": f"notifier-{uuid.uuid4().hex[:8]}",
            "SWITCHBOARD_WEBHOOK_SECRETS": f'["{WEBHOOK_SECRET}"]',
            "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE": "true",
            "SWITCHBOARD_TEAMS_ENABLED": "false",
        }
        async with RecordProducer(kafka_settings) as producer:
            await producer.send_many((topics.dispatch, d) for d in dispatches)
        with notifier_process(env) as first:
            await _wait_ready(port)
            await eventually(lambda: len(receiver.accepted) >= COUNT // 4, timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert len(receiver.accepted) < COUNT, "the stream should have been cut in the middle"
        with notifier_process(env):
            await _wait_ready(port)
            await eventually(lambda: len(receiver.accepted) == COUNT, timeout=60)
            wanted = {d.dispatch_id for d in dispatches}

            def all_delivered(raw: list[ConsumerRecord[bytes, bytes]]) -> bool:
                found = {
                    r.dispatch_id
                    for r in (CODEC.decode(m.value or b"") for m in raw)
                    if isinstance(r, DeliveryResult) and r.status is DeliveryStatus.DELIVERED
                }
                return found == wanted

            raw = await consume(kafka_settings.bootstrap, topics.delivery, count=COUNT, timeout=30, until=all_delivered)
            records = [CODEC.decode(m.value or b"") for m in raw]
    # Nothing lost: every dispatch reached the receiver, and each has a delivered result.
    assert sorted(receiver.accepted) == sorted(d.dispatch_id for d in dispatches)
    results = [r for r in records if isinstance(r, DeliveryResult)]
    delivered = {r.dispatch_id for r in results if r.status is DeliveryStatus.DELIVERED}
    assert delivered == {d.dispatch_id for d in dispatches}
    assert not [r for r in results if r.status is DeliveryStatus.FAILED]
    # Nothing sent twice, except the deliveries in flight when the process was killed (sent,
    # their results not yet on delivery.v1): at most one batch of MAX_POLL_RECORDS, delivered
    # concurrently; each is resent with the same webhook-id, which the receiver deduplicates.
    assert receiver.requests - COUNT <= MAX_POLL_RECORDS, f"{receiver.requests - COUNT} resends"
    assert receiver.bad_signatures == 0
