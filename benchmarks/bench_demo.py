"""The whole demo pipeline: CPU per customer-month, on disk and on a RAM disk.

Runs ``meterhub demo --households N --days 30`` (meters, hub cards with their applets,
utility verification, settlement and forecasting) in a child process and reads the
child's CPU time (user + system, ``resource.getrusage(RUSAGE_CHILDREN)``) and wall time.
Variants, timed alternately (A, B, C, D, A, ...):

* ``per-write``: the emulated card commits (and syncs) every write on its own
  (``PersistentStore.apdu_batching = False``, the path before this change);
* ``per-APDU``: one synced commit per command (card/store.py);

each with its data directory on the disk (``/tmp`` here) and on a RAM disk
(``/dev/shm``), so the ratio disk / RAM shows the cost of the synced commits.

Then the marginal CPU per extra customer-month: per-APDU on disk, runs with
``households`` and with ``larger`` households (third argument, default ``households +
4``) alternate; the figure is the median over the pairs of ``(cpu(larger) -
cpu(households)) / (larger - households)``, so the fixed start-up costs of a run
(interpreter and imports, keys, tariffs, the demand-response and fraud set-up) are
separated from the costs per customer (fixed = run cpu - households x marginal). The
fraud section runs only with at least 5 customers on a feeder (``demo.fraud.MIN_GROUP``):
when only ``larger`` reaches it, its fixed costs (the CUSUM calibration on 40 simulated
feeders) fall into the marginal figure, so the report says so and derives no fixed
cost; pick both counts below 5 (``2 5 4``) or both at 5 or more (``5 5 marginal 7``).
With ``marginal`` as third argument only the marginal figure is timed.

``--before=SRC`` (a ``src`` directory of another tree, e.g. ``/work/main/src``) times
that tree's demo as well, alternating with this one (A, B, A, B) in every variant, and
prints the ratio before / after.

The children do not compile Python sources while timed: every tree is byte-compiled
once beforehand into a scratch ``PYTHONPYCACHEPREFIX`` (as an installed package is),
even when ``PYTHONDONTWRITEBYTECODE`` is set in the environment.

With ``tables`` as third argument it times instead, per-APDU on disk, the generator
tables built when they pay off (``TABLE_AFTER_USES``, the default) against built on
first use (``TABLE_AFTER_USES = 1``, the path before: 64 tables for the two
demand-response range proofs).

Run: .venv/bin/python benchmarks/bench_demo.py [households] [runs] [[marginal] larger|tables] [--before=SRC]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import MIN_RUNS, header, row

DAYS = 30

_RUNNER = """
import sys
from meterhub.card.store import PersistentStore
PersistentStore.apdu_batching = sys.argv[1] != "0"
if sys.argv[1] == "eager":
    from meterhub.crypto.bulletproofs import _tables
    _tables.TABLE_AFTER_USES = 1
from meterhub.cli import main
sys.exit(main(["demo", "--households", sys.argv[2], "--days", sys.argv[3], "--data-dir", sys.argv[4],
               "--no-progress"]))
"""


def _disk_usage(d: Path) -> int:
    return sum(f.stat().st_size for f in d.rglob("*") if f.is_file())


#: The fraud section's smallest feeder (meterhub.demo.fraud.MIN_GROUP; not imported, so
#: that this process stays free of meterhub).
FRAUD_MIN_GROUP = 5

#: Scratch byte-code cache shared by the children (set up in :func:`main`).
_PYCACHE = ""


def _child_env(src: str | None) -> dict[str, str]:
    env = os.environ.copy()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    if src is not None:
        env["PYTHONPATH"] = src
    return env


def _compile_tree(src: str | None) -> None:
    """Byte-compile a tree's sources into the scratch cache, untimed."""
    path = src or next((p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p), "src")
    subprocess.run([sys.executable, "-m", "compileall", "-q", path], check=True, stdout=subprocess.DEVNULL,
                   env=_child_env(src))


def run_once(batching: bool | str, households: int, base: str, src: str | None = None) -> tuple[float, float]:
    """One demo in a child (with ``src`` first on its path if given); returns (cpu seconds,
    wall seconds)."""
    d = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=base))
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _RUNNER, batching if isinstance(batching, str) else "1" if batching else "0",
             str(households), str(DAYS), str(d / "data")],
            check=True, stdout=subprocess.DEVNULL, env=_child_env(src),
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu, wall
    finally:
        shutil.rmtree(d, ignore_errors=True)


