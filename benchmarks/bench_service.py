"""Benchmarks of the utility back end as a service (issue 15; docs/service.md).

1. ingest: meter-days/s into SQLite and PostgreSQL, batched (one transaction per
   delivery, ``UtilityStore.ingest_days``) against the one-commit-per-write path
   (``ingest_day`` per day, each its own synced commit), variants alternated per run.
2. API: deliveries/s and p99 latency of ``utility serve`` (a separate process) with 50
   concurrent clients on localhost, each delivering its own meter's days, one day per
   request, then re-delivering them until the soak ends; the server's RSS sampled
   every second. Same-run baseline (after the soak): the store alone, in process,
   the same one-day re-deliveries.
3. Dask: ``verify-all`` of N customers' pending statements with 1 and 2 workers
   (two LocalClusters, alternated), and the projection to 10,000 and 1M customers.

Run: PYTHONPATH=src python benchmarks/bench_service.py [--meters 20 --days 5
     --soak 60 --customers 40 --runs 5] (PostgreSQL from $MH_PG_DSN or .pgdsn).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _bench import MIN_RUNS, header, row  # noqa: E402
from helpers import make_history  # noqa: E402
from meterhub.crypto import ecdsa  # noqa: E402
from meterhub.tariffs import dump_tariff, example_signed_tariff  # noqa: E402
from meterhub.utility.store import UtilityStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START = date(2027, 6, 1)  # no DST change: every day has 96 intervals


def _pg_admin() -> str | None:
    dsn = os.environ.get("MH_PG_DSN")
    if dsn:
        return dsn
    f = ROOT / ".pgdsn"
    return f.read_text().strip() if f.exists() else None


def _pg_db(admin: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    return admin.rpartition("/")[0] + "/" + name


def _histories(n: int, days: int, prefix: str) -> list:
    return [make_history(start=START, n_days=days, seed=k, meter_id=f"{prefix}{k:05d}") for k in range(n)]


def _register(u: UtilityStore, hs: list, supplier: str | None = None) -> None:
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    for h in hs:
        u.register_meter(
            h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15,
            tariff=signed, supplier=supplier,
        )


def _reset_days(u: UtilityStore) -> None:
    with u._tx():
        u.conn.execute("DELETE FROM days")
        u.conn.execute("DELETE FROM rejected_uploads")


# -- 1. ingest ---------------------------------------------------------------------------
def bench_ingest(meters: int, days: int, runs: int, tmp: Path, pg_admin: str | None) -> None:
    hs = _histories(meters, days, "i")
    deliveries = [h.uploads() for h in hs]
    n_days = meters * days
    stores: dict[str, UtilityStore] = {"sqlite": UtilityStore(tmp / "ingest.sqlite")}
    if pg_admin:
        stores["postgres"] = UtilityStore(_pg_db(pg_admin, "mh_bench_ingest"))
    for u in stores.values():
        _register(u, hs)

    def batched(u: UtilityStore) -> None:
        for ups in deliveries:
            assert all(r.accepted and not r.duplicate for r in u.ingest_days(ups))

    def per_write(u: UtilityStore) -> None:
        for ups in deliveries:
            for up in ups:
                r = u.ingest_day(up)
                assert r.accepted and not r.duplicate

    import meterhub.utility.store as store_mod
    from meterhub.crypto.group import Point

    fast = store_mod.uncompress_many

    def per_point(c33: bytes) -> bytes:  # the decoding before uncompress_many: a Point per reading
        return b"".join(Point.from_bytes(c33[k : k + 33]).to_bytes_uncompressed() for k in range(0, len(c33), 33))

    def batched_per_point(u: UtilityStore) -> None:
        store_mod.uncompress_many = per_point
        try:
            batched(u)
        finally:
            store_mod.uncompress_many = fast

    variants = [(b, name, fn) for b in stores for name, fn in (("batched", batched), ("per-write", per_write),
                                                               ("batched, Point per reading", batched_per_point))]
    wall: dict[tuple[str, str], list[float]] = {(b, n): [] for b, n, _ in variants}
    cpu: dict[tuple[str, str], list[float]] = {(b, n): [] for b, n, _ in variants}
    for r in range(runs + 1):  # round 0 is the warm-up
        for b, name, fn in variants:  # A, B, C, D, A, B, ...
            u = stores[b]
            _reset_days(u)
            c0, t0 = time.process_time(), time.perf_counter()
            fn(u)
            t1, c1 = time.perf_counter(), time.process_time()
            if r:
                wall[(b, name)].append(t1 - t0)
                cpu[(b, name)].append(c1 - c0)
    for u in stores.values():
        u.close()
    print(f"   ingest: {meters} meters x {days} days = {n_days} meter-days (96 intervals each) per run;"
          f" deliveries of {days} days")
    for b in stores:
        base = statistics.median(wall[(b, "per-write")])
        for name in ("batched", "per-write", "batched, Point per reading"):
            w, c = statistics.median(wall[(b, name)]), statistics.median(cpu[(b, name)])
            row(f"ingest {b} {name}: meter-days/s (wall) | per CPU-second", f"{n_days / w:,.0f}",
                f"{n_days / c:,.0f}/cpu-s; x{base / w:.2f} vs per-write; median of {runs} runs")


# -- 2. API ------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def bench_api(clients: int, days: int, soak: float, tmp: Path, db: str, label: str) -> None:
    import httpx

    from meterhub.service.keys import ApiKeys

    hs = _histories(clients, days, f"a{label[0]}")
    if not db.startswith("postgresql://"):
        db = str(tmp / f"api-{label}.sqlite")
    u = UtilityStore(db if "://" in db else Path(db))
    _register(u, hs)
    u.close()
    keys = ApiKeys({})
    meter_keys = [keys.add(f"meter-{h.meter.meter_id}", "meter", [h.meter.meter_id]) for h in hs]
    keys_file = tmp / f"keys-{label}.json"
    keys.save(keys_file)
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "utility", "serve", "--db", db, "--listen", f"127.0.0.1:{port}",
         "--keys", str(keys_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        lat: list[float] = []
        stored = [0]
        lock = threading.Lock()
        stop = time.monotonic() + soak

        def client(k: int) -> None:
            bodies = [(up.to_json() + "\n").encode() for up in hs[k].uploads()]
            mine: list[float] = []
            n = 0
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {meter_keys[k]}"}, timeout=60) as c:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    r = c.post("/v1/days", content=bodies[n % len(bodies)])
                    mine.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                    n += 1
            with lock:
                lat.extend(mine)
                stored[0] += min(n, len(bodies))

        rss: list[int] = []
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss.append(_rss_kib(proc.pid))
            time.sleep(1.0)
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)
    # Same-run baseline, after the soak: the store alone, in process, one thread, the same
    # one-day re-deliveries (no HTTP, no auth): the ceiling of one service process.
    u = UtilityStore(db if "://" in db else Path(db))
    ups = [up for h in hs for up in h.uploads()]
    base: list[float] = []
    for _ in range(MIN_RUNS):
        t0 = time.perf_counter()
        for up in ups:
            assert u.ingest_days([up])[0].duplicate
        base.append(len(ups) / (time.perf_counter() - t0))
    u.close()
    lat.sort()
    p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99)]
    row(f"API {label}: deliveries/s, {clients} clients, {soak:.0f} s soak", f"{len(lat) / elapsed:,.0f}",
        f"{len(lat)} requests (first {stored[0]} stored, then re-deliveries)")
    rate = len(lat) / elapsed
    row(f"API {label}: baseline, store alone in process (re-deliveries/s)", f"{statistics.median(base):,.0f}",
        f"API/baseline x{rate / statistics.median(base):.2f}; median of {MIN_RUNS} runs of {len(ups)}")
    row(f"API {label}: latency p50 | p99", f"{p50 * 1e3:.1f} ms", f"p99 {p99 * 1e3:.1f} ms")
    third = max(1, len(rss) // 3)
    row(f"API {label}: server RSS first third | last third (median, MiB)",
        f"{statistics.median(rss[:third]) / 1024:.1f}",
        f"{statistics.median(rss[-third:]) / 1024:.1f} MiB; max {max(rss) / 1024:.1f}; {len(rss)} samples")


# -- 3. Dask -----------------------------------------------------------------------------
def bench_dask(customers: int, days: int, runs: int, tmp: Path, pg_admin: str | None) -> None:
    import logging

    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    from meterhub.service.scaleout import verify_all

    hs = _histories(customers, days, "d")
    db = _pg_db(pg_admin, "mh_bench_dask") if pg_admin else str(tmp / "dask.sqlite")
    u = UtilityStore(db if "://" in db else Path(db))
    _register(u, hs)
    for h in hs:
        u.ingest_days(h.uploads())
        u.submit_statement(h.statement)
    clusters = {
        n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") for n in (1, 2)
    }
    dask_clients = {n: Client(cl) for n, cl in clusters.items()}
    times: dict[int, list[float]] = {1: [], 2: []}
    try:
        for r in range(runs + 1):
            for n in clusters:
                with u._tx():
                    u.conn.execute("UPDATE bills SET verified=NULL, reason='', checked_at=NULL")
                t0 = time.perf_counter()
                ok, bad = verify_all(db, client=dask_clients[n], meters_per_task=max(1, customers // 16))
                t = time.perf_counter() - t0
                assert (ok, bad) == (customers, 0)
                if r:
                    times[n].append(t)
    finally:
        for c in dask_clients.values():
            c.close()
        for cl in clusters.values():
            cl.close()
        u.close()
    t1, t2 = statistics.median(times[1]), statistics.median(times[2])
    row(f"Dask verify-all: {customers} customers x {days} days, 1 worker", f"{t1:.2f} s",
        f"{customers / t1:,.1f} customers/s; median of {runs} runs")
    row("Dask verify-all: same, 2 workers", f"{t2:.2f} s", f"speed-up x{t1 / t2:.2f}")
    per_month = t1 / customers * 30 / days  # one worker = one core; a statement's cost is linear in days
    row("projection: worker-seconds per customer-month (1 worker, wall, incl. DB + Dask)", f"{per_month * 1e3:.1f} ms",
        f"10,000: {per_month * 1e4 / 3600:.2f} core-h; 1M: {per_month * 1e6 / 3600:.1f} core-h")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20, help="ingest: meters (default: 20)")
    ap.add_argument("--days", type=int, default=5, help="days per meter (default: 5)")
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs per variant (default: {MIN_RUNS})")
    ap.add_argument("--clients", type=int, default=50, help="API: concurrent clients (default: 50)")
    ap.add_argument("--soak", type=float, default=60.0, help="API: seconds per backend (default: 60)")
    ap.add_argument("--customers", type=int, default=40, help="Dask: customers (default: 40)")
    ap.add_argument("--only", choices=["ingest", "api", "dask"], help="one part only (default: all)")
    a = ap.parse_args()
    all_cpus = os.sched_getaffinity(0)
    header("utility back end as a service (benchmarks/bench_service.py)")
    pg = _pg_admin()
    if pg is None:
        print("   PostgreSQL: none ($MH_PG_DSN or .pgdsn from scripts/postgres.sh); SQLite only")
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-", dir=ROOT))
    try:
        if a.only in (None, "ingest"):
            bench_ingest(a.meters, a.days, a.runs, tmp, pg)
        # The service and the Dask workers are separate processes: give them every core
        # (they inherit the affinity; the ingest figures above are per core).
        os.sched_setaffinity(0, all_cpus)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"   API and Dask parts: unpinned ({len(all_cpus)} CPUs, shared with other work; load {load})")
        if a.only in (None, "api"):
            bench_api(a.clients, a.days, a.soak, tmp, "", "sqlite")
            if pg:
                bench_api(a.clients, a.days, a.soak, tmp, _pg_db(pg, "mh_bench_api"), "postgres")
        if a.only in (None, "dask"):
            bench_dask(a.customers, a.days, a.runs, tmp, pg)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
