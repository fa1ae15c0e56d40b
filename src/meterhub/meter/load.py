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

Households (``h0``, ``h0_dyn``) come from the bottom-up model of
:mod:`meterhub.meter.households` (occupants' active/absent/asleep Markov chains,
appliances switched by active occupants, lighting by daylight, traits), scaled
by one factor per household so that its expected year uses ``annual_kwh``; the
expectation is taken over 48 reference days (two Wednesdays and two Saturdays a month),
so a simulated year is within a few per cent of ``annual_kwh``, as a real
household's year is of its forecast.  Nobody at home means no occupant-driven
load (standby, fridge and freezer cycles only), so occupancy truly leaks through
the readings, which is what the privacy evaluation (:mod:`meterhub.privacy`)
measures.  For businesses and farms the overlay on the BDEW expectation is
simpler: opening hours (ground truth only; the profile already has their shape),
a random day-level factor and per-interval noise.

Determinism: every random draw comes from a ``numpy.random.Generator`` seeded
from ``(seed, household_id)`` for household traits and
``(seed, household_id, day)`` for each day, so the same household and day
always read the same, whatever window is simulated.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from ..model.holidays import easter_sunday, german_holidays
from ..model.timebase import (
    DEFAULT_TZ,
    _day_grid,
    check_tz,
    local_day_of,
    local_midnight_utc,
)

# The BDEW profiles and their argument checks live in meterhub.tariffs.slp (shared with the
# tariff side); the public names are re-exported here for the simulator's callers.
from ..tariffs.slp import (
    BUSINESS_PROFILES,
    HOUSEHOLD_PROFILES,
    PROFILES,
    _check_annual,
    _check_common,
    _day_wall,
    _day_weights,
    bdew_profile_wh,
)
from .households import (
    COMPONENTS,
    OCCUPANT_APPLIANCES,
    PASSIVE,
    HouseholdTraits,
    draw_traits,
    simulate_days,
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
    "expected_annual_kwh",
    "household_traits",
    "simulate_load",
    "simulate_neighbourhood",
]

APPLIANCES: tuple[str, ...] = OCCUPANT_APPLIANCES


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
    household: someone at home for at least half the interval / at home but
    nobody active for at least half of it; for a business ``occupied`` means open
    and ``asleep`` is always False).  ``appliance_events`` are the runs of
    occupant-switched appliances.  ``base_load_wh`` is the household's mean
    not occupant-driven energy per interval (standby, fridge, freezer; 0.0 for
    business profiles); ``params`` holds the household's traits
    (:meth:`HouseholdTraits.as_params`).  ``truth`` (households only, not part of
    equality) holds per interval the energy of each simulator component (Wh,
    float, before rounding) and the mean number of occupants ``present`` and
    ``active``.
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
    truth: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

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


# easter_sunday and german_holidays live in meterhub.model.holidays (re-exported here).


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return seed


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


def _round_conserving(values: np.ndarray) -> np.ndarray:
    """Integer Wh whose running sum tracks the float running sum (error < 1 Wh)."""
    cum = np.rint(np.cumsum(values))
    return np.diff(cum, prepend=0.0).astype(np.int64)


# --------------------------------------------------------------------------
# Household model (meterhub.meter.households)

_REFERENCE_TAG = 0x726566  # separates the reference-day stream from the real days


def _tz_offset_h(day: dt.date, tz: str) -> float:
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(tz))
    off = noon.utcoffset()
    return off.total_seconds() / 3600.0 if off is not None else 0.0


def _reference_days() -> list[tuple[dt.date, float]]:
    """Four days a month of a fixed year (two Wednesdays, two Saturdays) with the share of
    the year each stands for: the stratified sample behind :func:`_expected_annual_wh`."""
    out: list[tuple[dt.date, float]] = []
    for month in range(1, 13):
        ndays = calendar.monthrange(2025, month)[1]
        for first in (dt.date(2025, month, 2), dt.date(2025, month, 16)):
            wed = first + dt.timedelta(days=(2 - first.weekday()) % 7)
            sat = first + dt.timedelta(days=(5 - first.weekday()) % 7)
            out.append((wed, ndays * 5 / 14))
            out.append((sat, ndays * 2 / 14))
    return out


@lru_cache(maxsize=4096)
def _traits(seed: int, ident: int) -> HouseholdTraits:
    return draw_traits(_rng(seed, ident))


@lru_cache(maxsize=4096)
def _expected_annual_wh(seed: int, ident: int, tz: str) -> float:
    """The household's expected annual energy (Wh) before scaling, from reference days."""
    traits = _traits(seed, ident)
    ref = _reference_days()
    days = [d for d, _ in ref]
    rngs = [_rng(seed, ident, _REFERENCE_TAG, d.toordinal()) for d in days]
    sims = simulate_days(traits, days, rngs, frozenset(german_holidays(2025)),
                         [_tz_offset_h(d, tz) for d in days])
    return sum(w * float(s.total().sum()) / 60.0 for (_, w), s in zip(ref, sims, strict=True))


def household_traits(household_id: str, seed: int = 0) -> HouseholdTraits:
    """The traits of the household that :func:`simulate_load` simulates for ``household_id``."""
    return _traits(_check_seed(seed), _id_word(household_id))


def expected_annual_kwh(household_id: str, seed: int = 0, tz: str = DEFAULT_TZ) -> float:
    """What the household of ``household_id`` uses in a year on its own (before scaling)."""
    return _expected_annual_wh(_check_seed(seed), _id_word(household_id), check_tz(tz)) / 1000.0