def marginal(households: int, larger: int, runs: int, trees: dict[str, str | None]) -> None:
    """The marginal CPU per extra customer-month (module docstring), per tree."""
    disk = tempfile.gettempdir()
    small: dict[str, list[float]] = {k: [] for k in trees}
    big: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(runs):
        for k, src in trees.items():
            small[k].append(run_once(True, households, disk, src)[0])
            big[k].append(run_once(True, larger, disk, src)[0])
    extra = larger - households
    per: dict[str, float] = {}
    for k in trees:
        per[k] = statistics.median((b - a) / extra for a, b in zip(small[k], big[k], strict=True))
        row(f"{k}marginal cpu per extra customer-month, {households} -> {larger} households", f"{per[k]:.3f} s",
            f"median of {runs} alternating pairs; run cpu {statistics.median(small[k]):.2f} s and "
            f"{statistics.median(big[k]):.2f} s")
        if not households < FRAUD_MIN_GROUP <= larger:
            fixed = statistics.median(small[k]) - households * per[k]
            row(f"{k}  fixed cpu per run (run cpu - households x marginal)", f"{fixed:.2f} s",
                "" if fixed >= 0 else "negative: the cost per customer grows with the count (not linear)")
    if households < FRAUD_MIN_GROUP <= larger:
        row(f"  note: the fraud section runs with {larger} households but not with {households}", "",
            "so its fixed costs are in the marginal figure and no fixed cost is derived")
    if len(trees) == 2:
        a, b = trees
        row(f"  marginal, {a.strip(' :')} against {b.strip(' :')}", f"{per[a] / per[b]:.2f}x", "less cpu")


def main() -> None:
    before_src = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--before=")), None)
    args = [a for a in sys.argv[1:] if not a.startswith("--before=")]
    households = int(args[0]) if len(args) > 0 else 3
    runs = max(MIN_RUNS, int(args[1]) if len(args) > 1 else MIN_RUNS)
    global _PYCACHE
    cache = tempfile.mkdtemp(prefix="bench-demo-pyc-")
    _PYCACHE = cache
    try:
        _main(households, runs, args, before_src)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _main(households: int, runs: int, args: list[str], before_src: str | None) -> None:
    header(f"demo pipeline, {households} households x {DAYS} days, CPU per customer-month (child process)")
    print(f"   load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    disk = tempfile.gettempdir()
    ram = "/dev/shm"
    trees: dict[str, str | None] = {"": None} if before_src is None else {"before: ": before_src, "after: ": None}
    for src in trees.values():
        _compile_tree(src)
    if len(args) > 2 and args[2] == "tables":
        tv: dict[str, str] = {"when they pay off": "1", "on first use (before)": "eager"}
        tc: dict[str, list[float]] = {k: [] for k in tv}
        tw: dict[str, list[float]] = {k: [] for k in tv}
        for _ in range(runs):
            for k, arg in tv.items():
                c, w = run_once(arg, households, disk)
                tc[k].append(c / households)
                tw[k].append(w / households)
        mc = {k: statistics.median(v) for k, v in tc.items()}
        for k in tv:
            row(f"per-APDU on disk, generator tables {k}", f"{mc[k]:.3f} s",
                f"cpu per customer-month; wall {statistics.median(tw[k]):.3f} s; median of {runs} runs")
        row("  tables when they pay off against on first use", f"{mc['on first use (before)'] / mc['when they pay off']:.2f}x",
            "less cpu")
        return
    only_marginal = len(args) > 2 and args[2] == "marginal"
    if only_marginal:
        args = args[:2] + args[3:]
    larger = int(args[2]) if len(args) > 2 else households + 4
    if larger <= households:
        raise SystemExit("the larger household count must exceed the first")
    if only_marginal:
        marginal(households, larger, runs, trees)
        print(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    variants = {
        (t, "per-write", "disk"): (False, disk, src) for t, src in trees.items()
    } | {(t, "per-APDU", "disk"): (True, disk, src) for t, src in trees.items()} | {
        (t, "per-write", "RAM"): (False, ram, src) for t, src in trees.items()
    } | {(t, "per-APDU", "RAM"): (True, ram, src) for t, src in trees.items()}
    cpu: dict[tuple[str, str, str], list[float]] = {k: [] for k in variants}
    wall: dict[tuple[str, str, str], list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, (batching, base, src) in variants.items():
            c, w = run_once(batching, households, base, src)
            cpu[k].append(c / households)
            wall[k].append(w / households)
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    for k in variants:
        row(f"{k[0]}{k[1]} commits, data on {k[2]} ({disk if k[2] == 'disk' else ram})", f"{med_c[k]:.3f} s",
            f"cpu per customer-month; wall {med_w[k]:.3f} s; median of {runs} runs")
    for t in trees:
        for where in ("disk", "RAM"):
            a, b = (t, "per-write", where), (t, "per-APDU", where)
            row(f"  {t}per-APDU against per-write, {where}", f"{med_c[a] / med_c[b]:.2f}x",
                f"less cpu; wall {med_w[a] / med_w[b]:.2f}x")
        for mode in ("per-write", "per-APDU"):
            row(f"  {t}{mode}: disk against RAM disk", f"{med_w[(t, mode, 'disk')] / med_w[(t, mode, 'RAM')]:.2f}x",
                f"wall; cpu {med_c[(t, mode, 'disk')] / med_c[(t, mode, 'RAM')]:.2f}x")
    if len(trees) == 2:
        a_t, b_t = trees
        for where in ("disk", "RAM"):
            ka, kb = (a_t, "per-APDU", where), (b_t, "per-APDU", where)
            row(f"  per-APDU on {where}, {a_t.strip(' :')} against {b_t.strip(' :')}", f"{med_c[ka] / med_c[kb]:.2f}x",
                "less cpu per customer-month")
    marginal(households, larger, runs, trees)
    print(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
