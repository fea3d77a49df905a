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
    small: one flat tuple ``(due, kind, tenant_id, entity_id)`` (72 bytes, where a
    ``(due, TimerKey)`` pair held two tuples, 128), with the due time as a POSIX timestamp
    (a float is 24 bytes, a datetime 48; the round trip is exact to the microsecond for any
    time of this era). Timers due at the same instant pop in key order.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[tuple[TimerKind, str], dict[str, _Entry]] = {}
        """Per (kind, tenant), per entity id, its current heap entry (the very tuple in the
        heap: nothing held twice, and no key tuple per timer)."""

    def schedule(self, key: TimerKey, due: datetime) -> None:
        kind, tenant_id, entity_id = key
        entry = (due.timestamp(), kind, tenant_id, entity_id)
        group = self._live.get((kind, tenant_id))
        if group is None:
            group = self._live[(kind, tenant_id)] = {}
        group[entity_id] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, key: TimerKey) -> None:
        group = self._live.get((key[0], key[1]))
        if group is not None:
            group.pop(key[2], None)

    def _entry(self, kind: TimerKind, tenant_id: str, entity_id: str) -> _Entry | None:
        group = self._live.get((kind, tenant_id))
        return group.get(entity_id) if group is not None else None

    def due_at(self, key: TimerKey) -> datetime | None:
        entry = self._entry(*key)
        return _time(entry[0]) if entry is not None else None

    def _drop_stale(self) -> None:
        while self._heap:
            entry = self._heap[0]
            if self._entry(entry[1], entry[2], entry[3]) is entry:
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
        _, kind, tenant_id, entity_id = heapq.heappop(self._heap)
        del self._live[(kind, tenant_id)][entity_id]
        return TimerKey(kind, tenant_id, entity_id)

    def cancel_tenant(self, tenant_id: str) -> None:
        for group in [g for g in self._live if g[1] == tenant_id]:
            del self._live[group]

    def __len__(self) -> int:
        return sum(map(len, self._live.values()))


_Entry = tuple[float, TimerKind, str, str]
"""A heap entry: due (POSIX timestamp), kind, tenant id, entity id."""


def _time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
