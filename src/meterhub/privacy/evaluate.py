"""``meterhub privacy evaluate``: every attack on every data source, on simulated
households with ground truth (docs/privacy-evaluation.md).

Data sources (:data:`SOURCES`): ``none`` (the time of day only: what an attacker
knows without any data, the prior), ``raw-15min`` and ``hourly`` (what a meter
operator or a data hub sees without meterhub), one source per recipient made of
the release kinds it receives (:data:`meterhub.privacy.releases.RELEASE_KINDS`),
and ``collusion``, the union of all releases. A new release kind joins its
recipient's source and the union by itself.

Attacks and units:

* occupancy per household-hour (occupied: someone at home for at least half the
  hour), accuracy, cluster-bootstrap interval over test households;
* appliance use per household-hour for seven appliances (on: at least 50 Wh of
  that appliance in the hour), macro F1 over the appliances; the trivial
  base rate is the F1 of predicting "on" always;
* traits per household, accuracy with a Wilson interval, 5-fold cross-validation.

Occupancy and appliance attacks train on half of the households (with their
ground truth) and are scored on the other half. The baseline of each row is the
better of the majority class (or trivial F1) and the ``none`` source; the gap is
the accuracy above it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..meter.load import bdew_profile_wh
from .attacks import (
    bootstrap_ci,
    f1,
    learn_signatures,
    nilm_co,
    nilm_hart,
    occupancy_supervised,
    occupancy_threshold,
    supervised_by_unit,
    traits_classifier,
    wilson,
)
from .dataset import (
    NILM_APPLIANCES,
    NILM_ON_WH,
    SOURCES,
    TRAITS,
    Dataset,
    Source,
    _disclosed_readings,
    _hour_values,
    _release_household_features,
    _time_features,
    build_dataset,
    household_features,
    unit_features,
)
from .releases import RECIPIENTS, RELEASE_KINDS

__all__ = [
    "FORMAT",
    "NILM_APPLIANCES",
    "SOURCES",
    "TRAITS",
    "Dataset",
    "Evaluation",
    "Result",
    "Source",
    "build_dataset",
    "evaluate",
    "format_table",
    "write_plots",
]

FORMAT = "meterhub-privacy-evaluation/1"




@dataclass
class Result:
    attack: str
    method: str
    source: str
    metric: str
    value: float
    ci: tuple[float, float]
    n: int
    base_rate: float
    prior: float | None = None

    @property
    def baseline(self) -> float:
        return max(self.base_rate, self.prior if self.prior is not None else 0.0)

    @property
    def gap(self) -> float:
        return self.value - self.baseline

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["baseline"] = self.baseline
        d["gap"] = self.gap
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


@dataclass
class Evaluation:
    params: dict[str, Any]
    calibration: dict[str, Any]
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    # Which release carries a leak: each kind (or feature group) alone as the source.
    attribution: list[Result] = field(default_factory=list)
    # What the default policy's budgets allow and what the modelled releases use.
    policy: dict[str, Any] = field(default_factory=dict)

    def worst_by_source(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for s in SOURCES:
            rows = [r for r in self.results if r.source == s.name]
            if s.is_release and rows:
                w = max(rows, key=lambda r: r.gap)
                out[s.name] = {"worst": f"{w.attack}/{w.method}", "gap": round(w.gap, 4),
                               "within_2_points": all(r.gap <= 0.02 for r in rows)}
        return out

    def goal(self) -> dict[str, Any]:
        raw = [r for r in self.results if r.attack == "occupancy" and r.source == "raw-15min"]
        rel = [r for r in self.results if r.source in {s.name for s in SOURCES if s.is_release}]
        worst = max(rel, key=lambda r: r.gap) if rel else None
        return {
            "raw_occupancy": max((r.value for r in raw), default=0.0),
            "raw_occupancy_at_least_80": any(r.value >= 0.8 for r in raw),
            "worst_release_gap": round(worst.gap, 4) if worst else 0.0,
            "worst_release": f"{worst.attack}/{worst.method}/{worst.source}" if worst else "",
            "releases_within_2_points": all(r.gap <= 0.02 for r in rel),
            "leaking": [f"{r.attack}/{r.method}/{r.source}: +{100 * r.gap:.1f} points" for r in rel if r.gap > 0.02],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "params": self.params,
            "sources": {s.name: s.description for s in SOURCES},
            "calibration": self.calibration,
            "results": [r.to_dict() for r in self.results],
            "goal": {**self.goal(), "by_source": self.worst_by_source()},
            "attribution": [r.to_dict() for r in self.attribution],
            "policy": self.policy,
            "seconds": round(self.seconds, 2),
        }


def _calibration(ds: Dataset) -> dict[str, Any]:
    h0 = np.array(bdew_profile_wh(ds.ctx.start, ds.ctx.days))
    mean = ds.x15.mean(axis=0)
    hourly_h0 = h0.reshape(-1, 4).sum(axis=1)
    per_hh = [float(np.corrcoef(h, hourly_h0)[0, 1]) for h in ds.hourly]
    annual = np.array([t.annual_kwh for t in ds.traces])
    res = np.array([int(t.params["residents"]) for t in ds.traces])
    by_res = {}
    for k in sorted(set(res.tolist())):
        a = annual[res == k]
        by_res[str(k)] = {"households": int(a.size), "median": round(float(np.median(a)), 0),
                          "p10": round(float(np.percentile(a, 10)), 0), "p90": round(float(np.percentile(a, 90)), 0)}
    return {
        "h0_correlation_15min": round(float(np.corrcoef(mean, h0)[0, 1]), 4),
        "h0_correlation_hourly": round(float(np.corrcoef(mean.reshape(-1, 4).sum(axis=1), hourly_h0)[0, 1]), 4),
        "household_h0_correlation_hourly": {
            "min": round(min(per_hh), 3), "median": round(float(np.median(per_hh)), 3), "max": round(max(per_hh), 3),
        },
        "annual_kwh_by_residents": by_res,
        "occupied_share": round(float(ds.occupied.mean()), 4),
    }


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 0x5917]).permutation(n)
    half = max(1, n // 2)
    return np.sort(perm[:half]), np.sort(perm[half:])


def _acc_stat(groups: list[np.ndarray]) -> float:
    return float(np.concatenate(groups).mean())


def _occupancy(ds: Dataset, seed: int, feats: dict[str, np.ndarray]) -> list[Result]:
    train, test = _split(ds.n, seed)
    y = ds.occupied
    maj = bool(y[train].mean() >= 0.5)
    base = float((y[test] == maj).mean())
    rng = np.random.default_rng([seed, 1])
    out: list[Result] = []
    prior = None
    for src in SOURCES:
        x = feats[src.name]
        f = x.shape[2]
        pred = occupancy_supervised(x[train].reshape(-1, f), y[train].ravel(), x[test].reshape(-1, f), seed)
        correct = pred.reshape(len(test), -1) == y[test]
        acc = float(correct.mean())
        if src.name == "none":
            prior = acc
        out.append(Result("occupancy", "supervised", src.name, "accuracy", acc,
                          bootstrap_ci(_acc_stat, list(correct), rng), int(correct.size), base, prior))
        if src.per_hour:
            series = ds.x15 if src.per_hour == 4 else ds.hourly
            pred_u = occupancy_threshold(series[test], src.per_hour, ds.hour_of_day)
            c = pred_u == y[test]
            out.append(Result("occupancy", "threshold", src.name, "accuracy", float(c.mean()),
                              bootstrap_ci(_acc_stat, list(c), rng), int(c.size), base, prior))
    return out


def _macro_f1(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Macro F1 over appliances; ``pairs`` per household: (pred (A, H), truth (A, H))."""
    pred = np.concatenate([p for p, _ in pairs], axis=1)
    truth = np.concatenate([t for _, t in pairs], axis=1)
    scores = [f1(pred[a], truth[a]) for a in range(pred.shape[0]) if truth[a].any()]
    return float(np.mean(scores)) if scores else 0.0


