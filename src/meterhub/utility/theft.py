"""Theft detection from verified feeder sums: balance, CUSUM, localisation, suspect profiles.

The grid operator knows, per feeder and hour, the feeder meter's reading ``F_h`` and
the verified sum of its customers' readings ``S_h`` (private aggregation,
:mod:`meterhub.utility.fraud`), never one household's reading.

**Balance** (issue 13): ``D_h = F_h - S_h - L(F_h)``, the expected technical loss
``L`` from the nameplate model (core loss plus resistive loss in the square of the
load, :class:`meterhub.model.grid.LossModel`). Per day, over the complete hours
(every member answered), the relative energy discrepancy ``x_t = 100 sum D_h / sum
F_h`` (percent), and the shape discrepancy ``v_t``: the spread of ``D_h`` around its
daily mean, ``100 sqrt(mean (D_h - mean D)^2) / mean F`` (attacks that keep the daily
total, such as reporting the daily mean every hour, still move energy between hours).

**Detection**: two one-sided CUSUMs (Page, "Continuous inspection schemes",
Biometrika 41, 1954), ``g_t = max(0, g_{t-1} + x_t - k)``, alarm when ``g_t > h``;
days without a complete hour are skipped. The reference values ``k`` and the
thresholds ``h`` are calibrated on honest simulated feeders (:func:`calibrate`): ``k``
at a high quantile of honest daily values, ``h`` at the ``1 - far/2`` quantile of the
largest CUSUM value an honest feeder reaches over the horizon, so that a share ``far``
of honest feeders alarms within the horizon (the documented false-alarm rate).

**Withholding** (red team round 4): a thief can stay out of the aggregation instead
of under-reporting through it, letting its hub's host drop the grid operator's
messages. Every day of its feeder is then a recovery without it (incomplete, so the
balance skips it) or has no sum at all, and the CUSUMs never see a day. The operator
names the members that did not answer in every unmasking request, so it counts, per
member, the days of the horizon on which it did not answer (a group-day without a sum
counts against every member the operator could not reach), and raises a
*withholding* alarm for a member missing on more than ``threshold(n)`` of ``n`` days
(:class:`WithholdingDetector`). An honest hub misses a day's round independently with
a small probability ``p`` (power or network outages are rare and short), so its count
is at most Binomial(``n``, ``p``); ``threshold(n)`` is the smallest ``k >= 1`` with
``P(Binomial(n, p) > k) <= far``, and since the count only grows, the share of honest
members alarmed within the horizon is at most ``far``. Defaults ``p = 0.05`` (one day
in twenty, far more than a household's connection fails) and ``far = 0.001`` per
member and horizon: 30 days alarm on the 7th missing day, 14 days on the 5th, 7 days
on the 4th; a single missing day never alarms. The alarm names the member (its
identity is no secret: it is named in the unmasking requests) and goes to localisation
like a CUSUM alarm: the feeder is reported *not balanced on N of M days*.

**Localisation** (group testing without breaking the minimum group size): a flagged
feeder's cable is split at its middle, a check meter on the cut gives both halves'
balances over a round of days, and only halves whose relative discrepancy exceeds a
calibrated threshold are split again, as long as both halves keep at least
``min_size`` customers (each half is a new aggregation group, which the hubs' policy
admits: halves differ from their parent and from each other by at least the minimum).

**Suspect profiles**: for the customers of each narrowed group, signed suspect
profiles are matched through the profiling machinery (linear scores, the energy and
the proven sum of squares, :mod:`meterhub.utility.forecasting`):

* ``drop-YYYY-MM-DD``: 1 from that day on (weekly dates) - a drop in consumption;
* ``night``: 1 from 22:00 to 06:00 - a low night share against the neighbours';
* ``discrepancy``: the feeder's positive hourly discrepancy - readings that follow
  what goes missing, as a constant fraction does;
* ``neighbours``: the group's own hourly sum - a customer whose shape stopped
  following the neighbours' (a flat or reversed record).

Each statistic is a robust z-score within the group; a customer's evidence is the
largest, and its likelihood of being the thief (one thief in the group assumed) is
``exp(evidence_i) / sum_j exp(evidence_j)``. The grid operator learns these scores
for the narrowed group only, never a reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..model.grid import HourCalendar, LossModel
from .forecasting import pearson

__all__ = [
    "CusumDetector",
    "DailyBalance",
    "Localisation",
    "SuspectProfile",
    "WithholdingDetector",
    "balance",
    "calibrate",
    "cusum_path",
    "localise",
    "period_suspect_profiles",
    "suspect_likelihoods",
    "suspect_profiles",
    "suspect_statistics",
    "unbalanced_days",
]


def expected_loss(feeder_wh: np.ndarray, nominal: LossModel) -> np.ndarray:
    """The nameplate loss at the load the feeder meter implies (its reading minus the
    core loss; the resistive part is small, so one step suffices)."""
    load = np.maximum(0.0, feeder_wh - nominal.core_wh)
    return nominal.loss(load)


@dataclass
class DailyBalance:
    """Per day: relative energy and shape discrepancy (percent), NaN without a complete hour."""

    energy: np.ndarray
    shape: np.ndarray
    hourly: np.ndarray  # D_h (Wh), NaN where incomplete


def balance(feeder_wh: np.ndarray, sum_wh: np.ndarray, nominal: LossModel, cal: HourCalendar,
            complete: np.ndarray | None = None) -> DailyBalance:
    """The balance of the module docstring, from hourly arrays."""
    f = np.asarray(feeder_wh, dtype=float)
    d = f - np.asarray(sum_wh, dtype=float) - expected_loss(f, nominal)
    ok = np.ones(len(f), dtype=bool) if complete is None else np.asarray(complete, dtype=bool)
    energy = np.full(len(cal.day_slices), np.nan)
    shape = np.full(len(cal.day_slices), np.nan)
    for k, sl in enumerate(cal.day_slices):
        m = ok[sl]
        if m.sum() < 0.75 * (sl.stop - sl.start):  # too few complete hours to judge the day
            continue
        dd, ff = d[sl][m], f[sl][m]
        if ff.sum() <= 0:
            continue
        energy[k] = 100.0 * dd.sum() / ff.sum()
        shape[k] = 100.0 * math.sqrt(float(np.mean(np.square(dd - dd.mean())))) / ff.mean()
    return DailyBalance(energy, shape, np.where(ok, d, np.nan))


def cusum_path(x: Sequence[float] | np.ndarray, k: float) -> np.ndarray:
    """Page's one-sided CUSUM ``g_t = max(0, g_{t-1} + x_t - k)``; NaN days keep ``g``."""
    g = 0.0
    out = np.empty(len(x))
    for t, v in enumerate(x):
        if not math.isnan(v):
            g = max(0.0, g + v - k)
        out[t] = g
    return out


