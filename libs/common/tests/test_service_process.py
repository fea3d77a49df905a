"""A real service process on the shared runtime: crash before commit, SIGTERM, readiness."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from switchboard.common.broker import EmbeddedBroker, free_port
from switchboard.common.events import InboundMessage, RecordCodec
from switchboard.common.kafka import Message, RecordProducer
from switchboard.common.runtime import ConsumerSpec, add_kafka, create_app, running_app
from switchboard.common.settings import KafkaSettings, ServiceSettings
from switchboard.common.testing import committed_offsets, eventually, sample_inbound
from switchboard.common.topics import Topics, ensure_topics

pytestmark = pytest.mark.broker

SERVICE = Path(__file__).with_name("relay_service.py")


def start_relay(bootstrap: str, prefix: str, group: str, out: Path, **env: str) -> subprocess.Popen[bytes]:
    with out.with_suffix(".log").open("ab") as log:  # the child keeps its own copy of the descriptor
        return _popen(bootstrap, prefix, group, out, log, env)


def _popen(
    bootstrap: str, prefix: str, group: str, out: Path, log: IO[bytes], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(SERVICE)],
        env={
            **os.environ,
            "SWITCHBOARD_KAFKA_BOOTSTRAP": bootstrap,
            "SWITCHBOARD_TOPIC_PREFIX": prefix,
            "SWITCHBOARD_KAFKA_FETCH_MAX_WAIT_MS": "10",
            "SWITCHBOARD_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "SWITCHBOARD_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "SWITCHBOARD_HTTP_HOST": "127.0.0.1",
            "SWITCHBOARD_HTTP_PORT": str(free_port()),
            "SWITCHBOARD_SHUTDOWN_GRACE_SECONDS": "10",
            "RELAY_OUT": str(out),
            "RELAY_GROUP": group,
            **env,
        },
        stdout=log,
        stderr=log,
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_killed_before_commit_reprocesses_and_loses_nothing(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "processed.txt"
    async with RecordProducer(kafka_settings) as producer:
        await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i}")) for i in range(5))
    first = start_relay(kafka_settings.bootstrap, topic_prefix, group, out, RELAY_HANG_BEFORE_COMMIT="1")
    try:
        await eventually(lambda: len(lines(out)) == 5, timeout=30)
    finally:
        first.kill()  # processed, never committed
        first.wait()
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 0
    second = start_relay(kafka_settings.bootstrap, topic_prefix, group, out)
    try:
        await eventually(lambda: len(lines(out)) == 10, timeout=45)
        await eventually(lambda: second.poll() is None, timeout=1)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    processed = lines(out)
    assert sorted(processed[:5]) == sorted(processed[5:])  # every record seen again, none lost
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 5


async def test_sigterm_drains_commits_and_exits_zero(
    kafka_settings: KafkaSettings, topic_prefix: str, tmp_path: Path
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "processed.txt"
    relay = start_relay(kafka_settings.bootstrap, topic_prefix, group, out, RELAY_DELAY="0.05")
    try:
        async with RecordProducer(kafka_settings) as producer:
            await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i % 3}")) for i in range(40))
        await eventually(lambda: len(lines(out)) >= 10, timeout=30)
    finally:
        relay.send_signal(signal.SIGTERM)
        code = relay.wait(15)  # grace period 10 s plus process exit
    assert code == 0, out.with_suffix(".log").read_text()[-2000:]
    processed = len(lines(out))
    assert 10 <= processed <= 40
    # Everything processed was committed before exit: nothing more, nothing less.
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == processed


async def test_readyz_follows_the_broker(embedded_broker: EmbeddedBroker, topic_prefix: str) -> None:
    embedded_broker.stop()
    settings = ServiceSettings(
        service_name="probe",
        topic_prefix=topic_prefix,
        kafka=KafkaSettings(
            bootstrap=embedded_broker.bootstrap,
            fetch_max_wait_ms=10,
            partitions=1,
        ),
    )
    app = create_app(settings)

    async def handler(_message: Message) -> None:
        return None

    add_kafka(
        app,
        ConsumerSpec(
            name="c",
            topics=[Topics(topic_prefix).inbound],
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            handler=handler,
            codec=RecordCodec(InboundMessage),
        ),
    )
    async with running_app(app) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
            body = await response.json()
            assert body["checks"] == {"broker": False, "consumers": False}
        embedded_broker.start()
        async with asyncio.timeout(40):
            while True:
                async with http.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        assert (await response.json())["checks"] == {"broker": True, "consumers": True}
                        break
                await asyncio.sleep(0.2)
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200
            assert "switchboard_offset_commits_total" in await response.text()
