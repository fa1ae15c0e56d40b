"""End to end: the demo's bills verify and equal the bills recomputed from raw readings;
a run that is interrupted resumes without losing or duplicating anything (killed runs:
tests/test_crash_kill.py)."""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from meterhub.cli import main
from meterhub.demo.system import DemoError, DemoParams, run_demo


def test_demo_bills_verify_and_match_raw_readings(tmp_path):
    params = DemoParams(households=3, days=4, start=date(2027, 10, 29), data_dir=tmp_path / "d")
    results = run_demo(params)
    assert len(results) == 3
    for r in results:
        assert r.verified, r.reason
        assert r.bill == r.bill_from_readings
        assert r.kwh > 0


def test_demo_json_summary(tmp_path, capsys):
    rc = main(["demo", "--households", "2", "--days", "2", "--data-dir", str(tmp_path), "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["all_verified"] and out["all_exact"]
    assert {"meter_id", "bill", "bill_from_readings", "verified"} <= set(out["households"][0])
    assert out["params"]["households"] == 2


def test_demo_other_intervals(tmp_path):
    for interval in (5, 60):
        params = DemoParams(households=1, days=1, interval_minutes=interval, data_dir=tmp_path / str(interval))
        (r,) = run_demo(params)
        assert r.verified and r.bill == r.bill_from_readings


def test_interrupted_run_resumes_without_loss(tmp_path):
    params = DemoParams(households=2, days=3, data_dir=tmp_path)
    calls = []

    def stop_midway(done, total):
        calls.append(done)
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(params, progress=stop_midway)
    con = sqlite3.connect(tmp_path / "meter.sqlite")
    recorded = con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    con.close()
    assert recorded == 4
    results = run_demo(params)
    assert all(r.verified and r.bill == r.bill_from_readings for r in results)
    con = sqlite3.connect(tmp_path / "utility.sqlite")
    assert con.execute("SELECT COUNT(*) FROM days").fetchone()[0] == 6
    assert con.execute("SELECT COUNT(*) FROM rejected_uploads").fetchone()[0] == 0
    con.close()


def test_resume_with_other_parameters_is_refused(tmp_path):
    run_demo(DemoParams(households=1, days=1, data_dir=tmp_path))
    with pytest.raises(DemoError, match="other parameters"):
        run_demo(DemoParams(households=1, days=1, seed=99, data_dir=tmp_path))


def test_demo_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["demo", "--interval", "7", "--data-dir", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "interval" in err and len(err.strip().splitlines()) == 1
    assert main(["demo", "--start", "2026-01-01", "--data-dir", str(tmp_path / "x"), "--no-progress"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--households", "zero"])
    assert exc.value.code == 2
