"""The BDEW standard load profiles (SLP) on the meter's interval grid, daylight saving included.

The profiles are published reference data (BDEW "Standardlastprofile Strom", computed here
with demandlib's ``ElecSlp``) that a supplier uses to forecast an unmetered customer. Both the
tariff side (:mod:`meterhub.tariffs.profiles`, signed reference series) and the meter's load
simulator (:mod:`meterhub.meter.load`) need them, so they live here, below the parties
(docs/architecture.md, "Layers").  Quarter-hour values are spread over shorter intervals by
step interpolation (an equal share of the quarter hour) and summed for longer ones; each local
year is normalised over its actual quarter hours.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import threading
import warnings
from functools import lru_cache

import numpy as np

from ..model.holidays import german_holidays
from ..model.timebase import DEFAULT_TZ, _day_grid, check_interval, check_tz, wallclock_minutes

__all__ = [
    "BUSINESS_PROFILES",
    "HOUSEHOLD_PROFILES",
    "PROFILES",
    "bdew_profile_wh",
]

HOUSEHOLD_PROFILES: tuple[str, ...] = ("h0", "h0_dyn")
BUSINESS_PROFILES: tuple[str, ...] = (
    "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2",
)
PROFILES: tuple[str, ...] = HOUSEHOLD_PROFILES + BUSINESS_PROFILES

_MIN_YEAR, _MAX_YEAR = 1970, 2200
_SLOTS_PER_DAY = 96  # BDEW quarter hours
_ELECSLP_LOCK = threading.Lock()


# --------------------------------------------------------------------------
# BDEW profile, cached per year


@lru_cache(maxsize=8)
def _year_slots(year: int) -> dict[str, np.ndarray]:
    """All ElecSlp profiles of ``year`` as read-only (days, 96) arrays summing to 1."""
    from demandlib import bdew  # heavy import (pandas), only when first needed

    # ElecSlp calls warnings.simplefilter("error") globally; keep that local.
    # catch_warnings is process-global state, hence the lock for threaded callers.
    with _ELECSLP_LOCK, warnings.catch_warnings():
        slp = bdew.ElecSlp(year, holidays=sorted(german_holidays(year)))
        frame = slp.get_profiles(*PROFILES)
    ndays = 366 if calendar.isleap(year) else 365
    out: dict[str, np.ndarray] = {}
    for name in PROFILES:
        arr = frame[name].to_numpy(dtype=np.float64).reshape(ndays, _SLOTS_PER_DAY).copy()
        arr.setflags(write=False)
        out[name] = arr
    return out


@lru_cache(maxsize=512)
def _day_wall(day: dt.date, tz: str, interval_minutes: int) -> np.ndarray:
    """Local wall-clock minute (0..1439) of each interval start of ``day``."""
    starts = _day_grid(day, tz, interval_minutes)
    arr = np.fromiter((wallclock_minutes(s, tz) for s in starts), dtype=np.int64, count=len(starts))
    arr.setflags(write=False)
    return arr


def _raw_day_weights(day: dt.date, profile: str, tz: str, interval_minutes: int) -> np.ndarray:
    slots = _year_slots(day.year)[profile][day.timetuple().tm_yday - 1]
    first = np.minimum(_day_wall(day, tz, interval_minutes) // 15, _SLOTS_PER_DAY - 1)
    if interval_minutes <= 15:
        # Step interpolation: equal share of the quarter hour (see module doc).
        return slots[first] * (interval_minutes / 15.0)
    per = interval_minutes // 15
    idx = np.minimum(first[:, None] + np.arange(per)[None, :], _SLOTS_PER_DAY - 1)
    return slots[idx].sum(axis=1)


@lru_cache(maxsize=64)
def _year_norm(year: int, profile: str, tz: str) -> float:
    """1 / (profile mass over the local year's actual quarter hours, DST included)."""
    total = 0.0
    day = dt.date(year, 1, 1)
    while day.year == year:
        total += float(_raw_day_weights(day, profile, tz, 15).sum())
        day += dt.timedelta(days=1)
    return 1.0 / total


@lru_cache(maxsize=2048)
def _day_weights(day: dt.date, profile: str, tz: str, interval_minutes: int) -> np.ndarray:
    """Share of the annual energy in each interval of ``day`` (read-only)."""
    w = _raw_day_weights(day, profile, tz, interval_minutes) * _year_norm(day.year, profile, tz)
    w.setflags(write=False)
    return w


# --------------------------------------------------------------------------
# Argument checks (one-line ValueErrors)


def _check_common(
    start: dt.date, days: int, profile: str, interval_minutes: int, tz: str
) -> str:
    if not isinstance(start, dt.date) or isinstance(start, dt.datetime):
        raise ValueError(f"start must be a datetime.date, got {type(start).__name__}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    try:
        last_year = (start + dt.timedelta(days=days - 1)).year
    except OverflowError:
        last_year = _MAX_YEAR + 1
    if start.year < _MIN_YEAR or last_year > _MAX_YEAR:
        raise ValueError(f"simulated days must lie in years {_MIN_YEAR}..{_MAX_YEAR}")
    if not isinstance(profile, str) or profile.lower() not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    check_interval(interval_minutes)
    check_tz(tz)
    return profile.lower()


def _check_annual(annual_kwh: float) -> float:
    try:
        value = float(annual_kwh)
    except (TypeError, ValueError):
        raise ValueError(f"annual_kwh must be a number, got {annual_kwh!r}") from None
    if not math.isfinite(value) or not 0.0 < value <= 1e8:
        raise ValueError(f"annual_kwh must be in (0, 1e8], got {annual_kwh!r}")
    return value


def bdew_profile_wh(
    start: dt.date,
    days: int,
    *,
    annual_kwh: float = 3500.0,
    profile: str = "h0",
    interval_minutes: int = 15,
    tz: str = DEFAULT_TZ,
) -> list[float]:
    """Expected energy (Wh, float) per interval from the scaled BDEW profile alone.

    No behaviour overlay: this is the standard load profile a supplier uses to
    forecast an unmetered customer (BDEW SLP procedure), on the same interval
    grid as :func:`simulate_load`.
    """
    profile = _check_common(start, days, profile, interval_minutes, tz)
    energy = _check_annual(annual_kwh) * 1000.0
    out: list[float] = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        out.extend((_day_weights(day, profile, tz, interval_minutes) * energy).tolist())
    return out
