"""The attacks: occupancy, appliances (NILM) and household traits.

* :func:`occupancy_supervised` - a random forest (scikit-learn) on per-hour features, trained on households
  with ground truth and applied to others (Kleiminger et al. 2015 train per home;
  training on other homes is the harder, more realistic case for an attacker who
  never entered the victim's home).
* :func:`occupancy_threshold` - unsupervised: occupied when the hour's level is
  above the household's trailing 24-hour minimum by a margin, and at night (people
  sleep at home; the night rule is what lets a threshold method score above the
  base rate at all, since sleeping and absence both read as base load).
* :func:`nilm_hart` - Hart's edge detection ("Nonintrusive appliance load
  monitoring", Proc. IEEE 80(12), 1992): rising steps paired with a falling step of
  similar size, each pair labelled with the nearest appliance signature (step size,
  duration) learned from training households.
* :func:`nilm_co` - combinatorial optimisation (Hart 1992, section VI; the CO
  baseline of NILMTK): per reading, the subset of appliances whose typical
  energies best explain the reading above the always-on load.
* :func:`supervised_by_unit` - the same classifier as occupancy, one per appliance,
  the threshold on its probability chosen for the best F1 on the training data:
  the attack on released figures, where no time series exists to disaggregate.
* :func:`traits_classifier` - one random forest per trait (Beckel et al. 2014 use
  SVM, AdaBoost and others; a forest is a strong default), stratified 5-fold
  cross-validation over households.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .features import rolling_min

__all__ = [
    "ApplianceSignature",
    "bootstrap_ci",
    "f1",
    "learn_signatures",
    "nilm_co",
    "nilm_hart",
    "occupancy_supervised",
    "occupancy_threshold",
    "supervised_by_unit",
    "traits_classifier",
    "wilson",
]


# --------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (Wilson, JASA 22, 1927), 95 % by default."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float((pred & truth).sum())
    fp = float((pred & ~truth).sum())
    fn = float((~pred & truth).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0


_Group = TypeVar("_Group")  # one household's data: an array, or a (prediction, truth) pair


def bootstrap_ci(
    stat: Callable[[list[_Group]], Any], groups: Sequence[_Group], rng: np.random.Generator, b: int = 200
) -> tuple[float, float]:
    """95 % percentile interval of ``stat(list of per-household arrays)`` resampling
    households (cluster bootstrap: hours of one household are not independent)."""
    n = len(groups)
    vals = []
    for _ in range(b):
        pick = rng.integers(0, n, n)
        vals.append(stat([groups[i] for i in pick]))
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- classifiers


MAX_TRAIN_ROWS = 20_000


def _forest(seed: int):
    from sklearn.ensemble import RandomForestClassifier

    # A random forest on one core (scikit-learn's OpenMP-based boosting stalls on a
    # shared, loaded machine); depth-limited, enough trees for stable votes.
    return RandomForestClassifier(n_estimators=40, max_depth=14, min_samples_leaf=3, max_features="sqrt",
                                  n_jobs=1, random_state=seed)


def _fit(x: np.ndarray, y: np.ndarray, seed: int):
    """Fit on at most MAX_TRAIN_ROWS rows (a seeded subsample) with NaN as -1."""
    if x.shape[0] > MAX_TRAIN_ROWS:
        pick = np.random.default_rng([seed, 0x7261]).choice(x.shape[0], MAX_TRAIN_ROWS, replace=False)
        x, y = x[pick], y[pick]
    clf = _forest(seed)
    clf.fit(np.nan_to_num(x, nan=-1.0), y)
    return clf


def _proba(clf, x: np.ndarray) -> np.ndarray:
    p = clf.predict_proba(np.nan_to_num(x, nan=-1.0))
    return p[:, list(clf.classes_).index(True)] if True in clf.classes_ else np.zeros(x.shape[0])


def occupancy_supervised(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Predicted occupancy (bool) for the test rows."""
    if len(np.unique(y_train)) < 2:
        return np.full(x_test.shape[0], bool(y_train[0]) if y_train.size else True)
    return _proba(_fit(x_train, y_train, seed), x_test) >= 0.5


def occupancy_threshold(
    series: np.ndarray, per_hour: int, hour_of_day: np.ndarray, margin: float = 0.3, floor_wh: float = 40.0
) -> np.ndarray:
    """Unsupervised occupancy per hour (N, hours): above the trailing 24 h minimum
    by ``margin`` (relative) and ``floor_wh`` (absolute, per hour), or night (0-6 h)."""
    base = rolling_min(series, 24 * per_hour)
    hourly = series.reshape(series.shape[0], -1, per_hour).sum(axis=2)
    base_h = base.reshape(series.shape[0], -1, per_hour).mean(axis=2) * per_hour
    above = hourly > base_h * (1 + margin) + floor_wh
    night = (hour_of_day < 6)[None, :]
    return above | night