@dataclass(frozen=True)
class CusumDetector:
    """Energy and shape CUSUMs with their calibrated reference values and thresholds."""

    k_energy: float
    h_energy: float
    k_shape: float
    h_shape: float
    far: float  # target share of honest feeders alarming within the horizon
    horizon_days: int
    honest_feeders: int

    def alarm_day(self, b: DailyBalance, *, until: int | None = None) -> int | None:
        """The first day either CUSUM crosses its threshold (days before ``until``)."""
        n = len(b.energy) if until is None else min(until, len(b.energy))
        ge = cusum_path(b.energy[:n], self.k_energy)
        gs = cusum_path(b.shape[:n], self.k_shape)
        hit = np.nonzero((ge > self.h_energy) | (gs > self.h_shape))[0]
        return int(hit[0]) if len(hit) else None


def calibrate(honest: Sequence[DailyBalance], far: float = 0.05, *, quantile_k: float = 0.9) -> CusumDetector:
    """Reference values at the ``quantile_k`` quantile of honest daily values, thresholds
    at the ``1 - far/2`` quantile of honest feeders' largest CUSUM values (each
    statistic gets half the false-alarm budget)."""
    if not honest:
        raise ValueError("calibration needs honest feeders")
    e = np.concatenate([b.energy for b in honest])
    s = np.concatenate([b.shape for b in honest])
    k_e = float(np.nanquantile(e, quantile_k))
    k_s = float(np.nanquantile(s, quantile_k))
    q = 1.0 - far / 2.0
    h_e = float(np.quantile([cusum_path(b.energy, k_e).max() for b in honest], q))
    h_s = float(np.quantile([cusum_path(b.shape, k_s).max() for b in honest], q))
    # a threshold of zero would alarm on any excess; keep a floor of one reference value
    return CusumDetector(k_e, max(h_e, k_e), k_s, max(h_s, k_s), far, len(honest[0].energy), len(honest))


