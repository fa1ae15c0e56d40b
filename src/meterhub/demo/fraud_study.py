"""The fraud-detection study: detection rate, false positives, days to detection and
customers investigated, for the private method and, in the same run, the same detector
given raw readings (issue 13; figures in docs/fraud.md).

One run:

1. **Calibration** on honest simulated feeders (their own seed): the CUSUM reference
   values and thresholds for a target false-alarm rate over the horizon, and the
   check-meter threshold for a segment (the 99th percentile of honest segments'
   discrepancies over a round), for each method's smallest segment.
2. **Test grid**: feeders of 5-60 customers, half of them with one or two thieves of
   the Jokar et al. attack types (:mod:`meterhub.meter.grid`), ground truth kept.
3. Per feeder and method: the daily balance, the CUSUM alarm within the detection
   window, group testing with check meters after the alarm, then suspect-profile
   likelihoods for the customers of the narrowed groups, and an investigation that
   visits narrowed groups by discrepancy and customers by likelihood (then the rest of
   the feeder in cable order) until every thief of the feeder is found.

The methods differ where meterhub constrains the operator:

* **private**: sums of the feeder's hubs by private aggregation; a hub misses a day
  with probability ``drop_rate`` (the recovery round then gives the others' sum and the
  day is incomplete, so the balance skips it); check-meter segments never go below the
  minimum group size (5); suspect likelihoods from the profiling applet's verified
  aggregates (energy, sum of squares, linear scores) as the hub's privacy guard
  releases them: one ``suspects`` release per customer and period (the study's horizon
  is the customers' cycle), so energy and sum of squares are the period's and the
  profiles span the period with integer weights in the policy's range
  (:func:`meterhub.utility.theft.period_suspect_profiles`);
* **raw**: the same detector given every customer's raw hourly readings, so no day is
  incomplete, segments go down to single customers, and the suspect statistics are
  those of the score window after the alarm.

The verified sum of a complete feeder-day equals the raw sum exactly, and the profile
scores equal the raw linear functionals exactly, so this study computes both from the
readings; ``meterhub demo`` runs the cryptographic protocol end to end and checks that
equality on every feeder-day it verifies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from ..meter.grid import TOTAL_PRESERVING, Feeder, HourCalendar, simulate_grid
from ..utility.theft import (
    CusumDetector,
    balance,
    calibrate,
    localise,
    period_suspect_profiles,
    segment_discrepancy,
    suspect_likelihoods,
    suspect_profiles,
    suspect_statistics,
)

__all__ = ["MethodResult", "StudyParams", "StudyReport", "run_study", "format_study", "investigate"]

MIN_GROUP = 5


@dataclass(frozen=True)
class StudyParams:
    feeders: int = 40
    days: int = 60
    start: date = date(2027, 3, 15)
    seed: int = 13
    far: float = 0.05
    calibration_feeders: int = 120
    drop_rate: float = 0.002  # per hub and day
    round_days: int = 4
    score_days: int = 10
    min_group: int = MIN_GROUP


@dataclass
class MethodResult:
    method: str
    thieves: int = 0
    detected: int = 0
    localised: int = 0
    feeders_with_thieves: int = 0
    honest_feeders: int = 0
    false_alarms: int = 0
    days_to_detection: list[int] = field(default_factory=list)
    investigated: int = 0
    incomplete_feeder_days: int = 0
    pre_theft_alarms: int = 0  # alarms on a thief's feeder before any theft began
    investigated_without_profiles: int = 0  # the same, narrowed groups visited in random order
    false_alarm_visits: int = 0  # part of ``investigated``: narrowed groups after false alarms
    per_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [thieves, detected]
    # kind -> [(rank of the thief within its narrowed group by likelihood, group size)] of
    # the detected thieves that the localisation kept in a narrowed group
    per_kind_rank: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def rank_summary(self, kind: str) -> tuple[int, float, float, float]:
        """``(thieves ranked, mean rank, mean group size, share ranked in the top two)``."""
        r = self.per_kind_rank.get(kind, [])
        if not r:
            return 0, float("nan"), float("nan"), float("nan")
        return (len(r), float(np.mean([a for a, _ in r])), float(np.mean([b for _, b in r])),
                sum(a <= 2 for a, _ in r) / len(r))

    @property
    def detection_rate(self) -> float:
        return self.detected / self.thieves if self.thieves else 0.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_alarms / self.honest_feeders if self.honest_feeders else 0.0

    @property
    def median_days(self) -> float:
        return float(np.median(self.days_to_detection)) if self.days_to_detection else float("nan")

    @property
    def investigated_per_thief(self) -> float:
        return self.investigated / self.detected if self.detected else float("nan")

    @property
    def investigated_per_thief_without_profiles(self) -> float:
        """False-alarm visits are the same in both orders: all of the narrowed groups."""
        total = self.investigated_without_profiles + self.false_alarm_visits
        return total / self.detected if self.detected else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(detection_rate=self.detection_rate, false_positive_rate=self.false_positive_rate,
                 median_days_to_detection=self.median_days, investigated_per_thief=self.investigated_per_thief,
                 investigated_per_thief_without_profiles=self.investigated_per_thief_without_profiles)
        return d


@dataclass
class StudyReport:
    params: dict[str, Any]
    detector: dict[str, Any]
    segment_threshold: dict[str, float]
    methods: list[MethodResult]

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "detector": self.detector, "segment_threshold": self.segment_threshold,
                "methods": [m.to_dict() for m in self.methods]}


def _complete_mask(feeder: Feeder, cal: HourCalendar, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Hours whose day every hub answered (a dropped hub makes its whole day incomplete)."""
    ok = np.ones(len(cal.day), dtype=bool)
    bad = 0
    if rate <= 0:
        return ok, 0
    for sl in cal.day_slices:
        if (rng.random(len(feeder.customers)) < rate).any():
            ok[sl] = False
            bad += 1
    return ok, bad


