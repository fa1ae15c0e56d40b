"""Tests for meterhub.model.timebase: interval grids over local days with DST."""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.model.timebase import (
    ALLOWED_INTERVALS,
    DEFAULT_TZ,
    check_interval,
    check_tz,
    day_starts,
    intervals_per_day,
    is_on_grid,
    local_day_of,
    local_midnight_utc,
    range_starts,
    wallclock_minutes,
)

BERLIN = ZoneInfo("Europe/Berlin")


def last_sunday(year: int, month: int) -> dt.date:
    """Last Sunday of a month, computed with the calendar module (EU DST rule, Directive 2000/84/EC)."""
    last = calendar.monthrange(year, month)[1]
    day = dt.date(year, month, last)
    return day - dt.timedelta(days=(day.weekday() - calendar.SUNDAY) % 7)


def test_constants() -> None:
    assert ALLOWED_INTERVALS == (1, 5, 15, 30, 60)
    assert DEFAULT_TZ == "Europe/Berlin"


@pytest.mark.parametrize("minutes", ALLOWED_INTERVALS)
def test_check_interval_accepts(minutes: int) -> None:
    assert check_interval(minutes) == minutes


@pytest.mark.parametrize("minutes", [0, -15, 2, 10, 20, 45, 120, True, 15.0, "15", None])
def test_check_interval_rejects(minutes: object) -> None:
    with pytest.raises(ValueError) as info:
        check_interval(minutes)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("year", range(2020, 2031))
def test_dst_days_at_15_minutes(year: int) -> None:
    spring, autumn = last_sunday(year, 3), last_sunday(year, 10)
    assert intervals_per_day(spring, "Europe/Berlin", 15) == 92
    assert intervals_per_day(autumn, "Europe/Berlin", 15) == 100
    assert intervals_per_day(spring - dt.timedelta(days=1), "Europe/Berlin", 15) == 96
    assert intervals_per_day(autumn + dt.timedelta(days=1), "Europe/Berlin", 15) == 96


@pytest.mark.parametrize("minutes", ALLOWED_INTERVALS)
def test_counts_for_each_interval(minutes: int) -> None:
    year = 2025
    spring, autumn = last_sunday(year, 3), last_sunday(year, 10)
    assert intervals_per_day(spring, DEFAULT_TZ, minutes) == 23 * 60 // minutes
    assert intervals_per_day(autumn, DEFAULT_TZ, minutes) == 25 * 60 // minutes
    assert intervals_per_day(dt.date(year, 6, 1), DEFAULT_TZ, minutes) == 24 * 60 // minutes
    # A whole year: one hour lost and one regained.
    total = sum(
        intervals_per_day(dt.date(year, 1, 1) + dt.timedelta(days=k), DEFAULT_TZ, minutes)
        for k in range(365)
    )
    assert total == 365 * 24 * 60 // minutes


def test_spring_day_skips_two_oclock_and_autumn_repeats_it() -> None:
    spring, autumn = last_sunday(2025, 3), last_sunday(2025, 10)
    spring_local = [s.astimezone(BERLIN) for s in day_starts(spring)]
    assert not any(t.hour == 2 for t in spring_local)
    autumn_local = [s.astimezone(BERLIN) for s in day_starts(autumn)]
    two = [t for t in autumn_local if t.hour == 2]
    assert len(two) == 8
    assert sorted({t.utcoffset() for t in two}) == [dt.timedelta(hours=1), dt.timedelta(hours=2)]
    assert [wallclock_minutes(s) for s in day_starts(autumn)].count(120) == 2


