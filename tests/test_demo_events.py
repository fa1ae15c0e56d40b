"""`meterhub demo --events`: the daily-operations scenario in the demo's output and JSON."""

from __future__ import annotations

import json

from meterhub.cli import main
from meterhub.demo.events import run_events


def test_events_scenario_is_verified_with_estimate_and_correction():
    ev = run_events(7)
    assert ev["all_verified"] and ev["vacant"] == []
    first = ev["segments"][0]["bills"]
    assert [(b["version"], b["status"]) for b in first] == [(1, "estimated"), (2, "verified")]
    assert first[0]["estimates"][0]["method"] == "register-interpolation"
    assert first[0]["estimates"][0]["period_from"] == ev["lost_day"] == "2027-06-05"
    assert ev["correction"]["energy_wh"] == 0  # the signed registers make the estimate's kWh exact
    assert ev["correction"]["total"] == first[1]["total"] - first[0]["total"]
    segs = [(s["supplier"], s["bills"][-1]["period_from"], s["bills"][-1]["tariff_version"]) for s in ev["segments"]]
    assert segs == [("alpha", "2027-06-01", 1), ("alpha", "2027-06-10", 2), ("beta", "2027-06-17", 1)]
    assert sum(s["bills"][-1]["energy_wh"] for s in ev["segments"]) == ev["readings_wh"]
    assert ev["segments_per_supplier"] == {"alpha": 2, "beta": 1}
    # Released through the card: the correction names the release it corrects.
    assert ev["through_card"] and ev["correction"]["corrects_release"] > 0


def test_demo_events_in_text_and_json(tmp_path, capsys):
    args = ["demo", "--households", "1", "--days", "2", "--no-progress", "--events"]
    assert main([*args, "--data-dir", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "Daily operations (metering point 51238696781" in out and "correction of the estimate" in out
    assert main([*args, "--data-dir", str(tmp_path / "b"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["events"]["all_verified"] and len(doc["events"]["segments"]) == 3
