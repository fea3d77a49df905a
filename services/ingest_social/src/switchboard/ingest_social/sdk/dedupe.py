"""A bounded in-process cache of provider message ids already published (provider retries)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["DedupeCache"]


class DedupeCache:
    """Remembers at most ``max_entries`` keys for ``ttl_seconds`` each (least recently added evicted first).

    Only ids whose publish the broker acknowledged are added, so a request answered 503 is
    not mistaken for a duplicate when the provider retries it. The clock is injected.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        ttl_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: Hashable) -> bool:
        added = self._seen.get(key)
        if added is None:
            return False
        if self._clock() - added > self._ttl:
            del self._seen[key]
            return False
        return True

    def add(self, key: Hashable) -> None:
        self._seen[key] = self._clock()
        self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