def _segment_threshold(feeders: list[Feeder], cal: HourCalendar, min_size: int, round_days: int,
                       rng: np.random.Generator) -> float:
    vals = []
    n_days = len(cal.day_slices)
    for f in feeders:
        n = len(f.customers)
        for _ in range(6):
            size = int(rng.integers(min_size, max(min_size, n // 2) + 1))
            if size > n:
                continue
            a = int(rng.integers(0, n - size + 1))
            d0 = int(rng.integers(0, n_days - round_days + 1))
            hours = slice(cal.day_slices[d0].start, cal.day_slices[d0 + round_days - 1].stop)
            v = segment_discrepancy(f, a, a + size, hours, None)
            if not np.isnan(v):
                vals.append(v)
    return float(np.quantile(vals, 0.99))


def investigate(feeder: Feeder, cal: HourCalendar, flag_day: int, detector_min: int, threshold: float,
                params: StudyParams, complete: np.ndarray | None, labels: list[str],
                shuffle: np.random.Generator | None = None, *, guarded: bool = False,
                ranks: dict[str, tuple[int, int]] | None = None) -> tuple[list[str], int]:
    """Localise, rank by suspect likelihood, visit. Returns the visiting order and the
    number of customers visited (until every thief is found; the narrowed groups only
    on a false alarm). With ``shuffle``, each narrowed group is visited in random order
    instead (the same run's baseline without suspect profiles). ``guarded``: the
    statistics the hub's privacy guard releases (one ``suspects`` release per customer
    and period, here the whole horizon: :func:`period_suspect_profiles`, energy and sum
    of squares of the period); otherwise those of the score window. ``ranks`` receives,
    per thief in a narrowed group, its rank there by likelihood and the group's size."""
    loc = localise(feeder, cal, flag_day, min_size=detector_min, threshold=threshold,
                   round_days=params.round_days, complete=complete)
    last = max(loc.last_day, flag_day)
    first = max(0, last - params.score_days + 1)
    window = slice(cal.day_slices[first].start, cal.day_slices[last].stop)
    b = balance(feeder.feeder_wh, feeder.recorded_wh.sum(axis=0), feeder.nominal, cal, complete)
    order: list[str] = []
    segs = sorted(loc.segments, key=lambda s: -(s.discrepancy if not np.isnan(s.discrepancy) else -1e9))
    for s in segs:
        members = list(range(s.first, s.end))
        group_sum = feeder.recorded_wh.sum(axis=0).astype(float)  # the neighbours: the feeder's sum
        if guarded:
            rec = feeder.recorded_wh[members].astype(float)
            profiles = period_suspect_profiles(cal, first, last, b.hourly, group_sum, labels)
        else:
            rec = feeder.recorded_wh[members][:, window].astype(float)
            profiles = suspect_profiles(cal, window, b.hourly, group_sum, labels)
        stats = {}
        n = rec.shape[1]
        for i, x in zip(members, rec, strict=True):
            scores = {p.profile_id: float(p.weights @ x) for p in profiles}
            stats[feeder.customers[i]] = suspect_statistics(n, float(x.sum()), float(x @ x), scores, profiles)
        lik = suspect_likelihoods(stats)
        ranked = sorted(lik, key=lambda c: -lik[c][1])
        if ranks is not None:
            ranks.update({c: (ranked.index(c) + 1, len(ranked)) for c in ranked if c in feeder.thieves})
        if shuffle is not None:
            ranked = [ranked[k] for k in shuffle.permutation(len(ranked))]
        order.extend(ranked)
    narrowed = len(order)
    order.extend(c for c in feeder.customers if c not in order)
    thieves = feeder.thieves
    if not thieves:
        return order, narrowed
    visited = max(order.index(t) for t in thieves) + 1
    return order, visited


def _narrowed(f: Feeder, cal: HourCalendar, alarm: int, min_size: int, thr: float, params: StudyParams,
              complete: np.ndarray | None, labels: list[str], guarded: bool) -> int:
    """Customers of the narrowed groups, all visited after a false alarm."""
    order, narrowed = investigate(_honest_view(f), cal, alarm, min_size, thr, params, complete, labels,
                                  guarded=guarded)
    return narrowed


def _honest_view(f: Feeder) -> Feeder:
    """The feeder as the investigators see it after a false alarm: nobody to find yet."""
    from dataclasses import replace

    return replace(f, thefts=[])


def _run_method(name: str, feeders: list[Feeder], cal: HourCalendar, det: CusumDetector, thr: float,
                min_size: int, params: StudyParams, drop_rate: float, labels: list[str], *,
                guarded: bool = False) -> MethodResult:
    res = MethodResult(name)
    rng = np.random.default_rng([params.seed, 7])
    shuffle = np.random.default_rng([params.seed, 8])
    window = params.days - 2 * params.round_days
    for f in feeders:
        complete, bad = _complete_mask(f, cal, drop_rate, rng)
        res.incomplete_feeder_days += bad
        b = balance(f.feeder_wh, f.recorded_wh.sum(axis=0), f.nominal, cal, complete)
        start = f.theft_start()
        alarm = det.alarm_day(b, until=window)
        if start is not None:
            res.feeders_with_thieves += 1
            res.thieves += len(f.thefts)
            for t in f.thefts:
                res.per_kind.setdefault(t.kind, [0, 0])[0] += 1
        else:
            res.honest_feeders += 1
        if alarm is None:
            continue
        if start is None or alarm < start:
            # a false alarm: the narrowed groups are investigated and nothing is found
            res.false_alarms += 1 if start is None else 0
            res.pre_theft_alarms += 0 if start is None else 1
            visits = _narrowed(f, cal, alarm, min_size, thr, params, complete, labels, guarded)
            res.investigated += visits
            res.false_alarm_visits += visits
            if start is None:
                continue
            # a pre-theft alarm on a feeder with a thief: investigated, nothing found, CUSUM restarted
            later = _after(det, b, alarm + 1, window)
            if later is None:
                continue
            alarm = later
        found: dict[str, tuple[int, int]] = {}
        _, visited = investigate(f, cal, alarm, min_size, thr, params, complete, labels, guarded=guarded,
                                 ranks=found)
        res.investigated += visited
        _, blind = investigate(f, cal, alarm, min_size, thr, params, complete, labels, shuffle=shuffle,
                               guarded=guarded)
        res.investigated_without_profiles += blind
        for t in f.thefts:
            if alarm >= t.start_day:
                res.detected += 1
                res.localised += 1
                res.per_kind[t.kind][1] += 1
                res.days_to_detection.append(alarm - t.start_day)
                if t.customer in found:
                    res.per_kind_rank.setdefault(t.kind, []).append(found[t.customer])
    return res


def _after(det: CusumDetector, b: Any, first: int, until: int) -> int | None:
    from ..utility.theft import DailyBalance

    if first >= until:
        return None
    sub = DailyBalance(b.energy[first:], b.shape[first:], b.hourly)
    hit = det.alarm_day(sub, until=until - first)
    return None if hit is None else hit + first


def run_study(params: StudyParams) -> StudyReport:
    honest, cal = simulate_grid(params.calibration_feeders, params.start, params.days, seed=params.seed + 1,
                                thief_share=0.0)
    hb = [balance(f.feeder_wh, f.recorded_wh.sum(axis=0), f.nominal, cal) for f in honest]
    det = calibrate(hb, params.far)
    rng = np.random.default_rng([params.seed, 3])
    thr_private = _segment_threshold(honest, cal, params.min_group, params.round_days, rng)
    thr_raw = _segment_threshold(honest, cal, 1, params.round_days, rng)
    feeders, cal2 = simulate_grid(params.feeders, params.start, params.days, seed=params.seed, thief_share=0.5)
    labels = [(params.start + timedelta(days=k)).isoformat() for k in range(params.days)]
    private = _run_method("private (meterhub)", feeders, cal2, det, thr_private, params.min_group, params,
                          params.drop_rate, labels, guarded=True)
    raw = _run_method("raw readings", feeders, cal2, det, thr_raw, 1, params, 0.0, labels)
    p = asdict(params)
    p["start"] = params.start.isoformat()
    return StudyReport(p, asdict(det), {"private": thr_private, "raw": thr_raw}, [private, raw])


def format_study(r: StudyReport) -> str:
    d = r.detector
    p = r.params
    lines = [
        f"Fraud study: {p['feeders']} feeders x {p['days']} days (seed {p['seed']}), detector calibrated on "
        f"{d['honest_feeders']} honest feeders for a {100 * d['far']:.0f}% false-alarm rate over the horizon",
        f"CUSUM energy k={d['k_energy']:.3f}% h={d['h_energy']:.3f}; shape k={d['k_shape']:.3f}% "
        f"h={d['h_shape']:.3f}; check-meter thresholds {r.segment_threshold['private']:.2f}% (>= {p['min_group']} "
        f"customers) / {r.segment_threshold['raw']:.2f}% (any size)",
        f"{'method':<20} {'thieves':>7} {'detected':>9} {'FPR':>6} {'median days':>11} {'investigated/thief':>18} "
        f"{'(no profiles)':>13} {'incomplete days':>15}",
    ]
    for m in r.methods:
        lines.append(
            f"{m.method:<20} {m.thieves:>7} {100 * m.detection_rate:>8.1f}% {100 * m.false_positive_rate:>5.1f}% "
            f"{m.median_days:>11.1f} {m.investigated_per_thief:>18.2f} {m.investigated_per_thief_without_profiles:>13.2f} "
            f"{m.incomplete_feeder_days:>15}"
        )
    kinds = sorted({k for m in r.methods for k in m.per_kind})
    lines.append("detection rate per attack (private / raw): " + ", ".join(
        f"{k}{'*' if k in TOTAL_PRESERVING else ''} "
        + " / ".join(f"{m.per_kind.get(k, [0, 0])[1]}/{m.per_kind.get(k, [0, 0])[0]}" for m in r.methods)
        for k in kinds))
    lines.append("(* keeps the daily total)")
    for m in r.methods:
        parts = []
        for k in kinds:
            n, mean, size, top2 = m.rank_summary(k)
            if n:
                parts.append(f"{k} {mean:.1f} of {size:.1f} (top two {100 * top2:.0f}%, {n})")
        lines.append(f"rank of the found thieves in their narrowed groups, {m.method}: " + ", ".join(parts))
    return "\n".join(lines)
