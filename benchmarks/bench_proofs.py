"""Benchmark of the meterhub proof system, with zksk as the baseline.

Prints prove and verify time (median per proof, one core) and proof size for:
opening, OR of 4 openings, one-of-4 values, product and square, range proofs
(bit decomposition and Bulletproofs, n = 16 and 32), a bounded range
``[0, m_max]``, an aggregated Bulletproof over a day of 96 readings, and the sum
of squares over 96 readings. The opening and OR statements are also run in
zksk (EPFL Zero-Knowledge Swiss Knife, petlib backend, same curve secp256k1) in
the same run, and the ratios are printed.

zksk proofs have no byte encoding; their size is nominal: 32 bytes per scalar
(challenges and responses) plus the 32-byte statement hash zksk ships.

Each figure is a median with its run count (at least 5); meterhub's and zksk's
opening and OR proofs are timed alternately (benchmarks/_bench.py).

Run: ``taskset -c 0 .venv/bin/python benchmarks/bench_proofs.py`` (about a minute).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from _bench import MIN_RUNS, alternate
from meterhub.crypto import bulletproofs as bp
from meterhub.crypto import rangeproof as rp
from meterhub.crypto import sigma
from meterhub.crypto.group import Q
from meterhub.crypto.pedersen import commit
from meterhub.crypto.transcript import ProofContext

CTX = ProofContext(
    meter_id="bench-meter", period="2026-11", tariff_id="bench", tariff_version=1, statement=b"b"
)


def timed(f: Callable[[], Any], reps: int) -> tuple[tuple[float, float], Any]:
    """Median (wall, CPU) time in ms over ``reps`` runs, and the last result."""
    out = None
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        out = f()
        t1, c1 = time.perf_counter(), time.process_time()
        wall.append((t1 - t0) * 1e3)
        cpu.append((c1 - c0) * 1e3)
    return (statistics.median(wall), statistics.median(cpu)), out


# name, (prove wall, prove CPU), (verify wall, verify CPU), size
ROWS: list[tuple[str, tuple[float, float], tuple[float, float], int]] = []


def _print(name: str, tp: tuple[float, float], tv: tuple[float, float], size: int, runs: int) -> None:
    ROWS.append((name, tp, tv, size))
    print(f"{name:<44} {tp[0]:9.2f} {tv[0]:9.2f} {size:8d} {tp[1]:9.2f} {tv[1]:9.2f}  median of {runs}", flush=True)


def row(name: str, prove: Callable[[], Any], verify: Callable[[Any], bool], reps: int) -> None:
    if reps < MIN_RUNS:
        raise ValueError(f"{name}: a median needs at least {MIN_RUNS} runs")
    tp, proof = timed(prove, reps)
    proof_bytes = proof[0] if isinstance(proof, tuple) else proof
    tv, ok = timed(lambda: verify(proof_bytes), reps)
    assert ok, f"{name}: verification failed"
    size = len(proof_bytes) if isinstance(proof_bytes, bytes) else _zksk_size(proof_bytes)
    _print(name, tp, tv, size, reps)


def _zksk_size(obj: Any) -> int:
    """Nominal size of a zksk NIZK: 32 bytes per scalar, plus the statement hash."""
    from petlib.bn import Bn

    if isinstance(obj, Bn | int):
        return 32
    if isinstance(obj, bytes):
        return len(obj)
    if isinstance(obj, list | tuple):
        return sum(_zksk_size(x) for x in obj)
    if obj is None:
        return 0
    return _zksk_size(obj.challenge) + _zksk_size(obj.responses) + _zksk_size(obj.stmt_hash)


def bench_meterhub() -> None:
    rows = [100, 250, 400, 1000]
    cv, ov = commit(400)
    row(
        "one of 4 values (tier price)",
        lambda: sigma.prove_one_of_values(cv, ov, rows, CTX),
        lambda p: sigma.verify_one_of_values(cv, rows, p, CTX),
        100,
    )
    tiers = [(0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 65536, 6, 1650)]
    trow = [commit(v) for v in tiers[2]]
    tcs = [x for x, _ in trow]
    tos = [y for _, y in trow]
    row(
        "row membership, 4 rows x 4 columns",
        lambda: sigma.prove_row_membership(tcs, tos, tiers, CTX),
        lambda p: sigma.verify_row_membership(tcs, tiers, p, CTX),
        50,
    )
    ca, oa = commit(37)
    cb, ob = commit(41)
    cc, oc = commit(37 * 41)
    cs, os_ = commit(37 * 37)
    row(
        "product c = a*b",
        lambda: sigma.prove_product(ca, oa, cb, ob, cc, oc, CTX),
        lambda p: sigma.verify_product(ca, cb, cc, p, CTX),
        100,
    )
    row(
        "square c = a^2",
        lambda: sigma.prove_square(ca, oa, cs, os_, CTX),
        lambda p: sigma.verify_square(ca, cs, p, CTX),
        100,
    )
    for n in (16, 32):
        cn, on = commit((1 << n) - 1)
        row(
            f"range n={n}, bit decomposition",
            lambda cn=cn, on=on, n=n: rp.prove_range([cn], [on], n, CTX),
            lambda p, cn=cn, n=n: rp.verify_range([cn], n, p, CTX),
            5,
        )
        row(
            f"range n={n}, Bulletproof",
            lambda cn=cn, on=on, n=n: bp.prove([cn], [on], n, CTX),
            lambda p, cn=cn, n=n: bp.verify([cn], n, p, CTX),
            5,
        )
    m_max = 10_000
    cm, om = commit(9_876)
    row(
        f"bounded [0, {m_max}], bit decomposition",
        lambda: rp.prove_bounded([cm], [om], m_max, CTX),
        lambda p: rp.verify_bounded([cm], m_max, p, CTX),
        5,
    )
    row(
        f"bounded [0, {m_max}], Bulletproof",
        lambda: bp.prove_bounded([cm], [om], m_max, CTX),
        lambda p: bp.verify_bounded([cm], m_max, p, CTX),
        5,
    )
    day = [commit(v * 37 % 4000) for v in range(96)]
    dcs = [x for x, _ in day]
    dos = [y for _, y in day]
    row(
        "96 readings in [0, 2^16), one Bulletproof",
        lambda: bp.prove(dcs, dos, 16, CTX),
        lambda p: bp.verify(dcs, 16, p, CTX),
        5,
    )
    each = [bp.prove([x], [y], 16, CTX) for x, y in day]

    def prove_each() -> list[bytes]:
        return [bp.prove([x], [y], 16, CTX) for x, y in day]

    def verify_each_batched(proofs: list[bytes]) -> bool:
        return bp.verify_batch(
            [bp.BatchItem([x], p, CTX, n=16) for x, p in zip(dcs, proofs, strict=True)]
        )

    tp, _ = timed(prove_each, 5)
    tv, ok = timed(lambda: verify_each_batched(each), 5)
    assert ok
    _print("96 readings, a Bulletproof each, batch verify", tp, tv, sum(len(p) for p in each), 5)
    row(
        "sum of squares, 96 readings",
        lambda: rp.prove_sum_of_squares(dcs, dos, CTX),
        lambda p: rp.verify_sum_of_squares(dcs, p, CTX),
        5,
    )


def bench_against_zksk() -> None:
    """The opening and the OR of 4 openings, meterhub's and zksk's, all timed alternately."""
    from petlib.ec import EcGroup
    from zksk import DLRep, Secret
    from zksk.composition import OrProofStmt

    c, o = commit(1234)
    pairs = [commit(v) for v in (100, 250, 400, 1000)]
    branches = [sigma.opening_statement(ci) for ci, _ in pairs]
    w = (pairs[2][1].m, pairs[2][1].r)

    grp = EcGroup(714)  # secp256k1, as in meterhub
    g = grp.generator()
    h = grp.hash_to_point(b"meterhub-bench-H")
    m, r = 1234, 5678
    x, y = Secret(value=m), Secret(value=r)
    stmt = DLRep(m * g + r * h, x * g + y * h)

    def or_stmt(with_witness: bool) -> Any:
        # zksk binds values into its Secret objects, so each proof gets a fresh
        # statement; the verifier builds its own, as a real verifier would.
        zbranches = []
        for i in range(4):
            if i == 2 and with_witness:
                xi, yi = Secret(value=400), Secret(value=77)
            else:
                xi, yi = Secret(), Secret()
            ci = 400 * g + 77 * h if i == 2 else (1000 + i) * g + (i + 1) * h
            zbranches.append(DLRep(ci, xi * g + yi * h))
        return OrProofStmt(*zbranches)

    verifier_stmt = or_stmt(False)
    cases: dict[str, tuple[Callable[[], Any], Callable[[Any], bool]]] = {
        "opening": (lambda: sigma.prove_opening(c, o, CTX), lambda p: sigma.verify_opening(c, p, CTX)),
        "OR of 4 openings": (
            lambda: sigma.prove_or(branches, 2, w, CTX), lambda p: sigma.verify_or(branches, p, CTX)),
        "zksk: opening": (lambda: stmt.prove(), lambda p: stmt.verify(p)),
        "zksk: OR of 4 openings": (lambda: or_stmt(True).prove(), lambda p: verifier_stmt.verify(p)),
    }
    variants: dict[str, Callable[[], Any]] = {}
    sizes: dict[str, int] = {}
    for name, (prove, verify) in cases.items():
        proof = prove()
        assert verify(proof), name
        sizes[name] = len(proof) if isinstance(proof, bytes) else _zksk_size(proof)
        variants[f"prove {name}"] = prove
        variants[f"verify {name}"] = lambda verify=verify, proof=proof: verify(proof)
    runs = 50
    t = alternate(variants, runs=runs)
    for name in cases:
        p_, v_ = t[f"prove {name}"], t[f"verify {name}"]
        _print(name, (p_.median * 1e3, p_.cpu_median * 1e3), (v_.median * 1e3, v_.cpu_median * 1e3), sizes[name], runs)


def main() -> None:
    assert Q.bit_length() == 256
    t0 = time.perf_counter()
    bp.generators(16 * 128)  # one-off generator derivation, not part of any proof
    print(f"{'statement':<44} {'prove ms':>9} {'verify ms':>9} {'bytes':>8} {'cpu prove':>9} {'cpu verif':>9}  runs")
    bench_against_zksk()
    bench_meterhub()
    by_name = {name: (tp, tv, size) for name, tp, tv, size in ROWS}
    print("\nratios zksk / meterhub (above 1: meterhub faster or smaller); wall, CPU time in brackets")
    for ours, theirs in (
        ("opening", "zksk: opening"),
        ("OR of 4 openings", "zksk: OR of 4 openings"),
    ):
        a, b = by_name[ours], by_name[theirs]
        print(
            f"{ours:<44} prove {b[0][0] / a[0][0]:5.2f}x ({b[0][1] / a[0][1]:5.2f}x)  "
            f"verify {b[1][0] / a[1][0]:5.2f}x ({b[1][1] / a[1][1]:5.2f}x)  size {b[2] / a[2]:5.2f}x"
        )
    day = by_name["96 readings in [0, 2^16), one Bulletproof"]
    print(
        f"\nper reading in a day of 96: Bulletproof prove {day[0][0] / 96:.2f} ms, "
        f"verify {day[1][0] / 96:.2f} ms, {day[2] / 96:.1f} bytes"
    )
    each = by_name["96 readings, a Bulletproof each, batch verify"]
    print(
        f"per reading, a proof each, batch verify: prove {each[0][0] / 96:.2f} ms, "
        f"verify {each[1][0] / 96:.2f} ms, {each[2] / 96:.1f} bytes"
    )
    print(f"total benchmark time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
