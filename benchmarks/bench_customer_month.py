"""Utility CPU per customer-month: everything it verifies for one customer and month.

A month of 15-minute readings (2,880) per customer, and for each customer what the
utility checks: the bill (time-of-use, ``verify_bill``), the settlement statement
(``verify_settlement``), the profile score statement (12 profiles, energy, sum of
squares; ``verify_scores``) and the sample release (29 samples, ``verify_samples``).
Two paths, timed alternately (A, B, A, B, ...):

* **before**: the score statement carries the version-1 sum-of-squares proof (one
  square proof per hour, as the profiling applet made it before), each customer is
  verified on its own and every check starts cold (it verifies the 30 daily
  signatures and parses the 2,880 points itself, as before the shared caches);
* **after**: the version-2 proof (one inner-product argument, crypto/sumsquares.py),
  the score statements of all customers in one batch (``verify_scores_batch``: one
  random linear combination; the vector generators' multi-scalar multiplication is
  shared by the batch), and the four checks of a customer-month sharing its verified
  signatures and parsed points (utility/verifier.py ``period_points``), the settlement
  statement first, so that the bill finds the hourly sums it formed (a row also times
  the bill first, the order before).

Every run starts with empty caches (``clear_shared_caches``), so nothing verified in
one run is reused by the next. Reported per customer-month: the median over runs of
(run time / customers), CPU (``process_time``) and wall. The hub produces each
customer's outputs once (its guard releases each kind once per period); the
version-1 proof is made on the same openings.

``--before=SRC`` (a ``src`` directory of another tree, e.g. ``/work/main/src``) also
times that tree's code on the same work in the same run: two child processes, one per
tree (this file with ``--worker``, ``PYTHONPATH`` set to the tree), each build their
customers the same way and then run the shared path and each check alone on
request, alternating before, after, before, after; each run starts with empty caches.
Reported: both trees' medians per customer-month and the ratio.

Run: .venv/bin/python benchmarks/bench_customer_month.py [customers] [runs] [--before=SRC]
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from _bench import alternate, header, row
from meterhub.applets.profiling import scores_context
from meterhub.crypto import ecdsa, rangeproof
from meterhub.crypto.group import Point, Q
from meterhub.crypto.pedersen import Opening, commit
from meterhub.crypto.sampling import commit_nonce, new_nonce
from meterhub.demo.hubs import demo_tsm, series_hub
from meterhub.hub.secure_element import (
    PROFILING_APP_AID,
    SETTLEMENT_APP_AID,
    ReadingsClient,
)
from meterhub.meter.device import Meter
from meterhub.model.billing import BillJob, issue_statement
from meterhub.model.formats.statements import BillStatement
from meterhub.model.timebase import day_starts
from meterhub.tariffs import example_signed_tariff
from meterhub.tariffs.price_index import demo_index_publisher_key, example_price_index, sign_series
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.forecasting import (
    ProfileScores,
    SampleRelease,
    verify_samples,
    verify_scores,
    verify_scores_batch,
)
from meterhub.utility.settlement import (
    AppletMailbox,
    SettlementStatement,
    expected_code_hash,
    settlement_request,
    verify_settlement,
)
from meterhub.utility.verifier import (
    DayCommitments,
    MeterRegistration,
    clear_shared_caches,
    verify_bill,
)

START = date(2027, 4, 1)
DAYS = 30
TZ = "Europe/Berlin"
LAST = START + timedelta(days=DAYS - 1)
K = 100


def _day(d: date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


@dataclasses.dataclass
class Customer:
    reg: MeterRegistration
    days: list[DayCommitments]
    bill: BillStatement
    settlement: SettlementStatement
    scores_v2: ProfileScores
    scores_v1: ProfileScores
    samples: SampleRelease
    coin: dict[str, Any]


def make_customer(tmp: Path, n: int, index: Any, profiles: list[Any], tariff: Any) -> Customer:
    rng = random.Random(100 + n)
    mid = f"cust-{n}"
    meter = Meter(mid, ecdsa.generate_signing_key())
    recs = []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        r = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in day_starts(day, TZ, 15)]
        recs.append(meter.record_day(day, r))
    reg = MeterRegistration(mid, meter.signing_key.public_key(), TZ, 15)
    days = []
    for rec in recs:
        c65 = b"".join(Point.from_bytes(rec.commitments[k : k + 33]).to_bytes_uncompressed()
                       for k in range(0, len(rec.commitments), 33))
        days.append(DayCommitments(rec.batch, rec.commitments, None, c65))
    card = series_hub(tmp / f"hub{n}.sqlite", index, profiles, mid, TZ)
    nonce = new_nonce()
    c = commit_nonce(mid, START, LAST, K, nonce)
    with demo_tsm(card, "grid-operator") as t:
        hub_commitment = AppletMailbox(t, PROFILING_APP_AID).send(
            b"\x10" + _day(START) + _day(LAST) + K.to_bytes(2, "big") + c, "commit")
    for aid in (SETTLEMENT_APP_AID, PROFILING_APP_AID):
        rc = ReadingsClient(card.transmit, aid)
        rc.select()
        for rec in recs:
            rc.put_openings(rec.batch.batch.day, rec.first_index, rec.openings)
    smb = AppletMailbox(demo_tsm(card, "supplier").open(), SETTLEMENT_APP_AID)
    raw_st = smb.request(settlement_request(START, LAST, index.series.series_id, 1), "settlement")
    gmb = AppletMailbox(demo_tsm(card, "grid-operator").open(), PROFILING_APP_AID)
    ids = ",".join(p.series.series_id for p in profiles).encode()
    raw_sc = gmb.request(b"\x20" + _day(START) + _day(LAST) + ids, "scores")
    raw_samples = gmb.request(b"\x11" + _day(START) + _day(LAST) + nonce, "samples")
    card.close()
    sc = ProfileScores.from_json(raw_sc)
    # The same statement with the version-1 proof over the same hourly openings.
    flat = [o for rec in recs for o in rec.openings]
    hourly = [Opening(sum(o.m for o in flat[k : k + 4]), sum(o.r for o in flat[k : k + 4]) % Q)
              for k in range(0, len(flat), 4)]
    ctx = scores_context(mid, START.isoformat(), LAST.isoformat(), 60)
    proof, _, sq = rangeproof.prove_sum_of_squares([commit(o.m, o.r)[0] for o in hourly], hourly, ctx)
    v1 = dataclasses.replace(sc, squares_proof=proof, squares_blinding=sq.r)
    coin = dict(commitment=c, utility_nonce=nonce, hub_commitment=hub_commitment, k=K)
    bill = issue_statement(BillJob(meter_id=mid, tariff=tariff, period_from=START, period_to=LAST,
                                   first_index=recs[0].first_index, openings=flat, tz=TZ, interval_minutes=15))
    assert isinstance(bill, BillStatement)
    return Customer(reg, days, bill, SettlementStatement.from_json(raw_st), sc, v1,
                    SampleRelease.from_json(raw_samples), coin)


def build(customers: int) -> dict[str, Any]:
    """The customers and every timed variant (each a call that verifies all of them)."""
    index = sign_series(example_price_index(START, DAYS), demo_index_publisher_key())
    profiles = reference_profiles(START, DAYS)
    tariff = example_signed_tariff().tariff
    pmap = {p.series.series_id: p.series for p in profiles}
    ch_st = expected_code_hash("meterhub.applets.settlement/1")
    ch_pr = expected_code_hash("meterhub.applets.profiling/1")
    with tempfile.TemporaryDirectory() as tmp:
        cs = [make_customer(Path(tmp), n, index, profiles, tariff) for n in range(customers)]

    def bill(c: Customer) -> None:
        assert verify_bill(c.bill, c.reg, c.days, tariff).ok

    def settlement(c: Customer) -> None:
        assert verify_settlement(c.settlement, c.reg, c.days, index.series, code_hash=ch_st,
                                 applet_aid=SETTLEMENT_APP_AID).ok

    def samples(c: Customer) -> None:
        assert verify_samples(c.samples, c.reg, c.days, **c.coin, code_hash=ch_pr, applet_aid=PROFILING_APP_AID).ok

    def scores_batch() -> None:
        vs = verify_scores_batch([(c.scores_v2, c.reg, c.days) for c in cs], pmap, code_hash=ch_pr,
                                 applet_aid=PROFILING_APP_AID)
        assert all(v.ok for v in vs)

    def cold(check: Any, c: Customer) -> None:
        clear_shared_caches()
        check(c)

    def before() -> None:
        for c in cs:
            cold(bill, c)
            cold(settlement, c)
            cold(samples, c)
            clear_shared_caches()
            assert verify_scores(c.scores_v1, c.reg, c.days, pmap, code_hash=ch_pr, applet_aid=PROFILING_APP_AID).ok

    def after() -> None:
        # The settlement first: it forms the hourly sums, which the bill then uses too
        # (720 points instead of 2,880); the score batch uses them last.
        clear_shared_caches()
        for c in cs:
            settlement(c)
            bill(c)
            samples(c)
        scores_batch()

    def after_bill_first() -> None:
        clear_shared_caches()
        for c in cs:
            bill(c)
            settlement(c)
            samples(c)
        scores_batch()

    def after_cold() -> None:
        for c in cs:
            cold(bill, c)
            cold(settlement, c)
            cold(samples, c)
        clear_shared_caches()
        scores_batch()

    def each(check: Any) -> Any:
        def run() -> None:
            for c in cs:
                cold(check, c)
        return run

    def scores_cold() -> None:
        clear_shared_caches()
        scores_batch()

    return {"cs": cs, "before": before, "after": after, "bill first": after_bill_first, "cold": after_cold,
            "bill": each(bill),
            "settlement": each(settlement), "samples": each(samples), "scores": scores_cold}


def main() -> None:
    before_src = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--before=")), None)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    customers = int(args[0]) if args else 16
    runs = int(args[1]) if len(args) > 1 else 5
    if "--worker" in sys.argv:
        return _worker(customers)
    header(f"utility CPU per customer-month: bill, settlement, 12 profile scores + sum of squares, samples; "
           f"{customers} customers, 2,880 readings each")
    if before_src is not None:
        return _compare(customers, runs, before_src)
    print(f"   load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    v = build(customers)
    cs = v["cs"]
    r = alternate({k: v[k] for k in ("before", "after", "bill first", "cold")}, runs=runs)
    per = {k: (t.median / customers, t.cpu_median / customers) for k, t in r.items()}
    row("everything, today's path before (v1 proof, one customer at a time, cold checks)",
        f"{per['before'][1] * 1e3:.1f} ms", f"cpu per customer-month; wall {per['before'][0] * 1e3:.1f} ms; {r['before'].note}")
    row(f"everything, v2 proof + batch of {customers} + shared signatures/points", f"{per['after'][1] * 1e3:.1f} ms",
        f"cpu per customer-month; wall {per['after'][0] * 1e3:.1f} ms (**{per['before'][1] / per['after'][1]:.1f}x** "
        f"less cpu); {r['after'].note}")
    row("  the same with the bill before the settlement (no hourly sums for it yet)",
        f"{per['bill first'][1] * 1e3:.1f} ms", f"cpu per customer-month; {r['bill first'].note}")
    row("  the same, each check cold (no sharing)", f"{per['cold'][1] * 1e3:.1f} ms",
        f"cpu per customer-month ({per['cold'][1] / per['after'][1]:.2f}x the shared path); {r['cold'].note}")

    parts = alternate({k: v[k] for k in ("bill", "settlement", "samples", "scores")}, runs=runs)
    p = {k: t.cpu_median / customers * 1e3 for k, t in parts.items()}
    for k in ("bill", "settlement", "samples"):
        row(f"  {k} alone, cold (its own signatures and parsing)", f"{p[k]:.1f} ms", "cpu per customer")
    row(f"  score statements alone, cold, batch of {customers}", f"{p['scores']:.1f} ms",
        f"cpu per customer; {parts['scores'].note}")
    print(f"   proof sizes: v1 {len(cs[0].scores_v1.squares_proof):,} bytes, v2 {len(cs[0].scores_v2.squares_proof):,} bytes")
    print(f"   load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


#: What ``--before`` compares: the shared path and each check alone (all cold per run).
_COMPARED = ("after", "bill first", "bill", "settlement", "samples", "scores")


def _worker(customers: int) -> None:
    """Child of ``--before``: build, say ``ready``, then time each variant named on stdin
    (one line each) and answer its CPU and wall seconds as one JSON line."""
    v = build(customers)
    for name in _COMPARED:  # one untimed warm-up each (tables, generator arrays, imports)
        v[name]()
    print("ready", flush=True)
    for line in sys.stdin:
        fn = v[line.strip()]
        clear_shared_caches()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
        print(json.dumps({"cpu": c1 - c0, "wall": t1 - t0}), flush=True)


def _compare(customers: int, runs: int, before_src: str) -> None:
    """Time this tree against ``before_src`` in two worker processes, alternating."""
    here = Path(__file__).resolve().parent
    trees = {"before": str(Path(before_src).resolve()), "after": str(here.parent / "src")}
    print(f"   load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    procs = {}
    for label, src in trees.items():
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, str(here)]))
        procs[label] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(customers), "--worker"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for label, proc in procs.items():
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{label} worker failed")
    cpu: dict[tuple[str, str], list[float]] = {}
    for _ in range(runs):
        for name in _COMPARED:
            for label, proc in procs.items():
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(name + "\n")
                proc.stdin.flush()
                cpu.setdefault((label, name), []).append(json.loads(proc.stdout.readline())["cpu"])
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    print(f"   load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    labels = {"after": f"everything, batch of {customers}, shared signatures/points",
              "bill first": "  the same with the bill before the settlement",
              "bill": "  bill alone, cold", "settlement": "  settlement alone, cold",
              "samples": "  samples alone, cold", "scores": f"  score statements alone, cold, batch of {customers}"}
    for name in _COMPARED:
        b = statistics.median(cpu[("before", name)]) / customers * 1e3
        a = statistics.median(cpu[("after", name)]) / customers * 1e3
        row(labels[name], f"{a:.1f} ms", f"cpu per customer-month; before ({before_src}) {b:.1f} ms, "
            f"**{b / a:.2f}x**; median of {runs} runs, alternating")


if __name__ == "__main__":
    main()
