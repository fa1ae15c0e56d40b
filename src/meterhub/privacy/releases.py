"""What each recipient receives from a hub, computed with the functions the hub uses.

Each *release kind* is one entry of :data:`RELEASE_KINDS`: who receives it, how its
figures follow from one household's readings over one period (with the very
functions the applets and the hub call: :func:`meterhub.hub.billing.linear_bill`
for bills, the price index's ``values_for`` for settlement, the signed reference
profiles' weights for profile scores, :mod:`meterhub.crypto.sampling`'s coin toss
for the 1-in-k samples), and which attack features an adversary can derive from
those figures. The kinds are what the default release policy lets each recipient
receive per period (meterhub.policy; ``privacy.evaluate.policy_usage`` checks the
budgets): bills and settlement for the supplier; profile scores, samples, two
demand-response events (``dr_figures``, as the DR applet), the fraud group's hourly
aggregate (``group_releases``) and the DP forecast (``model.dp.dp_forecast``) for the
grid operator. A new kind is one more entry; the evaluation picks it up for its
recipient and for the colluding union.

Only the values matter to an attacker; the openings' blindings are uniformly
random and independent of the readings, so they are left out (the bill, ``E``,
``V``, ``S`` and the scores do not depend on them). ``tests/test_privacy.py``
checks the figures against what the real applets release through the card.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np

from ..crypto.pedersen import Opening
from ..crypto.sampling import DEFAULT_K, commit_nonce, derive_indices, derive_seed
from ..dr.event import ADJ_GAP_HOURS, ADJ_HOURS, MIN_BASELINE_DAYS, adjustment_factor, similar_days
from ..dr.release import reduction_coefficients
from ..hub.billing import linear_bill
from ..model.dp import DpParams, SeededNoise, dp_forecast
from ..model.formats.aggregation import MIN_GROUP_SIZE
from ..model.timebase import range_starts
from ..tariffs.model import Tariff, example_tariff
from ..tariffs.price_index import Series, example_price_index
from ..tariffs.profiles import BDEW_PROFILES, bdew_profile, utility_profile
from ..utility.forecasting import pearson, period_weights

__all__ = [
    "RECIPIENTS",
    "RELEASE_KINDS",
    "Period",
    "all_releases",
    "dr_figures",
    "group_releases",
    "ReleaseContext",
    "ReleaseKind",
    "household_releases",
    "period_features",
]

RECIPIENTS: tuple[str, ...] = ("supplier", "grid-operator")


@dataclass(frozen=True)
class Period:
    """One release period: local days ``first..last`` and the readings' slice."""

    first: date
    last: date
    lo: int  # index of the first reading of the period in the household's trace
    hi: int  # one past the last

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass
class ReleaseContext:
    """Everything public or agreed that the releases of a run depend on."""

    start: date
    days: int
    tz: str = "Europe/Berlin"
    interval_minutes: int = 15
    period_days: int = 28
    k: int = DEFAULT_K
    seed: int = 0
    periods: list[Period] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    # Coin-toss seeds from a real toss, by (meter id, first day); others are drawn
    # from a source seeded by ``seed`` (reproducible runs).
    coin_seeds: dict[tuple[str, date], bytes] = field(default_factory=dict)
    day_offsets: list[int] = field(default_factory=list)
    # The default release policy's limits that shape the releases (meterhub.policy):
    # demand-response events per period within the functional budget left after the
    # 12 profile scores (16 - 14 = 2), the DP forecast's epsilon, clip and unit.
    dr_events_per_period: int = 2
    dp: DpParams = field(default_factory=lambda: DpParams(1.0))
    group_size: int = MIN_GROUP_SIZE

    def __post_init__(self) -> None:
        self.starts = range_starts(self.start, self.days, self.tz, self.interval_minutes)
        per_day = [len(range_starts(self.start + timedelta(days=d), 1, self.tz, self.interval_minutes))
                   for d in range(self.days)]
        offsets = np.concatenate(([0], np.cumsum(per_day)))
        self.day_offsets = [int(x) for x in offsets]
        self.periods = []
        for a in range(0, self.days, self.period_days):
            b = min(self.days, a + self.period_days)
            self.periods.append(Period(self.start + timedelta(days=a), self.start + timedelta(days=b - 1),
                                       int(offsets[a]), int(offsets[b])))

    # The public inputs, built once per run (cached on the context's identity).
    def tariff_prices(self) -> list[int]:
        return _tariff_prices(self.start, self.days, self.tz, self.interval_minutes)

    def index_prices(self) -> list[int]:
        return _index_prices(self.start, self.days, self.tz, self.interval_minutes, self.seed)

    def profiles(self, p: Period) -> dict[str, list[int]]:
        """Each signed reference profile's hourly weights over period ``p``."""
        return _weights(p.first, p.days, self.tz)