def unbalanced_days(b: DailyBalance) -> int:
    """The days the balance could not judge (too few complete hours): what the feeder
    reports as *not balanced on N of M days* instead of staying silently quiet."""
    return int(np.count_nonzero(np.isnan(b.energy)))


def binomial_tail(n: int, p: float, k: int) -> float:
    """``P(X > k)`` for ``X ~ Binomial(n, p)``, summed exactly."""
    return float(sum(math.comb(n, j) * p**j * (1.0 - p) ** (n - j) for j in range(k + 1, n + 1)))


@dataclass(frozen=True)
class WithholdingDetector:
    """The withholding alarm of the module docstring: a member missing on more than
    ``threshold(n)`` of the horizon's ``n`` days. ``p_outage``: the probability an honest
    hub misses one day's round; ``far``: the share of honest members alarmed within the
    horizon that is tolerated."""

    p_outage: float = 0.05
    far: float = 0.001

    def __post_init__(self) -> None:
        if not 0.0 < self.p_outage < 1.0 or not 0.0 < self.far < 1.0:
            raise ValueError("the outage probability and the false-alarm rate lie strictly between 0 and 1")

    def threshold(self, days: int) -> int:
        """The most missing days of ``days`` that do not alarm (at least one: a single
        outage never alarms)."""
        return max(1, next(k for k in range(days + 1) if binomial_tail(days, self.p_outage, k) <= self.far))

    def false_alarm_rate(self, days: int) -> float:
        """The chance an honest member alarms within a horizon of ``days``."""
        return binomial_tail(days, self.p_outage, self.threshold(days))

    def alarms(self, missing_days: Mapping[str, Iterable[int]], days: int) -> dict[str, int]:
        """Per alarmed member, the day (index in the horizon) its count of missing days
        first exceeds ``threshold(days)``; ``missing_days``: the day indices on which
        each member did not answer (each day counted once)."""
        k = self.threshold(days)
        out = {}
        for member, ds in missing_days.items():
            seen = sorted({d for d in ds if 0 <= d < days})
            if len(seen) > k:
                out[member] = seen[k]
        return dict(sorted(out.items()))


# -- localisation ---------------------------------------------------------------------


@dataclass
class Segment:
    first: int
    end: int  # exclusive
    discrepancy: float  # percent, over the last round that measured it

    @property
    def size(self) -> int:
        return self.end - self.first


@dataclass
class Localisation:
    segments: list[Segment] = field(default_factory=list)
    rounds: int = 0
    last_day: int = 0  # the last day a check meter measured


SegmentSums = Callable[[int, int, slice], tuple[np.ndarray, np.ndarray]]


class Feeder(Protocol):
    """What localisation needs of a feeder: its customers in cable order, the feeder
    meter, the nameplate losses, the committed readings and a check meter at a cut
    (:class:`meterhub.meter.grid.Feeder` is the simulated one)."""

    @property
    def customers(self) -> Sequence[str]: ...
    @property
    def recorded_wh(self) -> np.ndarray: ...
    @property
    def nominal(self) -> LossModel: ...
    @property
    def feeder_wh(self) -> np.ndarray: ...

    def segment_wh(self, a: int, b: int, hours: slice) -> np.ndarray: ...


def segment_discrepancy(feeder: Feeder, a: int, b: int, hours: slice, complete: np.ndarray | None,
                        segment_sums: SegmentSums | None = None) -> float:
    """A segment's relative discrepancy (percent) over ``hours``: check meters minus the
    segment's verified sum minus its share of the expected loss. ``segment_sums(a, b,
    hours)`` gives the segment's hourly sum and which hours are complete (the demo runs
    private aggregation of the segment's group); by default they come from the
    simulation's records, which is what that aggregation yields."""
    measured = feeder.segment_wh(a, b, hours)
    if segment_sums is None:
        seg = feeder.recorded_wh[a:b, hours].sum(axis=0).astype(float)
        ok = np.ones(len(seg), dtype=bool) if complete is None else np.asarray(complete[hours], dtype=bool)
    else:
        seg_raw, ok = segment_sums(a, b, hours)
        seg = np.asarray(seg_raw, dtype=float)
    f = feeder.feeder_wh[hours].astype(float)
    total_loss = expected_loss(f, feeder.nominal)
    # the segment's share of the losses, by its share of the feeder's metered draw
    share = np.divide(measured, f, out=np.zeros_like(measured), where=f > 0)
    d = measured - seg - total_loss * share
    if not ok.any() or measured[ok].sum() <= 0:
        return float("nan")
    return float(100.0 * d[ok].sum() / measured[ok].sum())


