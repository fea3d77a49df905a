"""Where normalized messages go: one ``Publisher`` interface, and the Kafka-backed one."""

from __future__ import annotations

from typing import Protocol

from switchboard.common.events import InboundMessage
from switchboard.common.kafka.producer import BrokerUnavailable, RecordProducer

__all__ = ["ProducerPublisher", "PublishError", "Publisher"]


class PublishError(RuntimeError):
    """The record is not known to be on the broker; the sender must retry."""


class Publisher(Protocol):
    """Writes one inbound message; returns only once it is durably acknowledged, raises otherwise.

    ``encoded`` is ``encode(record)``, already computed when the record's size was checked
    (:func:`~.record_size.fit_encoded`): what goes on the wire, so it is not encoded twice.
    """

    async def publish(self, record: InboundMessage, encoded: bytes) -> None: ...


class ProducerPublisher:
    """Publishes to the inbound topic through the shared producer (``acks=all``)."""

    def __init__(self, producer: RecordProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, record: InboundMessage, encoded: bytes) -> None:
        """A broker that refuses the record's size (its limit below ours) raises the producer's
        ``RecordTooLarge`` as it is: the refusal of a record that cannot be cut to fit."""
        try:
            await self._producer.send_raw(self._topic, record.key(), encoded)
        except BrokerUnavailable as exc:
            raise PublishError(str(exc)) from exc