@lru_cache(maxsize=8)
def _tariff_prices(start: date, days: int, tz: str, interval: int) -> list[int]:
    # The example tariff of each local day's year (it is valid for one calendar year).
    out: list[int] = []
    tariffs: dict[int, Tariff] = {}
    for d in range(days):
        day = start + timedelta(days=d)
        t = tariffs.get(day.year) or tariffs.setdefault(day.year, example_tariff(day.year, tz=tz))
        out.extend(t.prices_for(range_starts(day, 1, tz, interval), interval))
    return out


@lru_cache(maxsize=8)
def _index_prices(start: date, days: int, tz: str, interval: int, seed: int) -> list[int]:
    step = 15 if 15 % interval == 0 else interval
    series = example_price_index(start, days, tz=tz, interval_minutes=step, seed=2027 + seed)
    return series.values_for(range_starts(start, days, tz, interval), interval)


@lru_cache(maxsize=16)
def _weights(first: date, days: int, tz: str) -> dict[str, list[int]]:
    series: dict[str, Series] = {s.series_id: s for s in (bdew_profile(n, first, days, tz=tz) for n in BDEW_PROFILES)}
    u = utility_profile("u-night", first, days, tz=tz)
    series[u.series_id] = u
    return period_weights(series, range_starts(first, days, tz, 60))


# --------------------------------------------------------------------------- the kinds


