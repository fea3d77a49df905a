"""A producer of schema records, keyed by tenant, acknowledged by all in-sync replicas."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import RecordMetadata

from switchboard.common.events import Record, encode
from switchboard.common.logging import get_logger
from switchboard.common.metrics import KafkaMetrics
from switchboard.common.settings import KafkaSettings

log = get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]
RawRecord = tuple[str, bytes | None, bytes | None, int | None]
"""(topic, key, value, partition) of :meth:`RecordProducer.send_raw_many_soon`; value None is a tombstone."""


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge a write (or the producer is not connected): try again later."""


class RecordTooLarge(ValueError):
    """The record is larger than the producer or the broker accepts: trying again cannot help.

    Not a :class:`BrokerUnavailable`, so that no caller retries it: an ingest answers a
    refusal (413, SMTP 552), a consumer loop dead-letters the input that produced it.
    """


class CachedKeyPartitioner:
    """aiokafka's default partitioner, each key's murmur2 hash computed once.

    Records are keyed by tenant: a few keys, each hashed on every send by aiokafka's
    pure-Python murmur2. The partition is the same as :class:`DefaultPartitioner` gives.
    """

    def __init__(self, max_keys: int = 4096) -> None:
        self._hash = functools.lru_cache(maxsize=max_keys)(_positive_murmur2)

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            partition: int = DefaultPartitioner()(key, all_partitions, available)
            return partition
        return all_partitions[self._hash(key) % len(all_partitions)]


