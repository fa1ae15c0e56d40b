"""End to end: settlement and forecasting in the demo, and the CLI on stored results."""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from meterhub.cli import main
from meterhub.demo import settlement as settlement_demo
from meterhub.demo.system import DemoParams, run_demo


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    params = DemoParams(households=6, days=2, start=date(2027, 3, 22), data_dir=d, business_share=0.5)
    results = run_demo(params)
    assert all(r.verified for r in results)
    return params, settlement_demo.run(params)


def test_settlement_is_exact_and_every_output_verifies(demo_dir):
    _, report = demo_dir
    assert report.all_verified and report.verified == 6
    assert [s.supplier for s in report.suppliers] == list(settlement_demo.SUPPLIERS)
    for s in report.suppliers:
        assert s.value_meterhub == s.value_truth
        assert round(s.kwh_meterhub * 1000) == round(s.kwh_truth * 1000)
        assert s.value_slp != s.value_truth  # today's estimate is not exact
    assert sum(s.share_meterhub for s in report.suppliers) == pytest.approx(1.0)
    assert report.readings_released["exact"] == 0 and report.readings_released["samples"] == 6 * 2
    assert len(report.forecasts) == 3 and report.forecast_from == "2027-03-24"
    text = settlement_demo.format_report(report)
    assert "equals the raw-reading truth to the sub-unit (1e-8 EUR): yes" in text
    # Businesses are matched to their own BDEW profile.
    biz = [c for c in report.customers if c.meter_id.startswith("biz")]
    assert biz and sum(c.class_exact == c.true_class for c in biz) >= len(biz) - 1


def test_cli_acts_on_stored_results(demo_dir, capsys):
    params, _ = demo_dir
    assert main(["utility", "settle", "--data-dir", str(params.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "6 statements verified, 0 rejected" in out and "supplier-a" in out
    assert main(["utility", "forecast", "--data-dir", str(params.data_dir)]) == 0
    assert "6 customers classified" in capsys.readouterr().out


def test_cli_rejects_a_tampered_stored_statement(demo_dir, tmp_path, capsys):
    params, _ = demo_dir
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(params.data_dir, d)
    con = sqlite3.connect(d / "settlement.sqlite")
    mid, body = con.execute("SELECT meter_id, body FROM statements WHERE kind='settlement' LIMIT 1").fetchone()
    doc = json.loads(body)
    doc["value"] += 1
    con.execute("UPDATE statements SET body=? WHERE kind='settlement' AND meter_id=?", (json.dumps(doc).encode(), mid))
    doc2 = json.loads(con.execute("SELECT body FROM statements WHERE kind='scores' LIMIT 1").fetchone()[0])
    doc2["scores"][3]["score"] -= 1
    con.execute("UPDATE statements SET body=? WHERE kind='scores' AND meter_id=?", (json.dumps(doc2).encode(), doc2["meter_id"]))
    con.commit()
    con.close()
    assert main(["utility", "settle", "--data-dir", str(d)]) == 1
    assert f"REJECTED {mid}: sum index_i*C_i" in capsys.readouterr().out
    assert main(["utility", "forecast", "--data-dir", str(d)]) == 1
    assert "profile score does not match" in capsys.readouterr().out
    assert main(["utility", "settle", "--data-dir", str(tmp_path / "nothing")]) == 2


def test_demo_json_includes_settlement_at_hourly_interval(tmp_path, capsys):
    rc = main(["demo", "--households", "2", "--days", "1", "--interval", "60", "--data-dir", str(tmp_path),
               "--json", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    s = out["settlement"]
    assert s["all_verified"] and s["verified"] == 2
    assert {"suppliers", "customers", "forecasts", "readings_released"} <= set(s)


def test_demo_imports_a_price_index_csv(tmp_path, capsys):
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2027, 3, 21, 23, 0, tzinfo=UTC)
    csv = tmp_path / "prices.csv"
    csv.write_text("start,price\n" + "".join(f"{(t0 + timedelta(hours=k)).isoformat()},{40 + k % 24:.2f}\n" for k in range(24)))
    args = ["demo", "--households", "1", "--days", "1", "--start", "2027-03-22", "--business-share", "0",
            "--price-index", str(csv), "--no-progress"]
    assert main(args + ["--data-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "price index csv-day-ahead v1 (1 customers verified, 0 rejected)" in out
    later = [a if a != "2027-03-22" else "2027-03-23" for a in args]
    assert main(later + ["--data-dir", str(tmp_path / "b")]) == 2
    assert "does not cover" in capsys.readouterr().err
