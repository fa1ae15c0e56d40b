"""A short soak of ``utility serve`` (benchmarks/soak_service.py, docs/service.md "Soak"):
a real server process on loopback, honest meter hosts and hostile clients (slow heads,
slow bodies, half-open connections, flooders) in alternating phases. Every honest
request succeeds, the server closes every hostile connection near its deadline, the
flood is refused with problem+json statuses, and memory and descriptors stay bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_soak_with_hostile_clients():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/soak_service.py"), "--duration", "16", "--phases", "4",
         "--clients", "8", "--days", "2", "--slow", "3", "--half-open", "3", "--flooders", "1",
         "--head-timeout", "2", "--body-timeout", "2", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    res = json.loads(r.stdout)
    assert r.returncode == 0 and res["ok"], r.stdout + r.stderr
    assert res["honest_errors"] == 0 and res["honest_requests"] > 100
    # every kind of hostile connection was closed by the server, none long after its deadline
    assert set(res["hostile_closed"]) == {"half-open", "half-open-head", "slow-body", "slow-head"}
    assert all(v["max_s"] < 2 + 3 for v in res["hostile_closed"].values()), res["hostile_closed"]
    assert not res["hostile_overdue"]
    # the flood got its refusals, not crashes: unknown key, declared-too-large, malformed; slow body 408
    assert {"401", "413", "400", "408"} <= set(res["refusals"]) and "500" not in res["refusals"]
    assert res["rss_mib"]["growth"] < 32 and res["fds_max"] < 200
