"""Retry decisions: exponential backoff with full jitter, ``Retry-After`` honoured.

:class:`RetryPolicy` is pure configuration and arithmetic; :func:`retrying` runs an
attempt function under tenacity with an injected ``sleep`` so tests never wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from switchboard.notifier.outcome import DeliveryOutcome

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` tries in all; before try *n+1* wait ``uniform(0, min(cap, base * 2**(n-1)))``.

    A receiver's ``Retry-After`` replaces the jittered wait (capped at ``max_retry_after``,
    beyond which the receiver is treated as gone for this dispatch and the attempt fails).
    """

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs base > 0 and cap >= base")

    def backoff_ceiling(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.cap, self.base * 2.0 ** max(0, attempt - 1)))

    def delay(self, attempt: int, outcome: DeliveryOutcome) -> float:
        """How long to wait after failed attempt ``attempt`` with ``outcome``."""
        if outcome.retry_after is not None:
            return min(outcome.retry_after, self.max_retry_after)
        return self.rng.uniform(0.0, self.backoff_ceiling(attempt))

    def gives_up(self, attempt: int, outcome: DeliveryOutcome) -> bool:
        """True when ``outcome`` of attempt ``attempt`` is final."""
        if not outcome.retryable or attempt >= self.max_attempts:
            return True
        return outcome.retry_after is not None and outcome.retry_after > self.max_retry_after


@dataclass(frozen=True, slots=True)
class Attempted:
    outcome: DeliveryOutcome
    attempts: int


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[DeliveryOutcome]],
    sleep: Sleep,
    *,
    first: DeliveryOutcome | None = None,
) -> Attempted:
    """Call ``attempt`` until it delivers, fails for good, or the policy gives up.

    The first try is a plain call (the common case costs nothing extra); the retries after
    it run under tenacity with the policy's stop and wait decisions. A caller that made the
    first try itself passes its outcome as ``first``.
    """
    if first is None:
        first = await attempt()
    if policy.gives_up(1, first):
        return Attempted(first, 1)
    await sleep(policy.delay(1, first))

    # tenacity numbers its tries from 1; they are this dispatch's tries 2, 3, ...
    def stop(state: RetryCallState) -> bool:
        assert state.outcome is not None
        return policy.gives_up(state.attempt_number + 1, state.outcome.result())

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        return policy.delay(state.attempt_number + 1, state.outcome.result())

    last = first
    attempts = 1
    async for try_ in AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_result(lambda o: o.retryable),
        sleep=sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        reraise=True,
    ):
        with try_:
            attempts = try_.retry_state.attempt_number + 1
            last = await attempt()
        if try_.retry_state.outcome is not None and not try_.retry_state.outcome.failed:
            try_.retry_state.set_result(last)
    return Attempted(last, attempts)