def cable_segments(n: int, min_size: int) -> list[tuple[int, int]]:
    """Every segment ``(first, end)`` of a feeder of ``n`` customers that :func:`localise`
    may test: the halves at the middle of a segment of at least ``2 * min_size``, then
    their halves, and so on. The grid operator publishes them all as aggregation groups
    before any release (a nested partition: no household in their span)."""
    out: list[tuple[int, int]] = []
    todo = [(0, n)]
    while todo:
        a, e = todo.pop()
        if e - a >= 2 * min_size:
            c = (a + e) // 2
            out += [(a, c), (c, e)]
            todo += [(a, c), (c, e)]
    return sorted(out)


def localise(feeder: Feeder, cal: HourCalendar, flag_day: int, *, min_size: int, threshold: float,
             round_days: int = 4, complete: np.ndarray | None = None,
             segment_sums: SegmentSums | None = None) -> Localisation:
    """Group testing along the cable (module docstring), from the day after the flag."""
    n = len(feeder.customers)
    days = len(cal.day_slices)
    out = Localisation()
    frontier = [Segment(0, n, float("nan"))]
    day = flag_day + 1
    while frontier:
        splittable = [s for s in frontier if s.size >= 2 * min_size]
        out.segments.extend(s for s in frontier if s.size < 2 * min_size)
        if not splittable or day + round_days > days:
            out.segments.extend(splittable)
            break
        hours = slice(cal.day_slices[day].start, cal.day_slices[day + round_days - 1].stop)
        nxt: list[Segment] = []
        for s in splittable:
            c = (s.first + s.end) // 2
            halves = [Segment(a, e, segment_discrepancy(feeder, a, e, hours, complete, segment_sums))
                      for a, e in ((s.first, c), (c, s.end))]
            pos = [h for h in halves if h.discrepancy > threshold]
            if pos:
                nxt.extend(pos)
            else:
                out.segments.append(s)  # neither half stands out: investigate the parent
        out.rounds += 1
        day += round_days
        out.last_day = day - 1
        frontier = nxt
    return out


# -- suspect profiles ---------------------------------------------------------------------


@dataclass(frozen=True)
class SuspectProfile:
    """A suspect profile's hourly weights over the window and what a high score means."""

    profile_id: str
    weights: np.ndarray  # non-negative (signed load profiles are non-negative)
    kind: str  # "drop", "night", "discrepancy", "neighbours"


def suspect_profiles(cal: HourCalendar, window: slice, discrepancy: np.ndarray, neighbours: np.ndarray,
                     start_label: Sequence[str], *, step_days: int = 7) -> list[SuspectProfile]:
    """The suspect profiles of the module docstring over ``window`` (hours)."""
    day = cal.day[window]
    first_day = int(day[0]) if len(day) else 0
    last_day = int(day[-1]) if len(day) else 0
    out = []
    for d in range(first_day + step_days, last_day, step_days):
        out.append(SuspectProfile(f"drop-{start_label[d]}", (day >= d).astype(float) * 1000.0, "drop"))
    hour = cal.local_hour[window]
    out.append(SuspectProfile("night", ((hour >= 22) | (hour < 6)).astype(float) * 1000.0, "night"))
    disc = np.nan_to_num(np.maximum(0.0, discrepancy[window]))
    out.append(SuspectProfile("discrepancy", np.rint(disc), "discrepancy"))
    out.append(SuspectProfile("neighbours", np.rint(np.maximum(0.0, neighbours[window])), "neighbours"))
    return out


