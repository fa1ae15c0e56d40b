"""The benchmark-data generator (benchmarks/month_data.py): its cheap commitments are
genuine Pedersen commitments to the readings with the stated blinding factors, and what it
generates verifies as a meter's own data does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import month_data  # noqa: E402
from meterhub.crypto.group import H, PointArray, Q  # noqa: E402
from meterhub.crypto.pedersen import commit  # noqa: E402
from meterhub.utility.store import UtilityStore  # noqa: E402


def test_commitments_open_to_the_readings_and_the_stated_blinding() -> None:
    n = 96
    pools = month_data._Pools(n, [1] * n)
    m = np.arange(n) * 9 % (month_data.MAX_WH + 1)
    perm = np.random.default_rng(5).permutation(n)
    u = 123456789
    c33 = pools.commitments(m, PointArray.from_points([H * u]), perm)
    for i in (0, 1, 47, 95):
        r = (pools.s0 + u + pools.s[i] + pools.t[int(perm[i])]) % Q
        assert c33[33 * i : 33 * (i + 1)] == commit(int(m[i]), r)[0].to_bytes()
    assert len({c33[33 * i : 33 * (i + 1)] for i in range(n)}) == n


def test_generated_customers_verify_and_are_distinct(tmp_path) -> None:
    db = tmp_path / "month.sqlite"
    month_data.generate(db, customers=3, days=2, procs=1, log=lambda _: None)
    u = UtilityStore(db)
    try:
        assert u.verify_pending() == (3, 0)
        keys = [bytes(r[0]) for r in u.conn.execute("SELECT public_key FROM meters")]
        assert len(set(keys)) == 3
        days = u.conn.execute("SELECT c33, signature FROM days").fetchall()
        assert len(days) == 6 and len({bytes(c) for c, _ in days}) == 6 and len({bytes(s) for _, s in days}) == 6
    finally:
        u.close()
    assert month_data.tampered(2000) == {
        "c0000111": "energy", "c0000444": "blinding", "c0000777": "day",
        "c0001111": "energy", "c0001444": "blinding", "c0001777": "day",
    }
