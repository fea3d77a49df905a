"""Where agent events from callbacks go: one small Protocol, a Kafka implementation."""

from __future__ import annotations

from typing import Protocol

from switchboard.common.events import Record
from switchboard.common.kafka.producer import RecordProducer


class Publisher(Protocol):
    async def publish(self, record: Record) -> None:
        """Write ``record``; return once it is durably accepted. Raises ``BrokerUnavailable`` otherwise."""
        ...


class KafkaPublisher:
    """Publishes to one topic (``agent-events.v1``) and waits for the broker's acknowledgement."""

    def __init__(self, producer: RecordProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, record: Record) -> None:
        await self._producer.send(self._topic, record)
