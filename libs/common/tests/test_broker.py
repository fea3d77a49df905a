"""``bootstrap_or_embedded``: an operator's Kafka when named, else an embedded broker for the block."""

from __future__ import annotations

import socket

import pytest

from switchboard.common.broker import bootstrap_or_embedded

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
