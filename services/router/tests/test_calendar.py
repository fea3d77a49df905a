from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.router.calendar import AlwaysOpen, BusinessCalendar
from switchboard.router.rules import BusinessHours

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def office(zone: str = "Europe/Berlin", holidays: tuple[date, ...] = ()) -> BusinessCalendar:
    hours = dict.fromkeys(WEEKDAYS, ("09:00-12:00", "13:00-17:00"))
    return BusinessCalendar(
        BusinessHours.model_validate({"timezone": zone, "hours": hours, "holidays": list(holidays)})
    )


def every_day(interval: str, zone: str = "Europe/Berlin") -> BusinessCalendar:
    days = (*WEEKDAYS, "sat", "sun")
    return BusinessCalendar(BusinessHours.model_validate({"timezone": zone, "hours": dict.fromkeys(days, (interval,))}))


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


H = timedelta(hours=1)
M = timedelta(minutes=1)

# Monday 2026-11-23 is an ordinary working week in Berlin.


def test_add_within_an_interval() -> None:
    assert office().add(berlin(2026, 11, 23, 9, 30), 2 * H) == berlin(2026, 11, 23, 11, 30)


def test_add_skips_the_lunch_break() -> None:
    assert office().add(berlin(2026, 11, 23, 11, 0), 2 * H) == berlin(2026, 11, 23, 14, 0)


def test_add_ending_exactly_at_closing_stays_on_that_day() -> None:
    assert office().add(berlin(2026, 11, 23, 16, 0), H) == berlin(2026, 11, 23, 17, 0)


def test_add_rolls_over_to_the_next_day() -> None:
    assert office().add(berlin(2026, 11, 23, 16, 0), 2 * H) == berlin(2026, 11, 24, 10, 0)


def test_add_from_a_closed_time_starts_at_the_next_opening() -> None:
    assert office().add(berlin(2026, 11, 23, 6, 0), 30 * M) == berlin(2026, 11, 23, 9, 30)
    assert office().add(berlin(2026, 11, 23, 12, 15), 30 * M) == berlin(2026, 11, 23, 13, 30)
    assert office().add(berlin(2026, 11, 23, 20, 0), 30 * M) == berlin(2026, 11, 24, 9, 30)


def test_add_over_the_weekend() -> None:
    friday = berlin(2026, 11, 27, 16, 0)
    assert office().add(friday, 2 * H) == berlin(2026, 11, 30, 10, 0)
    saturday = berlin(2026, 11, 28, 11, 0)
    assert office().add(saturday, H) == berlin(2026, 11, 30, 10, 0)


def test_add_over_holidays() -> None:
    cal = office(holidays=(date(2026, 12, 24), date(2026, 12, 25)))
    # Wednesday 23rd 16:00 + 2h: 1h on the 23rd, then Thu 24 and Fri 25 closed, weekend, Monday 28th
    assert cal.add(berlin(2026, 12, 23, 16, 0), 2 * H) == berlin(2026, 12, 28, 10, 0)


def test_add_a_whole_week() -> None:
    # a working day holds 7 business hours; 35 hours is exactly one week
    assert office().add(berlin(2026, 11, 23, 9, 0), 35 * H) == berlin(2026, 11, 27, 17, 0)
    assert office().add(berlin(2026, 11, 23, 9, 0), 35 * H + M) == berlin(2026, 11, 30, 9, 1)


def test_add_zero_is_the_start_and_negative_is_refused() -> None:
    start = berlin(2026, 11, 28, 3, 0)
    assert office().add(start, timedelta(0)) == start
    with pytest.raises(ValueError, match="negative"):
        office().add(start, -M)


def test_between_counts_only_open_hours() -> None:
    cal = office(holidays=(date(2026, 12, 25),))
    assert cal.between(berlin(2026, 11, 23, 8, 0), berlin(2026, 11, 23, 18, 0)) == 7 * H
    assert cal.between(berlin(2026, 11, 23, 11, 30), berlin(2026, 11, 23, 13, 30)) == H
    assert cal.between(berlin(2026, 11, 27, 16, 0), berlin(2026, 11, 30, 10, 0)) == 2 * H
    assert cal.between(berlin(2026, 12, 24, 16, 0), berlin(2026, 12, 28, 10, 0)) == 2 * H
    assert cal.between(berlin(2026, 11, 28, 0, 0), berlin(2026, 11, 29, 23, 0)) == timedelta(0)
    assert cal.between(berlin(2026, 11, 23, 12, 0), berlin(2026, 11, 23, 10, 0)) == timedelta(0)


