"""The meter's time base: interval grids over local days, daylight saving included.

Readings are energy per metering interval (integer Wh).  Intervals are anchored
at local midnight of the meter's time zone and advance in *elapsed* time, so a
local day holds ``(next local midnight - this local midnight) / interval``
intervals: 96 fifteen-minute intervals on an ordinary day, 92 on the spring
daylight-saving day (the hour 02:00-03:00 does not exist) and 100 on the autumn
day (02:00-03:00 happens twice) in Europe/Berlin.  This is how German load
profiles and market communication count quarter-hours (BDEW/VDE FNN MaBiS:
"Zeitreihen in gesetzlicher Zeit"; VDE-AR-N 4400, metering in 15-minute
periods).

All instants handed out are timezone-aware UTC ``datetime`` objects; local time
only matters for deciding where days begin.  Time-zone rules come from the IANA
database through :mod:`zoneinfo` (PEP 615).
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ALLOWED_INTERVALS",
    "DEFAULT_TZ",
    "UTC",
    "check_interval",
    "check_tz",
    "day_starts",
    "intervals_per_day",
    "local_day_of",
    "local_midnight_utc",
    "range_starts",
    "wallclock_minutes",
    "is_on_grid",
]

ALLOWED_INTERVALS: tuple[int, ...] = (1, 5, 15, 30, 60)
DEFAULT_TZ = "Europe/Berlin"
UTC = dt.UTC


def check_interval(minutes: int) -> int:
    """Validate a metering interval length in minutes and return it.

    Only divisors of an hour that meters and the German market use are accepted
    (``ALLOWED_INTERVALS``); 15 minutes is the BDEW standard load profile
    resolution.  Raises :class:`ValueError` with a one-line message otherwise.
    """
    # bool is an int subclass; True minutes is a bug, not a 1-minute meter.
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise ValueError(f"interval must be an int number of minutes, got {minutes!r}")
    if minutes not in ALLOWED_INTERVALS:
        raise ValueError(f"interval must be one of {ALLOWED_INTERVALS} minutes, got {minutes}")
    return minutes


@lru_cache(maxsize=64)
def _zone_cached(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def _zone(tz: str) -> ZoneInfo:
    # Type check before the cache: lru_cache would raise TypeError on unhashables.
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"time zone must be a non-empty IANA name, got {tz!r}")
    return _zone_cached(tz)


def check_tz(tz: str) -> str:
    """Validate an IANA time-zone name (``zoneinfo``); raise :class:`ValueError` if unknown."""
    _zone(tz)
    return tz


def _check_day(day: dt.date) -> dt.date:
    # datetime is a subclass of date; a datetime here is almost always a mix-up.
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise ValueError(f"day must be a datetime.date, got {type(day).__name__}")
    return day


@lru_cache(maxsize=4096)
def _midnight_utc(day: dt.date, tz: str) -> dt.datetime:
    zone = _zone(tz)
    local = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    # A zone may skip midnight itself (e.g. America/Santiago springs forward at
    # 24:00).  With fold=0 a nonexistent wall time takes the pre-transition
    # offset (PEP 495), which lands exactly on the transition instant, i.e. the
    # first instant of the day that exists.
    return local.astimezone(UTC)


def local_midnight_utc(day: dt.date, tz: str = DEFAULT_TZ) -> dt.datetime:
    """The UTC instant at which local ``day`` begins in ``tz`` (aware, UTC)."""
    return _midnight_utc(_check_day(day), check_tz(tz))


# Bounded: a 1-minute day is 1440 datetimes; 512 days cover a year of simulation.
@lru_cache(maxsize=512)
def _day_grid(day: dt.date, tz: str, interval_minutes: int) -> tuple[dt.datetime, ...]:
    begin = _midnight_utc(day, tz)
    end = _midnight_utc(day + dt.timedelta(days=1), tz)
    step = dt.timedelta(minutes=interval_minutes)
    count, rest = divmod(end - begin, step)
    if rest:
        # e.g. Australia/Lord_Howe shifts by 30 minutes: no 60-minute grid fits.
        raise ValueError(
            f"local day {day} in {tz} lasts {end - begin}, not a multiple of {interval_minutes} min"
        )
    return tuple(begin + k * step for k in range(count))


def day_starts(
    day: dt.date, tz: str = DEFAULT_TZ, interval_minutes: int = 15
) -> list[dt.datetime]:
    """Aware UTC start instants of every interval of local ``day`` in ``tz``.

    The first interval starts at local midnight; the last one ends at the next
    local midnight.  Daylight-saving days therefore have fewer or more
    intervals (92 or 100 at 15 minutes in Europe/Berlin), see module docstring.
    """
    return list(_day_grid(_check_day(day), check_tz(tz), check_interval(interval_minutes)))


def intervals_per_day(
    day: dt.date, tz: str = DEFAULT_TZ, interval_minutes: int = 15
) -> int:
    """Number of intervals in local ``day`` (96 at 15 min, 92/100 on DST change days)."""
    return len(_day_grid(_check_day(day), check_tz(tz), check_interval(interval_minutes)))


def range_starts(
    start: dt.date, days: int, tz: str = DEFAULT_TZ, interval_minutes: int = 15
) -> list[dt.datetime]:
    """Contiguous aware UTC interval starts over ``days`` local days from ``start``."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    out: list[dt.datetime] = []
    for k in range(days):
        out.extend(day_starts(start + dt.timedelta(days=k), tz, interval_minutes))
    return out


def _check_aware(instant: dt.datetime) -> dt.datetime:
    if not isinstance(instant, dt.datetime):
        raise ValueError(f"expected a datetime, got {type(instant).__name__}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"datetime {instant.isoformat()} is naive; an offset or UTC is required")
    return instant


def local_day_of(start_utc: dt.datetime, tz: str = DEFAULT_TZ) -> dt.date:
    """The local calendar day (in ``tz``) that contains the aware instant ``start_utc``."""
    return _check_aware(start_utc).astimezone(_zone(tz)).date()


def wallclock_minutes(start_utc: dt.datetime, tz: str = DEFAULT_TZ) -> int:
    """Local wall-clock minute of the day (0..1439) at the aware instant ``start_utc``.

    Both copies of a repeated autumn hour map to the same wall-clock minutes;
    this is what a wall-clock-based load profile (BDEW SLP) is indexed by.
    """
    local = _check_aware(start_utc).astimezone(_zone(tz))
    return local.hour * 60 + local.minute


def is_on_grid(instant: dt.datetime, tz: str = DEFAULT_TZ, interval_minutes: int = 15) -> bool:
    """Whether ``instant`` is the start of an interval of its local day's grid."""
    check_interval(interval_minutes)
    instant = _check_aware(instant)
    begin = _midnight_utc(local_day_of(instant, tz), tz)
    return (instant - begin) % dt.timedelta(minutes=interval_minutes) == dt.timedelta(0)
