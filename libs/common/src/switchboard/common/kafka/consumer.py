"""An at-least-once consumer loop: handle, wait for the output's acknowledgement, then commit.

Per batch fetched, every record is decoded and given to the handler in partition order.
A record that cannot be decoded, or whose handler keeps failing after
``max_attempts`` tries, is written to the dead-letter topic (raw bytes, error, source
topic, partition and offset) and the partition moves on. A handler failure caused by the
broker itself (:class:`BrokerUnavailable`) is not the record's fault: it is retried until
the broker answers or the loop is stopped, and nothing after it is committed. A handler
whose output is too large (:class:`RecordTooLarge`) cannot succeed on a retry: its record
is dead-lettered at once. A dead letter that would itself be too large (the source is
carried in base64) leaves the source's value and headers out and says where it is.

Offsets are committed only after the producer has flushed (so whatever the handler wrote
with ``send_soon`` is acknowledged), and also when partitions are revoked.

A rebalance runs its callbacks under the same lock as batch handling, so ``on_assigned``
(a restore, say) finishes before any record of the new assignment is handled. aiokafka
may already have fetched records while a callback ran, or right after it: such a batch
is not handled but put back (each partition it touched goes back to where the callback
sought it, or else to its committed offset), so that nothing is handled by an
assignment it does not belong to, and nothing is skipped.

Two options change how a batch is handled:

- ``concurrency_key``: records with different keys (for example different conversations)
  are handled concurrently, up to ``max_concurrency`` at a time, while records with the
  same key keep their partition order. Without ``on_batch_end`` the loop is pipelined: it
  keeps fetching while earlier records are in flight and hands each record to its key's
  lane at once, so a record never waits for the slowest record of an earlier batch (at
  most ``max_poll_records`` records are in flight). A partition's offset is committed up
  to the end of its finished prefix (:class:`~switchboard.common.kafka.inflight.InFlight`),
  after the producer's flush, at most every ``commit_interval`` seconds and on revocation
  and stop, so nothing is committed past a record still in flight. With ``on_batch_end``
  the batch's offsets are committed once every key of the batch is done.
- ``on_batch_end``: called after every poll (also an empty one), still holding the
  processing lock and before the commit: a stateful consumer writes its changelog there,
  or fires its timers while no input arrives.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from switchboard.common.events import DeadLetter, Record, RecordCodec, SchemaError
from switchboard.common.kafka.inflight import InFlight
from switchboard.common.kafka.producer import BrokerUnavailable, RecordProducer, RecordTooLarge
from switchboard.common.logging import get_logger
from switchboard.common.metrics import KafkaMetrics
from switchboard.common.settings import KafkaSettings

log = get_logger(__name__)

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed record, decoded, with where it came from."""

    record: Record
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


class RecordHandler(Protocol):
    async def __call__(self, message: Message, /) -> None: ...


PartitionsCallback = Callable[[set[TopicPartition]], Awaitable[None]]
BatchCallback = Callable[[], Awaitable[None]]
ConcurrencyKey = Callable[[Message], Hashable]


@dataclass
class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    loop: ConsumerLoop
    assigned_once: bool = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned_once = True
        await self.loop._on_assigned(set(assigned))


