"""A low-voltage distribution grid with electricity theft, and its ground truth (issue 13).

* **Feeders**: a transformer serving 5 to 60 customers along a radial cable (default
  range, as in real low-voltage networks), in cable order. Each customer's true draw
  comes from the household/business simulator (:mod:`meterhub.meter.load`), hourly.
* **Feeder meter**: what the grid operator measures at the transformer, signed like any
  meter reading: the customers' true draw plus the technical losses, with the
  measurement noise of an accuracy-class 0.5 meter. Losses are physical: a fixed core
  (no-load) loss of the transformer, and resistive (copper) losses growing with the
  square of the load, ``L_h = core + k * P_h^2`` (P in Wh per hour). The grid operator
  knows only the nameplate values; each feeder's true ones differ by up to 10% (core)
  and 15% (resistive), and each customer meter has a small gain error.
* **Check meters**: a portable meter the grid operator clamps on the cable at a cut
  point measures everything downstream of it; two cuts give a segment's draw
  (:meth:`Feeder.segment_wh`).
* **Theft** (Jokar, Arpanahi and Moshtaghi, "Electricity theft detection in AMI using
  customers' consumption patterns", IEEE Trans. Smart Grid 7(1), 2016, section III-A,
  attacks h1-h6, plus a night-only attack): the meter records less than the household
  draws while the feeder meter sees everything. From a random start day, with a random
  intensity:

  - ``constant`` (h1): ``x' = a x``, ``a`` in [0.2, 0.8];
  - ``onoff`` (h2): ``x' = 0`` in a daily bypass window of 4-10 hours, else ``x``;
  - ``varying`` (h3): ``x' = a_h x``, ``a_h`` drawn per hour in [0.2, 0.8];
  - ``night``: ``x' = a x`` from 22:00 to 06:00 only;
  - ``mean`` (h4): every hour records the day's mean (the daily total is kept: an
    attack on a time-of-use tariff, not on energy);
  - ``mean-varying`` (h5): ``x' = a_h * mean(x)``;
  - ``reverse`` (h6): the day's readings in reverse order (daily total kept).

The factor attacks (``constant``, ``varying``, ``night``) are invertible:
:func:`true_from_recorded` makes the true draw of a thief whose meter recorded a given
series, which the demo uses on its already-recorded households.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

# The calendar and loss model are the grid operator's view too: they live in the model layer.
from ..model.grid import HourCalendar, LossModel, hour_calendar, nominal_losses

__all__ = [
    "THEFT_KINDS",
    "TOTAL_PRESERVING",
    "INVERTIBLE",
    "LossModel",
    "Theft",
    "Feeder",
    "draw_theft",
    "apply_theft",
    "true_from_recorded",
    "nominal_losses",
    "build_feeder",
    "simulate_grid",
    "hour_calendar",
]

THEFT_KINDS = ("constant", "onoff", "varying", "night", "mean", "mean-varying", "reverse")
TOTAL_PRESERVING = frozenset({"mean", "reverse"})
INVERTIBLE = ("constant", "varying", "night")
FEEDER_METER_NOISE = 0.002  # class 0.5: 0.2% (one sigma) per hourly reading
CHECK_METER_NOISE = 0.005
CUSTOMER_GAIN_SIGMA = 0.003


@dataclass(frozen=True)
class Theft:
    """Ground truth of one thief."""

    customer: str
    kind: str
    start_day: int  # index of the first stolen day
    intensity: float  # mean factor recorded (a) or bypass hours, per kind
    seed: int

    def describe(self) -> str:
        return f"{self.customer}: {self.kind} from day {self.start_day} (intensity {self.intensity:.2f})"


def draw_theft(customer: str, rng: np.random.Generator, days: int, *, kinds: Sequence[str] = THEFT_KINDS,
               start_range: tuple[int, int] | None = None) -> Theft:
    """A random attack: kind, start day (default: the first two thirds of the period)
    and intensity."""
    kind = str(kinds[int(rng.integers(len(kinds)))])
    lo, hi = start_range or (0, max(1, (2 * days) // 3))
    start = int(rng.integers(lo, max(lo + 1, hi)))
    intensity = float(rng.integers(4, 11)) if kind == "onoff" else float(rng.uniform(0.2, 0.8))
    return Theft(customer, kind, start, intensity, int(rng.integers(1 << 31)))


def _factors(theft: Theft, cal: HourCalendar) -> np.ndarray:
    """Recorded/true factor per hour for the factor attacks (1 before the start)."""
    rng = np.random.default_rng(theft.seed)
    n = len(cal.day)
    f = np.ones(n)
    active = cal.day >= theft.start_day
    if theft.kind == "constant":
        f[active] = theft.intensity
    elif theft.kind == "varying":
        # a_h in [0.2, 0.8] around the drawn mean
        lo, hi = max(0.2, theft.intensity - 0.3), min(0.8, theft.intensity + 0.3)
        f[active] = rng.uniform(lo, hi, size=int(active.sum()))
    elif theft.kind == "night":
        night = (cal.local_hour >= 22) | (cal.local_hour < 6)
        f[active & night] = theft.intensity
    else:
        raise ValueError(f"{theft.kind} is not a factor attack")
    return f


def apply_theft(true_wh: np.ndarray, theft: Theft, cal: HourCalendar) -> np.ndarray:
    """What the tampered meter records (floats, Wh per hour), from the true draw."""
    if theft.kind in ("constant", "varying", "night"):
        return true_wh * _factors(theft, cal)
    rng = np.random.default_rng(theft.seed)
    out = np.array(true_wh, dtype=float)
    for d, sl in enumerate(cal.day_slices):
        if d < theft.start_day:
            continue
        x = true_wh[sl]
        if theft.kind == "onoff":
            width = int(theft.intensity)
            t0 = int(rng.integers(0, max(1, len(x) - width)))
            y = x.copy()
            y[t0 : t0 + width] = 0.0
        elif theft.kind == "mean":
            y = np.full(len(x), x.mean())
        elif theft.kind == "mean-varying":
            y = rng.uniform(0.2, 0.8, size=len(x)) * x.mean()
        elif theft.kind == "reverse":
            y = x[::-1].copy()
        else:
            raise ValueError(f"unknown theft kind {theft.kind!r}")
        out[sl] = y
    return out


def true_from_recorded(recorded_wh: np.ndarray, theft: Theft, cal: HourCalendar) -> np.ndarray:
    """The true draw of a thief whose meter recorded ``recorded_wh`` (factor attacks only)."""
    return recorded_wh / _factors(theft, cal)


def _round(x: np.ndarray) -> np.ndarray:
    return np.maximum(0, np.rint(x)).astype(np.int64)


@dataclass
class Feeder:
    """One feeder and its ground truth (arrays: customers x hours, in cable order)."""

    feeder_id: str
    customers: list[str]
    true_wh: np.ndarray
    recorded_wh: np.ndarray  # integer Wh per hour: what the meters committed
    losses: LossModel  # the real ones
    nominal: LossModel  # what the grid operator knows
    feeder_wh: np.ndarray  # the feeder meter, Wh per hour
    thefts: list[Theft] = field(default_factory=list)
    seed: int = 0

    @property
    def thieves(self) -> set[str]:
        return {t.customer for t in self.thefts}

    def theft_start(self) -> int | None:
        return min((t.start_day for t in self.thefts), default=None)

    def segment_wh(self, a: int, b: int, hours: slice) -> np.ndarray:
        """A check meter's view of customers ``a..b-1``: their true draw plus their share
        of the losses (resistive losses by share of the load), with meter noise."""
        rng = np.random.default_rng([self.seed, a, b, hours.start or 0])
        total = self.true_wh[:, hours].sum(axis=0)
        seg = self.true_wh[a:b, hours].sum(axis=0)
        share = np.divide(seg, total, out=np.zeros_like(seg, dtype=float), where=total > 0)
        loss = self.losses.loss(total) * share
        return (seg + loss) * (1.0 + rng.normal(0.0, CHECK_METER_NOISE, size=len(seg)))


def build_feeder(feeder_id: str, customers: Sequence[str], true_wh: np.ndarray, thefts: Sequence[Theft],
                 cal: HourCalendar, rng: np.random.Generator, *, recorded_wh: np.ndarray | None = None) -> Feeder:
    """Meters, losses and the feeder meter for one feeder. ``recorded_wh`` (the demo's
    committed readings) overrides what the meters record; otherwise honest meters record
    the true draw with their gain error and thieves' meters the attacked one."""
    true = np.asarray(true_wh, dtype=float)
    by_customer = {t.customer: t for t in thefts}
    if recorded_wh is None:
        rec = np.empty_like(true)
        gains = 1.0 + rng.normal(0.0, CUSTOMER_GAIN_SIGMA, size=len(customers))
        for i, c in enumerate(customers):
            x = apply_theft(true[i], by_customer[c], cal) if c in by_customer else true[i]
            rec[i] = x * gains[i]
        recorded = _round(rec)
    else:
        recorded = np.asarray(recorded_wh, dtype=np.int64)
    nominal = nominal_losses(len(customers), float(true.sum(axis=0).mean()))
    real = LossModel(nominal.core_wh * rng.uniform(0.9, 1.1), nominal.resistive * rng.uniform(0.85, 1.15))
    load = true.sum(axis=0)
    feeder = (load + real.loss(load)) * (1.0 + rng.normal(0.0, FEEDER_METER_NOISE, size=len(load)))
    return Feeder(feeder_id, list(customers), true, recorded, real, nominal, _round(feeder), list(thefts),
                  int(rng.integers(1 << 31)))