def _bill(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    prices = ctx.tariff_prices()[p.lo : p.hi]
    energy_charge, _ = linear_bill(prices, [Opening(int(x), 0) for x in m])
    standing = p.days * example_tariff(p.first.year, tz=ctx.tz).standing_charge_per_day
    return {"total": energy_charge + standing, "days": p.days}


def _bill_features(f: dict[str, object]) -> dict[str, float]:
    return {"bill_per_day": float(f["total"]) / float(f["days"])}  # type: ignore[arg-type]


def _settlement(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    prices = ctx.index_prices()[p.lo : p.hi]
    return {"E": int(sum(m)), "V": int(sum(a * b for a, b in zip(prices, m, strict=True))), "days": p.days}


def _settlement_features(f: dict[str, object]) -> dict[str, float]:
    e, v, d = float(f["E"]), float(f["V"]), float(f["days"])  # type: ignore[arg-type]
    return {"settle_E_per_day": e / d, "settle_V_over_E": v / e if e else 0.0}


def _hourly(m: Sequence[int], g: int) -> list[int]:
    return [int(sum(m[k : k + g])) for k in range(0, len(m), g)]


def _scores(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    # As the profiling applet: hourly sums M_h, E, S = sum M_h^2, s_k = sum w_k,h M_h.
    hourly = _hourly(m, 60 // ctx.interval_minutes)
    weights = ctx.profiles(p)
    return {
        "n": len(hourly),
        "E": sum(hourly),
        "S": sum(x * x for x in hourly),
        "scores": {k: sum(a * b for a, b in zip(w, hourly, strict=True)) for k, w in weights.items()},
        "weights": weights,
    }


def _score_features(f: dict[str, object]) -> dict[str, float]:
    n, e, s = int(f["n"]), float(f["E"]), float(f["S"])  # type: ignore[arg-type,call-overload]  # dict[str, object] record
    out = {"scores_E_per_hour": e / n, "scores_peakiness": n * s / (e * e) if e else 0.0}
    weights: dict[str, list[int]] = f["weights"]  # type: ignore[assignment]
    for k, sc in f["scores"].items():  # type: ignore[attr-defined]
        w = weights[k]
        sw, sw2 = float(sum(w)), float(sum(x * x for x in w))
        out[f"r_{k}"] = pearson(n, e, s, sw, sw2, float(sc))
    return out


def _coin(meter_id: str, p: Period, k: int, seed: int) -> bytes:
    # Both sides' nonces from a seeded source (reproducible runs); the derivation is
    # the coin toss of meterhub.crypto.sampling, so the indices are the released ones.
    rnd = random.Random(f"{seed}/{meter_id}/{p.first.isoformat()}")
    nu, nh = rnd.randbytes(32), rnd.randbytes(32)
    return derive_seed(commit_nonce(meter_id, p.first, p.last, k, nu), nu, nh)


def _samples(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    seed = ctx.coin_seeds.get((meter_id, p.first)) or _coin(meter_id, p, ctx.k, ctx.seed)
    idx = derive_indices(seed, 0, len(m), ctx.k)
    return {"samples": [(i, int(m[i])) for i in idx], "offset": p.lo}


def _sample_features(f: dict[str, object]) -> dict[str, float]:
    vals = np.array([v for _, v in f["samples"]], dtype=np.float64)  # type: ignore[attr-defined]
    if vals.size == 0:
        return {"samples_mean": math.nan, "samples_std": math.nan, "samples_max": math.nan,
                "samples_min": math.nan}
    return {"samples_mean": float(vals.mean()), "samples_std": float(vals.std()),
            "samples_max": float(vals.max()), "samples_min": float(vals.min())}


def _dr_events(ctx: ReleaseContext, p: Period) -> list[tuple[int, list[date]]]:
    """The period's demand-response events: up to ``dr_events_per_period`` weekdays with
    at least five similar baseline days since the first reading (dr.event.similar_days),
    evenly spread; each as (day index, baseline days)."""
    from ..model.holidays import german_holidays

    hol = {h for y in range(ctx.start.year, ctx.start.year + 2) for h in german_holidays(y)}
    out = []
    for d in range((p.first - ctx.start).days, (p.last - ctx.start).days + 1):
        day = ctx.start + timedelta(days=d)
        if day.weekday() >= 5 or day in hol or ctx.day_offsets[d + 1] - ctx.day_offsets[d] != 24 * 60 // ctx.interval_minutes:
            continue
        base = similar_days(day, set(), hol, ctx.tz, have_from=ctx.start)
        if len(base) >= MIN_BASELINE_DAYS:
            out.append((d, base))
    k = ctx.dr_events_per_period
    if len(out) <= k:
        return out
    return [out[(2 * j + 1) * len(out) // (2 * k)] for j in range(k)]


DR_EVENT_HOUR, DR_EVENT_HOURS = 17, 2  # an evening peak event, 17:00-19:00 local


def dr_figures(full: Sequence[int], ctx: ReleaseContext, d: int, base: Sequence[date]) -> dict[str, int]:
    """One DR release's figures for the event on day index ``d`` (17:00-19:00 local) with
    baseline days ``base``, as the demand-response applet computes them
    (applets/demand_response.py ``_compute``): the capped adjustment ``a`` (permille)
    and the scaled reduction ``S = a * sum_baseline - 1000 N sum_event``."""
    per_hour = 60 // ctx.interval_minutes
    e_pos = range(DR_EVENT_HOUR * per_hour, (DR_EVENT_HOUR + DR_EVENT_HOURS) * per_hour)
    w0 = (DR_EVENT_HOUR - ADJ_HOURS - ADJ_GAP_HOURS) * per_hour
    w_pos = range(w0, w0 + ADJ_HOURS * per_hour)

    def total(days: list[int], pos: range) -> int:
        return sum(int(full[ctx.day_offsets[x] + j]) for x in days for j in pos)

    bdays = [(b - ctx.start).days for b in base]
    n = len(bdays)
    a = adjustment_factor(n, total([d], w_pos), total(bdays, w_pos))
    kb, ke = reduction_coefficients(a, n)
    return {"day": d, "n_days": n, "adjustment": a,
            "scaled_reduction": kb * total(bdays, e_pos) + ke * total([d], e_pos)}


def _dr(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str, full: Sequence[int]) -> dict[str, object]:
    return {"events": [dr_figures(full, ctx, d, base) for d, base in _dr_events(ctx, p)]}


def _dr_features(f: dict[str, object]) -> dict[str, float]:
    ev: list[dict[str, int]] = f["events"]  # type: ignore[assignment]
    if not ev:
        return {"dr_reduction_wh": math.nan, "dr_adjustment": math.nan}
    red = [e["scaled_reduction"] / (1000 * e["n_days"]) for e in ev]
    return {"dr_reduction_wh": float(np.mean(red)), "dr_adjustment": float(np.mean([e["adjustment"] for e in ev]))}


def _dp_forecast(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    # The profiling applet's message 22 (model.dp.dp_forecast) over the period's hours;
    # the noise from a seeded generator of the same distributions, so runs reproduce.
    hourly = _hourly(m, 60 // ctx.interval_minutes)
    noise = SeededNoise([ctx.seed, 0xD9, *meter_id.encode(), p.lo])
    return dp_forecast(hourly, ctx.profiles(p), ctx.dp, noise)


def _dp_features(f: dict[str, object]) -> dict[str, float]:
    out = {"dp_energy_per_hour": float(f["energy_wh"]) / float(f["hours"])}  # type: ignore[arg-type]
    for k in f["profiles"]:  # type: ignore[attr-defined]
        out[f"dp_class_{k}"] = 1.0 if f["class"] == k else 0.0
    return out


def _aggregate_features(f: dict[str, object]) -> dict[str, float]:
    h = np.asarray(f["hourly"], dtype=float) / float(f["members"])  # type: ignore[arg-type]
    return {"group_mean_per_hour": float(h.mean()), "group_peak_per_hour": float(h.max()),
            "group_min_per_hour": float(h.min())}


def _aggregate_hours(f: dict[str, object]) -> list[tuple[int, float]]:
    lo: int = f["first_hour"]  # type: ignore[assignment]
    members: int = f["members"]  # type: ignore[assignment]
    hourly: list[int] = f["hourly"]  # type: ignore[assignment]
    return [(lo + i, v / members) for i, v in enumerate(hourly)]


def group_releases(meter_ids: Sequence[str], readings: Sequence[Sequence[int]], ctx: ReleaseContext
                   ) -> list[list[dict[str, object]]]:
    """The ``aggregate`` release of each household: its group's hourly sums per period.

    Groups are runs of ``ctx.group_size`` consecutive households (neighbours on one
    feeder, the fraud balance's unit, docs/fraud.md), a short tail joining the last
    group. The aggregation applet releases masked values whose sum over the group is
    the group's hourly total; the grid operator learns that total and nothing per
    household (docs/fraud.md), so the total is what is modelled."""
    n = len(meter_ids)
    g = max(1, ctx.group_size)
    starts = list(range(0, n, g)) if n >= g else [0]
    if len(starts) > 1 and n - starts[-1] < g:
        starts.pop()
    bounds = [*starts, n]
    per_hour = 60 // ctx.interval_minutes
    out: list[list[dict[str, object]]] = [[] for _ in range(n)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        total = np.sum(np.asarray(readings[a:b], dtype=np.int64), axis=0)
        for p in ctx.periods:
            hourly = total[p.lo : p.hi].reshape(-1, per_hour).sum(axis=1)
            fig = {"hourly": [int(x) for x in hourly], "members": b - a, "first_hour": p.lo // per_hour}
            for i in range(a, b):
                out[i].append(fig)
    return out


@dataclass(frozen=True)
class ReleaseKind:
    """One kind of release: recipient, figures per period, features derivable from them.

    ``compute(readings of the period, context, period, meter id)`` returns the
    figures; ``features(figures)`` the household-level features an attacker derives;
    ``reading_at`` (optional) the individual readings the release discloses, as
    ``[(index in the trace, Wh)]`` (only sampling does).
    """

    name: str
    recipient: str
    description: str
    compute: Callable[[Sequence[int], ReleaseContext, Period, str], dict[str, object]]
    features: Callable[[dict[str, object]], dict[str, float]]
    reading_at: Callable[[dict[str, object]], list[tuple[int, int]]] | None = None
    # Per-hour values the release discloses for the household's hours: [(hour, value)].
    hour_values: Callable[[dict[str, object]], list[tuple[int, float]]] | None = None
    # Computed over a group of households (group_releases), not from one trace.
    group: bool = False
    # Needs the whole trace (baseline days before the period), as compute(..., full).
    whole_trace: bool = False


def _no_compute(m: Sequence[int], ctx: ReleaseContext, p: Period, meter_id: str) -> dict[str, object]:
    raise TypeError("a group release is computed by group_releases")


def _sample_readings(f: dict[str, object]) -> list[tuple[int, int]]:
    off = int(f["offset"])  # type: ignore[call-overload]  # a dict[str, object] record: an int
    return [(off + i, v) for i, v in f["samples"]]  # type: ignore[attr-defined]


RELEASE_KINDS: dict[str, ReleaseKind] = {
    k.name: k
    for k in (
        ReleaseKind("bill", "supplier", "monthly time-of-use bill (hub.billing.linear_bill)", _bill, _bill_features),
        ReleaseKind("settlement", "supplier", "settlement E and V against the price index", _settlement,
                    _settlement_features),
        ReleaseKind("profile-scores", "grid-operator", "energy, sum of squares and 12 profile scores (hourly)",
                    _scores, _score_features),
        ReleaseKind("samples", "grid-operator", f"1-in-{DEFAULT_K} coin-tossed readings", _samples,
                    _sample_features, _sample_readings),
        ReleaseKind("dr", "grid-operator", "demand-response reductions, 2 evening events per period "
                    "(the functionals left of the budget)", _dr, _dr_features,  # type: ignore[arg-type]
                    whole_trace=True),
        ReleaseKind("aggregate", "grid-operator", f"the hourly total of a group of {MIN_GROUP_SIZE} homes, "
                    "every day (fraud balance)", _no_compute, _aggregate_features,
                    hour_values=_aggregate_hours, group=True),
        ReleaseKind("dp-forecast", "grid-operator", "DP forecast: noisy energy and class (epsilon 1, "
                    "hour unit, 5 kWh clip)", _dp_forecast, _dp_features),
    )
}


def household_releases(
    meter_id: str, readings: Sequence[int], ctx: ReleaseContext, kinds: Sequence[str] | None = None
) -> dict[str, list[dict[str, object]]]:
    """Figures of each release kind for each period of one household."""
    out: dict[str, list[dict[str, object]]] = {}
    for name in kinds or RELEASE_KINDS:
        kind = RELEASE_KINDS[name]
        if kind.group:
            continue  # group_releases
        if kind.whole_trace:
            out[name] = [kind.compute(readings[p.lo : p.hi], ctx, p, meter_id, readings)  # type: ignore[call-arg]
                         for p in ctx.periods]
        else:
            out[name] = [kind.compute(readings[p.lo : p.hi], ctx, p, meter_id) for p in ctx.periods]
    return out


def all_releases(meter_ids: Sequence[str], readings: Sequence[Sequence[int]], ctx: ReleaseContext
                 ) -> list[dict[str, list[dict[str, object]]]]:
    """Every release kind of every household, the group kinds included."""
    out = [household_releases(m, r, ctx) for m, r in zip(meter_ids, readings, strict=True)]
    for i, figs in enumerate(group_releases(meter_ids, readings, ctx)):
        out[i]["aggregate"] = figs
    return out


def period_features(name: str, figures: dict[str, object]) -> dict[str, float]:
    return RELEASE_KINDS[name].features(figures)
