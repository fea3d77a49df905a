"""Which offsets may be committed while records of a partition finish out of order.

A pipelined consumer hands records to lanes as they are fetched; records of different
lanes finish in any order. A partition's committed offset may only move past records that
are all finished: :class:`InFlight` keeps, per partition, the offsets handed out in order
and answers the end of the finished prefix. A record that will never finish (the loop is
stopping while the broker is away) blocks its partition: nothing at or after it is
committed, so whoever consumes the partition next reads it again.
"""

from __future__ import annotations

from collections import deque

from aiokafka import TopicPartition

__all__ = ["InFlight"]


class InFlight:
    """Offsets handed out and not yet committable, per partition, in the order they were fetched."""

    def __init__(self) -> None:
        self._handed: dict[TopicPartition, deque[int]] = {}
        self._finished: dict[TopicPartition, set[int]] = {}
        self._blocked: set[TopicPartition] = set()
        self._outstanding = 0

    def __len__(self) -> int:
        """Records handed out and not finished yet (blocked ones included)."""
        return self._outstanding

    def add(self, tp: TopicPartition, offset: int) -> None:
        """A record is handed out; offsets of one partition must be added in increasing order."""
        handed = self._handed.setdefault(tp, deque())
        if handed and offset <= handed[-1]:
            raise ValueError(f"offset {offset} of {tp} added after {handed[-1]}")
        handed.append(offset)
        self._outstanding += 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """The record is done (its output enqueued before the next commit's flush)."""
        self._finished.setdefault(tp, set()).add(offset)
        self._outstanding -= 1

    def block(self, tp: TopicPartition) -> None:
        """A record of ``tp`` will not finish: nothing more of ``tp`` becomes committable."""
        self._blocked.add(tp)
        self._outstanding -= 1

    def committable(self) -> dict[TopicPartition, int]:
        """The offset to commit per partition whose finished prefix grew since the last call."""
        offsets: dict[TopicPartition, int] = {}
        for tp, handed in self._handed.items():
            if tp in self._blocked:
                continue
            finished = self._finished.get(tp)
            if not finished:
                continue
            last = None
            while handed and handed[0] in finished:
                last = handed.popleft()
                finished.discard(last)
            if last is not None:
                offsets[tp] = last + 1
        return offsets

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop what is known of ``partitions`` (revoked: whoever owns them next starts from the commit)."""
        for tp in partitions:
            handed = self._handed.pop(tp, None)
            finished = self._finished.pop(tp, set())
            if handed is not None and tp not in self._blocked:
                self._outstanding -= sum(1 for offset in handed if offset not in finished)
            self._blocked.discard(tp)

    def clear(self) -> None:
        """Forget everything (after a failed flush: none of it may be committed)."""
        self._handed.clear()
        self._finished.clear()
        self._blocked.clear()
        self._outstanding = 0
