"""Attack features from raw readings, hourly readings and released figures.

* Occupancy (Kleiminger, Beckel, Santini, "Household occupancy monitoring using
  electricity meters", UbiComp 2015): per window the mean, standard deviation,
  minimum, maximum, range and the number of on/off events (steps above a
  threshold), over the hour and over a wider context window, plus the level above
  the household's rolling minimum (its always-on load) and the time of day.
* Household traits (Beckel, Sadamori, Staake, Santini, "Revealing household
  characteristics from smart meter data", Energy 78, 2014, the CLASS system):
  consumption figures (mean per day and per time of day, weekday and weekend),
  ratios (mean/max, min/mean, night/day, noon/total, evening/noon,
  weekend/weekday), statistics (variance, day-to-day correlation, peaks) and
  temporal features (time of the morning rise and of the daily maximum).

Every function works on arrays of households at once: ``x15`` is ``(N, n)``
quarter-hour Wh, ``hourly`` ``(N, n/4)``. Time features are public.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "class_features",
    "rolling_min",
    "window_features",
]


def rolling_min(x: np.ndarray, width: int) -> np.ndarray:
    """Minimum over the trailing ``width`` values (inclusive), per row; the first
    values use what is there. A causal always-on-load estimate."""
    n = x.shape[1]
    out = np.empty_like(x, dtype=float)
    # Block minima in O(n) per row with the van Herk/Gil-Werman trick would be
    # faster; a strided minimum over width is fast enough for weeks of data.
    pad = np.concatenate([np.repeat(x[:, :1], width - 1, axis=1), x], axis=1).astype(float)
    view = np.lib.stride_tricks.sliding_window_view(pad, width, axis=1)
    out[:] = view.min(axis=2)[:, :n]
    return out


def _window_stats(v: np.ndarray, step: float, prefix: str) -> dict[str, np.ndarray]:
    """Stats over the last axis of ``v`` (N, H, w)."""
    d = np.abs(np.diff(v, axis=2))
    return {
        f"{prefix}mean": v.mean(axis=2),
        f"{prefix}std": v.std(axis=2),
        f"{prefix}min": v.min(axis=2),
        f"{prefix}max": v.max(axis=2),
        f"{prefix}range": v.max(axis=2) - v.min(axis=2),
        f"{prefix}events": (d > step).sum(axis=2).astype(float),
        f"{prefix}absdiff": d.sum(axis=2),
    }


def _context(series: np.ndarray, per_unit: int, before: int, after: int) -> np.ndarray:
    """(N, units, (before + 1 + after) * per_unit) windows of ``series`` (N, units*per_unit),
    edge-padded."""
    n_units = series.shape[1] // per_unit
    pad = np.pad(series.astype(float), ((0, 0), (before * per_unit, after * per_unit)), mode="edge")
    w = (before + 1 + after) * per_unit
    view = np.lib.stride_tricks.sliding_window_view(pad, w, axis=1)[:, ::per_unit]
    return view[:, :n_units]


def window_features(series: np.ndarray, per_hour: int) -> dict[str, np.ndarray]:
    """Kleiminger-style occupancy features per hour from a series with ``per_hour``
    readings an hour (4 for 15-minute data, 1 for hourly): each (N, hours)."""
    step = 200.0 / per_hour  # an on/off event: a step of 200 W or more
    hour = _context(series, per_hour, 0, 0)
    ctx = _context(series, per_hour, 1, 1) if per_hour > 1 else _context(series, 1, 2, 2)
    feats = _window_stats(hour, step, "h_") if per_hour > 1 else {"h_value": hour[:, :, 0]}
    feats.update(_window_stats(ctx, step, "c_"))
    base = rolling_min(series, 24 * per_hour)[:, per_hour - 1 :: per_hour]  # at each hour's end
    level = hour.mean(axis=2)
    feats["above_base"] = level - base
    feats["over_base"] = level / np.maximum(base, 1.0)
    # Yesterday's same hour and the household's typical level (what a day-ahead attacker knows).
    hourly = series.reshape(series.shape[0], -1, per_hour).sum(axis=2)
    feats["day_before"] = np.concatenate([hourly[:, :24], hourly[:, :-24]], axis=1) if hourly.shape[1] > 24 else hourly
    feats["hh_median"] = np.repeat(np.median(hourly, axis=1, keepdims=True), hourly.shape[1], axis=1)
    return feats


def class_features(
    hourly: np.ndarray, hour_of_day: np.ndarray, rest: np.ndarray, x15: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """CLASS-style household features (N,) from hourly readings (N, H) with the local
    hour (H,) and rest-day flag (H,) of each hour; 15-minute readings add the
    fine-grained maximum and variance."""
    eps = 1e-9
    days = hourly.shape[1] / 24.0
    f: dict[str, np.ndarray] = {}
    total = hourly.sum(axis=1)
    f["c_day"] = total / days
    wk, we = ~rest, rest
    f["c_weekday"] = hourly[:, wk].mean(axis=1) * 24 if wk.any() else f["c_day"]
    f["c_weekend"] = hourly[:, we].mean(axis=1) * 24 if we.any() else f["c_day"]
    spans = {"night": (1, 5), "morning": (6, 10), "noon": (10, 14), "afternoon": (14, 18), "evening": (18, 22)}
    for name, (a, b) in spans.items():
        sel = (hour_of_day >= a) & (hour_of_day < b)
        f[f"c_{name}"] = hourly[:, sel].mean(axis=1)
    mean = hourly.mean(axis=1)
    f["r_mean_max"] = mean / (hourly.max(axis=1) + eps)
    f["r_min_mean"] = hourly.min(axis=1) / (mean + eps)
    f["r_night_day"] = f["c_night"] / (f["c_noon"] + f["c_afternoon"] + eps)
    f["r_noon_total"] = f["c_noon"] / (mean + eps)
    f["r_evening_noon"] = f["c_evening"] / (f["c_noon"] + eps)
    f["r_weekend_weekday"] = f["c_weekend"] / (f["c_weekday"] + eps)
    f["s_var"] = hourly.var(axis=1)
    f["s_cv"] = hourly.std(axis=1) / (mean + eps)
    n_days = hourly.shape[1] // 24
    if n_days >= 2:
        d = hourly[:, : n_days * 24].reshape(hourly.shape[0], n_days, 24)
        today, tomorrow = d[:, :-1].reshape(len(d), -1), d[:, 1:].reshape(len(d), -1)
        today = today - today.mean(axis=1, keepdims=True)
        tomorrow = tomorrow - tomorrow.mean(axis=1, keepdims=True)
        f["s_day_corr"] = (today * tomorrow).sum(axis=1) / (
            np.sqrt((today * today).sum(axis=1) * (tomorrow * tomorrow).sum(axis=1)) + eps
        )
        daily = d.mean(axis=1)  # (N, 24): the typical day
        f["t_max_hour"] = daily.argmax(axis=1).astype(float)
        rise = daily[:, 4:12] > 1.5 * daily[:, 2:4].mean(axis=1, keepdims=True)
        f["t_morning_rise"] = np.where(rise.any(axis=1), rise.argmax(axis=1) + 4, 12).astype(float)
    f["s_peaks"] = (hourly > 2.0 * mean[:, None]).mean(axis=1)
    f["s_high"] = (hourly > 1000.0).mean(axis=1)
    if x15 is not None:
        f["q_max"] = x15.max(axis=1).astype(float)
        f["q_var"] = x15.var(axis=1)
        f["q_p95"] = np.percentile(x15, 95, axis=1)
        f["q_min"] = np.percentile(x15, 2, axis=1)
    return f