def test_day_starts_are_contiguous_utc_and_start_at_local_midnight() -> None:
    day = last_sunday(2024, 10)
    starts = day_starts(day, DEFAULT_TZ, 15)
    assert all(s.tzinfo is dt.UTC for s in starts)
    assert starts[0] == dt.datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(dt.UTC)
    assert starts[0] == local_midnight_utc(day)
    assert all(b - a == dt.timedelta(minutes=15) for a, b in zip(starts, starts[1:], strict=False))
    nxt = day_starts(day + dt.timedelta(days=1))
    assert starts[-1] + dt.timedelta(minutes=15) == nxt[0]
    assert {local_day_of(s) for s in starts} == {day}


def test_range_starts_concatenates_days() -> None:
    start = dt.date(2025, 3, 29)
    starts = range_starts(start, 3, DEFAULT_TZ, 30)
    assert len(starts) == sum(intervals_per_day(start + dt.timedelta(days=k), DEFAULT_TZ, 30) for k in range(3))
    assert all(b - a == dt.timedelta(minutes=30) for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError):
        range_starts(start, 0)


def test_other_zones() -> None:
    # Lord Howe Island shifts by 30 minutes: 94/98 quarter hours, no hourly grid.
    spring = dt.date(2025, 10, 5)
    assert intervals_per_day(spring, "Australia/Lord_Howe", 15) == (24 * 60 - 30) // 15
    with pytest.raises(ValueError, match="not a multiple"):
        day_starts(spring, "Australia/Lord_Howe", 60)
    # No DST at all.
    assert intervals_per_day(last_sunday(2025, 3), "Asia/Kolkata", 15) == 96
    # Santiago springs forward at midnight: the day starts at 01:00 local.
    first = day_starts(dt.date(2025, 9, 7), "America/Santiago", 60)[0]
    assert first.astimezone(ZoneInfo("America/Santiago")).hour == 1
    assert intervals_per_day(dt.date(2025, 9, 7), "America/Santiago", 60) == 23


@pytest.mark.parametrize("bad", ["", "Mars/Olympus", "../etc/passwd", None, 5, ["UTC"]])
def test_bad_time_zones(bad: object) -> None:
    with pytest.raises(ValueError):
        check_tz(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        day_starts(dt.date(2025, 1, 1), bad)  # type: ignore[arg-type]


def test_bad_days_and_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        day_starts(dt.datetime(2025, 1, 1))  # a datetime is not a day
    with pytest.raises(ValueError):
        day_starts("2025-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        local_day_of(dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        is_on_grid(dt.datetime(2025, 1, 1))


def test_local_day_of_near_midnight() -> None:
    # 23:30 UTC on 31 Dec is already 1 January in Berlin.
    assert local_day_of(dt.datetime(2024, 12, 31, 23, 30, tzinfo=dt.UTC)) == dt.date(2025, 1, 1)
    assert local_day_of(dt.datetime(2024, 12, 31, 23, 30, tzinfo=dt.UTC), "UTC") == dt.date(2024, 12, 31)


ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "Asia/Kolkata", "UTC",
         "America/Santiago", "Asia/Kathmandu"]


@settings(max_examples=150, deadline=None)
@given(
    day=st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(2199, 12, 31)),
    tz=st.sampled_from(ZONES),
    minutes=st.sampled_from(ALLOWED_INTERVALS),
)
def test_grid_properties(day: dt.date, tz: str, minutes: int) -> None:
    zone = ZoneInfo(tz)
    starts = day_starts(day, tz, minutes)
    begin = local_midnight_utc(day, tz)
    end = local_midnight_utc(day + dt.timedelta(days=1), tz)
    step = dt.timedelta(minutes=minutes)
    assert len(starts) == (end - begin) // step == intervals_per_day(day, tz, minutes)
    assert starts[0] == begin and starts[-1] + step == end
    assert all(b - a == step for a, b in zip(starts, starts[1:], strict=False))
    assert all(s.astimezone(zone).date() == day for s in starts)
    assert all(is_on_grid(s, tz, minutes) for s in starts)
    off = dt.timedelta(seconds=30) if minutes == 1 else dt.timedelta(minutes=1)
    assert not is_on_grid(starts[0] + off, tz, minutes)
