"""Fakes for adapter tests: a publisher that records (or fails), and fixed clocks."""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.common.events import InboundMessage
from switchboard.ingest_social.sdk.publisher import PublisherError

__all__ = ["RecordingPublisher"]


class RecordingPublisher:
    """Keeps what it is given; raises :class:`PublisherError` while ``fail`` is set (a broker outage)."""

    def __init__(self) -> None:
        self.records: list[InboundMessage] = []
        self.calls = 0
        self.fail = False

    async def publish(self, records: Sequence[InboundMessage]) -> None:
        self.calls += 1
        if self.fail:
            raise PublisherError("broker down (fake)")
        self.records.extend(records)
