"""Test kit: helpers to read and write real topics in tests (the fixtures live in ``plugin``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from switchboard.common.events import (
    Channel,
    ContactHandle,
    ContactIdentity,
    InboundMessage,
    Record,
    RecordCodec,
)

__all__ = [
    "committed_offsets",
    "consume",
    "consume_all",
    "consume_records",
    "eventually",
    "sample_inbound",
    "unique_prefix",
]


def unique_prefix(stem: str = "test") -> str:
    """A topic prefix no other test run uses, for example ``test-3f2a9c1b.``."""
    return f"{stem}-{uuid.uuid4().hex[:8]}."


async def _reader(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A started group-less consumer of ``topic`` from its first record."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    return consumer


async def consume(
    bootstrap: str,
    topic: str,
    *,
    count: int,
    timeout: float = 15.0,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the start until ``count`` records (or ``until`` holds); fails on timeout."""
    consumer = await _reader(bootstrap, topic)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            while len(records) < count or (until is not None and not until(records)):
                batch = await consumer.getmany(timeout_ms=200)
                for msgs in batch.values():
                    records.extend(msgs)
    except TimeoutError:
        raise AssertionError(f"expected {count} records on {topic} within {timeout}s, got {len(records)}") from None
    finally:
        await consumer.stop()
    return records


async def consume_all(
    bootstrap: str, topic: str, *, timeout: float = 30.0, idle: float = 0.5
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` until none arrives for ``idle`` seconds (to check nothing more is there).

    The end is found by quiet, not by the reported end offsets: the embedded broker may
    report a stale end offset after a producer died mid-write.
    """
    consumer = await _reader(bootstrap, topic)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout):
            loop = asyncio.get_running_loop()
            quiet_since = loop.time()
            while loop.time() - quiet_since < idle:
                batch = await consumer.getmany(timeout_ms=100)
                for msgs in batch.values():
                    if msgs:
                        records.extend(msgs)
                        quiet_since = loop.time()
    except TimeoutError:
        raise AssertionError(f"{topic} did not go quiet within {timeout}s") from None
    finally:
        await consumer.stop()
    return records


async def consume_records(
    bootstrap: str, topic: str, *, count: int, timeout: float = 15.0, codec: RecordCodec | None = None
) -> list[Record]:
    """Like :func:`consume`, decoded into schema records."""
    codec = codec or RecordCodec()
    return [codec.decode(r.value) for r in await consume(bootstrap, topic, count=count, timeout=timeout)]


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` has committed on each partition of ``topic`` (0 where none)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes metadata
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in partitions}
    finally:
        await consumer.stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` holds; fail the test with a clear message when it never does."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  # polling an arbitrary condition
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"condition not met within {timeout}s") from None


def sample_inbound(n: int = 0, *, tenant: str = "acme", text: str = "hello") -> InboundMessage:
    """A small valid chat message, for tests that need any inbound record."""
    return InboundMessage(
        tenant_id=tenant,
        channel=Channel.CHAT,
        provider="webchat",
        provider_message_id=f"m-{n}",
        contact=ContactIdentity(handles=(ContactHandle(kind="chat", value=f"visitor-{n}"),)),
        text=text,
    )
