"""The simulated households and the data sources of ``meterhub privacy evaluate``: what
each source is made of (the recipients' release kinds, :data:`SOURCES`), the dataset with
its ground truth (:func:`build_dataset`), and the features each source gives an attacker
(:mod:`meterhub.privacy.evaluate`; docs/privacy-evaluation.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..meter.load import LoadTrace, simulate_neighbourhood
from ..model.timebase import local_day_of, wallclock_minutes
from .features import class_features, window_features
from .releases import RECIPIENTS, RELEASE_KINDS, ReleaseContext, all_releases

NILM_APPLIANCES: tuple[str, ...] = ("kettle", "hob", "oven", "washing", "dryer", "dishwasher", "shower")
NILM_ON_WH = 50.0  # an appliance "used in the hour"
TRAITS: tuple[str, ...] = (
    "residents", "all_adults_employed", "children", "electric_water_heating", "electric_space_heating",
)


@dataclass(frozen=True)
class Source:
    """A data source: a raw series (``per_hour`` readings an hour) or release kinds."""

    name: str
    description: str
    per_hour: int = 0
    kinds: tuple[str, ...] = ()

    @property
    def is_release(self) -> bool:
        return bool(self.kinds)


#: The strict preset (meterhub.policy.STRICT_ENTITLEMENTS): the grid operator forecasts
#: from the DP release instead of exact scores and samples; DR and the fraud aggregate
#: stay (they settle money and find theft).
STRICT_GRID_KINDS: tuple[str, ...] = ("dr", "aggregate", "dp-forecast")


def _sources() -> tuple[Source, ...]:
    out = [
        Source("none", "time of day and day type only (the prior)"),
        Source("raw-15min", "raw 15-minute readings (without meterhub)", per_hour=4),
        Source("hourly", "hourly readings (without meterhub)", per_hour=1),
    ]
    for r in RECIPIENTS:
        kinds = tuple(k.name for k in RELEASE_KINDS.values() if k.recipient == r)
        out.append(Source(r, f"what the {r} receives under the default policy: " + ", ".join(kinds), kinds=kinds))
    out.append(Source("collusion", "all recipients together: " + ", ".join(RELEASE_KINDS), kinds=tuple(RELEASE_KINDS)))
    out.append(Source("grid-operator-strict", "the grid operator under the strict preset: "
                      + ", ".join(STRICT_GRID_KINDS), kinds=STRICT_GRID_KINDS))
    supplier = tuple(k.name for k in RELEASE_KINDS.values() if k.recipient == "supplier")
    out.append(Source("collusion-strict", "supplier and grid operator, strict preset: "
                      + ", ".join(supplier + STRICT_GRID_KINDS), kinds=supplier + STRICT_GRID_KINDS))
    return tuple(out)


SOURCES: tuple[Source, ...] = _sources()


@dataclass
class Dataset:
    """Households, their readings and ground truth, aligned by hour."""

    ctx: ReleaseContext
    traces: list[LoadTrace]
    x15: np.ndarray  # (N, n) Wh
    hourly: np.ndarray  # (N, H) Wh
    occupied: np.ndarray  # (N, H) bool
    hour_of_day: np.ndarray  # (H,)
    rest: np.ndarray  # (H,) bool: weekend or holiday
    period_of_hour: np.ndarray  # (H,)
    truth15: dict[str, np.ndarray]  # appliance -> (N, n) Wh
    truth_h: dict[str, np.ndarray]  # appliance -> (N, H) Wh
    traits: dict[str, np.ndarray]  # trait -> (N,) labels
    releases: list[dict[str, list[dict[str, object]]]]

    @property
    def n(self) -> int:
        return len(self.traces)


def build_dataset(households: int, weeks: int, seed: int, start: dt.date) -> Dataset:
    """Simulate the households (15-minute readings) and compute every release."""
    from ..model.holidays import german_holidays

    days = 7 * weeks
    traces = simulate_neighbourhood(households, start, days, seed=seed)
    ctx = ReleaseContext(start, days, seed=seed)
    x15 = np.array([t.readings_wh for t in traces], dtype=float)
    n_hh, n = x15.shape
    hourly = x15.reshape(n_hh, -1, 4).sum(axis=2)
    occ15 = np.array([t.occupied for t in traces], dtype=float)
    occupied = occ15.reshape(n_hh, -1, 4).mean(axis=2) >= 0.5
    starts = ctx.starts[::4]
    tz = ctx.tz
    hour_of_day = np.array([wallclock_minutes(s, tz) // 60 for s in starts])
    hol = {h for y in range(start.year, start.year + 2) for h in german_holidays(y)}
    local_days = [local_day_of(s, tz) for s in starts]
    rest = np.array([d.weekday() >= 5 or d in hol for d in local_days])
    period_of_hour = np.searchsorted([p.lo for p in ctx.periods], np.arange(0, n, 4), side="right") - 1
    truth15 = {a: np.array([t.truth[a] for t in traces]) for a in NILM_APPLIANCES}
    truth_h = {a: v.reshape(n_hh, -1, 4).sum(axis=2) for a, v in truth15.items()}
    res = np.array([int(t.params["residents"]) for t in traces])
    traits = {
        "residents": np.where(res >= 3, "3+", res.astype(str)),
        "all_adults_employed": np.array([bool(t.params["all_adults_employed"]) for t in traces]),
        "children": np.array([bool(t.params["children"]) for t in traces]),
        "electric_water_heating": np.array([bool(t.params["electric_water_heating"]) for t in traces]),
        "electric_space_heating": np.array([bool(t.params["electric_space_heating"]) for t in traces]),
    }
    releases = all_releases([t.household_id for t in traces], [t.readings_wh for t in traces], ctx)
    return Dataset(ctx, traces, x15, hourly, occupied, hour_of_day, rest, period_of_hour,
                   truth15, truth_h, traits, releases)


# --------------------------------------------------------------------------- features per source


def _time_features(ds: Dataset) -> np.ndarray:
    h = ds.hour_of_day.astype(float)
    return np.stack([h, ds.rest.astype(float), np.sin(2 * np.pi * h / 24), np.cos(2 * np.pi * h / 24)], axis=1)


def _release_household_features(ds: Dataset, kinds: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(names, (N, periods, F)) features of the given release kinds per household and period."""
    names: list[str] = []
    per: list[np.ndarray] = []
    for kind in kinds:
        fn = RELEASE_KINDS[kind].features
        rows = [[fn(f) for f in r[kind]] for r in ds.releases]
        keys = sorted(rows[0][0])
        names += [f"{kind}:{k}" for k in keys]
        per.append(np.array([[[p[k] for k in keys] for p in hh] for hh in rows], dtype=float))
    return names, np.concatenate(per, axis=2)


