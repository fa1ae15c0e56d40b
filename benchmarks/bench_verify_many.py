"""Verify many stored bills with flat memory (issue 2: 10,000 bills, peak RSS < 300 MB).

Builds a utility database of signed day batches and one-day bill statements
(default: 1,000 meters x 10 days = 10,000 bills, 960,000 commitments), then
verifies all pending statements in a fresh process that streams them from
SQLite, and reports that process's peak RSS and throughput. Baseline in the
same run: the peak RSS of a fresh process that imports meterhub and opens the
same database without verifying anything.

Run: .venv/bin/python benchmarks/bench_verify_many.py [--meters 1000] [--days 10]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from _bench import header, row

START = date(2027, 5, 3)


def build(db: Path, meters: int, days: int, seed: int) -> None:
    from meterhub.crypto import ecdsa
    from meterhub.hub.billing import bill_statement
    from meterhub.meter.device import Meter
    from meterhub.model.formats.units import encode_records
    from meterhub.model.formats.upload import DayUpload
    from meterhub.model.timebase import day_starts
    from meterhub.tariffs import dump_tariff, example_signed_tariff
    from meterhub.utility.store import UtilityStore

    rng = random.Random(seed)
    signed = example_signed_tariff()
    tariff = signed.tariff
    store = UtilityStore(db)
    store.add_tariff(signed, dump_tariff(signed))
    prices = {START + timedelta(days=d): tariff.prices_for(day_starts(START + timedelta(days=d), "Europe/Berlin", 15)) for d in range(days)}
    t0 = time.perf_counter()
    for k in range(meters):
        mid = f"m{k:05d}"
        meter = Meter(mid, ecdsa.generate_signing_key())
        store.register_meter(mid, ecdsa.public_bytes(meter.signing_key), "Europe/Berlin", 15, tariff=signed)
        for d in range(days):
            day = START + timedelta(days=d)
            readings = [rng.choice([0, rng.randint(0, 80), rng.randint(80, 700)]) for _ in prices[day]]
            rec = meter.record_day(day, readings)
            res = store.ingest_day(DayUpload(rec.batch, encode_records(rec.first_index, rec.commitments)))
            assert res.accepted, res.reason
            st = bill_statement(
                meter_id=mid, tariff=tariff, period_from=day, period_to=day,
                first_index=rec.first_index, prices=prices[day], openings=rec.openings,
            )
            store.submit_statement(st)
        if (k + 1) % max(1, meters // 10) == 0:
            print(f"   ... built {k + 1}/{meters} meters ({time.perf_counter() - t0:.0f} s)", flush=True)
    store.close()


def child(db: str, mode: str) -> None:
    from meterhub.utility.store import UtilityStore

    store = UtilityStore(db)
    t0 = time.perf_counter()
    ok = bad = 0
    if mode == "verify":
        ok, bad = store.verify_pending()
    elapsed = time.perf_counter() - t0
    store.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{ok} {bad} {elapsed:.3f} {rss_mb:.1f}")


def run_child(db: Path, mode: str) -> tuple[int, int, float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(db)], capture_output=True, text=True, check=True
    )
    ok, bad, elapsed, rss = out.stdout.split()
    return int(ok), int(bad), float(elapsed), float(rss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", help="build the database in this directory and keep it")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[1], args.child[0])
        return 0
    header(f"bench_verify_many: {args.meters * args.days:,} stored bills, streamed verification")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="meterhub-bench-"))
    db = tmp / "utility.sqlite"
    try:
        if not db.exists():
            t0 = time.perf_counter()
            build(db, args.meters, args.days, args.seed)
            row("build (meters commit and sign, utility ingests)", f"{time.perf_counter() - t0:.0f} s", "single run")
        row("database size", f"{db.stat().st_size / 2**20:.0f} MiB")
        _, _, _, idle_rss = run_child(db, "idle")
        ok, bad, elapsed, rss = run_child(db, "verify")
        n = ok + bad
        row(f"verified {ok:,} bills, rejected {bad:,}", f"{elapsed:.1f} s", f"{n / elapsed:,.0f} bills/s; single run")
        row("peak RSS of the verifying process", f"{rss:.0f} MB", "target < 300 MB; single run")
        row("  baseline: same process, store opened, nothing verified", f"{idle_rss:.0f} MB", f"ratio {rss / idle_rss:.2f}x; single run")
        return 0 if bad == 0 and n == args.meters * args.days else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
