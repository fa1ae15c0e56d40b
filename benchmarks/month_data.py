"""A month of meter uploads and pending bill statements for N customers, fast enough for
10,000 and more (issue 15, the Dask figures; used by ``bench_service.py --only dask``).

Every customer is a real, separate meter: its own P-256 key (``ecdsa.generate_signing_key``),
its own readings (drawn as ``tests/helpers.make_history`` draws them: zero half the time,
else 0-50 or 50-900 Wh), its own Pedersen commitments ``C_i = m_i*G + r_i*H`` with known
openings, its own hash chain (``chain_head``), one real ECDSA signature per day
(``ecdsa.sign`` over ``DailyBatch.signed_message``, low-S as the meter signs) and a v1 bill
statement computed from the openings (``statement_from_sums``: ``sum t_i*m_i`` and
``sum t_i*r_i mod Q``) that verifies. The days go in through ``UtilityStore.ingest_days``
(V09 checks: signature, indices, chain, links) and the statements through
``submit_statement``, as a head-end and a supplier deliver them.

What is cheaper than the meter's own code (``Meter.record_day``, about 0.19 s of CPU per
customer-month, 2,880 multiplications of ``H`` by a fresh scalar): how a commitment is
computed, not what it is. Per generating process, secret scalars are drawn once from
``secrets``: ``s0``, ``s_1..s_n`` (one per interval position of the month) and
``t_1..t_n``; per customer ``c`` a fresh ``u_c`` and a fresh random permutation ``pi_c``
of the positions. The blinding factor of customer ``c``'s interval ``i`` is

    r_ci = s0 + u_c + s_i + t_pi_c(i)   (mod Q)

and its commitment is the sum of four precomputed points, one libsecp256k1
``secp256k1_ec_pubkey_combine`` call (about 5 us instead of 2 x 60 us):

    C_ci = (m_ci*G + s0*H) + u_c*H + s_i*H + t_pi_c(i)*H

where ``m*G + s0*H`` is tabled for every reading value 0..900 and ``u_c*H`` is one
multiplication per customer. So ``C_ci = m_ci*G + r_ci*H`` exactly, with the opening
``(m_ci, r_ci)`` known, and the bill's blinding ``sum t_i*r_ci`` follows from it.

Why this does not make verification cheaper than with a real meter's data: the verifier
only ever sees the points, the signed batches and the statement; it never learns or
uses the relation between blinding factors (``u_c`` is a fresh uniform secret per
customer, so every customer's commitments are as random to it as a meter's), and the
cost of parsing a point, hashing the chain, checking an ECDSA signature or a
multi-scalar multiplication does not depend on the discrete logarithms involved. No
cache can hit across customers: the verifier's caches (``_VERIFIED_SIGS``, ``_POINTS``,
``_SUMS`` in ``meterhub.utility.verifier``) are keyed by the exact public key, signed
message and signature, or the exact period's encodings; every customer has its own key
and meter id (so its own messages and signatures), and two commitments are equal only
if their ``(m, r)`` are (``u_c - u_c'`` would have to hit a fixed difference of pool
values: probability about ``2^-256`` per pair). :func:`generate` checks it: no two
commitments of the whole data set share their first 8 bytes after the prefix, and no
two signatures are equal.

A few statements are wrong on purpose, so that the run proves the verifier still
rejects at scale: customer ``k`` with ``k % 1000`` equal to 111 bills one subunit more
(``energy_charge`` and ``total`` + 1), 444 states a blinding factor off by one, and 777
has two commitments of its 15th day swapped in the database after ingest (the signed
chain head no longer matches). :func:`tampered` names them; each must be rejected and
every other statement verified.

The database is cached under ``/tmp/meterhub-month-data/`` keyed by the parameters and
a hash of the generating code (:func:`_generating_code`), so timed runs never include generation. ``python
benchmarks/month_data.py --customers 10000`` makes it (and prints what it cost).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import secrets
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib

from meterhub.crypto import ecdsa
from meterhub.crypto.group import H, PointArray, Q, base_mul
from meterhub.crypto.group.point import _CTX
from meterhub.model.billing.time_of_use import statement_from_sums
from meterhub.model.formats.batch import DailyBatch, SignedBatch, chain_genesis, chain_head
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore

TZ = "Europe/Berlin"
MINUTES = 15
START = date(2027, 6, 1)  # no DST change in June: every day has 96 intervals
MAX_WH = 900
CACHE = Path(os.environ.get("MH_MONTH_CACHE", "/tmp/meterhub-month-data"))
TAMPER = {111: "energy", 444: "blinding", 777: "day"}


def meter_id(k: int) -> str:
    return f"c{k:07d}"


def tampered(customers: int) -> dict[str, str]:
    """The customers whose statement must be rejected: meter id -> how it was spoiled."""
    return {meter_id(k): TAMPER[k % 1000] for k in range(customers) if k % 1000 in TAMPER}


class _Pools:
    """One generating process's secret pool values and tables (see the module docstring)."""

    def __init__(self, n: int, prices: list[int]) -> None:
        self.n = n
        self.prices = prices
        self.s0 = secrets.randbelow(Q)
        self.s = [secrets.randbelow(Q) for _ in range(n)]
        self.t = [secrets.randbelow(Q) for _ in range(n)]
        s0h = H * self.s0
        self.x_tab = PointArray.from_points([base_mul(m) + s0h if m else s0h for m in range(MAX_WH + 1)])
        self.s_tab = PointArray.from_points([H * v for v in self.s])
        self.t_tab = PointArray.from_points([H * v for v in self.t])
        assert self.x_tab.live.all() and self.s_tab.live.all() and self.t_tab.live.all()
        self.x_addr = _addrs(self.x_tab)
        self.s_addr = _addrs(self.s_tab)
        self.t_addr = _addrs(self.t_tab)
        self.sum_p = sum(prices)
        self.sum_ps = sum(p * v for p, v in zip(prices, self.s, strict=True))

    def commitments(self, m: np.ndarray, u_point: PointArray, perm: np.ndarray) -> bytes:
        """The concatenated 33-byte ``C_ci`` of one customer (one combine per interval)."""
        n = self.n
        addrs = np.empty((n, 4), dtype=np.uint64)
        addrs[:, 0] = self.x_addr[m]
        addrs[:, 1] = _addrs(u_point)[0]
        addrs[:, 2] = self.s_addr
        addrs[:, 3] = self.t_addr[perm]
        rows = np.zeros((n, 8), dtype=np.uint64)
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        out = _ffi.cast("secp256k1_pubkey *", rows.ctypes.data)
        combine, ctx = _lib.secp256k1_ec_pubkey_combine, _CTX
        for j in range(n):
            if not combine(ctx, out + j, ptrs + 4 * j, 4):
                raise AssertionError("a commitment summed to the identity")  # probability ~2^-256
        return PointArray(rows, np.ones(n, dtype=bool)).to_bytes()


