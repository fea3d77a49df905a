"""The Kafka helpers against a real broker: commit after output, redelivery, dead letters."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition

from switchboard.common.events import DeadLetter, InboundMessage, RecordCodec, decode
from switchboard.common.kafka import BrokerUnavailable, ConsumerLoop, Message, RecordProducer, RecordTooLarge
from switchboard.common.kafka.consumer import RecordHandler
from switchboard.common.metrics import KafkaMetrics, new_registry
from switchboard.common.settings import KafkaSettings
from switchboard.common.testing import committed_offsets, consume, eventually, sample_inbound
from switchboard.common.topics import Topics, ensure_topics

pytestmark = pytest.mark.broker


def inbound_loop(
    kafka: KafkaSettings, topics: Topics, group: str, handler: RecordHandler, producer: RecordProducer, **options: Any
) -> ConsumerLoop:
    """A consumer loop of ``inbound.v1`` in ``group`` that dead-letters to the test's ``dlq.v1``."""
    return ConsumerLoop(
        kafka=kafka,
        topics=[topics.inbound],
        group_id=group,
        handler=handler,
        producer=producer,
        dlq_topic=topics.dlq,
        **options,
    )


async def test_ensure_topics_is_idempotent(kafka_settings: KafkaSettings, topic_prefix: str) -> None:
    topics = Topics(topic_prefix)
    created = await ensure_topics(kafka_settings, topics)
    assert sorted(created) == sorted(topics.all())
    assert await ensure_topics(kafka_settings, topics) == []


async def test_produced_records_are_consumed_validated_and_committed(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    registry = new_registry()
    metrics = KafkaMetrics(registry)
    seen: list[Message] = []

    async def handler(message: Message) -> None:
        seen.append(message)

    async with RecordProducer(kafka_settings, metrics=metrics) as producer:
        acks = await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i % 4}")) for i in range(12))
        assert len(acks) == 12
        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            codec=RecordCodec(InboundMessage),
            metrics=metrics,
        )
        task = asyncio.create_task(loop.run())
        await eventually(lambda: len(seen) == 12)
        await loop.stop()
        await loop.stop()  # stopping twice is harmless
        await task
    assert sorted(m.record.provider_message_id for m in seen) == sorted(f"m-{i}" for i in range(12))  # type: ignore[attr-defined]
    assert all(isinstance(m.record, InboundMessage) for m in seen)
    # one tenant, one partition: ordering within a tenant holds
    by_tenant: dict[str, set[int]] = {}
    for m in seen:
        by_tenant.setdefault(m.record.tenant_id or "", set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_tenant.values())
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 12
    assert registry.get_sample_value("switchboard_produced_records_total", {"topic": topics.inbound}) == 12
    assert registry.get_sample_value("switchboard_consumed_records_total", {"topic": topics.inbound}) == 12


async def test_failing_record_goes_to_dlq_and_the_partition_moves_on(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async def handler(message: Message) -> None:
        record = message.record
        assert isinstance(record, InboundMessage)
        attempts[record.provider_message_id] = attempts.get(record.provider_message_id, 0) + 1
        if record.text == "poison":
            raise ValueError("cannot route this one")
        handled.append(record.provider_message_id)

    async with RecordProducer(kafka_settings) as producer:
        await producer.send(topics.inbound, sample_inbound(1))
        await producer.send(topics.inbound, sample_inbound(2, text="poison"))
        await producer.send_raw(topics.inbound, b"acme", b"\xffnot json at all")
        await producer.send(topics.inbound, sample_inbound(3))
        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            max_attempts=3,
            retry_backoff=0.01,
        )
        task = asyncio.create_task(loop.run())
        await eventually(lambda: len(handled) == 2)
        letters = [decode(r.value) for r in await consume(kafka_settings.bootstrap, topics.dlq, count=2)]
        await loop.stop()
        await task
    assert handled == ["m-1", "m-3"]
    assert attempts["m-2"] == 3
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    poison = next(lt for lt in letters if isinstance(lt, DeadLetter) and lt.error_type == "ValueError")
    assert poison.error == "cannot route this one"
    assert poison.attempts == 3
    assert poison.tenant_id == "acme"
    assert poison.source_topic == topics.inbound
    original = decode(poison.source_value or b"")
    assert isinstance(original, InboundMessage)
    assert (original.provider_message_id, original.text) == ("m-2", "poison")
    garbage = next(lt for lt in letters if isinstance(lt, DeadLetter) and lt.error_type == "SchemaError")
    assert garbage.source_value == b"\xffnot json at all"
    assert "not JSON" in garbage.error
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 4


