"""Where normalized messages go: one ``Publisher`` interface, and the Kafka-backed one."""

from __future__ import annotations

from typing import Protocol

from switchboard.common.events import InboundMessage
from switchboard.common.kafka.producer import BrokerUnavailable, RecordProducer

__all__ = ["ProducerPublisher", "PublishError", "Publisher"]


class PublishError(RuntimeError):
    """The record is not known to be on the broker; the sender must retry."""


class Publisher(Protocol):
    """Writes one inbound message; returns only once it is durably acknowledged, raises otherwise."""

    async def publish(self, record: InboundMessage) -> None: ...


class ProducerPublisher:
    """Publishes to the inbound topic through the shared producer (``acks=all``)."""

    def __init__(self, producer: RecordProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, record: InboundMessage) -> None:
        try:
            await self._producer.send(self._topic, record)
        except BrokerUnavailable as exc:
            raise PublishError(str(exc)) from exc
