"""Reads ``delivery.v1`` back to rebuild what was delivered (and where Slack threads start)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from switchboard.common.events import (
    DeliveryResult,
    DeliveryStatus,
    DispatchKind,
    EndpointKind,
    RecordCodec,
    SchemaError,
)
from switchboard.common.logging import get_logger
from switchboard.common.settings import KafkaSettings
from switchboard.notifier.idempotency import DeliveredStore
from switchboard.notifier.sinks.slack import SlackThreads

log = get_logger(__name__)

_CODEC = RecordCodec(DeliveryResult)
_THREAD_ROOTS = frozenset({DispatchKind.OFFER, DispatchKind.ASSIGNMENT})


class DeliveryHistory:
    """Catches up with ``delivery.v1``: the first call reads it all, later calls only what is new."""

    def __init__(
        self, kafka: KafkaSettings, topic: str, store: DeliveredStore, threads: SlackThreads | None = None
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._store = store
        self._threads = threads
        self._positions: dict[TopicPartition, int] = {}
        self.records_read = 0

    def apply(self, result: DeliveryResult) -> None:
        self._store.observe(result)
        if (
            self._threads is not None
            and result.status is DeliveryStatus.DELIVERED
            and result.endpoint.kind is EndpointKind.SLACK
            and result.dispatch_kind in _THREAD_ROOTS
            and result.external_ref
        ):
            self._threads.remember_ref(
                result.tenant_id, result.conversation_id, result.endpoint.target, result.external_ref
            )

    async def catch_up(self) -> int:
        """Read up to the current end of every partition; returns the records read."""
        consumer = AIOKafkaConsumer(
            **self._kafka.client_options(),
            client_id=f"{self._kafka.client_id}-notifier-history",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._kafka.fetch_max_wait_ms,
            isolation_level="read_committed",
        )
        await consumer.start()
        read = 0
        try:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(self._topic) or set()
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            if not tps:
                return 0
            consumer.assign(tps)
            for tp in tps:
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for messages in batch.values():
                    for message in messages:
                        read += 1
                        try:
                            result = _CODEC.decode_as(message.value, DeliveryResult)
                        except (SchemaError, ValueError):
                            continue  # not ours to judge here: the router reads this topic too
                        self.apply(result)
                for tp in list(pending):
                    position = await consumer.position(tp)
                    self._positions[tp] = position
                    if position >= ends[tp]:
                        pending.discard(tp)
            for tp in tps:
                self._positions[tp] = await consumer.position(tp)
        finally:
            await consumer.stop()
        self.records_read += read
        log.info("delivery history caught up", topic=self._topic, records=read, delivered=len(self._store))
        return read