async def test_a_record_over_the_size_limit_is_refused_as_too_large_not_as_broker_trouble(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    huge = b"x" * (1024 * 1024 + 1)
    async with RecordProducer(kafka_settings) as producer:
        with pytest.raises(RecordTooLarge) as refused:
            await producer.send_raw(topics.inbound, b"acme", huge)
        assert not isinstance(refused.value, BrokerUnavailable)  # nobody retries it
        with pytest.raises(RecordTooLarge):
            await producer.send_raw_soon(topics.inbound, b"acme", huge)
        with pytest.raises(RecordTooLarge):
            await producer.send(topics.inbound, sample_inbound(1, text="y" * (1024 * 1024)))
        with pytest.raises(RecordTooLarge):
            await producer.send_many([(topics.inbound, sample_inbound(2, text="z" * (1024 * 1024)))])
        with pytest.raises(RecordTooLarge):
            await producer.send_raw_many_soon([(topics.inbound, b"acme", huge, None)])
        await producer.flush()  # the refused records left nothing pending or failed behind
        ack = await producer.send(topics.inbound, sample_inbound(3))  # and the producer still writes
    assert ack.topic == topics.inbound


async def test_output_too_large_is_dead_lettered_at_once_and_a_huge_source_is_referenced_not_carried(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    attempts: dict[str, int] = {}
    handled: list[str] = []

    async with RecordProducer(kafka_settings) as producer:

        async def handler(message: Message) -> None:
            record = message.record
            assert isinstance(record, InboundMessage)
            attempts[record.provider_message_id] = attempts.get(record.provider_message_id, 0) + 1
            if record.text == "blow up":  # an output no broker takes: no retry can help
                await producer.send_raw(topics.delivery, b"acme", b"o" * (2 * 1024 * 1024))
            handled.append(record.provider_message_id)

        await producer.send(topics.inbound, sample_inbound(1, text="blow up"))
        # undecodable and large: in base64 inside a dead letter it would be over the limit
        garbage = await producer.send_raw(topics.inbound, b"acme", b"\xff" + b"g" * (800 * 1024))
        await producer.send(topics.inbound, sample_inbound(2))
        loop = inbound_loop(kafka_settings, topics, group, handler, producer, max_attempts=3, retry_backoff=0.01)
        task = asyncio.create_task(loop.run())
        await eventually(lambda: handled == ["m-2"], timeout=30)
        letters = [decode(r.value) for r in await consume(kafka_settings.bootstrap, topics.dlq, count=2)]
        await loop.stop()
        await task
    assert attempts == {"m-1": 1, "m-2": 1}
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    too_large = next(lt for lt in letters if isinstance(lt, DeadLetter) and lt.error_type == "RecordTooLarge")
    assert too_large.attempts == 1
    original = decode(too_large.source_value or b"")
    assert isinstance(original, InboundMessage)
    assert original.provider_message_id == "m-1"
    unreadable = next(lt for lt in letters if isinstance(lt, DeadLetter) and lt.error_type == "SchemaError")
    assert unreadable.source_value is None
    assert (unreadable.source_partition, unreadable.source_offset) == (garbage.partition, garbage.offset)
    assert f"partition {garbage.partition} offset {garbage.offset}" in unreadable.error
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 3


async def test_consumer_loop_can_run_again_after_a_failure(kafka_settings: KafkaSettings, topic_prefix: str) -> None:
    """A loop whose run() ended with an error (as when a commit's flush fails) restarts cleanly."""
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    seen: list[str] = []
    fail_once = [True]

    async def handler(message: Message) -> None:
        assert isinstance(message.record, InboundMessage)
        seen.append(message.record.provider_message_id)

    async with RecordProducer(kafka_settings) as producer:
        original_flush = producer.flush

        async def flaky_flush() -> None:
            if fail_once[0]:
                fail_once[0] = False
                raise BrokerUnavailable("simulated: broker went away at commit time")
            await original_flush()

        producer.flush = flaky_flush  # type: ignore[method-assign]
        await producer.send(topics.inbound, sample_inbound(1))
        loop = ConsumerLoop(
            kafka=kafka_settings,
            topics=[topics.inbound],
            group_id=f"g-{uuid.uuid4().hex[:8]}",
            handler=handler,
            producer=producer,
            dlq_topic=topics.dlq,
        )
        with pytest.raises(BrokerUnavailable):
            await loop.run()
        task = asyncio.create_task(loop.run())  # re-run: the uncommitted record is read again
        await eventually(lambda: seen == ["m-1", "m-1"])
        await loop.stop()
        await task


async def test_concurrency_key_runs_keys_side_by_side_and_keeps_order_within_a_key(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    """Key "a" waits for key "b" to be handled: that only finishes if keys run concurrently."""
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    b_done = asyncio.Event()
    order: list[str] = []

    async def handler(message: Message) -> None:
        record = message.record
        assert isinstance(record, InboundMessage)
        if record.text == "a" and not order:
            await asyncio.wait_for(b_done.wait(), 10)
        order.append(f"{record.text}:{record.provider_message_id}")
        if record.text == "b":
            b_done.set()

    async with RecordProducer(kafka_settings) as producer:
        # One tenant, so one partition: a1, a2, b3, a4 in this order.
        for n, lane in ((1, "a"), (2, "a"), (3, "b"), (4, "a")):
            await producer.send(topics.inbound, sample_inbound(n, text=lane))
        await producer.send_raw(topics.inbound, b"acme", b"not json")
        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            concurrency_key=lambda m: getattr(m.record, "text", ""),
        )
        task = asyncio.create_task(loop.run())
        await eventually(lambda: len(order) == 4)
        letters = await consume(kafka_settings.bootstrap, topics.dlq, count=1)
        await eventually(lambda: loop._uncommitted == {})
        await loop.stop()
        await task
    assert order[0] == "b:m-3"  # b overtook the a's, which kept their own order
    assert order[1:] == ["a:m-1", "a:m-2", "a:m-4"]
    assert decode(letters[0].value).error_type == "SchemaError"  # type: ignore[attr-defined]
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 5


async def test_pipelined_keys_overtake_a_record_in_flight_but_the_commit_does_not(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    """A record fetched later runs while an earlier one of another key is still in flight;
    nothing is committed past the unfinished record until it finishes."""
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    release = asyncio.Event()
    order: list[str] = []
    registry = new_registry()

    def batches_timed() -> float | None:
        return registry.get_sample_value("switchboard_consumer_batch_seconds_count")

    async def handler(message: Message) -> None:
        record = message.record
        assert isinstance(record, InboundMessage)
        if record.text == "slow":
            await asyncio.wait_for(release.wait(), 20)
        order.append(f"{record.text}:{record.provider_message_id}")

    async with RecordProducer(kafka_settings) as producer:
        await producer.send(topics.inbound, sample_inbound(0, text="slow"))
        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            concurrency_key=lambda m: getattr(m.record, "text", ""),
            commit_interval=0.0,
            metrics=KafkaMetrics(registry),
        )
        assert loop.pipelined
        task = asyncio.create_task(loop.run())
        await eventually(lambda: len(loop._inflight) == 1)  # "slow" is in flight
        # Written after "slow" was fetched: a later fetch, handled while "slow" still runs.
        for n, text in ((1, "fast"), (2, "slow"), (3, "fast")):
            await producer.send(topics.inbound, sample_inbound(n, text=text))
        await eventually(lambda: order == ["fast:m-1", "fast:m-3"])
        await eventually(lambda: len(loop._inflight) == 2 and not loop._progress.is_set())
        assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 0
        timed = batches_timed() or 0  # only fetched batches without a "slow" record
        release.set()
        await eventually(lambda: len(order) == 4)
        # the batch of m-0 (fetched alone) and the one holding m-2 are timed once their last record is done
        await eventually(lambda: (batches_timed() or 0) >= timed + 2)
        await loop.stop()
        await task
    assert order[2:] == ["slow:m-0", "slow:m-2"]  # one key keeps its order across fetches
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 4


async def test_on_batch_end_runs_before_the_commit_and_on_idle_polls(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handled: list[str] = []
    ends: list[tuple[int, int]] = []  # (records handled so far, records committed so far)

    async def handler(message: Message) -> None:
        assert isinstance(message.record, InboundMessage)
        handled.append(message.record.provider_message_id)

    async with RecordProducer(kafka_settings) as producer:
        await producer.send(topics.inbound, sample_inbound(1))

        async def batch_end() -> None:
            committed = sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values())
            ends.append((len(handled), committed))

        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            on_batch_end=batch_end,
            poll_timeout_ms=50,
        )
        task = asyncio.create_task(loop.run())
        await eventually(lambda: len([e for e in ends if e[0] == 1]) >= 3)  # idle polls keep calling it
        await loop.stop()
        await task
    assert (1, 0) in ends  # the batch end saw the record handled but not yet committed
    assert (1, 1) in ends  # later polls see the commit


@pytest.mark.parametrize("callback_seconds", [1.0, 0.0], ids=["slow-callback", "fast-callback"])
async def test_records_wait_for_on_assigned_and_a_seek_there_is_where_they_resume(
    kafka_settings: KafkaSettings, topic_prefix: str, callback_seconds: float
) -> None:
    """An assignment callback (a state restore) ends before any record is handled.

    aiokafka fetches for the new assignment while a slow callback still runs, or right
    after a fast one sought: whatever the first poll returns is put back, so a partition
    the callback sought resumes at that offset (also when the batch was fetched from it),
    and every other partition loses and repeats nothing.
    """
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handled: list[tuple[int, int, bool]] = []  # (partition, offset, callback finished when handled)
    callback_done = False

    async def handler(message: Message) -> None:
        handled.append((message.partition, message.offset, callback_done))

    async with RecordProducer(kafka_settings) as producer:
        acks = await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i % 6}")) for i in range(30))
        per_partition: dict[int, list[int]] = {}
        for ack in acks:
            per_partition.setdefault(ack.partition, []).append(ack.offset)
        sought = max(per_partition, key=lambda p: len(per_partition[p]))
        assert len(per_partition[sought]) > 2
        loop: ConsumerLoop | None = None

        async def on_assigned(assigned: set[TopicPartition]) -> None:
            nonlocal callback_done
            await asyncio.sleep(callback_seconds)  # when slow, the fetcher already has the records
            assert loop is not None
            loop.seek(TopicPartition(topics.inbound, sought), 2)
            callback_done = True

        loop = inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            on_assigned=on_assigned,
            poll_timeout_ms=50,
        )
        task = asyncio.create_task(loop.run())
        expected = sum(len(offsets) for offsets in per_partition.values()) - 2
        await eventually(lambda: len(handled) >= expected, timeout=30)
        await eventually(lambda: loop is not None and loop._uncommitted == {})
        await loop.stop()
        await task
    assert all(done for _, _, done in handled)  # nothing before the callback finished
    for partition, offsets in per_partition.items():
        got = [offset for p, offset, _ in handled if p == partition]
        assert got == (offsets[2:] if partition == sought else offsets)  # nothing skipped, nothing twice


