"""Business-hours arithmetic: add business time to an instant, business time between instants.

A :class:`BusinessCalendar` turns a :class:`~switchboard.router.rules.BusinessHours` into
absolute open intervals. Local times are converted with :mod:`zoneinfo`, so business
time is real elapsed time inside the open local hours: in Europe/Berlin an interval
01:00-04:00 lasts two real hours on the spring-forward day (02:00-03:00 does not exist)
and four on the fall-back day (02:00-03:00 happens twice and the office is open through
both). A boundary inside a skipped hour maps forward (02:30 becomes 03:30); a boundary in
a repeated hour is its first occurrence. Instants passed in must be timezone-aware;
results are in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from switchboard.router.rules import BusinessHours

__all__ = ["AlwaysOpen", "BusinessCalendar", "Calendar"]

_ZERO = timedelta(0)
_MAX_CLOSED_DAYS = 3 * 366
"""A calendar with no open interval in this many consecutive days is treated as never open."""


class Calendar(Protocol):
    """Business time: what SLA clocks count."""

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The instant when ``amount`` of business time has elapsed after ``start``."""
        ...

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time in ``[start, end)``; zero when ``end`` is not after ``start``."""
        ...


class AlwaysOpen:
    """The 24x7 calendar: business time is wall-clock time."""

    def add(self, start: datetime, amount: timedelta) -> datetime:
        _check_aware(start)
        return (start + amount).astimezone(UTC)

    def between(self, start: datetime, end: datetime) -> timedelta:
        _check_aware(start)
        _check_aware(end)
        return max(end - start, _ZERO)


def _check_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("business-hours arithmetic needs timezone-aware datetimes")


class BusinessCalendar:
    """Open intervals per weekday in an IANA time zone, closed on holidays."""

    def __init__(self, hours: BusinessHours) -> None:
        self._hours = hours
        self._zone = hours.zone

    def _local_instant(self, day: date, minute: int) -> datetime:
        # naive wall-clock arithmetic, then the zone: fold=0 picks the first of a repeated
        # hour, and a time in a skipped hour keeps the earlier offset, which maps it forward
        wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
        return wall.replace(tzinfo=self._zone).astimezone(UTC)

    def intervals(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) that end after ``since``, in order, clipped to start at ``since``."""
        _check_aware(since)
        since = since.astimezone(UTC)
        day = since.astimezone(self._zone).date() - timedelta(days=1)
        closed_days = 0
        while True:
            spans = self._hours.intervals_on(day)
            if spans:
                closed_days = 0
            else:
                closed_days += 1
                if closed_days > _MAX_CLOSED_DAYS:
                    raise ValueError("the calendar has no open hours in three years")
            for start_minute, end_minute in spans:
                start = self._local_instant(day, start_minute)
                end = self._local_instant(day, end_minute)
                if end <= since or end <= start:
                    continue
                yield max(start, since), end
            day += timedelta(days=1)

    def is_open(self, at: datetime) -> bool:
        first = next(self.intervals(at))
        return first[0] <= at.astimezone(UTC)

    def add(self, start: datetime, amount: timedelta) -> datetime:
        if amount < _ZERO:
            raise ValueError("cannot add negative business time")
        _check_aware(start)
        if amount == _ZERO:
            return start.astimezone(UTC)
        remaining = amount
        for open_at, close_at in self.intervals(start):
            span = close_at - open_at
            if remaining <= span:
                return open_at + remaining
            remaining -= span
        raise AssertionError("unreachable: intervals() is infinite or raises")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> timedelta:
        _check_aware(start)
        _check_aware(end)
        if end <= start:
            return _ZERO
        total = _ZERO
        end = end.astimezone(UTC)
        for open_at, close_at in self.intervals(start):
            if open_at >= end:
                break
            total += min(close_at, end) - open_at
        return total