def _nilm(ds: Dataset, seed: int, feats: dict[str, np.ndarray]) -> list[Result]:
    train, test = _split(ds.n, seed)
    names = [a for a in NILM_APPLIANCES if (ds.truth_h[a][test] >= NILM_ON_WH).any()]
    truth = np.stack([ds.truth_h[a][test] >= NILM_ON_WH for a in names], axis=1)  # (Ntest, A, H)
    prevalence = truth.mean(axis=(0, 2))
    trivial = float(np.mean([2 * p / (1 + p) for p in prevalence])) if names else 0.0
    rng = np.random.default_rng([seed, 2])
    out: list[Result] = []
    prior = None

    def result(method: str, source: str, pred: np.ndarray) -> Result:
        pairs = [(pred[i], truth[i]) for i in range(len(test))]
        return Result("appliances", method, source, "macro F1", _macro_f1(pairs),
                      bootstrap_ci(_macro_f1, pairs, rng, b=100), int(truth.size), trivial, prior)

    for src in SOURCES:
        x = feats[src.name]
        f = x.shape[2]
        pred = np.zeros_like(truth)
        for k, a in enumerate(names):
            y_tr = (ds.truth_h[a][train] >= NILM_ON_WH).ravel()
            pred[:, k] = supervised_by_unit(x[train].reshape(-1, f), y_tr, x[test].reshape(-1, f),
                                            seed).reshape(len(test), -1)
        r = result("supervised", src.name, pred)
        if src.name == "none":
            prior = r.value
            r.prior = prior
        out.append(r)
        if src.per_hour:
            series = ds.x15 if src.per_hour == 4 else ds.hourly
            tr_truth = ds.truth15 if src.per_hour == 4 else ds.truth_h
            sigs = learn_signatures({a: tr_truth[a][train] for a in names}, names, NILM_ON_WH / src.per_hour)
            for method in ("hart", "co"):
                on = nilm_hart(series[test], sigs) if method == "hart" else nilm_co(series[test], sigs, src.per_hour)
                pred = np.zeros_like(truth)
                for k, a in enumerate(names):
                    if a in on:
                        pred[:, k] = on[a].reshape(len(test), -1, src.per_hour).any(axis=2)
                out.append(result(method, src.name, pred))
    return out


