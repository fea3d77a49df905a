"""``RecordProducer`` outcomes and metrics, with a fake in place of aiokafka's producer:
``send_many``, and ``flush`` taking the records enqueued with ``send_soon`` and
``send_raw_many_soon``.

The fake hands out one future per record and lets the test settle each, so a write that
fails after its records were enqueued (the broker refused one, another is still in
flight) is reproduced exactly; the real broker's paths are in ``test_kafka.py``. The
outcome of a record enqueued with a ``*_soon`` method is taken when a flush (or ``stop``)
reaches it, not by callbacks on its future; the flush tests pin what that must keep:
counts per topic, failures raised by the flush that reaches them, records still in flight
left to the next flush, a cancelled flush losing nothing, and a writer that never
flushes holding a bounded list.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, RequestTimedOutError
from aiokafka.structs import RecordMetadata, TopicPartition

from switchboard.common.kafka import BrokerUnavailable, RecordProducer, RecordTooLarge
from switchboard.common.kafka import producer as producer_module
from switchboard.common.metrics import KafkaMetrics, new_registry
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import sample_inbound


class FakeKafka:
    """What ``send_many`` calls of ``AIOKafkaProducer``: ``send`` returns a future per record."""

    def __init__(self, refuse_enqueue_at: int | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, asyncio.Future[RecordMetadata]]] = []
        self._refuse_at = refuse_enqueue_at
        self.enqueued = asyncio.Event()

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any) -> Any:
        if self._refuse_at is not None and len(self.sent) == self._refuse_at:
            raise KafkaTimeoutError()
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, future))
        self.enqueued.set()
        return future

    def ack(self, index: int, offset: int) -> None:
        topic = self.sent[index][0]
        self.sent[index][3].set_result(RecordMetadata(topic, 0, TopicPartition(topic, 0), offset, -1, 0, -1))

    def fail(self, index: int, exc: BaseException) -> None:
        self.sent[index][3].set_exception(exc)


def _producer(fake: FakeKafka, *, metrics: KafkaMetrics | None) -> RecordProducer:
    producer = RecordProducer(KafkaSettings(bootstrap="127.0.0.1:1"), metrics=metrics)
    producer._producer = fake  # type: ignore[assignment]  # the fake stands in for the started client
    return producer


def _value(metrics: KafkaMetrics, name: str, topic: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"topic": topic})


async def _until_sent(fake: FakeKafka, count: int) -> None:
    while len(fake.sent) < count:
        fake.enqueued.clear()
        await fake.enqueued.wait()


async def test_a_write_acknowledged_in_full_returns_every_ack_in_order_and_counts_once_per_topic() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    items = [("in", sample_inbound(0)), ("dlq", sample_inbound(1)), ("in", sample_inbound(2))]
    write = asyncio.create_task(producer.send_many(items))
    await _until_sent(fake, 3)
    for i in (2, 0, 1):  # acknowledged out of order (other partitions), answered in the caller's order
        fake.ack(i, offset=10 + i)
    acks = await write
    assert [(a.topic, a.offset) for a in acks] == [("in", 10), ("dlq", 11), ("in", 12)]
    assert [key for _, key, _, _ in fake.sent] == [r.key() for _, r in items]
    assert _value(metrics, "switchboard_produced_records_total", "in") == 2
    assert _value(metrics, "switchboard_produced_records_total", "dlq") == 1
    assert not _value(metrics, "switchboard_produce_errors_total", "in")  # none, or a zero child


async def test_a_record_the_broker_refuses_fails_the_write_and_each_record_is_counted_as_it_settles() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    write = asyncio.create_task(producer.send_many([("in", sample_inbound(i)) for i in range(3)]))
    await _until_sent(fake, 3)
    fake.ack(0, offset=1)
    fake.fail(1, RequestTimedOutError())
    with pytest.raises(BrokerUnavailable):
        await write
    for _ in range(3):
        await asyncio.sleep(0)  # the outcome callbacks run
    assert _value(metrics, "switchboard_produced_records_total", "in") == 1
    assert _value(metrics, "switchboard_produce_errors_total", "in") == 1
    fake.ack(2, offset=3)  # still in flight when the write failed: counted once it settles
    await asyncio.sleep(0)
    assert _value(metrics, "switchboard_produced_records_total", "in") == 2


async def test_a_record_over_the_brokers_limit_is_too_large_not_broker_trouble() -> None:
    fake = FakeKafka()
    producer = _producer(fake, metrics=KafkaMetrics(new_registry()))
    write = asyncio.create_task(producer.send_many([("in", sample_inbound(0))]))
    await _until_sent(fake, 1)
    fake.fail(0, MessageSizeTooLargeError())
    with pytest.raises(RecordTooLarge):
        await write


async def test_a_refused_enqueue_counts_one_error_and_still_counts_the_records_already_enqueued() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka(refuse_enqueue_at=1)
    producer = _producer(fake, metrics=metrics)
    with pytest.raises(BrokerUnavailable):
        await producer.send_many([("in", sample_inbound(0)), ("in", sample_inbound(1))])
    assert _value(metrics, "switchboard_produce_errors_total", "in") == 1
    fake.ack(0, offset=1)
    await asyncio.sleep(0)
    assert _value(metrics, "switchboard_produced_records_total", "in") == 1


async def test_without_metrics_a_failed_writes_other_failures_are_retrieved_not_reported_as_lost() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        fake = FakeKafka()
        producer = _producer(fake, metrics=None)
        write = asyncio.create_task(producer.send_many([("in", sample_inbound(i)) for i in range(2)]))
        await _until_sent(fake, 2)
        fake.fail(0, RequestTimedOutError())
        with pytest.raises(BrokerUnavailable):
            await write
        fake.fail(1, RequestTimedOutError())  # nobody awaits this one any more
        await asyncio.sleep(0)
        fake.sent.clear()
        del write
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert [c for c in reported if "never retrieved" in str(c.get("message"))] == []


# ---------------------------------------------------------------------------- flush


async def test_a_flush_counts_what_it_took_per_topic_and_waits_for_records_still_in_flight() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    await producer.send_soon("in", sample_inbound(0))
    await producer.send_raw_many_soon([("in", b"k", b"v", 0), ("log", b"k", b"w", None)])
    fake.ack(0, offset=1)
    flush = asyncio.create_task(producer.flush())
    await asyncio.sleep(0)
    assert not flush.done()  # two records are still in flight
    fake.ack(2, offset=3)
    await asyncio.sleep(0)
    assert not flush.done()
    fake.ack(1, offset=2)
    await flush
    assert _value(metrics, "switchboard_produced_records_total", "in") == 2
    assert _value(metrics, "switchboard_produced_records_total", "log") == 1
    assert producer._pending == []


async def test_a_failed_record_makes_the_flush_that_reaches_it_raise_once() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    await producer.send_soon("in", sample_inbound(0))
    await producer.send_soon("in", sample_inbound(1))
    fake.ack(0, offset=1)
    fake.fail(1, RequestTimedOutError())
    with pytest.raises(BrokerUnavailable):
        await producer.flush()
    await producer.flush()  # the failure was raised once; nothing is left
    assert _value(metrics, "switchboard_produced_records_total", "in") == 1
    assert _value(metrics, "switchboard_produce_errors_total", "in") == 1


async def test_records_refused_as_too_large_make_the_flush_raise_record_too_large() -> None:
    fake = FakeKafka()
    producer = _producer(fake, metrics=None)
    await producer.send_raw_many_soon([("in", b"k", b"v", None), ("in", b"k", b"w", None)])
    fake.ack(0, offset=1)
    fake.fail(1, MessageSizeTooLargeError())
    with pytest.raises(RecordTooLarge):
        await producer.flush()


async def test_a_flush_that_times_out_leaves_the_unsettled_records_to_the_next_one() -> None:
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    producer._send_timeout = 0.05
    await producer.send_soon("in", sample_inbound(0))
    await producer.send_soon("in", sample_inbound(1))
    fake.ack(0, offset=1)
    with pytest.raises(BrokerUnavailable, match="1 records not acknowledged"):
        await producer.flush()
    assert [future for _, future in producer._pending] == [fake.sent[1][3]]
    assert not fake.sent[1][3].cancelled()  # the record's own future is left alone
    fake.ack(1, offset=2)
    await producer.flush()
    assert _value(metrics, "switchboard_produced_records_total", "in") == 2


async def test_a_cancelled_flush_keeps_the_records_it_had_not_seen_settle() -> None:
    fake = FakeKafka()
    producer = _producer(fake, metrics=None)
    await producer.send_soon("in", sample_inbound(0))
    flush = asyncio.create_task(producer.flush())
    await asyncio.sleep(0)
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert not fake.sent[0][3].cancelled()
    assert len(producer._pending) == 1
    fake.fail(0, RequestTimedOutError())
    with pytest.raises(BrokerUnavailable):
        await producer.flush()


async def test_a_writer_that_never_flushes_holds_a_bounded_list_and_no_failure_is_reported_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(producer_module, "_REAP_AT", 8)
    lost: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: lost.append(context))
    metrics = KafkaMetrics(new_registry())
    fake = FakeKafka()
    producer = _producer(fake, metrics=metrics)
    for i in range(40):
        await producer.send_soon("in", sample_inbound(i))
        if i % 2:
            fake.fail(i, RequestTimedOutError())
        else:
            fake.ack(i, offset=i)
    await _until_sent(fake, 40)
    assert len(producer._pending) < 8
    assert _value(metrics, "switchboard_produced_records_total", "in") == 20 - sum(
        not future.exception() for _, future in producer._pending
    )
    producer._failed.clear()  # taken failures are kept for the next flush to raise; drop them here
    producer._pending.clear()
    del producer
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert lost == []
