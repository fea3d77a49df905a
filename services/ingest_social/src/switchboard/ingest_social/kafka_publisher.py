"""The Publisher of the running service: inbound messages to ``inbound.v1``, keyed by tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from switchboard.common.events import InboundMessage
from switchboard.common.kafka.producer import BrokerUnavailable, RecordProducer
from switchboard.ingest_social.sdk import PublisherError

__all__ = ["KafkaPublisher"]


class KafkaPublisher:
    """Writes a request's messages as one batch; returns once the broker acknowledged all of them."""

    def __init__(self, producer: RecordProducer, topic: str, *, timeout: float = 5.0) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout

    async def publish(self, records: Sequence[InboundMessage]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._producer.send_many((self._topic, r) for r in records)
        except (BrokerUnavailable, TimeoutError) as exc:
            raise PublisherError(f"broker did not acknowledge {len(records)} records") from exc
