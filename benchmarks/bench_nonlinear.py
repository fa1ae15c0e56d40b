"""Non-linear tariffs: prove and verify time and size, per reading and per month.

Issue 5 targets (one core): a per-reading tier proof for a 4-row tiered tariff
<= 5 ms to prove, <= 3 ms to verify, <= 1.5 KB; the monthly inclining-block bill
proof <= 100 ms to prove and to verify. Also timed in the same run:

* the month (2,880 15-minute readings, April 2027) end to end for all three
  kinds: the hub's ``prove_bill`` and the utility's ``verify_proven_bill``
  (30 batch signatures, chain and completeness included), next to the linear
  v1 ``verify_bill`` of the same month;
* the reference tier composition of docs/proofs.md (row membership + a
  Bulletproof + a product proof, separate transcripts);
* zksk (EPFL Zero-Knowledge Swiss Knife, petlib backend, secp256k1) proving the
  same opening and OR statements; ratios printed. zksk has no byte encoding;
  its size is nominal (32 bytes per scalar plus its 32-byte statement hash).

The fixed-base tables (G, H and the first 32 vector generators, 8-bit
windows) are built once before timing, like the generators themselves; their
one-off cost is printed. Tier proofs are version 2 (inner-product argument
stopped at length 8, docs/nonlinear.md).

Each row says how many runs its medians rest on; the sigma protocols and zksk are
timed alternately (benchmarks/_bench.py); the tiered month is a single run (it
takes seconds). CPU time is printed next to wall time: on a busy machine a long
call waits for the core more often than a short one, so compare CPU-time ratios.

Run: ``taskset -c 0 .venv/bin/python benchmarks/bench_nonlinear.py`` (about two minutes).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from _bench import alternate, cold_caches, header
from meterhub.crypto import bulletproofs as bp
from meterhub.crypto import ecdsa, sigma
from meterhub.crypto.bulletproofs import _tables as bp_tables
from meterhub.crypto.group import G, H, Q
from meterhub.crypto.pedersen import Commitment, Opening, commit
from meterhub.crypto.transcript import ProofContext
from meterhub.hub.billing import bill_statement
from meterhub.hub.proving import prove_bill
from meterhub.meter.device import Meter
from meterhub.model.timebase import day_starts
from meterhub.tariffs import KIND_INCLINING_BLOCK, KIND_POLYNOMIAL, KIND_TIERED, example_tariff
from meterhub.tariffs.nonlinear import example_nonlinear_tariff
from meterhub.utility.proof_verifier import verify_proven_bill
from meterhub.utility.verifier import DayCommitments, MeterRegistration, verify_bill

CTX = ProofContext("bench-meter", "2027-04", "bench", 1, b"b")
WIDE = [(0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 4096, 6, 1650)]
NARROW = [(0, 64, 3, 0), (64, 128, 4, 192), (128, 192, 5, 448), (192, 256, 6, 768)]
START = date(2027, 4, 1)
DAYS = 30
TZ = "Europe/Berlin"
FIG: dict[str, tuple[Any, Any, float]] = {}


class Ms(float):
    """A median wall time in ms that also carries the CPU-time median (``cpu``, ms) of the
    same runs: on a shared machine a long call is stretched by the time it waits for a
    core and a short one mostly is not, so ratios between them are fair in CPU time."""

    cpu: float

    def __new__(cls, wall: float, cpu: float) -> Ms:
        obj = super().__new__(cls, wall)
        obj.cpu = cpu
        return obj


def timed_runs(f: Callable[[], Any], reps: int) -> tuple[list[float], list[float], Any]:
    """Wall and CPU times in ms of ``reps`` calls, and the last result."""
    out, wall, cpu = None, [], []
    for _ in range(reps):
        cold_caches()  # each run decodes and checks signatures itself, as a first verification
        c0, t0 = time.process_time(), time.perf_counter()
        out = f()
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append((t1 - t0) * 1e3)
        cpu.append((c1 - c0) * 1e3)
    return wall, cpu, out


def med(f: Callable[[], Any], reps: int) -> tuple[Ms, Any]:
    """Median time in ms (wall, with CPU) over ``reps`` runs, and the last result."""
    wall, cpu, out = timed_runs(f, reps)
    return Ms(statistics.median(wall), statistics.median(cpu)), out


def line(name: str, tp: Ms, tv: Ms, size: float, runs: int) -> None:
    """One figure row; ``runs`` is how many runs each median rests on (1: a single run)."""
    FIG[name] = (tp, tv, size)
    shown = "single run" if runs == 1 else f"median of {runs}"
    print(f"{name:<58} {tp:10.2f} {tv:10.2f} {size:10.0f} {tp.cpu:10.2f} {tv.cpu:10.2f}  {shown}", flush=True)


def bench_tier(rows: list[tuple[int, int, int, int]], label: str) -> None:
    rng = random.Random(1)
    hi = rows[-1][1]
    vals = [0, hi - 1, *(r[0] for r in rows), *(rng.randrange(hi) for _ in range(40))]
    pairs = [commit(v) for v in vals]
    proofs: list[bytes] = []
    wall_p: list[float] = []
    cpu_p: list[float] = []
    wall_v: list[float] = []
    cpu_v: list[float] = []
    for c, o in pairs:
        w, u, out = timed_runs(lambda c=c, o=o: bp.prove_tier(c, o, rows, CTX), 1)
        proofs.append(out[0])
        wall_p += w
        cpu_p += u
    for (c, _), p in zip(pairs, proofs, strict=True):
        w, u, ok = timed_runs(lambda c=c, p=p: bp.verify_tier(c, rows, p, CTX), 1)
        assert ok
        wall_v += w
        cpu_v += u
    size = len(proofs[0])
    tp = Ms(statistics.median(wall_p), statistics.median(cpu_p))
    tv = Ms(statistics.median(wall_v), statistics.median(cpu_v))
    line(f"tier proof {label}, one reading", tp, tv, size, len(pairs))
    items = [bp.TierItem(c, rows, p, CTX) for (c, _), p in zip(pairs, proofs, strict=True)]
    tb, ok = med(lambda: bp.verify_tier_batch(items), 5)
    assert ok
    line(f"  same, batch-verified ({len(items)}), per reading", tp, Ms(tb / len(items), tb.cpu / len(items)), size, 5)


def bench_reference() -> None:
    """The reference composition of docs/proofs.md (tests/crypto/test_rangeproof.py)."""
    tiers = [(0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 65536, 6, 1650)]
    c, o = commit(321)
    c_min, c_max, f1, _ = tiers[2]

    def prove() -> tuple[list[Commitment], Commitment, bytes]:
        row = [commit(v) for v in tiers[2]]
        rc, ro = [x for x, _ in row], [y for _, y in row]
        p_row = sigma.prove_row_membership(rc, ro, tiers, CTX)
        d1 = c - rc[0]
        o1 = Opening(o.m - c_min, (o.r - ro[0].r) % Q)
        d2 = rc[1] - Commitment(G) - c
        o2 = Opening(c_max - 1 - o.m, (ro[1].r - o.r) % Q)
        p_rng = bp.prove([d1, d2], [o1, o2], 16, CTX)
        x, ox = commit((o.m - c_min) * f1)
        p_prod = sigma.prove_product(d1, o1, rc[2], ro[2], x, ox, CTX)
        return rc, x, b"".join(r.to_bytes() for r in rc) + x.to_bytes() + p_row + p_rng + p_prod

    def verify(out: tuple[list[Commitment], Commitment, bytes]) -> bool:
        rc, x, blob = out
        p_row, p_rng, p_prod = blob[165:423], blob[423:1052], blob[1052:]
        d1, d2 = c - rc[0], rc[1] - Commitment(G) - c
        return (
            sigma.verify_row_membership(rc, tiers, p_row, CTX)
            and bp.verify([d1, d2], 16, p_rng, CTX)
            and sigma.verify_product(d1, rc[2], x, p_prod, CTX)
        )

    tp, out = med(prove, 15)
    tv, ok = med(lambda: verify(out), 15)
    assert ok
    line("reference composition (row + BP + product), n=16", tp, tv, len(out[2]), 15)


def bench_sigma_and_zksk() -> None:
    """meterhub's sigma protocols and zksk's on the same statements, all timed alternately."""
    c, o = commit(1234)
    # The tier proof's OR statement: 4 branches "lhs_j = w H", one witness each.
    lhs = [commit(0)[0] if i == 2 else commit(1000 + i)[0] for i in range(4)]
    w = commit(0)[1].r
    lhs[2] = Commitment(H * w)
    branches = [sigma.LinearStatement(1, (sigma.Equation(x.point, ((0, H),)),)) for x in lhs]
    pairs = [commit(v) for v in (100, 250, 400, 1000)]
    ob = [sigma.opening_statement(ci) for ci, _ in pairs]

    from petlib.ec import EcGroup
    from zksk import DLRep, Secret
    from zksk.composition import OrProofStmt

    grp = EcGroup(714)  # secp256k1
    g = grp.generator()
    h = grp.hash_to_point(b"meterhub-bench-H")
    x, y = Secret(value=1234), Secret(value=5678)
    stmt = DLRep(1234 * g + 5678 * h, x * g + y * h)

    def or_stmt(with_witness: bool, openings: bool) -> Any:
        branches = []
        for i in range(4):
            real = i == 2 and with_witness
            if openings:
                xi, yi = (Secret(value=400), Secret(value=77)) if real else (Secret(), Secret())
                ci = 400 * g + 77 * h if i == 2 else (1000 + i) * g + (i + 1) * h
                branches.append(DLRep(ci, xi * g + yi * h))
            else:
                wi = Secret(value=77) if real else Secret()
                ci = 77 * h if i == 2 else (1000 + i) * g
                branches.append(DLRep(ci, wi * h))
        return OrProofStmt(*branches)

    # name: (prove, verify of that proof, size; None: the proof's own length)
    cases: dict[str, tuple[Callable[[], Any], Callable[[Any], bool], int | None]] = {
        "opening": (lambda: sigma.prove_opening(c, o, CTX), lambda p: sigma.verify_opening(c, p, CTX), None),
        "OR of 4 (tier rows: lhs_j = w H)": (
            lambda: sigma.prove_or(branches, 2, (w,), CTX), lambda p: sigma.verify_or(branches, p, CTX), None),
        "OR of 4 openings": (
            lambda: sigma.prove_or(ob, 2, (pairs[2][1].m, pairs[2][1].r), CTX),
            lambda p: sigma.verify_or(ob, p, CTX), None),
        "zksk: opening": (lambda: stmt.prove(), lambda p: stmt.verify(p), 32 * 3 + 32),
    }
    for openings, name, size in ((False, "zksk: OR of 4 (tier rows)", 32 * 8 + 32), (True, "zksk: OR of 4 openings", 32 * 12 + 32)):
        vstmt = or_stmt(False, openings)
        cases[name] = (lambda openings=openings: or_stmt(True, openings).prove(), vstmt.verify, size)
    variants: dict[str, Callable[[], Any]] = {}
    sizes: dict[str, int] = {}
    for name, (prove, verify, size) in cases.items():
        proof = prove()
        assert verify(proof), name
        sizes[name] = len(proof) if size is None else size
        variants[f"prove {name}"] = prove
        variants[f"verify {name}"] = lambda verify=verify, proof=proof: verify(proof)
    runs = 40
    r = alternate(variants, runs=runs)
    for name in cases:
        rp_, rv = r[f"prove {name}"], r[f"verify {name}"]
        line(name, Ms(rp_.median * 1e3, rp_.cpu_median * 1e3), Ms(rv.median * 1e3, rv.cpu_median * 1e3), sizes[name], runs)


def month() -> tuple[Meter, list[Any], list[list[int]]]:
    rng = random.Random(7)
    meter = Meter("bench-meter", ecdsa.generate_signing_key())
    days, readings = [], []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        r = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900), rng.randint(900, 4000)]) for _ in day_starts(day, TZ, 15)]
        readings.append(r)
        days.append(meter.record_day(day, r))
    return meter, days, readings


def bench_month() -> None:
    meter, days, _ = month()
    reg = MeterRegistration(meter.meter_id, meter.signing_key.public_key(), TZ, 15)
    dcs = [DayCommitments(d.batch, d.commitments, None) for d in days]
    openings = [o for d in days for o in d.openings]
    cs = [Commitment.from_bytes(d.commitments[k : k + 33]) for d in days for k in range(0, len(d.commitments), 33)]
    n = len(openings)
    end = START + timedelta(days=DAYS - 1)
    tou = example_tariff(2027)
    starts = [s for d in range(DAYS) for s in day_starts(START + timedelta(days=d), TZ, 15)]
    v1 = bill_statement(
        meter_id=meter.meter_id, tariff=tou, period_from=START, period_to=end, first_index=0,
        prices=tou.prices_for(starts), openings=openings,
    )
    tv, ok = med(lambda: verify_bill(v1, reg, dcs, tou), 5)
    assert ok
    line(f"linear v1 bill, month of {n} (baseline: verify only)", Ms(0.0, 0.0), tv, len(v1.to_json()), 5)
    for kind in (KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL):
        t = example_nonlinear_tariff(kind)
        reps = 1 if kind == KIND_TIERED else 5  # the tiered month takes seconds: one run

        def prove(t: Any = t) -> Any:
            return prove_bill(
                meter_id=meter.meter_id, tariff=t, period_from=START, period_to=end,
                first_index=0, openings=openings, commitments=cs,
            )

        tp, st = med(prove, reps)
        tv, v = med(lambda st=st, t=t: verify_proven_bill(st, reg, dcs, t), reps)
        assert v.ok, v.reason
        line(f"{kind} bill, month of {n}, end to end", tp, tv, len(st.proof), reps)
        line("  per reading", Ms(tp / n, tp.cpu / n), Ms(tv / n, tv.cpu / n), len(st.proof) / n, reps)
        if kind == KIND_INCLINING_BLOCK:
            total = Commitment(bp_tables._lincomb_fixed([], [1] * n, [c.point for c in cs]))
            t_open = Opening(sum(o.m for o in openings), sum(o.r for o in openings) % Q)
            rows = [r.as_tuple() for r in t.blocks]
            tp, out = med(lambda a=total, o=t_open, r=rows: bp.prove_tier(a, o, r, CTX), 10)
            tv, ok = med(lambda a=total, r=rows, p=out[0]: bp.verify_tier(a, r, p, CTX), 10)
            assert ok
            line(f"  block proof alone (n={bp.tier_bits(rows)}, {len(rows)} blocks)", tp, tv, len(out[0]), 10)


def _ratio(b: Ms, a: Ms) -> str:
    return f"{b / a:6.2f}x ({b.cpu / a.cpu:6.2f}x)"


def main() -> None:
    header("non-linear tariffs (issue 5)")
    t0 = time.perf_counter()
    bp.generators(256)
    bp_tables._h_table()
    bp_tables._g_table()
    bp_tables._gen_tables(bp_tables.TABLE_GENERATORS)
    print(f"   one-off: generators and fixed-base tables {time.perf_counter() - t0:.2f} s")
    print(f"{'statement':<58} {'prove ms':>10} {'verify ms':>10} {'bytes':>10} {'cpu prove':>10} {'cpu verify':>10}  runs")
    bench_tier(WIDE, f"4 rows to 4096 (n={bp.tier_bits(WIDE)})")
    bench_tier(NARROW, f"4 rows to 256 (n={bp.tier_bits(NARROW)})")
    bench_reference()
    bench_sigma_and_zksk()
    bench_month()

    print("\nratios zksk / meterhub (above 1: meterhub faster or smaller); wall time, CPU time in brackets")
    for ours, theirs in (
        ("opening", "zksk: opening"),
        ("OR of 4 (tier rows: lhs_j = w H)", "zksk: OR of 4 (tier rows)"),
        ("OR of 4 openings", "zksk: OR of 4 openings"),
        ("tier proof 4 rows to 4096 (n=16), one reading", "zksk: OR of 4 (tier rows)"),
    ):
        a, b = FIG[ours], FIG[theirs]
        print(f"{ours:<58} prove {_ratio(b[0], a[0])}  verify {_ratio(b[1], a[1])}  size {b[2] / a[2]:5.2f}x")
    ref = FIG["reference composition (row + BP + product), n=16"]
    ours = FIG["tier proof 4 rows to 4096 (n=16), one reading"]
    print(f"{'reference composition / tier proof (n=16)':<58} prove {_ratio(ref[0], ours[0])}  verify {_ratio(ref[1], ours[1])}  size {ref[2] / ours[2]:5.2f}x")

    def met(t: Ms, limit: float) -> str:
        """The verdict in wall time and, for a busy machine, in CPU time."""
        return f"{t:.2f} ms (cpu {t.cpu:.2f}) {'MET' if t <= limit else 'NOT MET'} (cpu {'MET' if t.cpu <= limit else 'NOT MET'}) (<= {limit:g})"

    print("\ntargets (one core; wall time, and CPU time for a busy machine)")
    for label in ("4 rows to 4096 (n=16)", "4 rows to 256 (n=8)"):
        p, v, s = FIG[f"tier proof {label}, one reading"]
        print(f"   tier proof {label}: prove {met(p, 5)}, "
              f"verify {met(v, 3)}, {s:.0f} B {'MET' if s <= 1536 else 'NOT MET'} (<= 1.5 KB)")
    bp_, bv, _ = FIG["  block proof alone (n=64, 3 blocks)"]
    print(f"   monthly block bill proof: prove {met(bp_, 100)}, verify {met(bv, 100)}")
    ib = FIG[f"{KIND_INCLINING_BLOCK} bill, month of 2880, end to end"]
    print(f"   monthly block bill end to end (2,880 commitments, 30 signatures): prove {ib[0]:.1f} ms, verify {ib[1]:.1f} ms")
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
