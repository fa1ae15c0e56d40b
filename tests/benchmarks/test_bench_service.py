"""The service benchmark's ingest part runs end to end on a small store: its baseline
(the old per-day path, written out in the benchmark) imports the store's helpers from
where they live, so a move inside utility/ breaks this test, not a benchmark run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_service  # noqa: E402


def test_ingest_part_runs_and_compares_with_the_old_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench_service.bench_ingest(2, 2, 5, tmp_path, None)
    out = capsys.readouterr().out
    for label in ("ingest sqlite batched", "ingest sqlite old path", "ingest sqlite one commit per day"):
        assert label in out
    assert "vs old path" in out
