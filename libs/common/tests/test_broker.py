"""``bootstrap_or_embedded``: an operator's Kafka when named, else an embedded broker for the block;
``free_port`` for listeners."""

from __future__ import annotations

import socket

import pytest

from switchboard.common.broker import _ephemeral_range, bootstrap_or_embedded, free_port

ENV = "SWITCHBOARD_TEST_ONLY_BOOTSTRAP"  # a name of its own, so the suite's own broker setting is left alone


def test_a_named_bootstrap_is_used_and_nothing_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "kafka-0.example:9092,kafka-1.example:9092")
    with bootstrap_or_embedded(ENV) as bootstrap:
        assert bootstrap == "kafka-0.example:9092,kafka-1.example:9092"


@pytest.mark.broker
def test_without_one_an_embedded_broker_listens_for_the_block_and_stops_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with bootstrap_or_embedded(ENV) as bootstrap:
        host, port = bootstrap.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5):
            pass  # the embedded broker accepts connections
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), timeout=2):
        pass  # and is gone once the block ends


def test_free_ports_are_below_the_ephemeral_range_distinct_and_free() -> None:
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)  # an outgoing connection cannot take one meanwhile
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()
