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


def test_every_timed_call_starts_with_the_verifiers_caches_empty() -> None:
    """A timed verification must decode its points and check its signatures itself:
    the verifier's caches (kept across calls in a service) are emptied before each
    timed call, unless a benchmark asks for warm caches."""
    from meterhub.utility import verifier

    seen: list[int] = []

    def remember_and_look() -> None:
        seen.append(len(verifier._VERIFIED_SIGS))
        verifier._VERIFIED_SIGS[(b"key", b"message", b"signature")] = None

    _bench.alternate({"verify": remember_and_look}, runs=5, number=2, warmup=0)
    assert seen == [0] * 10
    _bench.single_run(remember_and_look)
    assert seen[-1] == 0
    seen.clear()
    _bench.alternate({"verify": remember_and_look}, runs=5, warmup=0, cold=False)
    assert seen == [1] * 5
    verifier.clear_shared_caches()