async def test_pipelined_records_in_flight_finish_and_commit_before_a_rebalance_hands_them_on(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    """A second member joins while the first has records in flight: the first drains its
    lanes and commits before it gives partitions up, so every record is handled exactly once."""
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    group = f"g-{uuid.uuid4().hex[:8]}"
    handled: list[tuple[str, int, int]] = []  # (member, partition, offset)

    def member(name: str, producer: RecordProducer) -> ConsumerLoop:
        async def handler(message: Message) -> None:
            await asyncio.sleep(0.5)  # slow enough that the rebalance meets records in flight
            handled.append((name, message.partition, message.offset))

        return inbound_loop(
            kafka_settings,
            topics,
            group,
            handler,
            producer,
            concurrency_key=lambda m: m.record.tenant_id,
            poll_timeout_ms=50,
        )

    async with RecordProducer(kafka_settings) as producer:
        acks = await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i % 6}")) for i in range(60))
        first, second = member("first", producer), member("second", producer)
        assert first.pipelined
        running = [asyncio.create_task(first.run())]
        await eventually(lambda: len(handled) >= 3 and len(first._inflight) > 0, timeout=30)
        running.append(asyncio.create_task(second.run()))
        await eventually(lambda: second.joined and second.assignment() != set(), timeout=30)
        acks += await producer.send_many((topics.inbound, sample_inbound(i, tenant=f"t{i % 6}")) for i in range(60, 90))
        await eventually(lambda: len(handled) >= 90, timeout=60)
        await eventually(lambda: first._uncommitted == {} and second._uncommitted == {})
        for loop in (first, second):
            await loop.stop()
        await asyncio.gather(*running)
    seen = [(partition, offset) for _, partition, offset in handled]
    assert sorted(seen) == sorted((ack.partition, ack.offset) for ack in acks)  # each once, none lost
    assert {name for name, _, _ in handled} == {"first", "second"}  # the second member did take partitions
    assert sum((await committed_offsets(kafka_settings.bootstrap, group, topics.inbound)).values()) == 90