def period_suspect_profiles(cal: HourCalendar, first_day: int, last_day: int, discrepancy: np.ndarray,
                            neighbours: np.ndarray, start_label: Sequence[str], *, step_days: int = 7,
                            max_weight_ratio: int = 1000) -> list[SuspectProfile]:
    """The suspect profiles as the hub's privacy guard releases their scores: one
    ``suspects`` release per customer and period, over the **whole period** (the
    customer's cycle cell; here all of ``cal``), so energy and sum of squares are the
    period's. ``drop-DATE`` for dates every ``step_days`` after ``first_day`` before
    ``last_day`` (the score window after the alarm, as :func:`suspect_profiles`), each 1
    from its date to the period's end; ``night``, ``discrepancy`` and ``neighbours`` over
    the whole period. Weights are integers scaled to at most 1000 with the smallest
    non-zero one at least ``1000 / max_weight_ratio`` of it (the policy's profile shape,
    docs/privacy.md); rounding drops hours below half a step."""
    out = [SuspectProfile(f"drop-{start_label[d]}", (cal.day >= d).astype(float) * 1000.0, "drop")
           for d in range(first_day + step_days, last_day, step_days)]
    whole = slice(0, len(cal.day))
    out += [p for p in suspect_profiles(cal, whole, discrepancy, neighbours, start_label, step_days=len(cal.day) + 1)
            if p.kind != "drop"]
    scaled = []
    for p in out:
        top = float(p.weights.max()) if len(p.weights) else 0.0
        if top <= 0:
            continue
        w = np.rint(p.weights * (1000.0 / top))
        w[w < 1000.0 / max_weight_ratio] = 0.0
        if w.any():
            scaled.append(SuspectProfile(p.profile_id, w, p.kind))
    return scaled


def suspect_statistics(n: int, energy: float, squares: float, scores: dict[str, float],
                       profiles: Sequence[SuspectProfile]) -> dict[str, float]:
    """One customer's statistics from its verified aggregates (``n`` hours, energy,
    sum of squares, one linear score per profile). Larger means more suspect except
    for ``night`` and ``neighbours``, which :func:`suspect_likelihoods` turns around."""
    mean = energy / n if n else 0.0
    var = max(squares / n - mean * mean, 1e-9) if n else 1e-9
    out: dict[str, float] = {}
    drop = -math.inf
    for p in profiles:
        s = scores[p.profile_id]
        w = p.weights
        if p.kind == "drop":
            n_after = float(w.sum() / 1000.0)
            n_before = n - n_after
            if n_after < 1 or n_before < 1:
                continue
            mu_a = s / 1000.0 / n_after
            mu_b = (energy - s / 1000.0) / n_before
            drop = max(drop, (mu_b - mu_a) / math.sqrt(var * (1 / n_before + 1 / n_after)))
        elif p.kind == "night":
            out["night"] = (s / 1000.0) / energy if energy > 0 else 0.0
        else:
            out[p.kind] = pearson(n, float(w.sum()), float(np.square(w).sum()), energy, squares, s)
    out["drop"] = drop if drop > -math.inf else 0.0
    return out


EVIDENCE_CAP = 8.0


def suspect_likelihoods(stats: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per customer ``(evidence, likelihood)``: the largest robust z-score within the
    group (``night`` and ``neighbours`` reversed: low is suspect; capped at
    ``EVIDENCE_CAP``), and
    ``exp(evidence) / sum exp`` over the group."""
    ids = sorted(stats)
    if not ids:
        return {}
    keys = sorted({k for s in stats.values() for k in s})
    evidence = {i: -math.inf for i in ids}
    for k in keys:
        sign = -1.0 if k in ("night", "neighbours") else 1.0
        v = np.array([sign * stats[i].get(k, 0.0) for i in ids])
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med))) * 1.4826
        scale = max(mad, 1e-3 * max(1.0, abs(med)), 1e-6)
        for i, x in zip(ids, v, strict=True):
            # beyond EVIDENCE_CAP robust deviations every customer is equally suspect
            evidence[i] = max(evidence[i], min(EVIDENCE_CAP, (x - med) / scale))
    top = max(evidence.values())
    weights = {i: math.exp(min(50.0, evidence[i] - top)) for i in ids}
    total = sum(weights.values())
    return {i: (evidence[i], weights[i] / total) for i in ids}
