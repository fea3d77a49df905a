"""Where an adapter host hands its normalized messages: one Protocol, so tests use a fake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from switchboard.common.events import InboundMessage

__all__ = ["Publisher", "PublisherError"]


class PublisherError(RuntimeError):
    """The records were not acknowledged by the broker (answered 503, so the provider retries)."""


@runtime_checkable
class Publisher(Protocol):
    async def publish(self, records: Sequence[InboundMessage]) -> None:
        """Return only once every record is acknowledged; raise :class:`PublisherError` otherwise."""
        ...
