"""A timer heap keyed by due time, one pending timer per key, cancellation by replacement."""

from __future__ import annotations

import enum
import heapq
from datetime import UTC, datetime
from typing import NamedTuple

__all__ = ["TimerHeap", "TimerKey", "TimerKind"]


class TimerKind(enum.StrEnum):
    OFFER = "offer"
    RELAX = "relax"
    SLA = "sla"
    GRACE = "grace"
    PURGE = "purge"


class TimerKey(NamedTuple):
    kind: TimerKind
    tenant_id: str
    entity_id: str


class TimerHeap:
    """Pending timers in a binary heap; scheduling a key again replaces its earlier timer.

    Cancelled and replaced entries stay in the heap until they surface and are skipped, so
    every operation is O(log n) and nothing is ever polled.

    A conversation holds a timer or two for as long as it is open, so an entry is kept
    small: ``(due, key)`` with the due time as a POSIX timestamp (a float is 24 bytes, a
    datetime 48; the round trip is exact to the microsecond for any time of this era).
    Timers due at the same instant pop in key order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, TimerKey]] = []
        self._live: dict[TimerKey, tuple[float, TimerKey]] = {}
        """Per key, its current heap entry (the very tuple in the heap: nothing held twice)."""

    def schedule(self, key: TimerKey, due: datetime) -> None:
        entry = (due.timestamp(), key)
        self._live[key] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, key: TimerKey) -> None:
        self._live.pop(key, None)

    def due_at(self, key: TimerKey) -> datetime | None:
        entry = self._live.get(key)
        return _time(entry[0]) if entry is not None else None

    def _drop_stale(self) -> None:
        while self._heap:
            entry = self._heap[0]
            if self._live.get(entry[1]) is entry:
                return
            heapq.heappop(self._heap)

    def next_deadline(self) -> datetime | None:
        self._drop_stale()
        return _time(self._heap[0][0]) if self._heap else None

    def pop_due(self, now: datetime) -> TimerKey | None:
        """The earliest timer due at or before ``now`` (removed), or None."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now.timestamp():
            return None
        _, key = heapq.heappop(self._heap)
        del self._live[key]
        return key

    def cancel_tenant(self, tenant_id: str) -> None:
        for key in [k for k in self._live if k.tenant_id == tenant_id]:
            del self._live[key]

    def __len__(self) -> int:
        return len(self._live)


def _time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
