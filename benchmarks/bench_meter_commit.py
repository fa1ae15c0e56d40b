"""The meter's Pedersen commitments: constant time (now) against the variable-time formula before.

A month of one meter's readings (30 days x 96, the same draw as bench_billing.py) with fresh
blindings drawn in advance (not timed). Variants, alternated A, B, A, B, ... (benchmarks/_bench.py),
medians of ``--runs`` runs:

* ``commit_point(m, r)`` (meterhub.crypto.pedersen, what the meter runs now): ``(m+1)*G`` by
  libsecp256k1's ``ecmult_gen``, ``r*H`` by ``ecmult_const`` behind ``secp256k1_ecdh``
  (``Point.mul_secret``), minus ``G``;
* ``base_mul(m) + H * r`` (the meter before): ``r*H`` by ``secp256k1_ec_pubkey_tweak_mul``, whose
  ``ecmult`` is the variable-time wNAF multiplication, and ``m*G`` skipped for ``m = 0``. The
  fastest correct coincurve formula, but not constant time: the baseline the cost is measured
  against, not an alternative;

and the blinding's multiplication alone, ``H.mul_secret(r)`` against ``H * r``.

Run (one core): ``PYTHONPATH=src taskset -c 0 .venv/bin/python benchmarks/bench_meter_commit.py``
"""

from __future__ import annotations

import argparse
import sys

from _bench import MIN_RUNS, alternate, header, row
from bench_billing import month_readings
from meterhub.crypto.group import H, base_mul, random_scalar
from meterhub.crypto.pedersen import commit_point


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help=f"alternated runs per variant (default 7, at least {MIN_RUNS})")
    args = ap.parse_args(argv)
    if args.runs < MIN_RUNS:
        ap.error(f"--runs must be at least {MIN_RUNS}")
    header("bench_meter_commit: the meter's commitments, constant time vs the variable-time formula")
    pairs = [(m, random_scalar()) for day in month_readings() for m in day]
    n = len(pairs)
    if [commit_point(m, r).to_bytes() for m, r in pairs] != [(base_mul(m) + H * r).to_bytes() for m, r in pairs]:
        raise SystemExit("the two formulas disagree")

    t = alternate(
        {
            "ct": lambda: [commit_point(m, r).to_bytes() for m, r in pairs],
            "var": lambda: [(base_mul(m) + H * r).to_bytes() for m, r in pairs],
            "ct_mul": lambda: [H.mul_secret(r) for _, r in pairs],
            "var_mul": lambda: [H * r for _, r in pairs],
        },
        runs=args.runs,
    )
    ct, var, ct_mul, var_mul = t["ct"], t["var"], t["ct_mul"], t["var_mul"]
    us = 1e6 / n
    row(f"commit_point, constant time (the meter now), {n:,} readings", f"{ct.median * us:.1f} us",
        f"per commitment (cpu {ct.cpu_median * us:.1f} us); {ct.note}")
    row("  base_mul(m) + H * r, variable time (the meter before)", f"{var.median * us:.1f} us",
        f"ratio constant / variable {ct.median / var.median:.2f}x (cpu {ct.cpu_median / var.cpu_median:.2f}x); "
        f"{var.note}")
    row("r*H alone: H.mul_secret(r) (secp256k1_ecdh, ecmult_const)", f"{ct_mul.median * us:.1f} us",
        f"(cpu {ct_mul.cpu_median * us:.1f} us); {ct_mul.note}")
    row("  H * r (secp256k1_ec_pubkey_tweak_mul, wNAF ecmult)", f"{var_mul.median * us:.1f} us",
        f"ratio {ct_mul.median / var_mul.median:.2f}x (cpu {ct_mul.cpu_median / var_mul.cpu_median:.2f}x); "
        f"{var_mul.note}")
    row("meter month (2,880 commitments), constant time", f"{ct.median * 1e3:.0f} ms",
        f"variable time {var.median * 1e3:.0f} ms, commitments only (no chain, no signature)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
