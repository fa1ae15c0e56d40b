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
   baseline unless ``--no-in-process``), on SQLite and PostgreSQL (``--dask-db``), wall
   and CPU (driver + workers + the PostgreSQL server), and the projection to 1M
   customers. The data: ``month_data.py`` (real, distinct customer-months, 3 in 1,000
   tampered; generated once and cached under /tmp, never timed).

Run: PYTHONPATH=src python benchmarks/bench_service.py [--meters 20 --days 5
     --soak 60 --customers 40 --runs 5] (PostgreSQL from $MH_PG_DSN or .pgdsn);
     the Dask figures of the README: --only dask --customers 10000 --days 30.
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
        from meterhub.utility import ingest as S
        from meterhub.utility.verifier import check_indices

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
        check_indices(f"day {b.day}", b.first_index, b.count, indices)  # as before: always the loop
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
def _pg_server_cpu(url: str) -> float | None:
    """CPU seconds used so far by the PostgreSQL server at ``url`` (postmaster and all its
    children, from /proc), if it runs on this machine under a data directory we can find;
    else None. Its CPU is part of the cost of verification on PostgreSQL."""
    import psycopg

    try:
        with psycopg.connect(url) as c:
            data = c.execute("SHOW data_directory").fetchone()[0]
        master = int(Path(data, "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, psycopg.Error):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d.name) == master or int(f[1]) == master:  # f[1]: ppid; f[11], f[12]: utime, stime
            total += int(f[11]) + int(f[12])
    return total / tick


def bench_dask(customers: int, days: int, runs: int, pg_admin: str | None, backends: list[str],
               in_process: bool, meters_per_task: int | None = None) -> None:
    """verify-all of ``customers`` pending statements of ``days`` days each with 1 and 2
    worker processes (two LocalClusters kept up, runs alternated 1, 2, 1, 2, ...), with
    the default partitioning, on each backend. The data: ``month_data.month_store`` (real,
    distinct meters, commitments, signatures and statements, 3 in 1,000 tampered; cached
    under /tmp, so generation is never timed). Before each run every verdict is reset and
    the verifier's caches are cleared on the driver and every worker, so each run verifies
    everything cold. An untimed round first when the 65-byte forms are not yet made (their
    first read), else just the workers' imports. Same-run baselines: the 1-worker run,
    and (``in_process``) the single-process ``verify_pending``. CPU is counted on the
    driver (with the scheduler, in process), in the workers (``client.run(
    time.process_time)``) and, on PostgreSQL, in the server (``/proc``), so the CPU figures
    do not depend on how busy the machine is; the wall ones do."""
    import logging

    import dask
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    import month_data
    from meterhub.service.scaleout import CLUSTER_CONFIG, verify_all
    from meterhub.utility.verifier import clear_shared_caches

    src = month_data.month_store(customers, days)
    bad_ids = month_data.tampered(customers)
    with dask.config.set(CLUSTER_CONFIG):  # as verify-all's own LocalCluster
        clusters = {
            n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") for n in (1, 2)
        }
        dask_clients = {n: Client(cl) for n, cl in clusters.items()}
    try:
        for backend in backends:
            t0 = time.perf_counter()
            if backend == "postgres":
                assert pg_admin
                db = month_data.postgres_copy(src, pg_admin, customers * days)
            else:
                db = str(src)
            print(f"   Dask: {customers} customers x {days} days on {backend} ({db}; "
                  f"set-up {time.perf_counter() - t0:.0f} s); load {_load()}")
            _dask_runs(db, customers, days, runs, dask_clients, in_process, bad_ids, verify_all,
                       clear_shared_caches, meters_per_task)
    finally:
        for cl_ in dask_clients.values():
            cl_.close()
        for cluster in clusters.values():
            cluster.close()


def _load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def _dask_runs(db: str, customers: int, days: int, runs: int, dask_clients: dict, in_process: bool,
               bad_ids: dict[str, str], verify_all, clear, meters_per_task: int | None) -> None:  # noqa: ANN001
    u = UtilityStore(db if "://" in db else Path(db))
    pg = u.postgres

    def reset() -> None:
        with u._tx():
            u.conn.execute("UPDATE bills SET verified=NULL, reason='', checked_at=NULL")

    def check(ok: int, bad: int) -> None:
        assert (ok, bad) == (customers - len(bad_ids), len(bad_ids)), (ok, bad)
        rejected = dict(u.conn.execute("SELECT meter_id, reason FROM bills WHERE verified=0").fetchall())
        assert set(rejected) == set(bad_ids), sorted(set(rejected) ^ set(bad_ids))[:5]

    (unexpanded,) = u.conn.execute("SELECT count(*) FROM days WHERE length(c65)=0").fetchone()
    if unexpanded:  # the first read of every day makes its 65-byte form: not what is timed
        reset()
        t0 = time.perf_counter()
        check(*verify_all(db, client=dask_clients[2]))
        print(f"   untimed first read of {unexpanded} days ({time.perf_counter() - t0:.0f} s); "
              f"rejected as they must be: {sorted(set(bad_ids.values()))} x {len(bad_ids)}")
    for client in dask_clients.values():
        client.run(lambda: __import__("meterhub.service.scaleout"))
    variants = (["in-process"] if in_process else []) + ["1", "2"]
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    driver: dict[str, list[float]] = {k: [] for k in variants}
    server: dict[str, list[float]] = {k: [] for k in variants}
    busiest: dict[str, list[float]] = {"1": [], "2": []}  # CPU of the busiest worker (the critical path)
    loads = [_load()]
    for _ in range(runs):
        for n in variants:
            reset()
            clear()
            s0 = _pg_server_cpu(db) if pg else None
            if n == "in-process":
                c0, t0 = time.process_time(), time.perf_counter()
                ok, bad = u.verify_pending()
                t, c = time.perf_counter() - t0, time.process_time() - c0
                dc = c
            else:
                client = dask_clients[int(n)]
                client.run(clear)
                w0 = client.run(time.process_time)
                c0, t0 = time.process_time(), time.perf_counter()
                ok, bad = verify_all(db, client=client, meters_per_task=meters_per_task)
                t, dc = time.perf_counter() - t0, time.process_time() - c0
                w1 = client.run(time.process_time)
                c = dc + sum(w1[k] - w0[k] for k in w1)
                busiest[n].append(max(w1[k] - w0[k] for k in w1))
            s1 = _pg_server_cpu(db) if pg else None
            if s0 is not None and s1 is not None:
                server[n].append(s1 - s0)
            check(ok, bad)
            wall[n].append(t)
            cpu[n].append(c)
            driver[n].append(dc)
        loads.append(_load())
    u.close()
    med = {k: statistics.median(v) for k, v in wall.items()}
    medc = {k: statistics.median(v) for k, v in cpu.items()}
    medd = {k: statistics.median(v) for k, v in driver.items()}
    meds = {k: statistics.median(v) for k, v in server.items() if v}
    month = 30 / days  # a statement's cost is linear in its days

    def srv(k: str) -> str:
        return f"; PostgreSQL server CPU {meds[k]:.2f} s" if k in meds else ""

    label = f"{customers:,} customers x {days} days, {'PostgreSQL' if pg else 'SQLite'}"
    if meters_per_task:
        label += f", {meters_per_task} meters per task"
    print(f"   {label}: load average (1, 5, 15 min) before and after each round: {' | '.join(loads)}")
    if in_process:
        row(f"Dask verify-all: {label}, in one process (verify_pending)",
            f"{med['in-process']:.2f} s", f"CPU {medc['in-process']:.2f} s{srv('in-process')}; median of {runs} runs")
    base = f"; x{med['in-process'] / med['1']:.2f} vs in process" if in_process else ""
    row("Dask verify-all: 1 worker (wall | CPU driver + worker)", f"{med['1']:.2f} s",
        f"CPU {medc['1']:.2f} s (driver {medd['1']:.2f} s){srv('1')}{base}; median of {runs} runs")
    row("Dask verify-all: 2 workers (wall | CPU driver + workers)", f"{med['2']:.2f} s",
        f"CPU {medc['2']:.2f} s (driver {medd['2']:.2f} s){srv('2')}; "
        f"speed-up x{med['1'] / med['2']:.2f} vs 1 worker; median of {runs} runs")
    print(f"   walls 1 worker: {' '.join(f'{x:.1f}' for x in wall['1'])}; "
          f"2 workers: {' '.join(f'{x:.1f}' for x in wall['2'])}")
    b1, b2 = statistics.median(busiest["1"]), statistics.median(busiest["2"])
    row("Dask: CPU of the busiest worker, 1 worker | 2 workers", f"{b1:.2f} s",
        f"{b2:.2f} s: x{b1 / b2:.2f} (how evenly the work splits, whatever the machine's load)")
    per_month_cpu = (medc["2"] + meds.get("2", 0.0)) / customers * month
    per_month_wall = med["1"] / customers * month
    row("projection: CPU per customer-month (2 workers: driver, workers"
        + (", PostgreSQL server)" if "2" in meds else ")"), f"{per_month_cpu * 1e3:.2f} ms",
        f"1M customers: {per_month_cpu * 1e6 / 3600:.2f} core-hours a month; 10,000: {per_month_cpu * 1e4 / 3600:.3f}")
    row("projection: 1-worker wall per customer-month (DB, Dask, idle included)", f"{per_month_wall * 1e3:.2f} ms",
        f"1M customers: {per_month_wall * 1e6 / 3600:.2f} worker-hours")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=20, help="ingest: meters (default: 20)")
    ap.add_argument("--days", type=int, default=5, help="days per meter (default: 5)")
    ap.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs per variant (default: {MIN_RUNS})")
    ap.add_argument("--clients", type=int, default=50, help="API: concurrent clients (default: 50)")
    ap.add_argument("--soak", type=float, default=60.0, help="API: seconds per backend (default: 60)")
    ap.add_argument("--customers", type=int, default=40, help="Dask: customers (default: 40)")
    ap.add_argument("--only", choices=["ingest", "api", "dask"], help="one part only (default: all)")
    ap.add_argument("--dask-db", choices=["sqlite", "postgres", "both"], default="both",
                    help="Dask: the database(s) (default: both; PostgreSQL only when one is configured)")
    ap.add_argument("--meters-per-task", type=int,
                    help="Dask: partition size (default: verify-all's own, scaleout.partition_size)")
    ap.add_argument("--no-in-process", action="store_true",
                    help="Dask: leave out the single-process baseline run (default: include it)")
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
            backends = ["sqlite", "postgres"] if a.dask_db == "both" else [a.dask_db]
            if pg is None:
                backends = [b for b in backends if b != "postgres"]
            bench_dask(a.customers, a.days, a.runs, pg, backends, not a.no_in_process, a.meters_per_task)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