def _window_sums(per_minute: np.ndarray, wall: np.ndarray, interval: int) -> np.ndarray:
    """Sums of per-wall-clock-minute rows (..., 1440) over each interval ``[wall, wall + interval)``."""
    cum = np.zeros((*per_minute.shape[:-1], 1441))
    np.cumsum(per_minute, axis=-1, dtype=np.float64, out=cum[..., 1:])
    return cum[..., np.minimum(wall + interval, 1440)] - cum[..., wall]


def _household_days(
    household_id: str, start: dt.date, days: int, interval: int, tz: str, seed: int, annual_wh: float
) -> tuple[list[int], list[bool], list[bool], list[ApplianceEvent], dict[str, np.ndarray], float, HouseholdTraits]:
    ident = _id_word(household_id)
    traits = _traits(seed, ident)
    scale = annual_wh / _expected_annual_wh(seed, ident, tz)
    dates = [start + dt.timedelta(days=k) for k in range(days)]
    years = {d.year for d in dates}
    hol = frozenset(h for y in years for h in german_holidays(y))
    sims = simulate_days(traits, dates, [_rng(seed, ident, d.toordinal()) for d in dates], hol,
                         [_tz_offset_h(d, tz) for d in dates])
    readings: list[int] = []
    occupied: list[bool] = []
    asleep: list[bool] = []
    events: list[ApplianceEvent] = []
    truth: dict[str, list[np.ndarray]] = {c: [] for c in (*COMPONENTS, "present", "active")}
    for day, sim in zip(dates, sims, strict=True):
        wall = _day_wall(day, tz, interval)
        offset = len(readings)
        rows = np.vstack([*(sim.power[c] for c in COMPONENTS), sim.present > 0, sim.active > 0,
                          sim.present, sim.active])
        sums = _window_sums(rows, wall, interval)
        nc = len(COMPONENTS)
        wh = sums[:nc] * (scale / 60.0)
        for c, row in zip(COMPONENTS, wh, strict=True):
            truth[c].append(row)
        readings.extend(_round_conserving(wh.sum(axis=0)).tolist())
        span = np.minimum(wall + interval, 1440) - wall
        occ = sums[nc] * 2 >= span
        occupied.extend(occ.tolist())
        asleep.extend((occ & (sums[nc + 1] * 2 < span)).tolist())
        truth["present"].append(sums[nc + 2] / span)
        truth["active"].append(sums[nc + 3] / span)
        for name, s, e, run_wh in sim.starts:
            first = int(np.searchsorted(wall, s, side="right")) - 1
            last = int(np.searchsorted(wall, e - 1, side="right")) - 1
            if first < 0 or wall[first] + interval <= s:
                continue  # starts in the hour the spring DST change skips
            events.append(ApplianceEvent(name, offset + first, offset + max(first, last) + 1,
                                         max(1, round(run_wh * scale))))
    passive = sum(float(np.concatenate(truth[c]).mean()) for c in PASSIVE) if readings else 0.0
    return (readings, occupied, asleep, events,
            {k: np.concatenate(v) for k, v in truth.items()}, passive, traits)


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

    if is_household:
        readings, occupied, asleep, events, truth, base_wh, traits = _household_days(
            household_id, start, days, interval_minutes, tz, seed, energy_wh
        )
        starts = [s for k in range(days) for s in _day_grid(start + dt.timedelta(days=k), tz, interval_minutes)]
        return LoadTrace(
            household_id=household_id, profile=profile, tz=tz, interval_minutes=interval_minutes,
            starts=starts, readings_wh=readings, occupied=occupied, asleep=asleep, appliance_events=events,
            annual_kwh=annual, base_load_wh=base_wh, params=traits.as_params(), truth=truth,
        )

    starts = []  # list[dt.datetime], as in the branch above
    readings = []
    occupied = []
    asleep = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        wall = _day_wall(day, tz, interval_minutes)
        expected = _day_weights(day, profile, tz, interval_minutes) * energy_wh
        rng = _rng(seed, ident, day.toordinal())
        values, occ = _business_day(day, wall, expected, profile, rng)
        starts.extend(_day_grid(day, tz, interval_minutes))
        readings.extend(_round_conserving(values).tolist())
        occupied.extend(occ.tolist())
        asleep.extend([False] * len(occ))
    return LoadTrace(
        household_id=household_id,
        profile=profile,
        tz=tz,
        interval_minutes=interval_minutes,
        starts=starts,
        readings_wh=readings,
        occupied=occupied,
        asleep=asleep,
        appliance_events=[],
        annual_kwh=annual,
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

    Households are simulated bottom-up (:mod:`meterhub.meter.households`); each
    one's ``annual_kwh`` is what its occupants and appliances use in an expected
    year times a log-normal lifestyle factor (sigma 0.15), which spreads them
    like German households by size (about 1,500 kWh alone to 5,000 kWh for five,
    more with electric water or space heating); businesses draw a profile from G0..G6/L0..L2 and 5..60 MWh a
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
            hid = f"hh-{i:04d}"
            # What this household's occupants and appliances use, times a lifestyle
            # factor (thrift or waste beyond the model's appliances).
            lifestyle = float(np.clip(rng.lognormal(0.0, 0.15), 0.7, 1.45))
            annual = round(expected_annual_kwh(hid, seed, tz) * lifestyle, 1)
        traces.append(
            simulate_load(
                hid, start, days, annual_kwh=annual, profile=profile,
                interval_minutes=interval_minutes, tz=tz, seed=seed,
            )
        )
    return traces