async def test_send_many_counts_each_topic_apart_and_acknowledges_every_record_in_order(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    registry = new_registry()
    async with RecordProducer(kafka_settings, metrics=KafkaMetrics(registry)) as producer:
        items = [(topics.inbound if i % 3 else topics.dlq, sample_inbound(i, tenant="t1")) for i in range(9)]
        acks = await producer.send_many(iter(items))
        acks += await producer.send_many([(topics.inbound, sample_inbound(9, tenant="t1"))])
    assert [a.topic for a in acks] == [t for t, _ in items] + [topics.inbound]
    inbound_offsets = [a.offset for a in acks if a.topic == topics.inbound]
    assert inbound_offsets == list(range(inbound_offsets[0], inbound_offsets[0] + 7))  # one tenant: in order, no gap
    assert registry.get_sample_value("switchboard_produced_records_total", {"topic": topics.inbound}) == 7
    assert registry.get_sample_value("switchboard_produced_records_total", {"topic": topics.dlq}) == 3


async def test_send_many_on_a_stopped_producer_is_broker_unavailable(kafka_settings: KafkaSettings) -> None:
    producer = RecordProducer(kafka_settings)
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await producer.send_many([("any", sample_inbound(0))])


async def test_send_many_puts_each_key_on_the_partition_send_gives_it(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    tenants = [f"tenant-{i}" for i in range(24)]
    async with RecordProducer(kafka_settings) as producer:
        one_by_one = {
            t: (await producer.send(topics.inbound, sample_inbound(i, tenant=t))).partition
            for i, t in enumerate(tenants)
        }
        acks = await producer.send_many(
            (topics.inbound, sample_inbound(100 + i, tenant=t)) for i, t in enumerate(tenants)
        )
    assert len(set(one_by_one.values())) > 1  # the keys spread over the partitions
    assert {t: a.partition for t, a in zip(tenants, acks, strict=True)} == one_by_one


async def test_send_many_past_one_batch_keeps_every_record_in_order(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    small = kafka_settings.model_copy(update={"max_batch_size": 16384})
    await ensure_topics(small, topics)
    records = [sample_inbound(i, tenant="t1").model_copy(update={"text": f"{i} " + "x" * 1500}) for i in range(40)]
    async with RecordProducer(small) as producer:
        acks = await producer.send_many((topics.inbound, r) for r in records)
    assert len({a.partition for a in acks}) == 1
    assert [a.offset for a in acks] == list(range(acks[0].offset, acks[0].offset + 40))  # several batches, no gap
    seen = await consume(small.bootstrap, topics.inbound, count=40)
    assert [decode(m.value).id for m in seen if m.value is not None] == [r.id for r in records]


async def test_send_raw_many_soon_enqueues_each_record_where_it_says_and_flush_acknowledges_them(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    items = [(topics.router_state, f"k{i}".encode(), f"v{i}".encode(), i % 3) for i in range(30)]
    items.append((topics.router_state, b"k0", None, 0))  # a tombstone
    items.append((topics.dispatch, b"acme", b"keyed", None))  # partitioned by its key
    async with RecordProducer(kafka_settings) as producer:
        await producer.send_raw_many_soon(iter(items))
        await producer.flush()
        keyed = await producer.send_raw(topics.dispatch, b"acme", b"again")
    state = await consume(kafka_settings.bootstrap, topics.router_state, count=31)
    by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for r in state:
        by_partition.setdefault(r.partition, []).append((r.key, r.value))
    for p in range(3):  # each on the partition it named, in the order given
        assert by_partition[p] == [(key, value) for _, key, value, part in items[:31] if part == p]
    dispatched = await consume(kafka_settings.bootstrap, topics.dispatch, count=2)
    assert {r.partition for r in dispatched} == {keyed.partition}  # the key's partition, as send gives it


async def test_a_flush_waits_for_what_was_sent_before_it_while_others_keep_sending(
    kafka_settings: KafkaSettings, topic_prefix: str
) -> None:
    topics = Topics(topic_prefix)
    await ensure_topics(kafka_settings, topics)
    async with RecordProducer(kafka_settings, send_timeout=5) as producer:
        sending = True

        async def steady_sender() -> int:
            sent = 0
            while sending:
                await producer.send_soon(topics.delivery, sample_inbound(sent, tenant=f"t{sent % 5}"))
                sent += 1
                if sent % 5 == 0:
                    await asyncio.sleep(0.002)
            return sent

        sender = asyncio.create_task(steady_sender())
        flushed = 0
        for _ in range(40):  # each flush overlaps sends made while it waits; none may fail for them
            await asyncio.sleep(0.02)
            before = await producer.send_soon(topics.delivery, sample_inbound(-1, tenant="flushing"))
            await producer.flush()
            assert before.done()
            assert before.exception() is None
            flushed += 1
        sending = False
        sent = await sender
        await producer.flush()
    assert flushed == 40
    assert sent > 100