def _positive_murmur2(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


class RecordProducer:
    """Writes :class:`Record` s as JSON, keyed by tenant, with ``acks=all``.

    ``send`` returns only once the broker acknowledged the record. ``send_soon`` enqueues
    and returns the delivery future, which :meth:`flush` awaits: a consumer handler uses it
    to produce many records and the consumer loop flushes before committing offsets. The
    outcome of a record enqueued that way is taken (counted, its failure kept for the flush
    to raise) when a flush or :meth:`stop` reaches it, not by callbacks on its future: two
    callbacks per record were an event-loop handle each, more than aiokafka's own enqueue.
    ``start`` and ``stop`` may each be called more than once.

    A write the broker could not take raises :class:`BrokerUnavailable` (transient); a
    record too large for the producer's request limit or the broker raises
    :class:`RecordTooLarge` (permanent).
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        metrics: KafkaMetrics | None = None,
        client_id: str | None = None,
        send_timeout: float = 10.0,
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self._client_id = client_id or kafka.client_id
        self._send_timeout = send_timeout
        self._producer: AIOKafkaProducer | None = None
        self._pending: list[tuple[str, asyncio.Future[RecordMetadata]]] = []
        """(topic, delivery future) of each record enqueued with a ``*_soon`` method and not
        yet taken by a flush, in the order enqueued."""
        self._failed: list[BaseException] = []
        self._counted: dict[str, Callable[[asyncio.Future[Any]], None]] = {}
        self._children: dict[str, tuple[Any, Any]] = {}

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._kafka.client_options(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._kafka.enable_idempotence,
            linger_ms=self._kafka.linger_ms,
            max_batch_size=self._kafka.max_batch_size,
            partitioner=CachedKeyPartitioner(),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            pending, self._pending = self._pending, []
            await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
            self._take(pending)
            await producer.flush()
        finally:
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _require(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise BrokerUnavailable("not connected to the broker")
        return self._producer

    async def send(
        self, topic: str, record: Record, *, key: bytes | None = None, headers: Headers | None = None
    ) -> RecordMetadata:
        """Write one record and wait for the broker's acknowledgement."""
        return await self.send_raw(topic, record.key() if key is None else key, encode(record), headers)

    async def send_many(self, items: Iterable[tuple[str, Record]]) -> list[RecordMetadata]:
        """Write several records in one batch and wait until all are acknowledged.

        The whole batch is enqueued and awaited under one ``send_timeout`` (not one timer per
        record). Records the broker acknowledged are counted once per topic when the write
        succeeds, not by a callback per record: every callback is an event-loop handle per
        record. A write that fails counts each record's own outcome, as it settles.
        """
        producer = self._require()
        futures: list[asyncio.Future[RecordMetadata]] = []
        topics: list[str] = []
        topic = ""
        enqueued = False
        try:
            async with asyncio.timeout(self._send_timeout):
                for topic, record in items:
                    future: asyncio.Future[RecordMetadata] = await producer.send(
                        topic, value=encode(record), key=record.key()
                    )
                    futures.append(future)
                    topics.append(topic)
                enqueued = True
                # One at a time: the records of a partition are acknowledged in order, so once
                # the first of a produce request is done, the others are too and cost no wait.
                acks = [await future for future in futures]
        except (KafkaError, TimeoutError) as exc:
            self._settle_failed(futures, topics)
            if not enqueued:
                raise self._refused(topic, exc) from exc
            if isinstance(exc, MessageSizeTooLargeError):
                raise RecordTooLarge(f"the broker refused a record as too large: {exc}") from exc
            raise BrokerUnavailable(f"broker did not acknowledge: {exc!r}") from exc
        except BaseException:
            self._settle_failed(futures, topics)
            raise
        if self._metrics is not None:
            self._take(zip(topics, futures, strict=True))  # every one acknowledged: counted per topic
        return acks

    def _settle_failed(self, futures: list[asyncio.Future[RecordMetadata]], topics: list[str]) -> None:
        """Count the outcome of each record of a failed write as it settles (and retrieve its
        exception, so that asyncio does not report it as never retrieved)."""
        for future, topic in zip(futures, topics, strict=True):
            if self._metrics is None:
                future.add_done_callback(_retrieve)
            else:
                self._watch(topic, future)

    async def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
    ) -> RecordMetadata:
        """Write raw bytes and wait for the acknowledgement: enqueue and acknowledgement under one timer."""
        producer = self._require()
        future: asyncio.Future[RecordMetadata] | None = None
        try:
            async with asyncio.timeout(self._send_timeout):
                future = await producer.send(
                    topic, value=value, key=key, partition=partition, headers=list(headers) if headers else None
                )
                self._watch(topic, future)  # counts the outcome once enqueued
                return await future
        except (KafkaError, TimeoutError) as exc:
            raise self._refused(topic, exc, counted=future is not None) from exc

    async def send_soon(
        self, topic: str, record: Record, *, key: bytes | None = None
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue a record; :meth:`flush` waits for it (and raises if it failed)."""
        return await self.send_raw_soon(topic, record.key() if key is None else key, encode(record))

    async def send_raw_soon(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Enqueue raw bytes (``value=None`` is a tombstone), optionally to one partition; see :meth:`flush`."""
        future = await self._enqueue(topic, key, value, headers, partition=partition)
        self._hold(topic, future)
        return future

    async def send_raw_many_soon(self, items: Iterable[RawRecord]) -> None:
        """Enqueue many raw records under one ``send_timeout`` (not one timer per record); see :meth:`flush`.

        A writer that enqueues a whole step (a changelog, its outputs) saves a timer per record.
        """
        producer = self._require()
        topic = ""
        try:
            async with asyncio.timeout(self._send_timeout):
                for topic, key, value, partition in items:
                    future: asyncio.Future[RecordMetadata] = await producer.send(
                        topic, value=value, key=key, partition=partition
                    )
                    self._hold(topic, future)
        except (KafkaError, TimeoutError) as exc:
            raise self._refused(topic, exc) from exc

    def _hold(self, topic: str, future: asyncio.Future[RecordMetadata]) -> None:
        """Keep an enqueued record for the next flush. Past :data:`_REAP_AT` records without
        a flush, the settled ones are taken at once, so a writer that never flushes (or
        awaits its futures itself) holds no more than that."""
        pending = self._pending
        pending.append((topic, future))
        if len(pending) >= _REAP_AT and len(pending) % _REAP_AT == 0:
            settled, self._pending = _by_settled(pending)
            self._take(settled)

    def _take(self, settled: Iterable[tuple[str, asyncio.Future[RecordMetadata]]]) -> None:
        """Count the outcome of settled records (per topic) and keep their failures for the flush
        to raise; retrieving each exception here keeps asyncio from reporting it as lost."""
        produced: dict[str, int] = {}
        for topic, future in settled:
            if future.cancelled():
                self._count_error(topic)
            elif (exc := future.exception()) is not None:
                self._failed.append(exc)
                self._count_error(topic)
            else:
                produced[topic] = produced.get(topic, 0) + 1
        if self._metrics is not None:
            for topic, count in produced.items():
                self._metrics_for(topic)[0].inc(count)

    async def flush(self) -> None:
        """Wait for every record enqueued with :meth:`send_soon` before this call; raise if one
        was not acknowledged in time, or if any record failed (:class:`RecordTooLarge` when
        every failure was the broker refusing a record's size, else :class:`BrokerUnavailable`).

        Records other tasks enqueue while the flush waits are the next flush's: a flush that
        counted them (as it once did) failed spuriously under a steady stream of sends.
        """
        pending, self._pending = self._pending, []
        try:
            async with asyncio.timeout(self._send_timeout):
                for _, future in pending:
                    if not future.done():
                        # asyncio.wait, not await: cancelling this task must not cancel the
                        # record's future. Records of a produce request settle together, so
                        # this waits about once per request, not once per record.
                        await asyncio.wait((future,))
        except BaseException as exc:  # a timeout or a cancellation: the unsettled stay pending
            settled, unsettled = _by_settled(pending)
            self._take(settled)
            self._pending[:0] = unsettled
            if isinstance(exc, TimeoutError):
                raise BrokerUnavailable(f"{len(unsettled)} records not acknowledged in time") from None
            raise
        self._take(pending)
        if self._failed:
            failed, self._failed = self._failed, []
            if all(isinstance(exc, MessageSizeTooLargeError) for exc in failed):
                raise RecordTooLarge(f"the broker refused {len(failed)} records as too large") from failed[0]
            first = next(exc for exc in failed if not isinstance(exc, MessageSizeTooLargeError))
            raise BrokerUnavailable(f"broker did not acknowledge a record: {first}") from first

    async def _enqueue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        *,
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        producer = self._require()
        try:
            # asyncio.timeout, not wait_for: the send runs in this task instead of a new one per record.
            async with asyncio.timeout(self._send_timeout):
                future: asyncio.Future[RecordMetadata] = await producer.send(
                    topic, value=value, key=key, partition=partition, headers=list(headers) if headers else None
                )
        except (KafkaError, TimeoutError) as exc:
            raise self._refused(topic, exc) from exc
        return future

    def _watch(self, topic: str, future: asyncio.Future[RecordMetadata]) -> None:
        """Count the record's outcome when it settles (one callback per topic, its metric children resolved once)."""
        if self._metrics is None:
            return
        count = self._counted.get(topic)
        if count is None:
            count = self._counted[topic] = self._counter(topic)
        future.add_done_callback(count)

    def _metrics_for(self, topic: str) -> tuple[Any, Any]:
        """The produced and produce-error children of ``topic`` (resolved once per topic)."""
        children = self._children.get(topic)
        if children is None:
            assert self._metrics is not None
            children = self._children[topic] = (
                self._metrics.produced.labels(topic),
                self._metrics.produce_errors.labels(topic),
            )
        return children

    def _counter(self, topic: str) -> Callable[[asyncio.Future[Any]], None]:
        produced, errors = self._metrics_for(topic)

        def count(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                errors.inc()
            else:
                produced.inc()

        return count

    def _refused(self, topic: str, exc: BaseException, *, counted: bool = False) -> Exception:
        """What a failed write raises (and counts, unless its future already counted it):
        :class:`RecordTooLarge` for a record over the size limit, else :class:`BrokerUnavailable`."""
        if not counted:
            self._count_error(topic)
        if isinstance(exc, MessageSizeTooLargeError):
            return RecordTooLarge(f"a record for {topic} is too large: {exc}")
        return BrokerUnavailable(f"cannot write to {topic}: {exc!r}")

    def _count_error(self, topic: str) -> None:
        if self._metrics is not None:
            self._metrics_for(topic)[1].inc()

    async def ping(self, timeout: float = 3.0) -> bool:
        """True when the broker answers a metadata request."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await producer.client.fetch_all_metadata()
        except (KafkaError, TimeoutError, OSError):
            return False
        return True


_REAP_AT = 4096
"""Records enqueued without a flush after which the settled ones are taken (see ``_hold``)."""


_Queued = tuple[str, asyncio.Future[RecordMetadata]]


def _by_settled(items: list[_Queued]) -> tuple[list[_Queued], list[_Queued]]:
    """``items`` split into the settled and the still unsettled, each in order."""
    settled: list[_Queued] = []
    unsettled: list[_Queued] = []
    for item in items:
        (settled if item[1].done() else unsettled).append(item)
    return settled, unsettled


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
