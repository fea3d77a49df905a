"""The router process killed with SIGKILL mid-stream and restarted: nothing lost, nothing assigned twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from switchboard.common.broker import free_port
from switchboard.common.events import Dispatch, DispatchKind, RecordCodec
from switchboard.common.kafka import RecordProducer
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import consume, consume_all
from switchboard.common.topics import Topics, ensure_topics
from switchboard.router.changelog import read_partitions

from .test_service_broker import agent, inbound  # type: ignore[import-not-found]

pytestmark = [pytest.mark.broker, pytest.mark.slow]

COUNT = 300
CODEC = RecordCodec()
RULES = """
version: 1
tenants:
  acme:
    queues: [{id: general, match: {}}]
  globex:
    queues: [{id: general, match: {}}]
  initech:
    queues: [{id: offers, match: {}, mode: offer, offer_timeout: 3s}]
"""


@contextmanager
def router_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    with open(os.environ.get("ROUTER_TEST_LOG", os.devnull), "ab") as output:  # set it to keep the logs
        process = subprocess.Popen(
            [sys.executable, "-m", "switchboard.router"],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


async def ready(url: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with http.get(f"{url}/readyz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the router did not become ready")


async def test_sigkill_mid_stream_loses_nothing_and_assigns_nothing_twice(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES)
    port = free_port()
    env = {
        "SWITCHBOARD_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": str(kafka_settings.fetch_max_wait_ms),
        "SWITCHBOARD_KAFKA_PARTITIONS": str(kafka_settings.partitions),
        "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": str(kafka_settings.session_timeout_ms),
        "SWITCHBOARD_KAFKA_HEARTBEAT_INTERVAL_MS": str(kafka_settings.heartbeat_interval_ms),
        "SWITCHBOARD_TOPIC_PREFIX": topic_prefix,
        "SWITCHBOARD_CONSUMER_GROUP": f"router-{topic_prefix}",
        "SWITCHBOARD_RULES_FILE": str(rules_file),
        "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
        "SWITCHBOARD_HTTP_PORT": str(port),
        "SWITCHBOARD_TIMER_RESOLUTION_MS": "50",
    }
    url = f"http://127.0.0.1:{port}"
    async with RecordProducer(kafka_settings) as producer:
        for tenant in ("acme", "globex"):
            for n in range(3):
                upsert = agent(f"{tenant}-{n}", tenant=tenant)
                capacity = dict.fromkeys(upsert.capacity, 500)
                await producer.send(topics.agent_events, upsert.model_copy(update={"capacity": capacity}))
        await producer.send(topics.agent_events, agent("ivan", tenant="initech"))
        await producer.send(topics.agent_events, agent("jane", tenant="initech"))

        with router_process(env) as first:
            await ready(url)
            # an offer is pending (3 s timeout) when the router dies
            await producer.send(topics.inbound, inbound(9999, tenant="initech"))
            sent = 0
            for n in range(COUNT):
                await producer.send(topics.inbound, inbound(n, tenant="acme" if n % 2 else "globex"))
                sent += 1
                if n == COUNT // 3:
                    # mid-stream: the router is busy with what was just sent when it dies
                    await consume(kafka_settings.bootstrap, topics.dispatch, count=20, timeout=30)
                    first.send_signal(signal.SIGKILL)
                    first.wait(10)
            assert sent == COUNT
        with router_process(env):
            await ready(url, timeout=90)
            wanted = COUNT + 3  # every conversation's assignment, plus offer, withdrawal, re-offer at initech
            await consume(kafka_settings.bootstrap, topics.dispatch, count=wanted, timeout=90)
            # drain a little longer: any double assignment would show up now
            await asyncio.sleep(1.0)
            raw = await consume_all(kafka_settings.bootstrap, topics.dispatch)
            dispatches = [d for d in (CODEC.decode(r.value) for r in raw) if isinstance(d, Dispatch)]

    assignments: dict[str, set[str]] = {}
    for d in dispatches:
        if d.kind is DispatchKind.ASSIGNMENT:
            assignments.setdefault(d.conversation.conversation_id, set()).add(d.dispatch_id)
    # every message reached exactly one agent (a resent dispatch keeps its id: receivers deduplicate)
    assert len(assignments) == COUNT
    assert all(len(ids) == 1 for ids in assignments.values())
    # the pending offer's timer still fired after the restart: withdrawn and offered to the other agent
    initech = [d for d in dispatches if d.tenant_id == "initech"]
    kinds = [(d.kind, d.agent_id) for d in initech]
    first_offer = next(d.agent_id for d in initech if d.kind is DispatchKind.OFFER)
    other = ({"ivan", "jane"} - {first_offer}).pop()
    assert (DispatchKind.OFFER_WITHDRAWN, first_offer) in kinds
    assert (DispatchKind.OFFER, other) in kinds
    # and the changelog holds every conversation once
    async with RecordProducer(kafka_settings) as checker:
        states = await read_partitions(
            kafka_settings, topics.router_state, range(kafka_settings.partitions), producer=checker, client_id="check"
        )
    conversations = [r for s in states.values() for r in s.records() if r.kind == "conversation"]
    assert len([c for c in conversations if c.tenant_id in ("acme", "globex")]) == COUNT