@dataclass
class ConsumerLoop:
    """Consumes ``topics`` in consumer group ``group_id`` and runs ``handler`` on each record."""

    kafka: KafkaSettings
    topics: Sequence[str]
    group_id: str
    handler: RecordHandler
    producer: RecordProducer
    dlq_topic: str
    codec: RecordCodec = field(default_factory=RecordCodec)
    max_attempts: int = 3
    retry_backoff: float = 0.05
    metrics: KafkaMetrics | None = None
    on_assigned: PartitionsCallback | None = None
    on_revoked: PartitionsCallback | None = None
    client_id: str | None = None
    poll_timeout_ms: int = 500
    concurrency_key: ConcurrencyKey | None = None
    max_concurrency: int = 16
    on_batch_end: BatchCallback | None = None
    assignors: tuple[type, ...] | None = None
    """Partition assignment strategies (aiokafka's round robin by default; range co-partitions topics)."""
    commit_interval: float = 0.05
    """Pipelined mode: least time between two commits of finished records (a commit is a broker round trip)."""

    _consumer: AIOKafkaConsumer | None = field(default=None, init=False)
    _listener: _Listener | None = field(default=None, init=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _processing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _uncommitted: dict[TopicPartition, int] = field(default_factory=dict, init=False)
    _generation: int = field(default=0, init=False)
    """Moves on at the start and the end of every rebalance callback."""
    _sought: dict[TopicPartition, int] = field(default_factory=dict, init=False)
    """Partitions moved by :meth:`seek` since the current fetch began, and where to."""
    _inflight: InFlight = field(default_factory=InFlight, init=False)
    _lanes: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict, init=False)
    """Pipelined mode: the last record handed to each lane (the next one of its lane waits for it)."""
    _progress: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _gate: asyncio.Semaphore | None = field(default=None, init=False)

    @property
    def pipelined(self) -> bool:
        """Keyed lanes that run across fetches (``concurrency_key`` without ``on_batch_end``)."""
        return self.concurrency_key is not None and self.on_batch_end is None

    @property
    def joined(self) -> bool:
        """True once the consumer has joined its group and received an assignment (possibly empty)."""
        return self._consumer is not None and self._listener is not None and self._listener.assigned_once

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Move the next fetch of an assigned partition (from ``on_assigned``, say, after a restore)."""
        if self._consumer is not None:
            self._consumer.seek(tp, offset)
            self._sought[tp] = offset

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None when it has none)."""
        if self._consumer is None:
            return None
        offset: int | None = await self._consumer.committed(tp)
        return offset

    async def start(self) -> None:
        """Connect and subscribe (raises when the broker cannot be reached)."""
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            **self.kafka.client_options(),
            client_id=self.client_id or self.kafka.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.kafka.fetch_max_wait_ms,
            max_poll_records=self.kafka.max_poll_records,
            session_timeout_ms=self.kafka.session_timeout_ms,
            heartbeat_interval_ms=self.kafka.heartbeat_interval_ms,
            isolation_level="read_committed",
            **({"partition_assignment_strategy": self.assignors} if self.assignors else {}),
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._listener = _Listener(self)
        consumer.subscribe(list(self.topics), listener=self._listener)
        self._consumer = consumer

    async def run(self) -> None:
        """Consume until :meth:`stop`; the batch in hand is finished and committed before returning."""
        if self._stop.is_set():
            return
        self._done.clear()
        try:
            await self.start()
        except BaseException:
            self._done.set()
            raise
        assert self._consumer is not None
        consumer = self._consumer
        if self.pipelined:
            await self._run_pipelined(consumer)
            return
        try:
            while not self._stop.is_set():
                generation = self._generation
                self._sought.clear()
                fetch = asyncio.ensure_future(
                    consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.kafka.max_poll_records)
                )
                stopping = asyncio.ensure_future(self._stop.wait())
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not fetch.done():
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    break
                batch = fetch.result()
                if batch or self.on_batch_end is not None:
                    async with self._processing:
                        if generation != self._generation:
                            await self._put_back(consumer, batch)
                            continue
                        await self._handle_batch(batch)
        finally:
            await self._close()

    async def _run_pipelined(self, consumer: AIOKafkaConsumer) -> None:
        """Fetch, hand records to their lanes, commit finished prefixes; see the module docstring."""
        self._inflight = InFlight()
        self._lanes = {}
        self._progress.clear()
        self._gate = asyncio.Semaphore(self.max_concurrency)
        clock = asyncio.get_running_loop().time
        last_commit = clock()
        fetch: asyncio.Future[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] | None = None
        generation = self._generation
        stopping = asyncio.ensure_future(self._stop.wait())
        failed = True
        try:
            while not self._stop.is_set():
                if fetch is None and len(self._inflight) < self.kafka.max_poll_records:
                    generation = self._generation
                    self._sought.clear()
                    fetch = asyncio.ensure_future(
                        consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.kafka.max_poll_records)
                    )
                waiting: set[asyncio.Future[Any]] = {stopping}
                if fetch is not None:
                    waiting.add(fetch)
                wait_commit = last_commit + self.commit_interval - clock()
                progressed = asyncio.ensure_future(self._progress.wait())
                if wait_commit <= 0:
                    waiting.add(progressed)
                await asyncio.wait(waiting, timeout=max(wait_commit, 0.0) or None, return_when=asyncio.FIRST_COMPLETED)
                progressed.cancel()
                if self._stop.is_set():
                    break
                if fetch is not None and fetch.done():
                    batch, fetch = fetch.result(), None
                    async with self._processing:
                        if generation != self._generation:
                            await self._put_back(consumer, batch)
                        else:
                            self._hand_out(consumer, batch)
                if self._progress.is_set() and clock() - last_commit >= self.commit_interval:
                    self._progress.clear()
                    last_commit = clock()
                    async with self._processing:
                        self._uncommitted.update(self._inflight.committable())
                        await self._commit(consumer)
            failed = False
        finally:
            stopping.cancel()
            if fetch is not None and not fetch.done():
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
            if failed:
                # Some output may not have been acknowledged: commit nothing that is in flight.
                await self._cancel_lanes()
            else:
                await self._drain_lanes()
            await self._close()

    def _hand_out(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Give each record to its lane, behind the lane's previous record."""
        assert self.concurrency_key is not None
        batch_done = self._batch_timer(sum(len(raws) for raws in batch.values()))
        for tp, raws in batch.items():
            for raw in raws:
                message = self._decode(raw)
                # An undecodable record has no key of its own: it keeps its partition's order.
                lane = (
                    ("partition", raw.topic, raw.partition)
                    if isinstance(message, BaseException)
                    else ("key", self.concurrency_key(message))
                )
                self._inflight.add(tp, raw.offset)
                task = asyncio.create_task(
                    self._lane_step(
                        self._lanes.get(lane), tp, raw, None if isinstance(message, BaseException) else message
                    )
                )
                self._lanes[lane] = task
                task.add_done_callback(partial(self._lane_done, lane))
                if batch_done is not None:
                    task.add_done_callback(batch_done)
            if self.metrics is not None and raws:
                self.metrics.consumed.labels(tp.topic).inc(len(raws))
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - raws[-1].offset - 1))

    def _batch_timer(self, records: int) -> Callable[[asyncio.Task[None]], None] | None:
        """Pipelined mode: a callback for each record's task that observes the batch's time
        (hand-out to its last record's end) in ``batch_seconds`` when the last one is done."""
        if self.metrics is None or not records:
            return None
        histogram = self.metrics.batch_seconds
        clock = asyncio.get_running_loop().time
        started = clock()
        left = records

        def done(_: asyncio.Task[None]) -> None:
            nonlocal left
            left -= 1
            if left == 0:
                histogram.observe(clock() - started)

        return done

    def _lane_done(self, lane: Hashable, task: asyncio.Task[None]) -> None:
        if self._lanes.get(lane) is task:
            del self._lanes[lane]

    async def _lane_step(
        self,
        previous: asyncio.Task[None] | None,
        tp: TopicPartition,
        raw: ConsumerRecord[bytes, bytes],
        message: Message | None,
    ) -> None:
        finished = False
        try:
            if previous is not None:
                await asyncio.wait([previous])  # its own outcome is its own: only the order matters here
            assert self._gate is not None
            async with self._gate:
                finished = await self._handle_one(raw, message)
        finally:
            if finished:
                self._inflight.finish(tp, raw.offset)
            else:  # stopping with the broker away, or cancelled: nothing from here on is committed
                self._inflight.block(tp)
            self._progress.set()

    async def _drain_lanes(self) -> None:
        """Wait for every record in flight, then put the finished prefixes up for the final commit."""
        while self._lanes:
            await asyncio.wait(list(self._lanes.values()))
        self._uncommitted.update(self._inflight.committable())

    async def _cancel_lanes(self) -> None:
        lanes = list(self._lanes.values())
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        self._lanes.clear()
        self._inflight.clear()
        self._uncommitted.clear()

    async def stop(self) -> None:
        """Ask the loop to finish its batch, commit and close; safe to call more than once."""
        self._stop.set()
        if self._consumer is not None:
            await self._done.wait()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                try:
                    await self._commit(consumer)
                except (KafkaError, BrokerUnavailable, RecordTooLarge) as exc:
                    log.warning("final commit failed; records will be redelivered", error=repr(exc))
                await consumer.stop()
        finally:
            self._done.set()

    # ----------------------------------------------------------------- batch handling

    async def _put_back(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """A rebalance ran while this batch was fetched: rewind instead of handling it.

        A partition the rebalance callback sought goes back to that offset: the batch may
        have been fetched before the seek (the position is already there) or after it, from
        that very offset (the position has moved past the batch). Every other partition goes
        back to its committed offset.
        """
        assigned = consumer.assignment()
        for tp, raws in batch.items():
            if not raws or tp not in assigned:
                continue  # gone with the rebalance
            sought = self._sought.get(tp)
            if sought is not None:
                consumer.seek(tp, sought)
                continue
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        if batch:
            log.info("batch fetched across a rebalance put back", partitions=len(batch))

    async def _handle_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        consumer = self._consumer
        assert consumer is not None
        started = asyncio.get_running_loop().time()
        if self.concurrency_key is None:
            for tp, raws in batch.items():
                for raw in raws:
                    handled = await self._handle_one(raw)
                    if not handled:  # stopping while the broker is away: leave the rest uncommitted
                        return
                    self._uncommitted[tp] = raw.offset + 1
        elif not await self._handle_concurrently(batch):
            return
        for tp, raws in batch.items():
            if self.metrics is not None and raws:
                self.metrics.consumed.labels(tp.topic).inc(len(raws))
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - raws[-1].offset - 1))
        if self.on_batch_end is not None:
            try:
                await self.on_batch_end()
            except BaseException:
                # The batch's output was not written: none of its offsets may be committed,
                # not even by the final commit when the loop closes.
                self._uncommitted.clear()
                raise
        await self._commit(consumer)
        if batch and self.metrics is not None:
            self.metrics.batch_seconds.observe(asyncio.get_running_loop().time() - started)

    async def _handle_concurrently(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        """Handle each key's records in order, keys side by side; True when the whole batch is done."""
        assert self.concurrency_key is not None
        lanes: dict[Hashable, list[tuple[ConsumerRecord[bytes, bytes], Message | None]]] = {}
        for raws in batch.values():
            for raw in raws:
                message = self._decode(raw)
                # An undecodable record has no key of its own: it keeps its partition's order.
                lane = (
                    ("partition", raw.topic, raw.partition)
                    if isinstance(message, BaseException)
                    else ("key", self.concurrency_key(message))
                )
                lanes.setdefault(lane, []).append((raw, None if isinstance(message, BaseException) else message))
        gate = asyncio.Semaphore(self.max_concurrency)

        async def run_lane(items: list[tuple[ConsumerRecord[bytes, bytes], Message | None]]) -> bool:
            async with gate:
                for raw, message in items:
                    if not await self._handle_one(raw, message):
                        return False
                return True

        results = await asyncio.gather(*(run_lane(items) for items in lanes.values()))
        if not all(results):
            return False  # stopping with the broker away: commit nothing of this batch
        for tp, raws in batch.items():
            if raws:
                self._uncommitted[tp] = raws[-1].offset + 1
        return True

    def _decode(self, raw: ConsumerRecord[bytes, bytes]) -> Message | BaseException:
        try:
            record = self.codec.decode(raw.value)
        except (SchemaError, ValueError) as exc:
            return exc
        return Message(
            record=record,
            topic=raw.topic,
            partition=raw.partition,
            offset=raw.offset,
            key=raw.key,
            value=raw.value,
            timestamp_ms=raw.timestamp,
            headers=tuple(raw.headers or ()),
        )

    async def _handle_one(self, raw: ConsumerRecord[bytes, bytes], decoded: Message | None = None) -> bool:
        """Handle one consumed record; False when the loop is stopping with the broker away."""
        topic: str = raw.topic
        message = decoded if decoded is not None else self._decode(raw)
        if isinstance(message, BaseException):
            return await self._dead_letter(raw, message, attempts=1)
        attempt = 0
        infra_backoff = self.retry_backoff
        while True:
            attempt += 1
            try:
                await self.handler(message)
                return True
            except RecordTooLarge as exc:
                # The handler's output is over the size limit: the same input makes it again.
                if self.metrics is not None:
                    self.metrics.handler_errors.labels(topic).inc()
                log.warning("handler output too large", topic=topic, partition=message.partition, offset=message.offset)
                return await self._dead_letter(raw, exc, attempts=attempt)
            except BrokerUnavailable as exc:
                # Not the record's fault: wait for the broker, do not count the attempt.
                attempt -= 1
                log.warning("broker unavailable while handling; retrying", topic=topic, error=str(exc))
                if await self._sleep_or_stop(infra_backoff):
                    return False
                infra_backoff = min(infra_backoff * 2, 5.0)
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.handler_errors.labels(topic).inc()
                log.warning(
                    "handler failed",
                    topic=topic,
                    partition=message.partition,
                    offset=message.offset,
                    attempt=attempt,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
                if attempt >= self.max_attempts:
                    return await self._dead_letter(raw, exc, attempts=attempt)
                await self._sleep_or_stop(self.retry_backoff * 2 ** (attempt - 1))

    async def _dead_letter(self, raw: ConsumerRecord[bytes, bytes], exc: BaseException, *, attempts: int) -> bool:
        key: bytes | None = raw.key
        tenant = key.decode("utf-8", "replace") if key else None
        letter = DeadLetter(
            tenant_id=tenant if tenant and _TENANT.match(tenant) else None,
            source_topic=raw.topic,
            source_partition=raw.partition,
            source_offset=raw.offset,
            consumer_group=self.group_id,
            source_key=key,
            source_value=raw.value,
            source_headers=tuple(raw.headers or ()),
            error_type=type(exc).__name__,
            error=str(exc)[:4000],
            attempts=attempts,
        )
        backoff = self.retry_backoff
        while True:
            try:
                await self.producer.send(self.dlq_topic, letter)
                break
            except RecordTooLarge:
                if letter.source_value is None and not letter.source_headers:
                    raise
                # The source (base64 in the letter) takes the letter over the size limit: the
                # letter says where the source is instead of carrying it.
                letter = letter.model_copy(
                    update={
                        "source_value": None,
                        "source_headers": (),
                        "error": f"{letter.error} [source value and headers left out: the dead letter "
                        f"would exceed the record size limit; the source is at {raw.topic} partition "
                        f"{raw.partition} offset {raw.offset}]",
                    }
                )
            except BrokerUnavailable:
                if await self._sleep_or_stop(backoff):
                    return False
                backoff = min(backoff * 2, 5.0)
        if self.metrics is not None:
            self.metrics.dead_letters.labels(letter.source_topic).inc()
        log.error(
            "record dead-lettered",
            topic=letter.source_topic,
            partition=letter.source_partition,
            offset=letter.source_offset,
            error_type=letter.error_type,
            attempts=attempts,
        )
        return True

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; True if the loop was asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        if not self._uncommitted:
            return
        try:
            await self.producer.flush()
        except (BrokerUnavailable, RecordTooLarge):
            # Some output was not acknowledged: these offsets must never be committed. Whoever
            # consumes next (this loop restarted, or the partition's next owner) re-reads them.
            self._uncommitted.clear()
            raise
        offsets, self._uncommitted = dict(self._uncommitted), {}
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner re-reads from the last commit.
            log.warning("commit failed after a rebalance; records will be redelivered", error=str(exc))
            return
        if self.metrics is not None:
            self.metrics.commits.inc()

    # ----------------------------------------------------------------- rebalancing

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Wait for the batch in hand, then commit what was processed before giving partitions up.
        async with self._processing:
            self._generation += 1
            try:
                if self.pipelined:
                    await self._drain_lanes()  # every record in flight finishes under the old assignment
                if self._consumer is not None:
                    try:
                        await self._commit(self._consumer)
                    except (KafkaError, BrokerUnavailable, RecordTooLarge) as exc:
                        log.warning("commit on revocation failed", error=repr(exc))
                if self.pipelined:
                    # A partition that comes back is read again from its commit: start it afresh.
                    self._inflight.forget(revoked)
                if self.on_revoked is not None:
                    await self.on_revoked(revoked)
            finally:
                self._generation += 1
        log.info("partitions revoked", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Under the processing lock: no record of the new assignment is handled before the
        # callback (a state restore, say) is done.
        async with self._processing:
            self._generation += 1
            try:
                if self.on_assigned is not None:
                    await self.on_assigned(assigned)
            finally:
                self._generation += 1
        log.info("partitions assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
