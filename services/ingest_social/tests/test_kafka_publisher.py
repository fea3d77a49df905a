"""KafkaPublisher batching: one write per event-loop turn, each request answered by its own batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from switchboard.common.events import InboundMessage, Record
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.common.testing import sample_inbound
from switchboard.ingest_social.kafka_publisher import KafkaPublisher
from switchboard.ingest_social.sdk import PublisherError


class GatedWriter:
    """A fake writer that holds every write until ``release`` (or fails it with ``error``)."""

    def __init__(self) -> None:
        self.writes: list[list[tuple[str, Record]]] = []
        self.acknowledged: list[str] = []
        self.gate = asyncio.Event()
        self.error: Exception | None = None

    async def send_many(self, items: Iterable[tuple[str, Record]]) -> list[Any]:
        batch = list(items)
        self.writes.append(batch)
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.acknowledged.extend(r.id for _, r in batch)
        return [None] * len(batch)


def records(n: int, first: int = 0) -> list[InboundMessage]:
    return [sample_inbound(first + i) for i in range(n)]


async def test_concurrent_requests_share_one_write_and_return_only_after_it_is_acknowledged() -> None:
    writer = GatedWriter()
    publisher = KafkaPublisher(writer, "t.inbound.v1")
    requests = [records(2, 0), records(1, 2), records(3, 3)]
    tasks = [asyncio.create_task(publisher.publish(r)) for r in requests]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(writer.writes) == 1
    assert [r for _, r in writer.writes[0]] == [m for req in requests for m in req]
    assert {t for t, _ in writer.writes[0]} == {"t.inbound.v1"}
    assert not any(t.done() for t in tasks)  # nothing answered before the broker acknowledged
    writer.gate.set()
    await asyncio.gather(*tasks)
    for req in requests:
        assert {m.id for m in req} <= set(writer.acknowledged)


async def test_a_failed_write_fails_every_request_of_that_batch() -> None:
    writer = GatedWriter()
    writer.error = BrokerUnavailable("broker down")
    writer.gate.set()
    publisher = KafkaPublisher(writer, "t.inbound.v1")
    results = await asyncio.gather(*(publisher.publish(records(1, i)) for i in range(4)), return_exceptions=True)
    assert len(writer.writes) == 1
    assert all(isinstance(r, PublisherError) for r in results)
    assert writer.acknowledged == []


async def test_an_unexpected_writer_error_is_a_publisher_error_too() -> None:
    writer = GatedWriter()
    writer.error = RuntimeError("boom")
    writer.gate.set()
    publisher = KafkaPublisher(writer, "t.inbound.v1")
    with pytest.raises(PublisherError, match="RuntimeError"):
        await publisher.publish(records(1))


async def test_requests_of_later_turns_go_in_later_writes() -> None:
    writer = GatedWriter()
    writer.gate.set()
    publisher = KafkaPublisher(writer, "t.inbound.v1")
    await publisher.publish(records(1, 0))
    await publisher.publish(records(1, 1))
    assert [len(w) for w in writer.writes] == [1, 1]


async def test_a_turn_larger_than_the_cap_is_split_without_splitting_a_request() -> None:
    writer = GatedWriter()
    writer.gate.set()
    publisher = KafkaPublisher(writer, "t.inbound.v1", max_batch_records=3)
    await asyncio.gather(*(publisher.publish(records(2, 2 * i)) for i in range(3)))
    assert [len(w) for w in writer.writes] == [2, 2, 2]
    await asyncio.gather(publisher.publish(records(1, 10)), publisher.publish(records(2, 11)))
    assert [len(w) for w in writer.writes][-1] == 3


async def test_a_write_slower_than_the_timeout_is_a_publisher_error() -> None:
    writer = GatedWriter()  # never released
    publisher = KafkaPublisher(writer, "t.inbound.v1", timeout=0.05)
    with pytest.raises(PublisherError, match="in time"):
        await publisher.publish(records(1))
    writer.gate.set()  # the late acknowledgement answers nobody and raises nothing
    await asyncio.sleep(0)


async def test_one_deadline_per_write_answers_every_request_still_waiting() -> None:
    writer = GatedWriter()  # never released
    publisher = KafkaPublisher(writer, "t.inbound.v1", timeout=0.05)
    results = await asyncio.gather(*(publisher.publish(records(1, i)) for i in range(3)), return_exceptions=True)
    assert len(writer.writes) == 1
    assert all(isinstance(r, PublisherError) and "in time" in str(r) for r in results)
    writer.gate.set()
    await asyncio.sleep(0)
    assert len(writer.acknowledged) == 3  # the write went on; its late acknowledgement answers nobody


async def test_nothing_to_publish_writes_nothing() -> None:
    writer = GatedWriter()
    publisher = KafkaPublisher(writer, "t.inbound.v1")
    await publisher.publish([])
    assert writer.writes == []


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch_records"):
        KafkaPublisher(GatedWriter(), "t", max_batch_records=0)