def _addrs(arr: PointArray) -> np.ndarray:
    return np.arange(len(arr), dtype=np.uint64) * np.uint64(64) + np.uint64(arr.rows.ctypes.data)


_POOLS: _Pools | None = None


def _init(n: int, prices: list[int]) -> None:
    global _POOLS
    _POOLS = _Pools(n, prices)


def _customer(k: int, days: int) -> tuple[str, bytes, list[tuple[bytes, bytes, bytes]], str, np.ndarray]:
    """One customer's month: ``(meter id, public key, [(batch, signature, c33)] per day,
    statement JSON, 8-byte prefixes of the commitments)``."""
    pools = _POOLS
    assert pools is not None
    mid = meter_id(k)
    key = ecdsa.generate_signing_key()
    rng = np.random.default_rng(secrets.randbits(64))
    n = pools.n
    kind = rng.integers(0, 4, n)  # make_history's choice: 0, 0, 0..50, 50..900
    m = np.where(kind < 2, 0, np.where(kind == 2, rng.integers(0, 51, n), rng.integers(50, MAX_WH + 1, n)))
    perm = rng.permutation(n)
    u = secrets.randbelow(Q)
    u_point = PointArray.from_points([H * u])
    c33 = pools.commitments(m, u_point, perm)
    per_day = n // days
    out_days = []
    head = chain_genesis(mid)
    for d in range(days):
        first = d * per_day
        blob = c33[33 * first : 33 * (first + per_day)]
        new = chain_head(head, first, blob)
        batch = DailyBatch(mid, START + timedelta(days=d), first, per_day, MINUTES, head, new)
        out_days.append((batch.to_bytes(), ecdsa.sign(key, batch.signed_message()), blob))
        head = new
    prices = pools.prices
    energy = int(np.dot(np.asarray(prices, dtype=np.int64), m.astype(np.int64)))
    t = pools.t
    perm_l = perm.tolist()
    blinding = ((pools.s0 + u) * pools.sum_p + pools.sum_ps + sum(p * t[j] for p, j in zip(prices, perm_l, strict=True))) % Q
    how = TAMPER.get(k % 1000)
    if how == "energy":
        energy += 1
    elif how == "blinding":
        blinding = (blinding + 1) % Q
    st = statement_from_sums(
        meter_id=mid, tariff=_TARIFF.tariff, period_from=START, period_to=START + timedelta(days=days - 1),
        first_index=0, count=n, energy_charge=energy, blinding=blinding,
    )
    prefixes = np.frombuffer(c33, dtype=np.uint8).reshape(n, 33)[:, 1:9].copy().view(">u8").ravel()
    return mid, ecdsa.public_bytes(key), out_days, st.to_json(), prefixes