def _traits(ds: Dataset, seed: int) -> list[Result]:
    out: list[Result] = []
    feats = {s.name: household_features(ds, s) for s in SOURCES}
    for trait in TRAITS:
        y = ds.traits[trait]
        classes, counts = np.unique(y, return_counts=True)
        base = float(counts.max() / counts.sum())
        for src in SOURCES:
            x = feats[src.name]
            # No data: the majority class.
            acc = base if x is None else float((traits_classifier(x, y, seed) == y).mean())
            k = round(acc * len(y))
            out.append(Result(f"trait:{trait}", "forest" if x is not None else "majority", src.name, "accuracy",
                              acc, wilson(k, len(y)), len(y), base, None))
    return out


def evaluate(households: int = 40, weeks: int = 4, seed: int = 0, start: dt.date = dt.date(2027, 2, 1),
             attacks: Sequence[str] = ("occupancy", "appliances", "traits", "attribution")) -> Evaluation:
    """Simulate, release, attack, score (module docstring)."""
    if households < 4:
        raise ValueError("need at least 4 households (half train, half test)")
    if weeks < 1:
        raise ValueError("need at least one week")
    from threadpoolctl import threadpool_limits

    # One thread: OpenMP's spinning workers in scikit-learn's boosting slow down
    # by orders of magnitude on a shared, loaded machine; one core is predictable.
    with threadpool_limits(limits=1):
        return _evaluate(households, weeks, seed, start, attacks)


def _evaluate(households: int, weeks: int, seed: int, start: dt.date, attacks: Sequence[str]) -> Evaluation:
    t0 = time.perf_counter()
    ds = build_dataset(households, weeks, seed, start)
    ev = Evaluation(
        params={"households": households, "weeks": weeks, "seed": seed, "start": start.isoformat(),
                "interval_minutes": 15, "period_days": ds.ctx.period_days, "k": ds.ctx.k},
        calibration=_calibration(ds),
    )
    feats = {s.name: unit_features(ds, s) for s in SOURCES} if {"occupancy", "appliances"} & set(attacks) else {}
    if "occupancy" in attacks:
        ev.results += _occupancy(ds, seed, feats)
    if "appliances" in attacks:
        ev.results += _nilm(ds, seed, feats)
    if "traits" in attacks:
        ev.results += _traits(ds, seed)
    if "attribution" in attacks:
        ev.attribution = _attribution(ds, seed)
    ev.policy = policy_usage(ds)
    ev.seconds = time.perf_counter() - t0
    return ev


