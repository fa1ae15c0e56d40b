"""The privacy evaluation (`meterhub privacy evaluate`) for 100 households x 8 weeks on one core.

Figures, each variant in a fresh process (so its peak RSS is its own), pinned to one core:

* A (baseline): the simulator and the releases alone (``build_dataset``: 100
  households, 8 weeks of 15-minute readings with ground truth, every release kind);
* B: the whole evaluation (the same, plus every attack on every data source).

Variants alternate A, B, A, B, ... ``--runs`` times each (default 1: one full
evaluation takes 10-30 minutes on the shared machine; pass ``--runs 5`` for medians of
five, at a smaller ``--households``/``--weeks`` if the full size takes too long). Each
run reports wall and CPU time (the CPU time leaves out waiting for a loaded core). The ratio B/A is
the cost of the attacks over the simulation. ``--json-out FILE`` and ``--plots DIR``
keep the last B run's results (the figures of docs/privacy-evaluation.md).

Run: .venv/bin/python benchmarks/bench_privacy.py [--households 100] [--weeks 8] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _bench import header, pin_one_core, row

CHILD = r"""
import datetime as dt, json, resource, sys, time
from threadpoolctl import threadpool_limits
variant, n, w, seed, out, plots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
t0, c0 = time.perf_counter(), time.process_time()
with threadpool_limits(limits=1):
    if variant == "A":
        from meterhub.privacy.evaluate import build_dataset
        build_dataset(n, w, seed, dt.date(2027, 2, 1))
        res = None
    else:
        from meterhub.privacy.evaluate import evaluate, write_plots
        ev = evaluate(n, w, seed, dt.date(2027, 2, 1))
        res = ev.to_dict()
        if out != "-":
            open(out, "w").write(json.dumps(res, indent=1))
        if plots != "-":
            write_plots(ev, plots)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"seconds": elapsed, "cpu": cpu, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(variant: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-c", CHILD, variant, str(args.households), str(args.weeks), str(args.seed),
           args.json_out or "-", args.plots or "-"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=100)
    p.add_argument("--weeks", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--json-out")
    p.add_argument("--plots")
    args = p.parse_args()
    pin_one_core()  # children inherit the affinity
    header(f"privacy evaluation, {args.households} households x {args.weeks} weeks, seed {args.seed}")
    res: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    t0 = time.perf_counter()
    for _ in range(args.runs):
        for v in ("A", "B"):
            res[v].append(run(v, args))
    sec = {v: statistics.median(r["seconds"] for r in res[v]) for v in res}
    cpu = {v: statistics.median(r["cpu"] for r in res[v]) for v in res}
    mem = {v: statistics.median(r["maxrss_kb"] for r in res[v]) / 1024 for v in res}
    n = args.runs
    what = "single run" if n == 1 else f"median of {n}"
    row(f"A simulator + releases alone ({what})", f"{sec['A']:.1f} s",
        f"cpu {cpu['A']:.1f} s, peak RSS {mem['A']:.0f} MB")
    row(f"B full evaluation, all attacks and sources ({what})", f"{sec['B']:.1f} s",
        f"cpu {cpu['B']:.1f} s, peak RSS {mem['B']:.0f} MB")
    row("B / A", f"{sec['B'] / sec['A']:.1f}x", f"cpu {cpu['B'] / cpu['A']:.1f}x, memory {mem['B'] / mem['A']:.2f}x")
    for v in res:
        row(f"  {v} runs (wall s)", " ".join(f"{r['seconds']:.0f}" for r in res[v]))
    row("benchmark wall time", f"{time.perf_counter() - t0:.0f} s",
        f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