def _disclosed_readings(ds: Dataset, kinds: Sequence[str]) -> np.ndarray:
    """(N, H) the hourly-scaled value of a released single reading in the hour, NaN if none."""
    out = np.full(ds.hourly.shape, np.nan)
    for kind in kinds:
        at = RELEASE_KINDS[kind].reading_at
        if at is None:
            continue
        for i, r in enumerate(ds.releases):
            for f in r[kind]:
                for idx, v in at(f):
                    out[i, idx // 4] = 4.0 * v
    return out


def _hour_values(ds: Dataset, kinds: Sequence[str]) -> list[np.ndarray]:
    """Per kind with per-hour figures (the group aggregate): (N, H) values, NaN where none."""
    out = []
    for kind in kinds:
        at = RELEASE_KINDS[kind].hour_values
        if at is None:
            continue
        v = np.full(ds.hourly.shape, np.nan)
        for i, r in enumerate(ds.releases):
            for f in r[kind]:
                for h, x in at(f):
                    v[i, h] = x
        out.append(v)
    return out


def unit_features(ds: Dataset, src: Source) -> np.ndarray:
    """(N, H, F) per-hour features an attacker holding ``src`` computes."""
    t = np.broadcast_to(_time_features(ds)[None], (ds.n, *_time_features(ds).shape))
    parts = [t]
    if src.per_hour == 4:
        parts += [v[:, :, None] for v in window_features(ds.x15, 4).values()]
    elif src.per_hour == 1:
        parts += [v[:, :, None] for v in window_features(ds.hourly, 1).values()]
    elif src.is_release:
        _, hf = _release_household_features(ds, src.kinds)
        parts.append(hf[:, ds.period_of_hour, :])
        parts += [v[:, :, None] for v in _hour_values(ds, src.kinds)]
        disclosed = _disclosed_readings(ds, src.kinds)
        if not np.isnan(disclosed).all():
            parts.append(disclosed[:, :, None])
    return np.concatenate(parts, axis=2)


def household_features(ds: Dataset, src: Source) -> np.ndarray | None:
    """(N, F) features for the trait attacks; None for the ``none`` source."""
    if src.per_hour == 4:
        f = class_features(ds.hourly, ds.hour_of_day, ds.rest, ds.x15)
    elif src.per_hour == 1:
        f = class_features(ds.hourly, ds.hour_of_day, ds.rest)
    elif src.is_release:
        _, hf = _release_household_features(ds, src.kinds)
        return np.nanmean(hf, axis=1) if hf.shape[1] > 1 else hf[:, 0, :]
    else:
        return None
    return np.stack(list(f.values()), axis=1)
