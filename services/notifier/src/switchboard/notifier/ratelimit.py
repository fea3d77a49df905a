"""A token bucket per target (for example about one Slack post per second per channel)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from switchboard.notifier.sink import RateLimit

Clock = Callable[[], float]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Reservations against per-key token buckets, on an injected monotonic clock.

    :meth:`reserve` takes a token now and returns how long the caller must wait before
    using it (0 when one was available). Reservations queue fairly: the n-th caller in a
    burst waits n/rate seconds. Idle, full buckets are dropped to bound memory.
    """

    def __init__(self, clock: Clock = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    def reserve(self, key: str, limit: RateLimit) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._prune(now, limit)
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(limit.burst, bucket.tokens + elapsed * limit.rate)
            bucket.updated = now
        bucket.tokens -= 1.0
        if bucket.tokens >= 0:
            return 0.0
        return -bucket.tokens / limit.rate

    def _prune(self, now: float, limit: RateLimit) -> None:
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * limit.rate >= limit.burst]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)
