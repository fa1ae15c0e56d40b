"""Benchmarks of the utility back end as a service (issue 15; docs/service.md).

1. ingest: meter-days per CPU-second (and per second of wall time) into SQLite and
   PostgreSQL, batched (``UtilityStore.ingest_days``: one transaction and one INSERT
   per delivery, the signed 33-byte form stored) against the same-run baseline, the
   old path (``OldPath`` below: per-day queries, decompression at ingest), and one
   commit per day; variants alternated per run. Then every day is read once
   (``day_commitments``, which expands a day to the 65-byte form on its first read),
   so the total CPU per meter-day of ingest + first read is compared too.
2. API: deliveries/s and p99 latency of ``utility serve`` (a separate process) with 50
   concurrent clients on localhost, each delivering its own meter's days, one day per
   request, then re-delivering them until the soak ends; the server's RSS sampled
   every second. Same-run baseline (after the soak): the store alone, in process,
   the same one-day re-deliveries.
3. Dask: ``verify-all`` of N customers' pending statements (``--days`` each; 30 for a
   month) with 1 and 2 workers (two LocalClusters, alternated with the single-process
   baseline), wall and CPU (driver + workers), and the projection to 1M customers.

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
class OldPath:
    """The same-run baseline: ingest as it was before the batched rewrite (kept here, not
    in src): per day, three or four SELECTs for the stored day and its neighbours, the
    records split by slicing, the 96 commitments decompressed at ingest (one square root
    each) and one INSERT of both forms; one transaction per delivery. Same checks, same
    reasons (the V09 helpers of meterhub.utility.store)."""

    def __init__(self, u: UtilityStore) -> None:
        self.u = u

    def ingest_days(self, uploads: list) -> list:
        with self.u._tx():
            return [self._one(up) for up in uploads]

    def _one(self, up):  # noqa: ANN001, ANN202
        from meterhub.crypto.group import uncompress_many
        from meterhub.model.formats.batch import DailyBatch, chain_genesis
        from meterhub.model.formats.units import RECORD_SIZE, encode_records
        from meterhub.utility import store as S

        u, b = self.u, up.batch.batch
        reg = u.registration(b.meter_id)
        row = u.conn.execute("SELECT batch, signature, c33 FROM days WHERE meter_id=? AND day=?",
                             (b.meter_id, b.day.isoformat())).fetchone()
        if row is not None:
            same = (bytes(row[0]) == b.to_bytes() and bytes(row[1]) == up.batch.signature
                    and up.records == encode_records(DailyBatch.from_bytes(bytes(row[0])).first_index, bytes(row[2])))
            return S.IngestResult(same, duplicate=same)
        n = len(up.records) // RECORD_SIZE  # the records split as before: a slice per record
        indices = [int.from_bytes(up.records[RECORD_SIZE * k : RECORD_SIZE * k + 8], "big") for k in range(n)]
        c33 = b"".join(up.records[RECORD_SIZE * k + 8 : RECORD_SIZE * (k + 1)] for k in range(n))
        S.check_indices(f"day {b.day}", b.first_index, b.count, indices)  # as before: always the loop
        reason, c33b = S._check_upload(reg, up)  # V09 steps 3-7 (decodes once more: ~10 us)
        assert not reason and c33b == c33
        prev = u.conn.execute("SELECT batch FROM days WHERE meter_id=? AND day<? ORDER BY day DESC LIMIT 1",
                              (b.meter_id, b.day.isoformat())).fetchone()
        if prev is None:
            u.conn.execute("SELECT 1 FROM days WHERE meter_id=? LIMIT 1", (b.meter_id,)).fetchone()
            assert b.first_index or b.prev_head == chain_genesis(b.meter_id)
        else:
            pb = DailyBatch.from_bytes(bytes(prev[0]))
            assert b.first_index == pb.first_index + pb.count and b.prev_head == pb.head
        u.conn.execute("SELECT batch FROM days WHERE meter_id=? AND day>? ORDER BY day LIMIT 1",
                       (b.meter_id, b.day.isoformat())).fetchone()
        c65 = uncompress_many(c33)
        u.conn.execute("INSERT INTO days VALUES (?,?,?,?,?,?,?,?)",
                       (b.meter_id, b.day.isoformat(), b.first_index, b.count, b.to_bytes(), up.batch.signature,
                        c33, c65))
        return S.IngestResult(True)


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

    def old(u: UtilityStore) -> None:
        o = OldPath(u)
        for ups in deliveries:
            assert all(r.accepted and not r.duplicate for r in o.ingest_days(ups))

    def per_write(u: UtilityStore) -> None:
        for ups in deliveries:
            for up in ups:
                r = u.ingest_day(up)
                assert r.accepted and not r.duplicate

    def first_read(u: UtilityStore) -> None:  # what verification adds on top: every day read once
        for h in hs:
            dcs = u.day_commitments(h.meter.meter_id, START, date.fromordinal(START.toordinal() + days - 1))
            assert len(dcs) == days and all(dc.c65 for dc in dcs)

    variants = [("batched", batched), ("old path", old), ("one commit per day", per_write)]
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(runs + 1):  # round 0 is the warm-up
        for b, u in stores.items():
            for name, fn in variants:  # A, B, C, A, B, C, ...
                _reset_days(u)
                c0, t0 = time.process_time(), time.perf_counter()
                fn(u)
                t1, c1 = time.perf_counter(), time.process_time()
                first_read(u)
                c2 = time.process_time()
                if r:
                    wall.setdefault((b, name), []).append(t1 - t0)
                    cpu.setdefault((b, name), []).append(c1 - c0)
                    cpu.setdefault((b, name + ", first read"), []).append(c2 - c1)
    for u in stores.values():
        u.close()
    print(f"   ingest: {meters} meters x {days} days = {n_days} meter-days (96 intervals each) per run;"
          f" deliveries of {days} days; then every day read once (day_commitments) as verification does")
    for b in stores:
        base_c = statistics.median(cpu[(b, "old path")])
        base_total = base_c + statistics.median(cpu[(b, "old path, first read")])
        for name, _ in variants:
            w, c = statistics.median(wall[(b, name)]), statistics.median(cpu[(b, name)])
            read = statistics.median(cpu[(b, name + ", first read")])
            row(f"ingest {b} {name}: meter-days per CPU-second | wall", f"{n_days / c:,.0f}",
                f"{n_days / w:,.0f}/s wall; CPU x{base_c / c:.2f} vs old path; median of {runs} runs")
            row("   + first read of every day: CPU per meter-day (ingest + read)",
                f"{(c + read) / n_days * 1e6:,.0f} us",
                f"read {read / n_days * 1e6:,.0f} us; total x{base_total / (c + read):.2f} vs old path")


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
    """verify-all of ``customers`` pending statements of ``days`` days each with 1 and 2
    worker processes (two LocalClusters kept up, runs alternated 1, 2, 1, 2, ...; round 0
    is the warm-up: imports, connections, days expanded on first read), with the
    default partitioning. Same-run baseline: the single-process ``verify_pending``.
    CPU is counted on the driver and in the workers (``client.run(time.process_time)``),
    so the projection does not depend on how busy the machine is."""
    import logging

    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    from meterhub.service.scaleout import verify_all

    t0 = time.perf_counter()
    hs = _histories(customers, days, "d")
    db = _pg_db(pg_admin, "mh_bench_dask") if pg_admin else str(tmp / "dask.sqlite")
    u = UtilityStore(db if "://" in db else Path(db))
    _register(u, hs)
    for h in hs:
        u.ingest_days(h.uploads())
        u.submit_statement(h.statement)
    print(f"   Dask: {customers} customers x {days} days on {'PostgreSQL' if pg_admin else 'SQLite'} "
          f"(set-up {time.perf_counter() - t0:.0f} s)")

    def reset() -> None:
        with u._tx():
            u.conn.execute("UPDATE bills SET verified=NULL, reason='', checked_at=NULL")

    clusters = {
        n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") for n in (1, 2)
    }
    dask_clients = {n: Client(cl) for n, cl in clusters.items()}
    wall: dict[str, list[float]] = {"1": [], "2": [], "in-process": []}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    busiest: dict[str, list[float]] = {"1": [], "2": []}  # CPU of the busiest worker (the critical path)
    try:
        for r in range(runs + 1):
            for n in ("in-process", "1", "2"):
                reset()
                if n == "in-process":
                    c0, t0 = time.process_time(), time.perf_counter()
                    ok, bad = u.verify_pending()
                    t, c = time.perf_counter() - t0, time.process_time() - c0
                else:
                    client = dask_clients[int(n)]
                    w0 = client.run(time.process_time)
                    c0, t0 = time.process_time(), time.perf_counter()
                    ok, bad = verify_all(db, client=client)
                    t, c = time.perf_counter() - t0, time.process_time() - c0
                    w1 = client.run(time.process_time)
                    c += sum(w1[k] - w0[k] for k in w1)
                    if r:
                        busiest[n].append(max(w1[k] - w0[k] for k in w1))
                assert (ok, bad) == (customers, 0)
                if r:
                    wall[n].append(t)
                    cpu[n].append(c)
    finally:
        for cl_ in dask_clients.values():
            cl_.close()
        for cluster in clusters.values():
            cluster.close()
        u.close()
    med = {k: statistics.median(v) for k, v in wall.items()}
    medc = {k: statistics.median(v) for k, v in cpu.items()}
    month = 30 / days  # a statement's cost is linear in its days
    row(f"Dask verify-all: {customers} customers x {days} days, in one process (verify_pending)",
        f"{med['in-process']:.2f} s", f"CPU {medc['in-process']:.2f} s; median of {runs} runs")
    row("Dask verify-all: 1 worker (wall | CPU driver + worker)", f"{med['1']:.2f} s",
        f"CPU {medc['1']:.2f} s; x{med['in-process'] / med['1']:.2f} vs in process; median of {runs} runs")
    row("Dask verify-all: 2 workers (wall | CPU driver + workers)", f"{med['2']:.2f} s",
        f"CPU {medc['2']:.2f} s; speed-up x{med['1'] / med['2']:.2f} vs 1 worker; median of {runs} runs")
    b1, b2 = statistics.median(busiest["1"]), statistics.median(busiest["2"])
    row("Dask: CPU of the busiest worker, 1 worker | 2 workers", f"{b1:.2f} s",
        f"{b2:.2f} s: x{b1 / b2:.2f} (how evenly the work splits, whatever the machine's load)")
    per_month_cpu = medc["2"] / customers * month
    per_month_wall = med["1"] / customers * month
    row("projection: CPU per customer-month (2 workers, driver + workers)", f"{per_month_cpu * 1e3:.1f} ms",
        f"1M customers: {per_month_cpu * 1e6 / 3600:.1f} core-hours; 10,000: {per_month_cpu * 1e4 / 3600:.2f}")
    row("projection: 1-worker wall per customer-month (DB, Dask, idle included)", f"{per_month_wall * 1e3:.1f} ms",
        f"1M customers: {per_month_wall * 1e6 / 3600:.1f} worker-hours")


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
