"""Households with occupants and appliances: a bottom-up demand model with ground truth.

In the spirit of the CREST demand model (Richardson, Thomson, Infield, Clifford,
"Domestic electricity use: a high-resolution energy demand model", Energy and
Buildings 42, 2010; Richardson et al., "A high-resolution domestic building
occupancy model for energy demand simulations", Energy and Buildings 40, 2008),
written from the papers' description (no code or data of a port is used):

* **Occupancy.** Each occupant is in one of three states, *absent*, *active* (at
  home and awake) or *asleep*, and moves between them in a time-inhomogeneous
  Markov chain with 10-minute steps. CREST fits its transition matrices to the UK
  Time Use Survey; we have no such survey here, so each occupant gets target
  state probabilities per 10-minute slot from its kind (full-time worker,
  part-time worker, at home, school child), the day type (workday, rest day) and
  personal times (wake, leave, return, bed, jittered per day), and the chain's
  transition matrix for slot ``t`` moves the least probability mass that turns the
  slot's distribution ``pi_t`` into ``pi_{t+1}`` (mass leaves only states whose
  probability falls) mixed with a small re-draw ("churn", short trips out and
  naps) ``P_t = (1 - c) F_t + c 1 pi_{t+1}^T``. Both parts map ``pi_t`` onto
  ``pi_{t+1}``, so the chain's marginals are exactly the targets while its
  durations stay realistic.
* **Appliances** (CREST's appliance model): an appliance is switched on only at a
  minute with at least one *active* occupant, with a start probability of its
  daily cycle count times a time-of-day activity weight; each run has the
  appliance's rating and cycle (kettle, microwave, hob, oven, washing machine,
  tumble dryer, dishwasher, TV, computer, electric shower). Runs of appliances that
  need someone watching (all but the programme appliances) end when active
  occupancy ends; small appliances ("other") draw per active occupant;
  programme appliances (washer, dryer, dishwasher) finish their cycle.
* **Not occupant-driven:** standby and the fridge and freezer compressor cycles.
* **Electric space heating** (direct heaters, a trait): thermostat-cycled in the
  heating season while an occupant is active (storage heaters have their own meter
  and tariff in Germany, so they are not part of an H0 household).
* **Lighting** (CREST's lighting model, simplified): on only with active
  occupants and outdoor darkness (sunrise and sunset for 51 deg N, 10 deg E,
  plus a cloud factor per day), scaled by the number of active occupants.
* **Traits** per household: residents, the kind of each occupant, children,
  whether all adults work outside the home, electric space heating (direct
  heaters), electric water heating (instantaneous shower heater, common in
  Germany), appliance ownership and ratings.

Units: power in W per wall-clock minute of the local day (1440 minutes; the
meter layer maps them onto its DST-aware interval grid). Each day draws from a
generator seeded by ``(seed, household, day)`` so a day reads the same in any
window. Pure functions over ``numpy``; no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "COMPONENTS",
    "OCCUPANT_APPLIANCES",
    "ABSENT",
    "ACTIVE",
    "ASLEEP",
    "PASSIVE",
    "WATCHED",
    "DayTruth",
    "HouseholdTraits",
    "Occupant",
    "draw_traits",
    "simulate_days",
]

ABSENT, ACTIVE, ASLEEP = 0, 1, 2
STEP = 10  # minutes per occupancy step (CREST)
SLOTS = 1440 // STEP
MINUTES = 1440

# Appliances switched on by active occupants (the NILM targets and the ground truth
# of "occupancy zero means no occupant-driven switches").
OCCUPANT_APPLIANCES: tuple[str, ...] = (
    "kettle", "microwave", "hob", "oven", "washing", "dryer", "dishwasher", "tv", "computer", "shower",
)
# Every per-minute component the simulator keeps (ground truth per interval).
COMPONENTS: tuple[str, ...] = (
    ("standby", "cold", "space_heating", "lighting", "other") + OCCUPANT_APPLIANCES
)
PASSIVE: tuple[str, ...] = ("standby", "cold")

KINDS: tuple[str, ...] = ("worker", "part_time", "home", "child")


@dataclass(frozen=True)
class Occupant:
    """One resident and the personal times (minutes after local midnight) of a usual day."""

    kind: str
    wake_workday: float
    wake_restday: float
    bed: float
    leave: float
    back: float


@dataclass(frozen=True)
class HouseholdTraits:
    """What a household is (ground truth of the trait attacks) and what it owns."""

    occupants: tuple[Occupant, ...]
    electric_space_heating: bool
    electric_water_heating: bool
    owns: frozenset[str]
    ratings: dict[str, float] = field(hash=False, compare=False)
    standby_w: float = 30.0
    lighting_w: float = 120.0

    @property
    def residents(self) -> int:
        return len(self.occupants)

    @property
    def children(self) -> bool:
        return any(o.kind == "child" for o in self.occupants)

    @property
    def all_adults_employed(self) -> bool:
        """Every adult works outside the home on workdays (the house is empty by day)."""
        return all(o.kind in ("worker", "part_time") for o in self.occupants if o.kind != "child")

    @property
    def someone_home_by_day(self) -> bool:
        return not self.all_adults_employed

    def as_params(self) -> dict[str, float | int | bool]:
        """Flat parameters for :class:`meterhub.meter.load.LoadTrace` ``params``."""
        kinds = [o.kind for o in self.occupants]
        out: dict[str, float | int | bool] = {
            "residents": self.residents,
            "children": self.children,
            "home_all_day": self.someone_home_by_day,
            "all_adults_employed": self.all_adults_employed,
            "electric_space_heating": self.electric_space_heating,
            "electric_water_heating": self.electric_water_heating,
            "standby_w": round(self.standby_w, 1),
        }
        for k in KINDS:
            out[f"n_{k}"] = kinds.count(k)
        for a in sorted(self.owns):
            out[f"owns_{a}"] = True
        return out

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["owns"] = sorted(self.owns)
        return d


# German household sizes (Destatis Mikrozensus 2019: 42 % one person, 33 % two,
# 12 % three, 9 % four, 4 % five or more).
_SIZES = np.array([0.42, 0.33, 0.12, 0.09, 0.04])


def draw_traits(rng: np.random.Generator) -> HouseholdTraits:
    """Draw one household (occupants, heating, ownership, ratings)."""
    residents = int(rng.choice(5, p=_SIZES)) + 1
    if residents == 1:
        adults = 1
    elif residents == 2:
        adults = 1 if rng.random() < 0.1 else 2  # single parent
    else:
        adults = 2
    occupants: list[Occupant] = []
    retired_couple = adults == residents and rng.random() < 0.4
    for i in range(residents):
        if i >= adults:
            kind = "child"
        elif retired_couple:
            kind = "home"
        else:
            kind = str(rng.choice(["worker", "part_time", "home"], p=[0.5, 0.2, 0.3]))
        child = kind == "child"
        wake_w = rng.normal(6.5 * 60, 35)
        occupants.append(
            Occupant(
                kind=kind,
                wake_workday=float(np.clip(wake_w if kind != "home" else rng.normal(7.5 * 60, 45), 4.5 * 60, 10 * 60)),
                wake_restday=float(np.clip(rng.normal(8.3 * 60, 45), 6 * 60, 11 * 60)),
                bed=float(np.clip(rng.normal((20.5 if child else 23.4) * 60, 45), 19.5 * 60, 24 * 60 - 5)),
                leave=float(np.clip(wake_w + rng.uniform(30, 80), 6 * 60, 10 * 60)),
                back=float(
                    np.clip(rng.normal(13.8 * 60, 40) if child or kind == "part_time" else rng.normal(17.3 * 60, 50),
                            11.5 * 60, 20 * 60)
                ),
            )
        )
    owns = {"kettle", "hob", "oven", "washing", "tv"}
    for name, p in (("microwave", 0.72), ("dryer", 0.42), ("dishwasher", 0.55 + 0.1 * min(residents, 3)),
                    ("computer", 0.85), ("freezer", 0.5)):
        if rng.random() < p:
            owns.add(name)
    electric_water = bool(rng.random() < 0.25)
    if electric_water:
        owns.add("shower")
    ratings = {
        "kettle": float(rng.uniform(1800, 3000)),
        "microwave": float(rng.uniform(800, 1250)),
        "hob": float(rng.uniform(1200, 2200)),
        "oven": float(rng.uniform(1800, 2600)),
        "washing_heat": float(rng.uniform(1800, 2200)),
        "dryer": float(rng.uniform(2000, 2800)),
        "dishwasher_heat": float(rng.uniform(1800, 2200)),
        "tv": float(rng.uniform(70, 220)),
        "computer": float(rng.uniform(40, 160)),
        "shower": float(rng.uniform(12000, 21000)),
        "fridge": float(rng.uniform(60, 110)),
        "freezer": float(rng.uniform(70, 120)),
        "space_heating": float(rng.uniform(1200, 2800)),
        "other": float(rng.uniform(25, 75)),
    }
    return HouseholdTraits(
        occupants=tuple(occupants),
        electric_space_heating=bool(rng.random() < 0.1),
        electric_water_heating=electric_water,
        owns=frozenset(owns),
        ratings=ratings,
        standby_w=float(rng.uniform(15, 60)),
        lighting_w=float(rng.uniform(60, 220)),
    )


# --------------------------------------------------------------------------
# Occupancy


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_SLOT_MIN = np.arange(SLOTS + 1, dtype=np.float64) * STEP  # slot starts, plus the next midnight


def _targets(o: Occupant, rest: bool, jitter: np.ndarray) -> np.ndarray:
    """Target (absent, active, asleep) probabilities per slot, shape (SLOTS + 1, 3)."""
    m = _SLOT_MIN
    wake = (o.wake_restday if rest else o.wake_workday) + jitter[0]
    bed = o.bed + jitter[1]
    asleep = _sig((wake - m) / 15.0) + _sig((m - bed) / 15.0)
    asleep = np.clip(asleep, 0.0, 0.995)
    if not rest and o.kind in ("worker", "part_time", "child"):
        leave, back = o.leave + jitter[2], o.back + jitter[3]
        out = 0.93 * _sig((m - leave) / 8.0) * _sig((back - m) / 12.0)
        out += 0.15 * _sig((m - (back + 60)) / 20.0) * _sig((21.5 * 60 - m) / 20.0)  # errands after work
    else:
        # Shopping, visits, walks: more on rest days, around late morning and afternoon.
        level = 0.45 if rest else (0.3 if o.kind == "home" else 0.35)
        out = level * (np.exp(-(((m - 11 * 60) / 90.0) ** 2)) + 0.9 * np.exp(-(((m - 15.5 * 60) / 100.0) ** 2)))
        out += (0.2 if rest else 0.1) * _sig((m - 19 * 60) / 20.0) * _sig((23 * 60 - m) / 20.0)
    out = np.clip(out, 0.0, 0.97)
    pi = np.empty((m.shape[0], 3))
    pi[:, ASLEEP] = asleep * (1.0 - out * (m > 7 * 60) * (m < 22 * 60))  # asleep only at home
    pi[:, ABSENT] = out * (1.0 - pi[:, ASLEEP])
    pi[:, ACTIVE] = 1.0 - pi[:, ASLEEP] - pi[:, ABSENT]
    return np.clip(pi, 1e-6, 1.0) / np.clip(pi, 1e-6, 1.0).sum(axis=1, keepdims=True)


def _run_chains(pi: np.ndarray, u0: np.ndarray, u: np.ndarray, churn: float = 0.03) -> np.ndarray:
    """Sample chains with marginals ``pi`` (shape (B, SLOTS + 1, 3)); states (B, SLOTS)."""
    b = pi.shape[0]
    states = np.empty((b, SLOTS), dtype=np.int8)
    cur = (u0[:, None] > np.cumsum(pi[:, 0], axis=1)[:, :2]).sum(axis=1)
    rows = np.arange(b)
    # The terms that do not depend on the current state, for every slot at once (the
    # same element-wise operations as slot by slot, so the same floats): only the
    # state-dependent steps stay in the loop over the slots.
    p0s, p1s = pi[:, :SLOTS], pi[:, 1 : SLOTS + 1]
    fall = np.clip(p0s - p1s, 0.0, None)
    rise = np.clip(p1s - p0s, 0.0, None)
    rise_sum = rise.sum(axis=2, keepdims=True)
    gain = np.divide(rise, rise_sum, out=np.zeros_like(rise), where=rise_sum > 0)
    mixed_p1 = churn * p1s
    keep = 1.0 - churn
    for t in range(SLOTS):
        states[:, t] = cur
        leave = fall[rows, t, cur] / p0s[rows, t, cur]
        # Minimal-flow row of the current state, then the churn mixture.
        row = gain[:, t] * leave[:, None]
        row[rows, cur] += 1.0 - leave
        row = keep * row + mixed_p1[:, t]
        cur = (u[:, t, None] > np.cumsum(row, axis=1)[:, :2]).sum(axis=1)
    return states


# --------------------------------------------------------------------------
# Appliances

_M = np.arange(MINUTES, dtype=np.float64)


def _bump(center_h: float, width_h: float) -> np.ndarray:
    return np.exp(-(((_M - center_h * 60) / (width_h * 60)) ** 2))


# Time-of-day activity weights per appliance (relative; multiplied by active occupancy).
_WEIGHTS: dict[str, np.ndarray] = {
    "kettle": 1.2 * _bump(7.2, 1.2) + 0.6 * _bump(12.5, 1.5) + 0.8 * _bump(16.0, 1.5) + 0.6 * _bump(20.0, 2.0),
    "microwave": 0.5 * _bump(7.5, 1.0) + 1.0 * _bump(12.5, 1.2) + 0.8 * _bump(18.5, 1.5),
    "washing": 0.6 * _bump(10.0, 2.5) + 0.4 * _bump(16.0, 3.0),
    "tv": 0.15 * _bump(8.0, 2.0) + 0.25 * _bump(14.0, 3.0) + 1.0 * _bump(20.3, 1.8),
    "computer": 0.6 * _bump(10.0, 3.0) + 0.6 * _bump(15.0, 3.0) + 0.8 * _bump(20.0, 2.0),
    "shower": 1.0 * _bump(7.3, 1.6) + 0.3 * _bump(19.5, 2.5),
    "other": 1.8 * _bump(10.0, 2.5) + 0.8 * _bump(15.5, 2.5),
}


def daylight(day: dt.date, tz_offset_h: float) -> tuple[float, float]:
    """(sunrise, sunset) in local wall-clock minutes at 51 deg N, 10 deg E (NOAA approximation)."""
    doy = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365.0)
    lat = math.radians(51.0)
    x = -math.tan(lat) * math.tan(decl)
    half = math.degrees(math.acos(max(-1.0, min(1.0, x)))) / 15.0  # hours
    noon = 12.0 - 10.0 / 15.0 + tz_offset_h
    return (noon - half) * 60, (noon + half) * 60


@dataclass
class DayTruth:
    """One simulated day: per-minute power per component (W) and occupancy per minute."""

    power: dict[str, np.ndarray]
    present: np.ndarray  # occupants at home per minute
    active: np.ndarray  # active occupants per minute
    starts: list[tuple[str, int, int, float]]  # (appliance, start minute, end minute, Wh)

    def total(self) -> np.ndarray:
        return np.sum([v for v in self.power.values()], axis=0)


def _is_rest(day: dt.date, holidays: frozenset[dt.date]) -> bool:
    return day.weekday() >= 5 or day in holidays


def _winterness(day: dt.date) -> float:
    doy = day.timetuple().tm_yday
    return max(0.0, math.cos(2.0 * math.pi * (doy - 15) / 365.25)) ** 0.8


def _cycle(name: str, t: HouseholdTraits, rng: np.random.Generator) -> np.ndarray:
    """Power per minute of one run (W)."""
    r = t.ratings
    if name == "kettle":
        return np.full(int(rng.integers(2, 5)), r["kettle"])
    if name == "microwave":
        return np.full(int(rng.integers(2, 9)), r["microwave"])
    if name == "hob":
        n = int(rng.integers(12, 25) + 5 * min(t.residents, 4))
        duty = (rng.random(n) < 0.75).astype(float)  # the hob's thermostat cycles
        return r["hob"] * (0.4 + 0.6 * duty)
    if name == "oven":
        n = int(rng.integers(35, 75))
        prof = np.full(n, 0.45 * r["oven"])
        prof[: min(n, 12)] = r["oven"]  # heat-up, then thermostat
        return prof
    if name == "washing":
        heat, wash, spin = int(rng.integers(10, 25)), int(rng.integers(50, 80)), int(rng.integers(8, 14))
        return np.concatenate([np.full(3, 150.0), np.full(heat, r["washing_heat"]), np.full(wash, 180.0),
                               np.full(spin, 450.0)])
    if name == "dryer":
        n = int(rng.integers(60, 100))
        return r["dryer"] * np.where(np.arange(n) % 10 < 8, 1.0, 0.1)
    if name == "dishwasher":
        return np.concatenate([np.full(5, 80.0), np.full(int(rng.integers(15, 25)), r["dishwasher_heat"]),
                               np.full(int(rng.integers(40, 60)), 90.0),
                               np.full(int(rng.integers(10, 20)), r["dishwasher_heat"]), np.full(30, 10.0)])
    if name == "tv":
        return np.full(int(rng.integers(30, 180)), r["tv"])
    if name == "computer":
        return np.full(int(rng.integers(30, 150)), r["computer"])
    if name == "shower":
        return np.full(int(rng.integers(4, 11)), r["shower"])
    raise ValueError(f"unknown appliance {name!r}")


# Appliances that need someone up and at home for their whole run; programme appliances
# (washing machine, dryer, dishwasher) finish their cycle after the occupants leave.
WATCHED: frozenset[str] = frozenset({"hob", "oven", "tv", "computer", "shower", "kettle", "microwave"})


def _simulate_day(
    t: HouseholdTraits,
    day: dt.date,
    rest: bool,
    states: np.ndarray,
    away_trip: bool,
    rng: np.random.Generator,
    tz_offset_h: float,
) -> DayTruth:
    """Appliances and lighting for one day given the occupants' states (O, SLOTS)."""
    if away_trip:
        states = np.full_like(states, ABSENT)
    present = np.repeat((states != ABSENT).sum(axis=0), STEP).astype(np.int16)
    active = np.repeat((states == ACTIVE).sum(axis=0), STEP).astype(np.int16)
    is_active = active > 0
    power: dict[str, np.ndarray] = {c: np.zeros(MINUTES) for c in COMPONENTS}
    starts: list[tuple[str, int, int, float]] = []

    # Not occupant-driven: standby, cold appliances, storage heating.
    power["standby"][:] = t.standby_w
    summer = 1.0 - _winterness(day)
    for cold in ("fridge", "freezer"):
        if cold == "freezer" and "freezer" not in t.owns:
            continue
        on, off = int(rng.integers(10, 16)), int(rng.integers(32, 48) - 8 * summer)
        phase = int(rng.integers(0, on + off))
        mask = ((np.arange(MINUTES) + phase) % (on + off)) < on
        power["cold"] += mask * t.ratings[cold]
    winter = _winterness(day)

    # Lighting: active occupants and darkness.
    sunrise, sunset = daylight(day, tz_offset_h)
    cloud = float(rng.uniform(0.0, 45.0))
    dawn, dusk = sunrise + 30 + cloud, sunset - 30 - cloud
    dark = np.less(_M, dawn) | np.greater(_M, dusk)
    light = np.where(dark, 1.0, 0.08)
    persons = np.minimum(active, 4).astype(float)
    power["lighting"] = t.lighting_w * light * (persons > 0) * (0.6 + 0.4 * persons) * float(rng.uniform(0.8, 1.2))

    # Small appliances (vacuum, iron, hair dryer, chargers, audio): per active occupant,
    # busier by day, on a 10-minute random level.
    level = np.repeat(rng.lognormal(-0.5, 1.0, SLOTS), STEP)
    power["other"] = t.ratings["other"] * persons * level * (0.5 + _WEIGHTS["other"])

    if t.electric_space_heating and winter > 0.05:
        # Direct electric heaters, thermostat-cycled while someone is up at home.
        heating_on = np.repeat(rng.random(SLOTS) < 0.25 + 0.65 * winter, STEP)
        power["space_heating"] = t.ratings["space_heating"] * heating_on * is_active

    n_res = t.residents
    busy_until: dict[str, int] = {}

    def run(name: str, start: int, target: str | None = None) -> int | None:
        """Place one run at ``start`` if an occupant is active; return its end minute."""
        if start >= MINUTES or not is_active[start] or busy_until.get(name, -1) > start:
            return None
        prof = _cycle(name, t, rng)
        end = min(MINUTES, start + prof.shape[0])
        prof = prof[: end - start]
        if name in WATCHED:
            # Watched appliances end when active occupancy ends.
            gone = np.flatnonzero(~is_active[start:end])
            if gone.size:
                end = start + int(gone[0])
                prof = prof[: end - start]
        if end <= start:
            return None
        power[target or name][start:end] += prof
        busy_until[name] = end
        starts.append((name, start, end, float(prof.sum()) / 60.0))
        return end

    def poisson_starts(name: str, per_day: float) -> None:
        w = _WEIGHTS[name] * is_active
        mass = float(_WEIGHTS[name].sum())
        if mass <= 0:
            return
        p = per_day * w / (mass * 0.55)  # 0.55: typical share of the day with an active occupant
        for s in np.flatnonzero(rng.random(MINUTES) < p):
            run(name, int(s))

    # Meals: breakfast, lunch (the main warm meal when someone is home), dinner.
    home_lunch = rest or not t.all_adults_employed
    meals = ((7.5, 0.12, 0.7), (12.4, 0.8 if home_lunch else 0.12, 0.7), (18.4, 0.55, 1.2))
    for centre, prob, width in meals:
        if rng.random() < prob:
            s = int(np.clip(rng.normal(centre * 60, width * 60), 0, MINUTES - 1))
            if centre > 10 and rng.random() < 0.12 + (0.15 if rest else 0.0):
                run("oven", s)
            if run("hob", s) is None:
                # Nobody active at the usual time: cook at the next active minute within two hours.
                later = np.flatnonzero(is_active[s : min(MINUTES, s + 120)])
                if later.size:
                    run("hob", s + int(later[0]))
    poisson_starts("kettle", 1.2 + 0.8 * n_res)
    if "microwave" in t.owns:
        poisson_starts("microwave", 0.4 + 0.3 * n_res)
    poisson_starts("tv", 1.2 + 0.3 * n_res)
    if "computer" in t.owns:
        poisson_starts("computer", 0.6 + 0.5 * sum(o.kind != "home" for o in t.occupants))
    if "shower" in t.owns:
        poisson_starts("shower", 0.7 * n_res)
    # Laundry: cycles a week from residents; the dryer follows the washer.
    if rng.random() < (2.0 + 1.5 * n_res) / 7.0:
        w = _WEIGHTS["washing"] * is_active
        if w.sum() > 0:
            s = int(rng.choice(MINUTES, p=w / w.sum()))
            end = run("washing", s)
            if end is not None and "dryer" in t.owns and rng.random() < 0.6:
                run("dryer", end + int(rng.integers(0, 20)) if is_active[min(end, MINUTES - 1)] else end)
    if "dishwasher" in t.owns and rng.random() < min(0.95, 0.25 + 0.2 * n_res):
        after = (13.8, 1.0) if home_lunch and rng.random() < 0.5 else (20.5, 1.2)
        s = int(np.clip(rng.normal(after[0] * 60, after[1] * 60), 0, MINUTES - 1))
        if run("dishwasher", s) is None:
            active_idx = np.flatnonzero(is_active[12 * 60 :])
            if active_idx.size:
                run("dishwasher", 12 * 60 + int(rng.choice(active_idx)))
    return DayTruth(power, present, active, starts)


