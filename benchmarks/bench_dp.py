"""What the DP forecast option costs the forecast: MAPE against epsilon (issue 12).

Households: ``simulate_neighbourhood`` (the CREST-like simulator), 100 x 8 weeks from
2027-02-01 by default. The forecaster classifies each household on period 1 (28 days)
and forecasts period 2 hour by hour: the class profile's weights of period 2 scaled by
period 1's energy over the class weights (:func:`meterhub.utility.forecasting.forecast`).

* baseline: the exact score release (verified ``E`` and scores; class = highest
  Pearson ``r``), what the grid operator gets today;
* DP: the profiling applet's message 22 (:func:`meterhub.model.dp.dp_forecast`) at each
  epsilon, noise drawn by OpenDP as on the card, unit 1 hour (the default policy) and
  24 hours, clip 5 kWh.

Figures per variant, medians over ``--runs`` rounds (default 5) in which the variants
alternate (baseline, DP eps_1, DP eps_2, ...; fresh noise every round): the median
over households of the per-household hourly MAPE, the hourly MAPE of the summed
forecast of all households (a feeder, what a grid operator plans with), the share of
households whose class equals the exact one, the median absolute error of the period
energy, and the time per release. Ratios are to the baseline of the same round.

Run: .venv/bin/python benchmarks/bench_dp.py [--households 100] [--weeks 8] [--runs 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import numpy as np

from _bench import MIN_RUNS, header, row
from meterhub.meter.load import simulate_neighbourhood
from meterhub.model.dp import DpParams, OpenDPNoise, dp_forecast, utilities
from meterhub.model.timebase import range_starts
from meterhub.tariffs.price_index import Series
from meterhub.tariffs.profiles import BDEW_PROFILES, bdew_profile, utility_profile
from meterhub.utility.forecasting import forecast, mape, period_weights

EPSILONS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def _weights(first: dt.date, days: int, tz: str = "Europe/Berlin") -> dict[str, list[int]]:
    series: dict[str, Series] = {s.series_id: s for s in (bdew_profile(n, first, days, tz=tz) for n in BDEW_PROFILES)}
    u = utility_profile("u-night", first, days, tz=tz)
    series[u.series_id] = u
    return period_weights(series, range_starts(first, days, tz, 60))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=100)
    p.add_argument("--weeks", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=MIN_RUNS)
    args = p.parse_args()
    if args.weeks < 8 or args.runs < MIN_RUNS:
        raise SystemExit(f"need 8 weeks (two 28-day periods) and at least {MIN_RUNS} runs")
    header(f"DP forecast cost, {args.households} households x {args.weeks} weeks, seed {args.seed}")
    start = dt.date(2027, 2, 1)
    t0 = time.perf_counter()
    traces = simulate_neighbourhood(args.households, start, 7 * args.weeks, seed=args.seed)
    x = np.array([t.readings_wh for t in traces], dtype=np.int64)
    hourly = x.reshape(len(traces), -1, 4).sum(axis=2)
    # Period 1: days 0-27, period 2: days 28-55 (local days; hours from the day grid).
    n1 = len(range_starts(start, 28, "Europe/Berlin", 60))
    n2 = len(range_starts(start + dt.timedelta(days=28), 28, "Europe/Berlin", 60))
    h1, h2 = hourly[:, :n1], hourly[:, n1 : n1 + n2]
    w1, w2 = _weights(start, 28), _weights(start + dt.timedelta(days=28), 28)
    print(f"   simulated in {time.perf_counter() - t0:.0f} s; period 1 {n1} h, period 2 {n2} h")
    noise = OpenDPNoise()

    def exact(i: int) -> tuple[int, str]:
        u = utilities([int(v) for v in h1[i]], w1, 10**12)
        return int(h1[i].sum()), max(u, key=lambda k: u[k])

    def dp(eps: float, unit: int) -> object:
        def f(i: int) -> tuple[int, str]:
            r = dp_forecast([int(v) for v in h1[i]], w1, DpParams(eps, unit_hours=unit), noise)
            return int(r["energy_wh"]), str(r["class"])
        return f

    variants: dict[str, object] = {"exact scores (baseline)": exact}
    for unit in (1, 24):
        for eps in EPSILONS:
            variants[f"DP eps {eps:g}, unit {unit} h"] = dp(eps, unit)
    exact_class = [exact(i)[1] for i in range(len(traces))]
    truth_feeder = h2.sum(axis=0).astype(float)
    figs: dict[str, dict[str, list[float]]] = {v: {"hh": [], "feeder": [], "class": [], "energy": [], "ms": []}
                                               for v in variants}
    for _ in range(args.runs):
        for name, fn in variants.items():
            c0 = time.perf_counter()
            out = [fn(i) for i in range(len(traces))]  # type: ignore[operator]
            per = (time.perf_counter() - c0) / len(traces)
            preds = [forecast(w2[c], max(0, e), sum(w1[c])) for e, c in out]
            figs[name]["hh"].append(float(np.median([mape(pr, list(h2[i])) for i, pr in enumerate(preds)])))
            figs[name]["feeder"].append(mape(list(np.sum(preds, axis=0)), list(truth_feeder)))
            figs[name]["class"].append(float(np.mean([c == exact_class[i] for i, (_, c) in enumerate(out)])))
            figs[name]["energy"].append(float(np.median([abs(e - h1[i].sum()) / h1[i].sum() for i, (e, _) in
                                                         enumerate(out)])))
            figs[name]["ms"].append(per * 1e3)
    med = {v: {k: statistics.median(x) for k, x in f.items()} for v, f in figs.items()}
    base = med["exact scores (baseline)"]
    print(f"   medians of {args.runs} alternating runs; per variant: household MAPE (median over households), "
          "feeder MAPE, class = exact, |energy error|, time per release")
    for v, m in med.items():
        row(v, f"{m['hh']:.1f} %", f"x{m['hh'] / base['hh']:.2f}; feeder {m['feeder']:.1f} % "
            f"(x{m['feeder'] / base['feeder']:.2f}); class {100 * m['class']:.0f} %; energy {100 * m['energy']:.2f} %; "
            f"{m['ms']:.1f} ms")


if __name__ == "__main__":
    main()
