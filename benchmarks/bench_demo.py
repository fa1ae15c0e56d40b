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

With ``tables`` as third argument it times instead, per-APDU on disk, the generator
tables built when they pay off (``TABLE_AFTER_USES``, the default) against built on
first use (``TABLE_AFTER_USES = 1``, the path before: 64 tables for the two
demand-response range proofs).

Run: .venv/bin/python benchmarks/bench_demo.py [households] [runs] [tables]
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


def run_once(batching: bool | str, households: int, base: str) -> tuple[float, float]:
    """One demo in a child; returns (cpu seconds, wall seconds)."""
    d = Path(tempfile.mkdtemp(prefix="bench-demo-", dir=base))
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _RUNNER, batching if isinstance(batching, str) else "1" if batching else "0",
             str(households), str(DAYS), str(d / "data")],
            check=True, stdout=subprocess.DEVNULL, env=os.environ.copy(),
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return cpu, wall
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    households = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    runs = max(MIN_RUNS, int(sys.argv[2]) if len(sys.argv) > 2 else MIN_RUNS)
    header(f"demo pipeline, {households} households x {DAYS} days, CPU per customer-month (child process)")
    disk = tempfile.gettempdir()
    ram = "/dev/shm"
    if len(sys.argv) > 3 and sys.argv[3] == "tables":
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
    variants = {
        ("per-write", "disk"): (False, disk),
        ("per-APDU", "disk"): (True, disk),
        ("per-write", "RAM"): (False, ram),
        ("per-APDU", "RAM"): (True, ram),
    }
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for k, (batching, base) in variants.items():
            c, w = run_once(batching, households, base)
            cpu[k].append(c / households)
            wall[k].append(w / households)
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    for k in variants:
        row(f"{k[0]} commits, data on {k[1]} ({disk if k[1] == 'disk' else ram})", f"{med_c[k]:.3f} s",
            f"cpu per customer-month; wall {med_w[k]:.3f} s; median of {runs} runs")
    for where in ("disk", "RAM"):
        a, b = ("per-write", where), ("per-APDU", where)
        row(f"  per-APDU against per-write, {where}", f"{med_c[a] / med_c[b]:.2f}x",
            f"less cpu; wall {med_w[a] / med_w[b]:.2f}x")
    for mode in ("per-write", "per-APDU"):
        row(f"  {mode}: disk against RAM disk", f"{med_w[(mode, 'disk')] / med_w[(mode, 'RAM')]:.2f}x",
            f"wall; cpu {med_c[(mode, 'disk')] / med_c[(mode, 'RAM')]:.2f}x")


if __name__ == "__main__":
    main()
