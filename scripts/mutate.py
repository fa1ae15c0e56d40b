"""Mutation check for the verification and ingest code (docs/verification.md, "Mutation check").

Each mutation is ``(file, exact source snippet, replacement, tests)``: the snippet
must occur exactly once in the file (so the list survives line moves; a stale
snippet is an error, not a pass). For every mutation the tree (``src``, ``tests``,
``pyproject.toml``) is copied to a temporary directory, the one edit is applied
there - the working tree is never touched - and the given fast test subset is
run with ``pytest -x``. A mutant *survives* if the tests still pass. Prints a
table and exits 1 if any mutant survives (or a snippet is stale), else 0.

    python scripts/mutate.py [-j JOBS] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERIFIER = "src/meterhub/utility/verifier.py"
STORE = "src/meterhub/utility/store.py"
INGEST_PY = "src/meterhub/utility/ingest.py"
SETTLE = "src/meterhub/utility/settlement.py"
FORECAST = "src/meterhub/utility/forecasting.py"
BILLING_BASE = "src/meterhub/model/billing/base.py"
TOU = "src/meterhub/model/billing/time_of_use.py"
SJSON = "src/meterhub/model/strictjson.py"
ECDSA = "src/meterhub/crypto/ecdsa.py"

BILL = ("tests/utility/test_verifier.py", "tests/utility/test_verification_rules.py")
INGEST = ("tests/utility/test_ingest.py", "tests/utility/test_verification_rules.py", "tests/hub/test_billing_and_exchange.py")
JSON = ("tests/model/test_strictjson.py",)
RULES = ("tests/utility/test_verification_rules.py",)
BANDS = ("tests/utility/test_banded.py", "tests/utility/test_gaps.py")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]


MUTATIONS = [
    # The billing verifier (check_period, verify_bill, check_delivery).
    Mutation("verifier skips the chain link between days", VERIFIER,
             "if b.prev_head != prev_batch.head:", "if False:", BILL),
    Mutation("verifier skips the index link between days", VERIFIER,
             "if b.first_index != prev_batch.first_index + prev_batch.count:", "if False:", BILL),
    Mutation("verifier skips the batch signature", VERIFIER,
             "if not sb.verify(meter.public_key):\n        return False", "if False:\n        return False", BILL),
    Mutation("verifier accepts high-S batch signatures", VERIFIER,
             "if not ecdsa.is_low_s(dc.batch.signature):", "if False:", BILL),
    Mutation("verifier skips the day's interval count", VERIFIER,
             "if b.count != len(starts):", "if False:", BILL),
    Mutation("verifier skips the chain head", VERIFIER,
             "if chain_head(b.prev_head, b.first_index, dc.c33) != b.head:", "if False:", BILL),
    Mutation("verifier skips the batch's meter id", VERIFIER,
             "if b.meter_id != meter.meter_id:", "if False:", BILL),
    Mutation("verifier skips foreign indices", VERIFIER,
             "if not first <= i < first + count:", "if False:", BILL),
    Mutation("verifier skips the statement's interval range", VERIFIER,
             "if st.first_index != first or st.count != total:", "if False:", BILL),
    Mutation("verifier skips the standing charge", VERIFIER,
             "if st.standing_charge != n_days * tariff.standing_charge_per_day:", "if False:", BILL),
    Mutation("verifier skips the total", VERIFIER,
             "if st.total != st.energy_charge + st.standing_charge:", "if False:", BILL),
    Mutation("verifier skips the tariff digest", VERIFIER,
             "if st.tariff_digest != tariff.digest():", "if False:", BILL),
    Mutation("verifier skips the currency", VERIFIER,
             "if st.currency != tariff.currency:", "if False:", BILL),
    Mutation("verifier skips the sub-unit scale", VERIFIER,
             "if st.subunits_per_unit != tariff.subunits_per_unit:", "if False:", BILL),
    Mutation("verifier drops the upper range bound", BILLING_BASE,
             "if not 0 <= energy <= bound:", "if not 0 <= energy:", BILL),
    Mutation("verifier skips the group equation", TOU,
             "if lhs != G * st.energy_charge + H * st.blinding:", "if False:", BILL),
    Mutation("delivery check skips the meter id", VERIFIER,
             "if b.meter_id != meter_id:", "if False:", RULES),
    Mutation("delivery check skips day order", VERIFIER,
             "if b.day.toordinal() != pb.day.toordinal() + 1:", "if False:", RULES),
    # Ingest (UtilityStore).
    Mutation("ingest skips the batch signature", INGEST_PY,
             "if not upload.batch.verify(reg.public_key):", "if False:", INGEST),
    Mutation("ingest skips the record indices", INGEST_PY,
             "check_indices(label, b.first_index, b.count, indices)", "indices = indices", INGEST),
    Mutation("ingest skips the chain head", INGEST_PY,
             "if chain_head(b.prev_head, b.first_index, c33) != b.head:", "if False:", INGEST),
    Mutation("ingest skips the link to the previous day", INGEST_PY,
             "if b.first_index != pb.first_index + pb.count or b.prev_head != pb.head:", "if False:", INGEST),
    Mutation("ingest skips the link to the next day", INGEST_PY,
             "if nb.first_index != b.first_index + b.count or nb.prev_head != b.head:", "if False:", INGEST),
    Mutation("ingest skips the gap check", INGEST_PY,
             "elif pb.day.toordinal() + 1 != ordinal:", "elif False:", INGEST),
    Mutation("ingest skips the day's interval count", INGEST_PY,
             "if b.count != intervals_per_day(b.day, reg.tz, reg.interval_minutes):", "if False:", INGEST),
    Mutation("ingest skips the genesis head", INGEST_PY,
             "if not view.ordinals and b.first_index == 0 and b.prev_head != chain_genesis(b.meter_id):",
             "if False:", INGEST),
    Mutation("ingest treats a conflicting re-delivery as a duplicate", INGEST_PY,
             "if not differs:", "if True:", INGEST),
    Mutation("store skips the overlap check", STORE,
             "if other != text:", "if False:", RULES),
    # v3 statements (per-band energy, registers) and days after a gap.
    Mutation("verifier skips the band commitments", TOU,
             "if lhs != G * e + H * r:", "if False:", BANDS),
    Mutation("verifier skips the band prices", TOU,
             "if sum(tariff.bands[b.band].price * b.energy_wh for b in st.bands) != st.energy_charge:",
             "if False:", BANDS),
    Mutation("verifier skips the register difference", TOU,
             "if regs is not None and st.energy_wh != regs[1] - regs[0]:", "if False:", BANDS),
    Mutation("verifier skips the register continuity", VERIFIER,
             "if prev_end is not None and b.register_start_wh != prev_end:", "if False:", BANDS),
    Mutation("ingest skips the register continuity", INGEST_PY,
             "if b.register_start_wh != prev.register_end_wh:", "if False:", BANDS),
    Mutation("ingest skips the intervals of a gap", INGEST_PY,
             "if after.first_index != expected:", "if False:", BANDS),
    # Settlement and profile scores: range checks before the group equations.
    Mutation("settlement skips the value range", SETTLE,
             "if not min(prices) * st.energy_wh <= st.value <= max(prices) * st.energy_wh:", "if False:", RULES),
    Mutation("scores skip the score range", FORECAST,
             "if not min(w) * st.energy_wh <= e.score <= max(w) * st.energy_wh:", "if False:", RULES),
    # The strict JSON reader and signature canonicality.
    Mutation("JSON reader accepts duplicate keys", SJSON, "if k in out:", "if False:", JSON),
    Mutation("JSON reader skips the depth limit", SJSON, "if depth > max_depth:", "if False:", JSON),
    Mutation("hex fields accept upper case", SJSON,
             "if not isinstance(value, str) or not _LOWER_HEX.fullmatch(value):",
             "if not isinstance(value, str):", ("tests/utility/test_verification_rules.py", "tests/hub/test_billing_and_exchange.py")),
    Mutation("ECDSA verify accepts high-S when asked not to", ECDSA,
             "if len(signature) != 64 or (low_s and not is_low_s(signature)):",
             "if len(signature) != 64:", RULES),
]


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "src", dst / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", dst / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def run_one(m: Mutation) -> tuple[Mutation, str, float]:
    """Apply one mutation in a temporary copy and run its tests: killed, SURVIVED or STALE."""
    source = (ROOT / m.path).read_text()
    if source.count(m.snippet) != 1:
        return m, f"STALE ({source.count(m.snippet)} matches)", 0.0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="meterhub-mutant-") as tmp:
        dst = Path(tmp)
        _copy_tree(dst)
        (dst / m.path).write_text(source.replace(m.snippet, m.replacement))
        env = dict(os.environ, PYTHONPATH=str(dst / "src"), PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests]
        proc = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=900)
    status = "killed" if proc.returncode != 0 else "SURVIVED"
    if proc.returncode not in (0, 1):  # 2-5: collection or usage errors still kill, but say so
        status = f"killed (pytest exit {proc.returncode})"
    return m, status, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--jobs", type=int, default=2, help="mutants run in parallel (default: 2)")
    ap.add_argument("--only", help="run only mutations whose name contains this text")
    args = ap.parse_args(argv)
    todo = [m for m in MUTATIONS if args.only is None or args.only in m.name]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run_one, todo))
    width = max(len(m.name) for m in todo)
    print(f"{'mutation':<{width}}  {'file':<34}  {'result':<10}  seconds")
    for m, status, secs in results:
        print(f"{m.name:<{width}}  {m.path.removeprefix('src/'):<34}  {status:<10}  {secs:6.1f}")
    bad = [r for r in results if not r[1].startswith("killed")]
    killed = len(results) - len(bad)
    print(f"{killed}/{len(results)} mutants killed, {len(bad)} survived or stale, "
          f"{time.monotonic() - t0:.0f} s with {args.jobs} jobs")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