def simulate_grid(
    n_feeders: int,
    start: date,
    days: int,
    *,
    seed: int = 0,
    thief_share: float = 0.5,
    size_range: tuple[int, int] = (5, 60),
    business_share: float = 0.1,
    kinds: Sequence[str] = THEFT_KINDS,
    tz: str = "Europe/Berlin",
    pool: int | None = None,
) -> tuple[list[Feeder], HourCalendar]:
    """``n_feeders`` feeders of random size (log-uniform in ``size_range``); a share
    ``thief_share`` of them get one or two thieves (ground truth in ``Feeder.thefts``).

    Households come from a pool of ``pool`` simulated customers (default: enough for
    the largest feeder), each feeder drawing its customers from it without repeats and
    scaling each by a random factor, so that large studies stay fast.
    """
    from .load import simulate_load

    if n_feeders < 1 or days < 2:
        raise ValueError("at least one feeder and two days")
    lo, hi = size_range
    if not 1 <= lo <= hi:
        raise ValueError("bad feeder size range")
    rng = np.random.default_rng([seed, 0x67726964])
    pool_n = pool or max(hi, 80)
    pool_rng = np.random.default_rng([seed, 1])
    traces = []
    for k in range(pool_n):
        business = pool_rng.random() < business_share
        profile = str(pool_rng.choice(["g0", "g1", "g4", "l0"])) if business else "h0"
        annual = (float(np.exp(pool_rng.uniform(math.log(5000), math.log(30000)))) if business
                  else float(np.clip(pool_rng.lognormal(math.log(3000.0), 0.35), 1500, 6000)))
        traces.append(simulate_load(f"c{k:04d}", start, days, annual_kwh=annual, profile=profile,
                                    interval_minutes=60, tz=tz, seed=seed))
    cal = hour_calendar(traces[0].starts, tz)
    base = np.array([t.readings_wh for t in traces], dtype=float)
    feeders = []
    for f in range(n_feeders):
        n = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi + 0.999)))))
        n = min(max(n, lo), hi, pool_n)
        idx = rng.choice(pool_n, size=n, replace=False)
        true = base[idx] * rng.uniform(0.8, 1.25, size=(n, 1))
        customers = [f"f{f:03d}-c{k:02d}" for k in range(n)]
        thefts: list[Theft] = []
        if rng.random() < thief_share:
            for k in rng.choice(n, size=min(n, 1 + int(rng.random() < 0.3)), replace=False):
                thefts.append(draw_theft(customers[int(k)], rng, days, kinds=kinds))
        feeders.append(build_feeder(f"feeder-{f:03d}", customers, true, thefts, cal, rng))
    return feeders, cal


def day_of(start: date, k: int) -> date:
    return start + timedelta(days=k)