def simulate_days(
    traits: HouseholdTraits,
    days: list[dt.date],
    rngs: list[np.random.Generator],
    holidays: frozenset[dt.date],
    tz_offsets_h: list[float],
) -> list[DayTruth]:
    """Simulate ``days`` (one generator each, used in a fixed order so every day is
    independent of the window). Occupancy chains run vectorised over all days."""
    n_occ = traits.residents
    pis, u0s, us, trips = [], [], [], []
    for day, rng in zip(days, rngs, strict=True):
        rest = _is_rest(day, holidays)
        jit = rng.normal(0.0, 20.0, (n_occ, 4))
        for k, o in enumerate(traits.occupants):
            pis.append(_targets(o, rest, jit[k]))
        u0s.append(rng.random(n_occ))
        us.append(rng.random((n_occ, SLOTS)))
        trips.append(bool(rng.random() < 0.03))  # away all day (visits, holidays)
    if not days:
        return []
    states = _run_chains(np.stack(pis), np.concatenate(u0s), np.concatenate(us))
    out = []
    for d, (day, rng) in enumerate(zip(days, rngs, strict=True)):
        out.append(
            _simulate_day(traits, day, _is_rest(day, holidays), states[d * n_occ : (d + 1) * n_occ],
                          trips[d], rng, tz_offsets_h[d])
        )
    return out
