"""Simulated consumption: BDEW standard load profiles plus a seeded behaviour model.

The expected energy per interval comes from the BDEW standard load profiles
(VDEW/BDEW "Repräsentative VDEW-Lastprofile", 1999; H0 households, G0..G6
businesses, L0..L2 farms) as implemented by ``demandlib.bdew.ElecSlp``
(demandlib 0.2.2).  ElecSlp returns each profile normalised to 1 over a year of
15-minute slots in local wall-clock time, with public holidays treated as
Sundays.  We index it by local wall-clock time, so on the spring daylight-saving
day the 02:00-03:00 slots are skipped and on the autumn day they are used
twice, then renormalise so the local year sums to exactly ``annual_kwh``.

Resolution: the SLP is a step function (constant power per quarter hour, the
reading the BDEW and demandlib's 2025 profiles give it), so 1- and 5-minute
intervals receive equal shares of their quarter hour (energy is conserved
exactly; no smoothing is invented), and 30/60-minute intervals sum their
quarter hours.

On top of the expectation a seeded stochastic model adds behaviour.  For
households (``h0``, ``h0_dyn``): residents who sleep, leave for work or
outings, and run appliances (cooking, laundry, dryer, dishwasher, electric
heating).  Each local day's energy is the profile's energy for that day: an
always-on base load plus the appliance events, and the rest ("activity":
lighting, media, IT, small appliances) is laid over the profile shape weighted
by who is at home and awake.  Nobody at home means base load only, so
occupancy truly leaks through the readings, which is what the privacy tests
need.  For businesses and farms the overlay is simpler: opening hours (ground
truth only; the profile already has their shape), a random day-level factor and
per-interval noise.

Determinism: every random draw comes from a ``numpy.random.Generator`` seeded
from ``(seed, household_id)`` for household parameters and
``(seed, household_id, day)`` for each day, so the same household and day
always read the same, whatever window is simulated.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import hashlib
import math
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..holidays import easter_sunday, german_holidays
from .timebase import (
    DEFAULT_TZ,
    _day_grid,
    check_interval,
    check_tz,
    local_day_of,
    local_midnight_utc,
    wallclock_minutes,
)

__all__ = [
    "HOUSEHOLD_PROFILES",
    "BUSINESS_PROFILES",
    "PROFILES",
    "APPLIANCES",
    "ApplianceEvent",
    "LoadTrace",
    "german_holidays",
    "easter_sunday",
    "bdew_profile_wh",
    "simulate_load",
    "simulate_neighbourhood",
]

HOUSEHOLD_PROFILES: tuple[str, ...] = ("h0", "h0_dyn")
BUSINESS_PROFILES: tuple[str, ...] = (
    "g0", "g1", "g2", "g3", "g4", "g5", "g6", "l0", "l1", "l2",
)
PROFILES: tuple[str, ...] = HOUSEHOLD_PROFILES + BUSINESS_PROFILES
APPLIANCES: tuple[str, ...] = ("cooking", "laundry", "dryer", "dishwasher", "heating")

_MIN_YEAR, _MAX_YEAR = 1970, 2200
_SLOTS_PER_DAY = 96  # BDEW quarter hours
_ELECSLP_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class ApplianceEvent:
    """One appliance run (ground truth).

    ``start_index`` and ``end_index`` index the trace's intervals; the end is
    exclusive (Python slice convention), so the run covers
    ``readings_wh[start_index:end_index]``.  ``energy_wh`` is the run's energy,
    spread evenly over those intervals and included in the readings.
    """

    appliance: str
    start_index: int
    end_index: int
    energy_wh: int


@dataclass
class LoadTrace:
    """Readings of one meter over whole local days, with the model's ground truth.

    ``starts`` are aware UTC interval starts, contiguous over the simulated
    days; ``readings_wh[i]`` is the energy (integer Wh) in the interval that
    starts at ``starts[i]``.  ``occupied``/``asleep`` are per interval (for a
    business ``occupied`` means open and ``asleep`` is always False).
    ``base_load_wh`` is the household's mean always-on energy per interval (0.0
    for business profiles); ``params`` holds the drawn household parameters.
    """

    household_id: str
    profile: str
    tz: str
    interval_minutes: int
    starts: list[dt.datetime]
    readings_wh: list[int]
    occupied: list[bool]
    asleep: list[bool]
    appliance_events: list[ApplianceEvent]
    annual_kwh: float = 0.0
    base_load_wh: float = 0.0
    params: dict[str, float | int | bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.starts)
        if not (len(self.readings_wh) == len(self.occupied) == len(self.asleep) == n):
            raise ValueError("starts, readings_wh, occupied and asleep must have equal lengths")

    def days(self) -> list[tuple[dt.date, int, int]]:
        """``(local day, first index, count)`` for each local day in the trace, in order."""
        out: list[tuple[dt.date, int, int]] = []
        i, n = 0, len(self.starts)
        while i < n:
            day = local_day_of(self.starts[i], self.tz)
            # starts are sorted, so the day ends where the next local day begins.
            nxt = local_midnight_utc(day + dt.timedelta(days=1), self.tz)
            j = max(bisect.bisect_left(self.starts, nxt, lo=i), i + 1)
            out.append((day, i, j - i))
            i = j
        return out


# --------------------------------------------------------------------------
# Calendar


# easter_sunday and german_holidays live in meterhub.holidays (re-exported here).


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


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed


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


# --------------------------------------------------------------------------
# Seeding


def _id_word(household_id: str) -> int:
    # Stable across processes (unlike hash()), so traces reproduce anywhere.
    return int.from_bytes(hashlib.sha256(household_id.encode("utf-8")).digest()[:8], "big")


def _rng(*words: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def _lognormal_unit(rng: np.random.Generator, sigma: float, size: int | None = None):
    """Log-normal noise with mean exactly 1 (mu = -sigma^2/2)."""
    return rng.lognormal(-0.5 * sigma * sigma, sigma, size)


def _is_rest_day(day: dt.date) -> bool:
    return day.weekday() >= 5 or day in german_holidays(day.year)


def _round_conserving(values: np.ndarray) -> np.ndarray:
    """Integer Wh whose running sum tracks the float running sum (error < 1 Wh)."""
    cum = np.rint(np.cumsum(values))
    return np.diff(cum, prepend=0.0).astype(np.int64)


# --------------------------------------------------------------------------
# Household model


def _household_params(rng: np.random.Generator, annual_kwh: float) -> dict[str, float | int | bool]:
    # German averages (BDEW/co2online Stromspiegel): ~1500 kWh for one person,
    # ~1000-1200 kWh per additional resident; noise for lifestyle.
    residents = int(np.clip(round(annual_kwh / 1250.0 + rng.normal(0.0, 0.5)), 1, 6))
    return {
        "residents": residents,
        "home_all_day": bool(rng.random() < 0.3),  # retired, home office, carer
        "base_fraction": float(rng.uniform(0.15, 0.28)),  # fridge, standby, router
        "wake_workday_min": float(rng.normal(6.5 * 60, 30)),
        "wake_restday_min": float(rng.normal(8.25 * 60, 40)),
        "bed_min": float(rng.normal(23.0 * 60, 35)),
        "has_dryer": bool(rng.random() < 0.4),
        "has_dishwasher": bool(rng.random() < 0.7),
        "heating_power_w": float(rng.uniform(600.0, 1800.0) * (annual_kwh / 3500.0) ** 0.5),
        "appliance_scale": float((annual_kwh / 3500.0) ** 0.8),
    }


def _winterness(day: dt.date) -> float:
    """0 in summer, 1 in mid-January: a smooth heating-season indicator."""
    doy = day.timetuple().tm_yday
    return max(0.0, math.cos(2.0 * math.pi * (doy - 15) / 365.25)) ** 0.8


def _household_day(
    day: dt.date,
    wall: np.ndarray,
    expected: np.ndarray,
    interval: int,
    p: dict[str, float | int | bool],
    base_wh: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, int, int, int]]]:
    """One local day: (readings float Wh, occupied, asleep, events with day-local indices)."""
    n = wall.shape[0]
    rest = _is_rest_day(day)
    wake_mu = float(p["wake_restday_min"] if rest else p["wake_workday_min"])
    wake = float(np.clip(rng.normal(wake_mu, 25), 4 * 60, 11 * 60))
    bed = float(np.clip(rng.normal(float(p["bed_min"]), 30), 20.5 * 60, 24 * 60 - 1))

    away_windows: list[tuple[float, float]] = []
    if not rest and not p["home_all_day"]:
        leave = wake + rng.uniform(30, 90)
        back = float(np.clip(leave + rng.normal(9 * 60, 60), leave + 4 * 60, bed - 60))
        away_windows.append((leave, back))
    elif rng.random() < 0.6:  # shopping, visits, excursions
        lo, hi = (10 * 60, 17 * 60) if rest else (9 * 60, 16 * 60)
        begin = rng.uniform(lo, hi)
        span = rng.uniform(120, 360) if rest else rng.uniform(60, 180)
        away_windows.append((begin, min(begin + span, bed - 30)))
    if rng.random() < 0.12:  # evening out
        begin = rng.uniform(19 * 60, 21 * 60)
        away_windows.append((begin, min(begin + rng.uniform(90, 180), bed - 15)))
    away_all_day = rng.random() < 0.015  # overnight trip

    minute = wall.astype(np.float64)
    occupied = np.ones(n, dtype=bool)
    for a, b in away_windows:
        occupied &= ~((minute >= a) & (minute < b))
    asleep = ((minute < wake) | (minute >= bed)) & occupied
    if away_all_day:
        occupied[:] = False
        asleep[:] = False
    awake_home = occupied & ~asleep

    # Appliance runs: each must start while someone is up and at home and
    # stay within the day and within occupied time.
    events: list[tuple[str, int, int, int]] = []
    load = np.zeros(n)
    scale = float(p["appliance_scale"])
    residents = int(p["residents"])

    def place(
        name: str, lo: float, hi: float, minutes: float, energy_wh: float, at: int | None = None
    ) -> int | None:
        """Add a run starting in wall-clock window [lo, hi) (or at index ``at``); return its end."""
        length = max(1, round(minutes / interval))
        for _ in range(1 if at is not None else 4):
            if at is None:
                idx = np.flatnonzero(minute >= rng.uniform(lo, hi))
                if idx.size == 0:
                    return None
                s = int(idx[0])
            else:
                s = at
            if s + length <= n and awake_home[s] and occupied[s : s + length].all():
                e = max(1, round(energy_wh))
                load[s : s + length] += e / length
                events.append((name, s, s + length, e))
                return s + length
        return None

    for prob, lo, hi in ((0.85, 17.5 * 60, 19.5 * 60), (0.5, 11.5 * 60, 12.75 * 60)):
        if rng.random() < prob:  # dinner, lunch (lunch only fits when home)
            minutes = rng.uniform(20, 60)
            place("cooking", lo, hi, minutes, rng.uniform(800, 1800) * scale * minutes / 60)
    if rng.random() < min(0.9, 0.1 * residents + 0.05):
        end = place("laundry", wake + 30, 19 * 60, rng.uniform(90, 150),
                    rng.uniform(500, 1000) * scale)
        if end is not None and end < n and p["has_dryer"] and rng.random() < 0.7:
            # The dryer starts when the washer ends.
            place("dryer", 0.0, 0.0, rng.uniform(60, 120), rng.uniform(1500, 2500) * scale, at=end)
    if p["has_dishwasher"] and rng.random() < min(0.9, 0.12 * residents + 0.1):
        place("dishwasher", 19 * 60, 21 * 60, rng.uniform(100, 160), rng.uniform(800, 1300) * scale)
    winter = _winterness(day)
    if winter > 0 and rng.random() < 0.85 * winter:
        minutes = rng.uniform(60, 180) * (0.5 + winter)
        place("heating", 16.5 * 60, 20 * 60, minutes, float(p["heating_power_w"]) * minutes / 60)

    base = base_wh * (1.0 + 0.08 * np.clip(rng.standard_normal(n), -3.0, 3.0))
    day_energy = float(expected.sum())
    # Activity takes what base and appliances leave of the profile's day; a
    # floor keeps some lighting on heavy-appliance days (energy then exceeds
    # the profile slightly).
    budget = max(day_energy - float(base.sum()) - float(load.sum()),
                 0.1 * max(day_energy - float(base.sum()), 0.0))
    weight = np.where(awake_home, 1.0, np.where(asleep, 0.12, 0.0))
    shape = expected * weight * _lognormal_unit(rng, 0.35, n)
    total = shape.sum()
    activity = shape * (budget / total) if total > 0 else np.zeros(n)
    return base + load + activity, occupied, asleep, events


# --------------------------------------------------------------------------
# Business model

# Opening hours per BDEW business profile, read off the profile shapes and the
# BDEW profile descriptions: {weekday (0=Mon): (open minute, close minute)}.
_WEEK = range(7)
_OPENING: dict[str, dict[int, tuple[int, int]]] = {
    "g0": {**{d: (8 * 60, 18 * 60) for d in range(5)}, 5: (8 * 60, 13 * 60)},  # general
    "g1": {d: (7 * 60, 17 * 60) for d in range(5)},  # workdays 8-18
    "g2": {d: (10 * 60, 23 * 60) for d in _WEEK},  # evening-heavy (restaurants)
    "g3": {d: (0, 24 * 60) for d in _WEEK},  # continuous operation
    "g4": {**{d: (8 * 60, 19 * 60) for d in range(5)}, 5: (8 * 60, 14 * 60)},  # shops
    "g5": {**{d: (4 * 60, 18 * 60) for d in range(5)}, 5: (0, 14 * 60), 6: (7 * 60, 11 * 60)},
    "g6": {d: (10 * 60, 22 * 60) for d in _WEEK},  # weekend-heavy (leisure)
    "l0": {d: (6 * 60, 20 * 60) for d in _WEEK},  # farms work every day
    "l1": {d: (5 * 60, 20 * 60) for d in _WEEK},  # dairy: milking morning and evening
    "l2": {d: (6 * 60, 18 * 60) for d in _WEEK},
}


def _business_day(
    day: dt.date, wall: np.ndarray, expected: np.ndarray, profile: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = wall.shape[0]
    weekday = 6 if day in german_holidays(day.year) else day.weekday()  # holiday = Sunday
    hours = _OPENING[profile].get(weekday)
    occupied = np.zeros(n, dtype=bool)
    if hours is not None:
        jitter = rng.normal(0.0, 10.0, 2) if hours != (0, 24 * 60) else np.zeros(2)
        occupied = (wall >= hours[0] + jitter[0]) & (wall < hours[1] + jitter[1])
    day_factor = float(_lognormal_unit(rng, 0.10))  # busy and quiet days
    shape = expected * _lognormal_unit(rng, 0.15, n)
    total = shape.sum()
    readings = shape * (day_factor * float(expected.sum()) / total) if total > 0 else shape
    return readings, occupied


# --------------------------------------------------------------------------
# Public simulators


def simulate_load(
    household_id: str,
    start: dt.date,
    days: int,
    *,
    annual_kwh: float = 3500.0,
    profile: str = "h0",
    interval_minutes: int = 15,
    tz: str = DEFAULT_TZ,
    seed: int = 0,
) -> LoadTrace:
    """Simulate ``days`` local days of one meter from ``start`` (see module docstring).

    Readings are integer Wh >= 0 per interval; rounding carries the remainder
    within each day so a day's integer total is within 1 Wh of its float
    total.  Raises :class:`ValueError` on bad arguments.
    """
    if not isinstance(household_id, str) or not household_id:
        raise ValueError(f"household_id must be a non-empty str, got {household_id!r}")
    profile = _check_common(start, days, profile, interval_minutes, tz)
    annual = _check_annual(annual_kwh)
    seed = _check_seed(seed)
    energy_wh = annual * 1000.0
    ident = _id_word(household_id)
    is_household = profile in HOUSEHOLD_PROFILES

    params: dict[str, float | int | bool] = {}
    base_wh = 0.0
    if is_household:
        params = _household_params(_rng(seed, ident), annual)
        base_wh = float(params["base_fraction"]) * energy_wh * interval_minutes / (365.25 * 1440)

    starts: list[dt.datetime] = []
    readings: list[int] = []
    occupied: list[bool] = []
    asleep: list[bool] = []
    events: list[ApplianceEvent] = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        wall = _day_wall(day, tz, interval_minutes)
        expected = _day_weights(day, profile, tz, interval_minutes) * energy_wh
        rng = _rng(seed, ident, day.toordinal())
        offset = len(readings)
        if is_household:
            values, occ, slp, day_events = _household_day(
                day, wall, expected, interval_minutes, params, base_wh, rng
            )
            events.extend(ApplianceEvent(a, offset + s, offset + e, w) for a, s, e, w in day_events)
        else:
            values, occ = _business_day(day, wall, expected, profile, rng)
            slp = np.zeros_like(occ)
        starts.extend(_day_grid(day, tz, interval_minutes))
        readings.extend(_round_conserving(values).tolist())
        occupied.extend(occ.tolist())
        asleep.extend(slp.tolist())
    return LoadTrace(
        household_id=household_id,
        profile=profile,
        tz=tz,
        interval_minutes=interval_minutes,
        starts=starts,
        readings_wh=readings,
        occupied=occupied,
        asleep=asleep,
        appliance_events=events,
        annual_kwh=annual,
        base_load_wh=base_wh,
        params=params,
    )


# Mix of business profiles in a neighbourhood (rough shares of German SLP
# customers: general and shops dominate, farms are rare in a town).
_BUSINESS_MIX: dict[str, float] = {
    "g0": 0.25, "g1": 0.15, "g2": 0.1, "g3": 0.05, "g4": 0.2, "g5": 0.05,
    "g6": 0.05, "l0": 0.05, "l1": 0.05, "l2": 0.05,
}
_NEIGHBOURHOOD_TAG = 0x6E65696768  # separates this stream from per-household ones


def simulate_neighbourhood(
    n: int,
    start: dt.date,
    days: int,
    *,
    interval_minutes: int = 15,
    tz: str = DEFAULT_TZ,
    seed: int = 0,
    business_share: float = 0.0,
) -> list[LoadTrace]:
    """Simulate ``n`` meters, a ``business_share`` of them businesses/farms.

    Households use H0 with annual consumption drawn log-normally around
    3000 kWh and clipped to 1500..6000 kWh (the German range from one to five
    residents); businesses draw a profile from G0..G6/L0..L2 and 5..60 MWh a
    year (log-uniform).  IDs are ``hh-0000``/``biz-0001``...; deterministic in
    ``seed``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    try:
        share = float(business_share)
    except (TypeError, ValueError):
        raise ValueError(f"business_share must be a number, got {business_share!r}") from None
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"business_share must be in [0, 1], got {business_share!r}")
    _check_common(start, days, "h0", interval_minutes, tz)
    seed = _check_seed(seed)

    rng = _rng(seed, _NEIGHBOURHOOD_TAG)
    n_business = round(n * share)
    business = np.zeros(n, dtype=bool)
    business[rng.choice(n, size=n_business, replace=False)] = True
    names = list(_BUSINESS_MIX)
    mix = np.array([_BUSINESS_MIX[k] for k in names])
    traces: list[LoadTrace] = []
    for i in range(n):
        if business[i]:
            profile = str(names[int(rng.choice(len(names), p=mix / mix.sum()))])
            annual = round(math.exp(rng.uniform(math.log(5000.0), math.log(60000.0))), 1)
            hid = f"biz-{i:04d}"
        else:
            profile = "h0"
            annual = round(float(np.clip(rng.lognormal(math.log(3000.0), 0.35), 1500, 6000)), 1)
            hid = f"hh-{i:04d}"
        traces.append(
            simulate_load(
                hid, start, days, annual_kwh=annual, profile=profile,
                interval_minutes=interval_minutes, tz=tz, seed=seed,
            )
        )
    return traces