_TARIFF = example_signed_tariff()


def _chunk(args: tuple[int, int, int]) -> tuple[list[Any], float]:
    lo, hi, days = args
    c0 = time.process_time()
    out = [_customer(k, days) for k in range(lo, hi)]
    return out, time.process_time() - c0


def _generating_code() -> str:
    """The source of everything that decides what is generated (the cache key)."""
    import inspect

    parts = [inspect.getsource(f) for f in (meter_id, tampered, _Pools, _addrs, _init, _customer, _chunk, generate)]
    return "\n".join(parts) + repr((TZ, MINUTES, START, MAX_WH, TAMPER))


def cache_path(customers: int, days: int) -> Path:
    digest = hashlib.sha256(_generating_code().encode()).hexdigest()[:12]
    return CACHE / f"month-{customers}c-{days}d-{START.isoformat()}-{digest}.sqlite"


def generate(path: Path, customers: int, days: int, procs: int = 2, log: Any = print) -> None:
    """Make the SQLite store at ``path`` (a temporary name first, renamed when complete)."""
    from meterhub.model.formats.statements import statement_from_json

    per_day = len(day_starts(START, TZ, MINUTES))
    assert all(len(day_starts(START + timedelta(days=d), TZ, MINUTES)) == per_day for d in range(days))
    n = per_day * days
    signed = _TARIFF
    prices = signed.tariff.period_prices(START, days, TZ, MINUTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    for p in (part, Path(str(part) + "-wal"), Path(str(part) + "-shm")):
        p.unlink(missing_ok=True)
    u = UtilityStore(part)
    u.add_tariff(signed, dump_tariff(signed))
    t0, c0 = time.perf_counter(), time.process_time()
    step = 50
    jobs = [(lo, min(customers, lo + step), days) for lo in range(0, customers, step)]
    prefixes: list[np.ndarray] = []
    sigs: set[bytes] = set()
    gen_cpu = 0.0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs, initializer=_init, initargs=(n, prices)) as pool:
        done = 0
        for chunk, cpu in pool.imap(_chunk, jobs):
            gen_cpu += cpu
            with u._tx():  # one transaction per chunk of customers
                for mid, pk, out_days, st_json, pre in chunk:
                    u.register_meter(mid, pk, TZ, MINUTES, tariff=signed)
                    ups = []
                    for b, sig, c in out_days:
                        batch = DailyBatch.from_bytes(b)
                        ups.append(DayUpload(SignedBatch(batch, sig), encode_records(batch.first_index, c)))
                    results = u.ingest_days(ups)
                    bad = [r for r in results if not r.accepted or r.duplicate]
                    if bad:
                        raise AssertionError(f"{mid}: ingest refused a generated day: {bad[0]}")
                    u.submit_statement(statement_from_json(st_json))
                    prefixes.append(pre)
                    sigs.update(sig for _, sig, _ in out_days)
            done += len(chunk)
            if done % 1000 < step:
                log(f"   generated {done}/{customers} customers ({time.perf_counter() - t0:.0f} s)")
    # The 777 customers: two commitments of day 15 swapped after ingest (a tampered store).
    with u._tx():
        for mid, how in tampered(customers).items():
            if how != "day":
                continue
            d = START + timedelta(days=min(14, days - 1))
            (c,) = u.conn.execute("SELECT c33 FROM days WHERE meter_id=? AND day=?", (mid, d.isoformat())).fetchone()
            c = bytes(c)
            swapped = c[:330] + c[363:396] + c[330:363] + c[396:]
            u.conn.execute("UPDATE days SET c33=? WHERE meter_id=? AND day=?", (swapped, mid, d.isoformat()))
    allp = np.concatenate(prefixes)
    uniq = len(np.unique(allp))
    if uniq != len(allp) or len(sigs) != customers * days:
        raise AssertionError(f"shared values: {len(allp) - uniq} commitment prefixes, "
                             f"{customers * days - len(sigs)} signatures")
    u.close()
    part.rename(path)
    log(f"   generated {customers} customers x {days} days: {time.perf_counter() - t0:.0f} s wall, "
        f"{time.process_time() - c0:.0f} s CPU here (ingest) + {gen_cpu:.0f} s in {procs} generators; "
        f"{len(allp):,} commitments, all distinct; {len(sigs):,} signatures, all distinct")