#: Feature groups of one kind, for attribution: (kind, label, feature-name prefix).
FEATURE_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("profile-scores", "profile-scores:level", "scores_E_per_hour"),
    ("profile-scores", "profile-scores:correlations", "r_"),
    ("profile-scores", "profile-scores:peakiness", "scores_peakiness"),
    ("dp-forecast", "dp-forecast:energy", "dp_energy"),
    ("dp-forecast", "dp-forecast:class", "dp_class_"),
)


def _attribution(ds: Dataset, seed: int) -> list[Result]:
    """Occupancy (supervised) and every trait with one release kind, or one feature
    group of a kind, as the only source: which release gives which leak."""
    units: list[tuple[str, np.ndarray, np.ndarray]] = []  # (label, household (N, F), per-hour extra (N, H, F'))
    for kind in RELEASE_KINDS:
        _, hf = _release_household_features(ds, [kind])
        extra = [v[:, :, None] for v in _hour_values(ds, [kind])]
        disclosed = _disclosed_readings(ds, [kind])
        if not np.isnan(disclosed).all():
            extra.append(disclosed[:, :, None])
        units.append((kind, hf, np.concatenate(extra, axis=2) if extra else np.zeros((*ds.hourly.shape, 0))))
    for kind, label, prefix in FEATURE_GROUPS:
        names, hf = _release_household_features(ds, [kind])
        cols = [i for i, n in enumerate(names) if n.split(":", 1)[1].startswith(prefix)]
        units.append((label, hf[:, :, cols], np.zeros((*ds.hourly.shape, 0))))
    train, test = _split(ds.n, seed)
    y = ds.occupied
    maj = bool(y[train].mean() >= 0.5)
    base = float((y[test] == maj).mean())
    rng = np.random.default_rng([seed, 3])
    t = np.broadcast_to(_time_features(ds)[None], (ds.n, *_time_features(ds).shape))
    out: list[Result] = []
    none = t.reshape(ds.n, -1, t.shape[2])
    f = none.shape[2]
    pred = occupancy_supervised(none[train].reshape(-1, f), y[train].ravel(), none[test].reshape(-1, f), seed)
    prior = float((pred.reshape(len(test), -1) == y[test]).mean())
    for label, hf, more in units:
        x = np.concatenate([t, hf[:, ds.period_of_hour, :], more], axis=2)
        f = x.shape[2]
        pred = occupancy_supervised(x[train].reshape(-1, f), y[train].ravel(), x[test].reshape(-1, f), seed)
        correct = pred.reshape(len(test), -1) == y[test]
        out.append(Result("occupancy", "supervised", f"only:{label}", "accuracy", float(correct.mean()),
                          bootstrap_ci(_acc_stat, list(correct), rng), int(correct.size), base, prior))
        xh = np.nanmean(hf, axis=1) if hf.shape[1] > 1 else hf[:, 0, :]
        for trait in TRAITS:
            yt = ds.traits[trait]
            _, counts = np.unique(yt, return_counts=True)
            acc = float((traits_classifier(xh, yt, seed) == yt).mean())
            out.append(Result(f"trait:{trait}", "forest", f"only:{label}", "accuracy", acc,
                              wilson(round(acc * len(yt)), len(yt)), len(yt), float(counts.max() / counts.sum())))
    return out


def policy_usage(ds: Dataset) -> dict[str, Any]:
    """Per recipient and period, what the modelled releases spend of the default policy
    (meterhub.policy.DEFAULT_POLICY), counted as the applets charge the guard:
    a bill 1 functional (linear statement), settlement 2, profile scores ``2 + profiles``,
    a DR event 1; samples one toss at ``k``; the DP forecast its epsilon. Aggregates are
    logged, not charged (docs/fraud.md)."""
    from ..policy import DEFAULT_POLICY as pol

    charge = {"bill": lambda f: 1, "settlement": lambda f: 2,
              "profile-scores": lambda f: 2 + len(f["scores"]), "dr": lambda f: len(f["events"])}
    out: dict[str, Any] = {}
    r0 = ds.releases[0]
    for who in RECIPIENTS:
        kinds = [k.name for k in RELEASE_KINDS.values() if k.recipient == who]
        used = [sum(charge[k](r0[k][p]) for k in kinds if k in charge) for p in range(len(ds.ctx.periods))]
        row: dict[str, Any] = {"functionals_per_period": max(used), "budget": pol.limit("budget", "functionals_per_period")}
        checks = [row["functionals_per_period"] <= row["budget"],
                  all(pol.entitled(who, _POLICY_KIND.get(k, k)) for k in kinds)]
        if "dr" in kinds:
            row["dr_events_per_period"] = max(len(f["events"]) for f in r0["dr"])  # type: ignore[arg-type]
            row["dr_cap"] = pol.limit("dr", "events_per_period")
            checks.append(row["dr_events_per_period"] <= row["dr_cap"])
        if "samples" in kinds:
            row["k"], row["min_k"] = ds.ctx.k, pol.limit("sampling", "min_k")
            checks.append(row["k"] >= row["min_k"])
        if "dp-forecast" in kinds:
            row["epsilon_milli_per_period"] = max(int(f["epsilon_milli"]) for f in r0["dp-forecast"])  # type: ignore[call-overload]
            row["epsilon_cap"] = pol.limit("dp", "epsilon_milli_per_period")
            checks.append(row["epsilon_milli_per_period"] <= row["epsilon_cap"])
        row["within_policy"] = all(checks)
        out[who] = row
    return out


