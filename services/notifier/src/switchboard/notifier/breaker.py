"""A circuit breaker per target: open after N consecutive failures, half-open after a cool-down."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Tracks consecutive transient failures per key, on an injected monotonic clock.

    Closed: every call goes through. After ``threshold`` consecutive failures the circuit
    opens: calls are refused (:meth:`allow` is False) for ``cooldown`` seconds. Then it is
    half-open: one probe call goes through; its success closes the circuit, its failure
    opens it for another cool-down.
    """

    def __init__(self, threshold: int = 5, cooldown: float = 30.0, clock: Clock = time.monotonic) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("a circuit breaker needs threshold >= 1 and cooldown > 0")
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, key: str) -> BreakerState:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - circuit.opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, key: str) -> bool:
        """May a call to ``key`` go ahead now? (A half-open circuit lets one probe through.)"""
        state = self.state(key)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        circuit = self._circuits[key]
        if circuit.probing:
            return False
        circuit.probing = True
        return True

    def retry_in(self, key: str) -> float:
        """Seconds until an open circuit turns half-open (0 when not open)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return 0.0
        return max(0.0, circuit.opened_at + self._cooldown - self._clock())

    def record_success(self, key: str) -> None:
        self._circuits.pop(key, None)

    def record_failure(self, key: str) -> None:
        circuit = self._circuits.setdefault(key, _Circuit())
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self._threshold:
            circuit.opened_at = self._clock()
            circuit.probing = False

    def release(self, key: str) -> None:
        """Forget a probe that ended without a verdict (a permanent, not a transient, failure)."""
        circuit = self._circuits.get(key)
        if circuit is not None:
            circuit.probing = False
