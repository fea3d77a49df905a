"""The Publisher of the running service: inbound messages to ``inbound.v1``, keyed by tenant.

Requests that reach :meth:`KafkaPublisher.publish` in the same turn of the event loop share
one write: their records go to the producer together and are awaited together, so a burst
of concurrent webhooks costs one enqueue pass and one acknowledgement wait instead of one
per request. Each request still returns only once every record of its batch (its own
included) is acknowledged; when the broker fails any of them, every request of that batch
gets :class:`PublisherError` (answered 503, so each provider retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from switchboard.common.events import InboundMessage, Record
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.ingest_social.sdk import PublisherError

__all__ = ["BatchWriter", "KafkaPublisher"]


class BatchWriter(Protocol):
    """What the publisher needs of :class:`~switchboard.common.kafka.producer.RecordProducer`."""

    async def send_many(self, items: Iterable[tuple[str, Record]]) -> list[Any]:
        """Write the records and return once the broker acknowledged all of them."""
        ...


_Waiter = tuple[Sequence[InboundMessage], "asyncio.Future[None]"]


class KafkaPublisher:
    """Writes the messages of all requests of one event-loop turn as one batch.

    ``max_batch_records`` caps one write; a larger turn is split into several writes, each
    answering its own requests. A request still waiting ``timeout`` seconds after its write
    started gets :class:`PublisherError`.
    """

    def __init__(
        self,
        producer: BatchWriter,
        topic: str,
        *,
        timeout: float = 5.0,
        max_batch_records: int = 1000,
    ) -> None:
        if max_batch_records < 1:
            raise ValueError("max_batch_records must be at least 1")
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._max = max_batch_records
        self._waiting: list[_Waiter] = []
        self._scheduled = False
        self._writes: set[asyncio.Task[None]] = set()

    async def publish(self, records: Sequence[InboundMessage]) -> None:
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((records, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start_writes)
        await done

    def _start_writes(self) -> None:
        """Take every request queued this turn and write their records in batches of at most ``max``."""
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        batch: list[_Waiter] = []
        size = 0
        for waiter in waiting:
            if batch and size + len(waiter[0]) > self._max:
                self._spawn(batch)
                batch, size = [], 0
            batch.append(waiter)
            size += len(waiter[0])
        if batch:
            self._spawn(batch)

    def _spawn(self, batch: list[_Waiter]) -> None:
        loop = asyncio.get_running_loop()
        # One timer per write rather than one per request: at the deadline every request of the
        # batch still waiting is answered with PublisherError; the write itself goes on (a late
        # acknowledgement answers nobody).
        timer = loop.call_later(self._timeout, _expire, batch)
        task = loop.create_task(self._write(batch, timer))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, batch: list[_Waiter], timer: asyncio.TimerHandle) -> None:
        topic = self._topic
        try:
            await self._producer.send_many((topic, r) for records, _ in batch for r in records)
        except asyncio.CancelledError as exc:
            _fail(batch, "cancelled", exc)
            raise
        except Exception as exc:  # every waiter must be answered, whatever failed
            _fail(
                batch,
                "not acknowledged" if isinstance(exc, BrokerUnavailable | TimeoutError) else type(exc).__name__,
                exc,
            )
            return
        finally:
            timer.cancel()
        for _, done in batch:
            if not done.done():  # else its request timed out or was cancelled
                done.set_result(None)


def _expire(batch: list[_Waiter]) -> None:
    for records, done in batch:
        if not done.done():
            done.set_exception(PublisherError(f"broker did not acknowledge {len(records)} records in time"))


def _fail(batch: list[_Waiter], reason: str, cause: BaseException) -> None:
    for _, done in batch:
        if not done.done():
            error = PublisherError(f"a write of {len(batch)} requests failed: {reason}")
            error.__cause__ = cause
            done.set_exception(error)
