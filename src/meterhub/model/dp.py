"""Differential-privacy noise for forecasting outputs (issue 12; docs/privacy.md, "DP option").

A forecaster needs two figures of a household per period: the energy ``E`` (the
forecast's scale) and the class, the reference profile that fits best
(:func:`meterhub.utility.forecasting.classify`). The exact score release gives it
``E``, ``S`` and one score per profile, from which an attacker also reads the
household's traits (docs/privacy-evaluation.md). The DP forecast release gives only

* ``E~ = clip-sum + discrete Laplace noise`` (the geometric mechanism, Ghosh,
  Roughgarden and Sundararajan, STOC 2009), with half of the release's epsilon;
* the class chosen by report-noisy-max (permute-and-flip, McKenna and Sheldon,
  NeurIPS 2020) over the utilities ``u_k = (n s_k - E W_k) / sqrt(n W2_k - W_k^2)``:
  Pearson's ``r_k`` times the household's own ``sqrt(n S - E^2)``, the same for all
  ``k``, so ``argmax u_k = argmax r_k`` and ``S`` is not needed; the other half.

**Privacy unit.** Neighbouring histories differ in the readings of any ``unit_hours``
consecutive hours, each hour's energy clipped to ``[0, clip_wh]`` before anything is
computed (the hub clips; a heavier hour counts as ``clip_wh``). So ``unit_hours = 1``
hides whether any one hour was occupied or an appliance ran in it; ``24`` hides a
day (a day away, a day at home). By composition a release of epsilon ``e`` protects
``j`` units together at ``j * e``; household-level facts that show in every hour of a
month (the number of residents, electric heating) are *not* protected, and the
evaluation measures how much the noise blurs them anyway. The sensitivities:
``Delta_E = unit_hours * clip_wh``; ``Delta_u = clip_wh * max_k max_window
sum_{h in window} |n w_k,h - W_k| / sqrt(n W2_k - W_k^2)`` (an ``L_inf`` bound over
the utility vector, not monotone).

**Library and randomness.** The noise comes from OpenDP (MIT; ``opendp`` on PyPI,
``make_laplace`` on integers, which samples the discrete Laplace exactly, and
``make_noisy_max``; both need OpenDP's ``contrib`` feature flag, OpenDP's mark for
mechanisms not yet through its own vetting). OpenDP draws its bits in Rust from a
thread-local CTR_DRBG (NIST SP 800-90A) seeded from the operating system's entropy,
the same source as Python's :mod:`secrets`; numpy's generators are not involved.
Each measurement's privacy map is asked for the epsilon it spends at the stated
sensitivity, and the release refuses to go out if the answer is above its share.
:class:`SeededNoise` (numpy, seeded) exists for reproducible evaluations only: the
same distributions, never used by the hub.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import MeterhubError
from .formats.dp_forecast import DP_FORECAST_FORMAT

__all__ = [
    "DEFAULT_CLIP_WH",
    "DpError",
    "DpParams",
    "Noise",
    "OpenDPNoise",
    "SeededNoise",
    "class_sensitivity",
    "dp_forecast",
    "utilities",
]

#: Hourly clip: above the 99.9th percentile of the simulated households' hours
#: (an electric shower or a heater running a whole hour is 4-6 kWh).
DEFAULT_CLIP_WH = 5000


class DpError(MeterhubError, ValueError):
    """Bad DP parameters, or a measurement whose privacy map exceeds its share."""


@dataclass(frozen=True)
class DpParams:
    """``epsilon`` of one release; ``clip_wh`` per hour; ``unit_hours`` (module docstring)."""

    epsilon: float
    clip_wh: int = DEFAULT_CLIP_WH
    unit_hours: int = 1

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, float | int) and 0 < self.epsilon <= 100 and math.isfinite(self.epsilon)):
            raise DpError("epsilon must be in (0, 100]")
        if not (isinstance(self.clip_wh, int) and 0 < self.clip_wh <= 1_000_000):
            raise DpError("clip_wh must be a positive integer (Wh per hour)")
        if not (isinstance(self.unit_hours, int) and 1 <= self.unit_hours <= 24 * 31):
            raise DpError("unit_hours must be 1 .. 744")


class Noise(Protocol):
    def laplace_int(self, value: int, scale: float, sensitivity: int, epsilon: float) -> int: ...

    def noisy_max(self, scores: Sequence[float], scale: float, sensitivity: float, epsilon: float) -> int: ...


class OpenDPNoise:
    """OpenDP's mechanisms; each call checks the library's privacy map against ``epsilon``."""

    def __init__(self) -> None:
        import opendp.prelude as dp

        dp.enable_features("contrib")
        self._dp = dp
        self._made: dict[tuple[str, float], object] = {}  # measurements by (kind, scale)

    def _measurement(self, kind: str, scale: float) -> Any:
        m = self._made.get((kind, scale))
        if m is None:
            dp = self._dp
            if kind == "laplace":
                m = dp.m.make_laplace(dp.atom_domain(T=int), dp.absolute_distance(T=int), scale=scale)
            else:
                space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float, monotonic=False)
                m = dp.m.make_noisy_max(*space, dp.max_divergence(), scale=scale)
            self._made[(kind, scale)] = m
        return m

    def laplace_int(self, value: int, scale: float, sensitivity: int, epsilon: float) -> int:
        m = self._measurement("laplace", float(scale))
        if m.map(int(sensitivity)) > epsilon * (1 + 1e-9):
            raise DpError(f"the Laplace measurement spends {m.map(int(sensitivity))} > {epsilon}")
        return int(m(int(value)))

    def noisy_max(self, scores: Sequence[float], scale: float, sensitivity: float, epsilon: float) -> int:
        m = self._measurement("noisy-max", float(scale))
        if m.map(float(sensitivity)) > epsilon * (1 + 1e-9):
            raise DpError(f"the noisy-max measurement spends {m.map(float(sensitivity))} > {epsilon}")
        return int(m([float(s) for s in scores]))


class SeededNoise:
    """The same distributions from a seeded numpy generator: for reproducible
    evaluations (:mod:`meterhub.privacy`), never for a release."""

    def __init__(self, seed: int | Sequence[int]) -> None:
        self._rng = np.random.default_rng(seed)

    def laplace_int(self, value: int, scale: float, sensitivity: int, epsilon: float) -> int:
        # Discrete Laplace as the difference of two geometric variables.
        p = 1.0 - math.exp(-1.0 / scale)
        return int(value + self._rng.geometric(p) - self._rng.geometric(p))

    def noisy_max(self, scores: Sequence[float], scale: float, sensitivity: float, epsilon: float) -> int:
        # Report-noisy-max with exponential noise is permute-and-flip (Ding et al. 2021).
        s = np.asarray(scores, dtype=float)
        return int(np.argmax(s + self._rng.exponential(scale, s.size)))


def _prepare(weights: Mapping[str, Sequence[int]], n: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    names = sorted(weights)
    w = np.array([weights[k] for k in names], dtype=float)
    if w.ndim != 2 or w.shape[1] != n:
        raise DpError("every profile needs one weight per hour of the period")
    big_w = w.sum(axis=1)
    d = np.sqrt(np.maximum(n * (w * w).sum(axis=1) - big_w * big_w, 0.0))
    if (d <= 0).any():
        raise DpError("a flat profile cannot classify")
    return names, w, big_w, d


def utilities(hourly: Sequence[int], weights: Mapping[str, Sequence[int]], clip_wh: int) -> dict[str, float]:
    """``u_k`` of the clipped hours per profile (module docstring)."""
    m = np.minimum(np.maximum(np.asarray(hourly, dtype=float), 0.0), clip_wh)
    n = m.size
    names, w, big_w, d = _prepare(weights, n)
    u = (n * (w @ m) - m.sum() * big_w) / d
    return dict(zip(names, (float(x) for x in u), strict=True))


def class_sensitivity(weights: Mapping[str, Sequence[int]], clip_wh: int, unit_hours: int) -> float:
    """``Delta_u``: how far one unit of ``unit_hours`` hours moves any utility."""
    n = len(next(iter(weights.values())))
    _, w, big_w, d = _prepare(weights, n)
    dev = np.abs(n * w - big_w[:, None]) / d[:, None]  # (K, n)
    k = min(unit_hours, n)
    c = np.concatenate([np.zeros((dev.shape[0], 1)), np.cumsum(dev, axis=1)], axis=1)
    window = c[:, k:] - c[:, :-k]
    return float(clip_wh * window.max())


def dp_forecast(
    hourly: Sequence[int], weights: Mapping[str, Sequence[int]], params: DpParams, noise: Noise
) -> dict[str, object]:
    """The DP forecast figures of one period: noisy energy and noisy class (module docstring)."""
    eps = float(params.epsilon) / 2
    clipped = [min(max(int(x), 0), params.clip_wh) for x in hourly]
    d_e = params.unit_hours * params.clip_wh
    energy = noise.laplace_int(sum(clipped), d_e / eps, d_e, eps)
    u = utilities(clipped, weights, params.clip_wh)
    d_u = class_sensitivity(weights, params.clip_wh, params.unit_hours)
    names = list(u)
    # Permute-and-flip / exponential-noise RNM is eps-DP at scale 2 * Delta / eps (not monotone).
    pick = noise.noisy_max([u[k] for k in names], 2 * d_u / eps, d_u, eps)
    return {
        "format": DP_FORECAST_FORMAT,
        "hours": len(clipped),
        "energy_wh": int(energy),
        "class": names[pick],
        "profiles": names,
        "epsilon_milli": round(1000 * float(params.epsilon)),
        "clip_wh": params.clip_wh,
        "unit_hours": params.unit_hours,
    }
