"""What each recipient receives from a hub, computed with the functions the hub uses.

Each *release kind* is one entry of :data:`RELEASE_KINDS`: who receives it, how its
figures follow from one household's readings over one period (with the very
functions the applets and the hub call: :func:`meterhub.hub.billing.linear_bill`
for bills, the price index's ``values_for`` for settlement, the signed reference
profiles' weights for profile scores, :mod:`meterhub.crypto.sampling`'s coin toss
for the 1-in-k samples), and which attack features an adversary can derive from
those figures. A new kind of release (a demand-response report, a fraud
balance, a release under the guard's policy) is one more entry; the evaluation
picks it up for its recipient and for the colluding union.

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
from ..hub.billing import linear_bill
from ..meter.timebase import range_starts
from ..tariffs.model import Tariff, example_tariff
from ..tariffs.price_index import Series, example_price_index
from ..tariffs.profiles import BDEW_PROFILES, bdew_profile, utility_profile
from ..utility.forecasting import pearson, period_weights

__all__ = [
    "RECIPIENTS",
    "RELEASE_KINDS",
    "Period",
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

    def __post_init__(self) -> None:
        self.starts = range_starts(self.start, self.days, self.tz, self.interval_minutes)
        per_day = [len(range_starts(self.start + timedelta(days=d), 1, self.tz, self.interval_minutes))
                   for d in range(self.days)]
        offsets = np.concatenate(([0], np.cumsum(per_day)))
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
    n, e, s = int(f["n"]), float(f["E"]), float(f["S"])  # type: ignore[arg-type]
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
    vals = np.array([v for _, v in f["samples"]], dtype=float)  # type: ignore[attr-defined]
    if vals.size == 0:
        return {"samples_mean": math.nan, "samples_std": math.nan, "samples_max": math.nan,
                "samples_min": math.nan}
    return {"samples_mean": float(vals.mean()), "samples_std": float(vals.std()),
            "samples_max": float(vals.max()), "samples_min": float(vals.min())}


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


def _sample_readings(f: dict[str, object]) -> list[tuple[int, int]]:
    off = int(f["offset"])  # type: ignore[arg-type]
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
    )
}


def household_releases(
    meter_id: str, readings: Sequence[int], ctx: ReleaseContext, kinds: Sequence[str] | None = None
) -> dict[str, list[dict[str, object]]]:
    """Figures of each release kind for each period of one household."""
    out: dict[str, list[dict[str, object]]] = {}
    for name in kinds or RELEASE_KINDS:
        kind = RELEASE_KINDS[name]
        out[name] = [kind.compute(readings[p.lo : p.hi], ctx, p, meter_id) for p in ctx.periods]
    return out


def period_features(name: str, figures: dict[str, object]) -> dict[str, float]:
    return RELEASE_KINDS[name].features(figures)
