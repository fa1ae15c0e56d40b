"""The benchmarks' timing harness (benchmarks/_bench.py): variants alternate, and a
median rests on at least five runs and says how many."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import _bench  # noqa: E402


def test_variants_alternate_and_report_their_run_count() -> None:
    calls: list[str] = []
    r = _bench.alternate({"A": lambda: calls.append("A"), "B": lambda: calls.append("B")}, runs=5, number=2, warmup=1)
    assert calls == ["A", "B"] + ["A", "A", "B", "B"] * 5
    assert r["A"].runs == r["B"].runs == 5 and r["A"].note == "median of 5 runs"
    assert len(r["A"].cpu_times) == 5 and r["A"].median >= 0


def test_fewer_than_five_runs_are_refused_and_single_runs_say_so() -> None:
    with pytest.raises(ValueError):
        _bench.alternate({"A": lambda: None}, runs=4)
    assert _bench.single_run(lambda: None).note == "single run"
