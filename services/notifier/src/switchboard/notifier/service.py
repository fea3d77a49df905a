"""The ``dispatch.v1`` handler: deliver, then write results (and dead letters) before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import Protocol

from aiokafka.structs import RecordMetadata

from switchboard.common.events import DeadLetter, Dispatch, Record
from switchboard.common.kafka.consumer import Message
from switchboard.common.kafka.producer import BrokerUnavailable
from switchboard.common.logging import get_logger
from switchboard.common.topics import Topics
from switchboard.notifier.deliverer import Deliverer, EndpointReport

log = get_logger(__name__)


class RecordSink(Protocol):
    async def send_many(self, items: Iterable[tuple[str, Record]]) -> list[RecordMetadata]: ...


def conversation_lane(message: Message) -> Hashable:
    """The consumer's concurrency key: one conversation's dispatches are delivered in order."""
    record = message.record
    if isinstance(record, Dispatch):
        return (record.tenant_id, record.conversation.conversation_id)
    return (message.topic, message.partition)  # not a dispatch: keeps its partition's order


class DeliveryFailed(Exception):
    """The error type recorded in a notifier dead letter."""


class DispatchHandler:
    """Delivers each dispatch, then writes every result to ``delivery.v1`` and each failure to
    ``dlq.v1`` and waits for the broker's acknowledgement, so the consumer loop commits the
    dispatch only once its outcome is durable. Until the delivery history is restored
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
        out: list[tuple[str, Record]] = [(self._topics.delivery, r.result) for r in reports]
        out += [(self._topics.dlq, self._dead_letter(message, r)) for r in reports if r.failed]
        await self._producer.send_many(out)
        for report in reports:
            self._deliverer.store.confirm(report.result)
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