_POLICY_KIND = {"profile-scores": "scores"}


def format_table(ev: Evaluation) -> str:
    lines = [
        f"Privacy evaluation: {ev.params['households']} households x {ev.params['weeks']} weeks from "
        f"{ev.params['start']}, seed {ev.params['seed']} ({ev.seconds:.0f} s)",
        f"calibration: population mean vs BDEW H0 r = {ev.calibration['h0_correlation_15min']:.3f} (15 min), "
        f"{ev.calibration['h0_correlation_hourly']:.3f} (hourly); one household alone (hourly) median "
        f"{ev.calibration['household_h0_correlation_hourly']['median']:.3f}",
        "",
        f"{'attack':<30} {'method':<10} {'source':<14} {'metric':<9} {'value':>6} {'95% interval':>15} "
        f"{'base':>6} {'prior':>6} {'gap':>7}",
    ]
    for r in ev.results:
        prior = f"{r.prior:6.3f}" if r.prior is not None else "     -"
        lines.append(
            f"{r.attack:<30} {r.method:<10} {r.source:<14} {r.metric:<9} {r.value:6.3f} "
            f"[{r.ci[0]:.3f}, {r.ci[1]:.3f}] {r.base_rate:6.3f} {prior} {100 * r.gap:+6.1f}p"
        )
    g = ev.goal()
    lines.append("")
    lines.append(f"goal: raw 15-min occupancy >= 80%: {'met' if g['raw_occupancy_at_least_80'] else 'NOT met'} "
                 f"({100 * g['raw_occupancy']:.1f}%); releases within 2 points of the baseline: "
                 f"{'met' if g['releases_within_2_points'] else 'NOT met'} (worst {g['worst_release']} "
                 f"{100 * g['worst_release_gap']:+.1f} points)")
    for leak in g["leaking"]:
        lines.append(f"  leaks: {leak}")
    return "\n".join(lines)


def write_plots(ev: Evaluation, out_dir: str) -> list[str]:
    """PNG bar charts of each attack's score by data source (matplotlib, Agg backend)."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    attacks = sorted({r.attack for r in ev.results}, key=lambda a: (a.startswith("trait"), a))
    for attack in attacks:
        rows = [r for r in ev.results if r.attack == attack]
        labels = [f"{r.source}\n{r.method}" for r in rows]
        vals = [r.value for r in rows]
        # A percentile bootstrap interval need not contain the point estimate.
        err = [[max(0.0, r.value - r.ci[0]) for r in rows], [max(0.0, r.ci[1] - r.value) for r in rows]]
        colors = ["#c0392b" if r.source in ("raw-15min", "hourly") else "#7f8c8d" if r.source == "none"
                  else "#2471a3" for r in rows]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(rows)), 4.0))
        ax.bar(range(len(rows)), vals, yerr=err, color=colors, capsize=3)
        ax.axhline(rows[0].baseline if rows[0].prior is None else max(rows[0].base_rate, rows[0].prior or 0.0),
                   color="black", linestyle="--", linewidth=1, label="baseline (majority / prior)")
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(rows[0].metric)
        ax.set_ylim(0, 1)
        ax.set_title(f"{attack}: {ev.params['households']} households x {ev.params['weeks']} weeks")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{attack.replace(':', '-')}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