def test_results_are_utc_and_inputs_in_other_zones_are_equivalent() -> None:
    start_utc = berlin(2026, 11, 23, 9, 30).astimezone(UTC)
    result = office().add(start_utc, H)
    assert result.tzinfo is UTC
    assert result == berlin(2026, 11, 23, 10, 30)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        office().add(datetime(2026, 11, 23, 9, 0), H)
    with pytest.raises(ValueError, match="timezone-aware"):
        AlwaysOpen().between(datetime(2026, 11, 23, 9, 0), datetime(2026, 11, 23, 10, 0))


def test_spring_forward_day_is_23_hours_long() -> None:
    cal = every_day("00:00-24:00")
    assert cal.between(berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 30, 0, 0)) == 23 * H
    assert cal.add(berlin(2026, 3, 29, 1, 0), 2 * H) == berlin(2026, 3, 29, 4, 0)


def test_fall_back_day_is_25_hours_long() -> None:
    cal = every_day("00:00-24:00")
    assert cal.between(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 26, 0, 0)) == 25 * H
    # 01:00 + 2h of real time is the second 02:00 (CET), which is 01:00 UTC
    assert cal.add(berlin(2026, 10, 25, 1, 0), 2 * H) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)


def test_interval_across_the_skipped_and_repeated_hours() -> None:
    cal = every_day("01:00-04:00")
    spring = cal.between(berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 29, 12, 0))
    fall = cal.between(berlin(2026, 10, 25, 0, 0), berlin(2026, 10, 25, 12, 0))
    ordinary = cal.between(berlin(2026, 3, 28, 0, 0), berlin(2026, 3, 28, 12, 0))
    assert (spring, fall, ordinary) == (2 * H, 4 * H, 3 * H)


def test_interval_starting_inside_the_skipped_hour_maps_forward() -> None:
    cal = every_day("02:30-05:00")
    assert cal.add(berlin(2026, 3, 29, 0, 0), M) == berlin(2026, 3, 29, 3, 31)
    assert cal.between(berlin(2026, 3, 29, 0, 0), berlin(2026, 3, 29, 12, 0)) == 90 * M


def test_office_hours_keep_local_time_across_dst_in_new_york() -> None:
    cal = office("America/New_York")
    # Friday 2026-03-06 16:00 EST + 2h: Monday 2026-03-09 10:00 EDT (DST began Sunday the 8th)
    friday = datetime(2026, 3, 6, 16, 0, tzinfo=NEW_YORK)
    result = cal.add(friday, 2 * H)
    assert result == datetime(2026, 3, 9, 10, 0, tzinfo=NEW_YORK)
    assert result == datetime(2026, 3, 9, 14, 0, tzinfo=UTC)
    assert cal.between(friday, result) == 2 * H


def test_always_open_is_wall_clock() -> None:
    cal = AlwaysOpen()
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    assert cal.add(start, 5 * H) == start + 5 * H
    assert cal.between(start, start + 5 * H) == 5 * H
    assert cal.between(start + H, start) == timedelta(0)


def test_a_calendar_closed_for_years_is_an_error() -> None:
    hours = BusinessHours.model_validate(
        {
            "timezone": "UTC",
            "hours": {"mon": ["09:00-10:00"]},
            "holidays": [date(2027, 1, 4) + timedelta(weeks=w) for w in range(200)],
        }
    )
    with pytest.raises(ValueError, match="no open hours"):
        BusinessCalendar(hours).add(datetime(2027, 1, 1, tzinfo=UTC), H)


@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    minutes=st.integers(min_value=0, max_value=60 * 24 * 20),
)
def test_between_inverts_add(start: datetime, minutes: int) -> None:
    cal = office(holidays=(date(2026, 12, 25), date(2027, 1, 1)))
    amount = timedelta(minutes=minutes)
    end = cal.add(start, amount)
    assert end >= start
    assert cal.between(start, end) == amount


@given(
    a=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)),
    b=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)),
    c=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)),
)
def test_between_is_additive(a: datetime, b: datetime, c: datetime) -> None:
    a, b, c = sorted((a, b, c))
    cal = every_day("07:30-19:15")
    assert cal.between(a, c) == cal.between(a, b) + cal.between(b, c)
