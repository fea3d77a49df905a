"""The ``dispatch.v1`` handler: deliver, then write results (and dead letters) before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from functools import partial
from typing import Protocol

from aiokafka.structs import RecordMetadata

from switchboard.common.events import DeadLetter, DeliveryResult, Dispatch, Record
from switchboard.common.kafka.consumer import Message
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.common.logging import get_logger
from switchboard.common.topics import Topics
from switchboard.notifier.deliverer import Deliverer, EndpointReport
from switchboard.notifier.idempotency import DeliveredStore

log = get_logger(__name__)


class RecordSink(Protocol):
    async def send_soon(self, topic: str, record: Record) -> asyncio.Future[RecordMetadata]:
        """Enqueue a record; the consumer loop's commit waits for it (the producer's flush)."""
        ...


def conversation_lane(message: Message) -> Hashable:
    """The consumer's concurrency key: one conversation's dispatches are delivered in order."""
    record = message.record
    if isinstance(record, Dispatch):
        return (record.tenant_id, record.conversation.conversation_id)
    return (message.topic, message.partition)  # not a dispatch: keeps its partition's order


class DeliveryFailed(Exception):
    """The error type recorded in a notifier dead letter."""


class DispatchHandler:
    """Delivers each dispatch, then enqueues every result for ``delivery.v1`` and each failure
    for ``dlq.v1``; the consumer loop flushes the producer before it commits, so a dispatch is
    committed only once its outcome is durable, while the conversation's next dispatch is
    delivered meanwhile. Until the delivery history is restored
    (``ready`` set) it raises :class:`BrokerUnavailable`, which the loop retries without
    counting an attempt.
    """

    def __init__(self, deliverer: Deliverer, producer: RecordSink, topics: Topics, group_id: str) -> None:
        self._deliverer = deliverer
        self._producer = producer
        self._topics = topics
        self._group_id = group_id
        self.ready = asyncio.Event()

    async def __call__(self, message: Message, /) -> None:
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), 5.0)
            except TimeoutError:
                raise BrokerUnavailable("delivery history not restored yet") from None
        dispatch = message.record
        if not isinstance(dispatch, Dispatch):  # the codec only reads dispatches; defensive
            raise TypeError(f"expected a dispatch, got {dispatch.schema_id()}")
        reports = await self._deliverer.deliver(dispatch)
        # The results are enqueued, not awaited: the conversation's next dispatch need not wait
        # for their acknowledgement (at least the producer's linger). The consumer loop flushes
        # the producer before it commits, so no offset is committed before its results are
        # durable; if they fail, nothing after them is committed and the dispatch is read again
        # (its delivery is then found in the store: a duplicate, not a second delivery).
        store = self._deliverer.store
        for report in reports:
            written = await self._producer.send_soon(self._topics.delivery, report.result)
            written.add_done_callback(partial(_confirm, store, report.result))
        for report in reports:
            if report.failed:
                await self._producer.send_soon(self._topics.dlq, self._dead_letter(message, report))
        for report in reports:
            # Every result is on delivery.v1 and counted in the metrics; a log line per success
            # (tens of microseconds each, more than the rest of the delivery's own work) is a
            # debug line, a failure stays an info line.
            (log.info if report.failed else log.debug)(
                "dispatch failed" if report.failed else "dispatch delivered",
                dispatch_id=dispatch.dispatch_id,
                tenant=dispatch.tenant_id,
                kind=dispatch.kind.value,
                endpoint_kind=report.result.endpoint.kind.value,
                status=report.result.status.value,
                attempts=report.result.attempts,
                error=report.result.error,
            )

    def _dead_letter(self, message: Message, report: EndpointReport) -> DeadLetter:
        result = report.result
        return DeadLetter(
            tenant_id=result.tenant_id,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            consumer_group=self._group_id,
            source_key=message.key,
            source_value=message.value,
            source_headers=message.headers,
            error_type=DeliveryFailed.__name__,
            error=f"{result.endpoint.kind.value} delivery of {result.dispatch_id} failed: {result.error}"[:4000],
            attempts=max(1, result.attempts),
        )


def _confirm(store: DeliveredStore, result: DeliveryResult, written: asyncio.Future[RecordMetadata]) -> None:
    """Once the result is acknowledged, the store holds its delivery as durable."""
    if not written.cancelled() and written.exception() is None:
        store.confirm(result)