def supervised_by_unit(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0
) -> np.ndarray:
    """A classifier whose decision threshold maximises F1 on the training rows."""
    if y_train.sum() == 0:
        return np.zeros(x_test.shape[0], dtype=bool)
    clf = _fit(x_train, y_train, seed)
    # The threshold from out-of-bag-like held-back rows would be cleaner; the forest's
    # in-sample probabilities are over-confident, so pick it on a held-back quarter.
    rng = np.random.default_rng([seed, 0x6631])
    held = rng.random((x_train.shape[0],)) < 0.25
    if held.any() and (~held).any() and y_train[~held].any():
        probe = _fit(x_train[~held], y_train[~held], seed)
        p_held, y_held = _proba(probe, x_train[held]), y_train[held].astype(bool)
    else:
        p_held, y_held = _proba(clf, x_train), y_train.astype(bool)
    best, thr = -1.0, 0.5
    for t in np.linspace(0.05, 0.95, 19):
        s = f1(p_held >= t, y_held)
        if s > best:
            best, thr = s, t
    return _proba(clf, x_test) >= thr


def traits_classifier(x: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> np.ndarray:
    """Cross-validated predictions (one per household) of a random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        return y.copy()
    k = int(min(folds, counts.min()))
    if k < 2:
        # A class with one member: predict the majority (no fold could learn it).
        return np.full_like(y, classes[counts.argmax()])
    clf = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    x = np.nan_to_num(x, nan=-1.0)
    return cross_val_predict(clf, x, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))


# --------------------------------------------------------------------------- NILM


@dataclass(frozen=True)
class ApplianceSignature:
    """An appliance as an attacker learns it from training households at one resolution."""

    name: str
    energy: float  # median energy per reading while on (Wh)
    length: float  # median run length (readings)


def learn_signatures(truth: dict[str, np.ndarray], names: Sequence[str], on_wh: float) -> list[ApplianceSignature]:
    """Signatures from ground truth ``truth[name]`` (N, readings) of training households."""
    out = []
    for name in names:
        x = truth[name]
        on = x > on_wh
        if not on.any():
            continue
        runs = []
        for row in on:
            edges = np.diff(np.concatenate(([0], row.astype(np.int8), [0])))
            starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
            runs.extend((ends - starts).tolist())
        out.append(ApplianceSignature(name, float(np.median(x[on])), float(np.median(runs))))
    return out


def nilm_hart(series: np.ndarray, sigs: Sequence[ApplianceSignature], tol: float = 0.45) -> dict[str, np.ndarray]:
    """On/off per reading (N, n) per appliance from paired edges (module docstring)."""
    n_hh, n = series.shape
    out = {s.name: np.zeros((n_hh, n), dtype=bool) for s in sigs}
    if not sigs:
        return out
    min_step = 0.5 * min(s.energy for s in sigs)
    energies = np.array([s.energy for s in sigs])
    lengths = np.array([s.length for s in sigs])
    for i in range(n_hh):
        x = series[i].astype(float)
        d = np.diff(x, prepend=x[0])
        rises = np.flatnonzero(d > min_step)
        falls = np.flatnonzero(d < -min_step)
        used = np.zeros(n, dtype=bool)
        for r in rises:
            step = d[r]
            cand = falls[(falls > r) & (falls <= r + int(3 * lengths.max()) + 1)]
            match = None
            for f in cand:
                if not used[f] and abs(step + d[f]) <= tol * step:
                    match = f
                    break
            if match is None:
                continue
            dur = match - r
            cost = np.abs(step - energies) / energies + 0.5 * np.abs(dur - lengths) / np.maximum(lengths, 1)
            k = int(cost.argmin())
            if cost[k] > 1.0:
                continue
            used[match] = True
            out[sigs[k].name][i, r:match] = True
    return out


def nilm_co(series: np.ndarray, sigs: Sequence[ApplianceSignature], per_hour: int,
            penalty: float = 0.15) -> dict[str, np.ndarray]:
    """Combinatorial optimisation per reading: the subset ``A`` minimising
    ``|x - base - sum_A e_a| + penalty * sum_A e_a`` (the penalty prefers the
    simpler explanation), ``base`` the trailing 24 h minimum."""
    n_hh, n = series.shape
    if not sigs:
        return {}
    e = np.array([s.energy for s in sigs])
    combos = np.array(list(itertools.product((0, 1), repeat=len(sigs))), dtype=float)  # (2^K, K)
    totals = combos @ e
    base = rolling_min(series, 24 * per_hour)
    resid = np.clip(series - base, 0.0, None)
    out = {s.name: np.zeros((n_hh, n), dtype=bool) for s in sigs}
    for i in range(n_hh):  # one household at a time: (n, 2^K) costs
        cost = np.abs(resid[i, :, None] - totals[None, :]) + penalty * totals[None, :]
        on = combos[cost.argmin(axis=1)] > 0
        for k, s in enumerate(sigs):
            out[s.name][i] = on[:, k]
    return out
