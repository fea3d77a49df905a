"""pytest plugin (registered through the ``pytest11`` entry point of switchboard-common).

``kafka_bootstrap`` gives a test session a real broker address:

1. ``SWITCHBOARD_KAFKA_BOOTSTRAP`` when it is set (an existing Kafka);
2. otherwise a testcontainers Kafka in KRaft mode when a Docker engine answers
   (``SWITCHBOARD_TEST_DOCKER=0`` turns this off);
3. otherwise the embedded Tansu broker, started for the session.

Tests isolate themselves with ``topic_prefix`` (unique per test) and unique group ids.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from switchboard.common.broker import EmbeddedBroker
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import unique_prefix

KAFKA_IMAGE = "confluentinc/cp-kafka:7.7.1"


def _docker_answers() -> bool:
    """True when a Docker engine answers ``/_ping`` on its local socket (or ``DOCKER_HOST``)."""
    if os.environ.get("SWITCHBOARD_TEST_DOCKER", "1") == "0":
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
            return status_line.startswith(b"HTTP/1.") and status_line.split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka-compatible broker's bootstrap address for this test session."""
    existing = os.environ.get("SWITCHBOARD_KAFKA_BOOTSTRAP")
    if existing:
        yield existing
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix unique to this test."""
    return unique_prefix()


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the session's broker, tuned for tests (short fetch wait, few partitions)."""
    return KafkaSettings(
        bootstrap=kafka_bootstrap,
        fetch_max_wait_ms=10,
        partitions=3,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, which the test may stop and start again."""
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