def month_store(customers: int, days: int = 30, procs: int = 2, log: Any = print) -> Path:
    """The cached SQLite store of ``customers`` x ``days`` (generated if missing)."""
    path = cache_path(customers, days)
    if not path.exists():
        generate(path, customers, days, procs, log)
    else:
        log(f"   month data from the cache: {path}")
    return path


def copy_to_postgres(src: Path, url: str) -> None:
    """The same rows in a fresh PostgreSQL store (COPY, table by table)."""
    import sqlite3

    UtilityStore(url).close()  # the schema
    import psycopg

    s = sqlite3.connect(src)
    with psycopg.connect(url) as c:
        for table, cols in (
            ("tariffs", "tariff_id, version, signed"),
            ("meters", "meter_id, public_key, tz, interval_minutes, tariff_id, tariff_version, supplier"),
            ("days", "meter_id, day, first_index, count, batch, signature, c33, c65"),
            ("bills", "meter_id, period_from, period_to, statement, verified, reason, checked_at"),
        ):
            with c.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as cp:
                for row in s.execute(f"SELECT {cols} FROM {table}"):  # noqa: S608 (fixed names)
                    cp.write_row(row)
        c.execute("ANALYZE")
    s.close()


def postgres_copy(src: Path, admin: str, n_days: int) -> str:
    """The URL of a PostgreSQL database holding ``src``'s rows (``mh_`` + the cache
    file's name), copied once: reused while it holds all ``n_days`` days."""
    import re

    import psycopg

    name = "mh_" + re.sub(r"[^a-z0-9]", "_", src.stem.lower())
    url = admin.rpartition("/")[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname=%s", (name,)).fetchone()
    if exists:
        with psycopg.connect(url) as c:
            (n,) = c.execute("SELECT count(*) FROM days WHERE length(c65) > 0").fetchone()
        if n == n_days:
            return url
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    copy_to_postgres(src, url)
    return url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=10000, help="customers (default: 10000)")
    ap.add_argument("--days", type=int, default=30, help="days (default: 30)")
    ap.add_argument("--procs", type=int, default=2, help="generating processes (default: 2)")
    a = ap.parse_args()
    print(month_store(a.customers, a.days, a.procs))


if __name__ == "__main__":
    sys.exit(main())
