"""What one delivery attempt to one endpoint came to."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutcomeKind(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    """A transient failure (a timeout, a 5xx, a 429): worth trying again."""
    FAILED = "failed"
    """A permanent failure (a 4xx, a refused address, a bad target): trying again cannot help."""


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    kind: OutcomeKind
    external_ref: str | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (``Retry-After``), if it did."""

    @classmethod
    def delivered(cls, external_ref: str | None = None) -> DeliveryOutcome:
        if external_ref is None:
            return _DELIVERED  # immutable, so one instance serves every plain delivery
        return cls(OutcomeKind.DELIVERED, external_ref=external_ref)

    @classmethod
    def retry(cls, error: str, retry_after: float | None = None) -> DeliveryOutcome:
        return cls(OutcomeKind.RETRY, error=error, retry_after=retry_after)

    @classmethod
    def failed(cls, error: str) -> DeliveryOutcome:
        return cls(OutcomeKind.FAILED, error=error)

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.DELIVERED

    @property
    def retryable(self) -> bool:
        return self.kind is OutcomeKind.RETRY


_DELIVERED = DeliveryOutcome(OutcomeKind.DELIVERED)


def outcome_for_http_status(status: int, retry_after: str | None, what: str) -> DeliveryOutcome:
    """Classify an HTTP answer: 2xx delivered, 408/425/429/5xx retried, any other 4xx permanent."""
    if 200 <= status < 300:
        return DeliveryOutcome.delivered()
    error = f"{what} answered HTTP {status}"
    if status in (408, 425, 429) or status >= 500:
        return DeliveryOutcome.retry(error, parse_retry_after(retry_after) if status in (429, 503) else None)
    return DeliveryOutcome.failed(error)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delay-seconds form; ``None`` for anything else.

    The HTTP-date form is not used by Slack, Teams or the helpdesks we target; it is ignored
    (the backoff applies) rather than guessed.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds
