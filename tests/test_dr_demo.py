"""The demo's demand-response section end to end, and `meterhub utility dr`."""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from meterhub.cli import main
from meterhub.demo import dr as dr_demo
from meterhub.demo import settlement as settlement_demo
from meterhub.demo.system import DemoParams, run_demo


@pytest.fixture(scope="module")
def dr_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("drdemo")
    params = DemoParams(households=3, days=21, start=date(2027, 4, 5), data_dir=d, business_share=0.0)
    results = run_demo(params)
    assert all(r.verified for r in results)
    return params, dr_demo.run(params)


def test_events_sent_opted_in_verified_and_paid(dr_run):
    params, r = dr_run
    assert [e.sent for e in r.events] == [3, 3] and [e.answered for e in r.events] == [3, 3]
    assert [e.event_id for e in r.events] == ["dr-2027-04-21-2027", "dr-2027-04-23-2027"]
    opted = sum(e.opt_ins for e in r.events)
    assert opted >= 1 and r.verified == opted and r.all_verified
    for e in r.events:
        rows = [c for c in r.customers if c.event_id == e.event_id and c.opted_in]
        assert e.verified_total_wh == pytest.approx(sum(c.verified_wh for c in rows))
        assert e.payments_eur == pytest.approx(sum(c.payment_eur for c in rows), abs=1e-6)
        assert sum(e.per_feeder_wh.values()) == pytest.approx(e.verified_total_wh)
    # households that opted out measured their counterfactual
    assert all(c.true_wh == 0 for c in r.customers if not c.opted_in)
    assert any(c.true_wh > 0 for c in r.customers if c.opted_in)
    assert "releases verified, 0 rejected" in dr_demo.format_report(r)
    doc = json.loads(json.dumps(r.to_dict()))  # what `meterhub demo --json` prints
    assert doc["all_verified"] and len(doc["events"]) == 2 and "baseline_mae_pct" in doc
    # PJM on the same windows, from the measured readings: a real error, not a copy of CAISO's
    assert doc["pjm_mae_pct"] > 0 and (doc["pjm_mae_pct"], doc["pjm_bias_pct"]) != (
        doc["baseline_mae_pct"], doc["baseline_bias_pct"])
    assert "PJM High 4 of 5 on the same windows" in dr_demo.format_report(r)


def test_settlement_still_equals_the_measured_truth(dr_run):
    params, _ = dr_run
    rep = settlement_demo.run(params)
    assert all(s.value_meterhub == s.value_truth for s in rep.suppliers)


def test_utility_dr_reverifies_and_rejects_tampering(dr_run, capsys, tmp_path):
    import shutil

    params, r = dr_run
    assert main(["utility", "dr", "--data-dir", str(params.data_dir)]) == 0
    assert f"{r.verified} releases verified, 0 rejected" in capsys.readouterr().out
    d = tmp_path / "copy"
    shutil.copytree(params.data_dir, d)
    con = sqlite3.connect(d / "dr.sqlite")
    mid, eid, raw = con.execute("SELECT meter_id, event_id, raw FROM releases LIMIT 1").fetchone()
    bad = bytearray(raw)
    bad[-200] ^= 1  # inside the proof or the opening
    con.execute("UPDATE releases SET raw=? WHERE meter_id=? AND event_id=?", (bytes(bad), mid, eid))
    con.commit()
    con.close()
    assert main(["utility", "dr", "--data-dir", str(d)]) == 1
    assert "REJECTED" in capsys.readouterr().out
    assert main(["utility", "dr", "--data-dir", str(tmp_path / "none")]) == 2


class Killed(Exception):
    """Stands in for a kill at one point of the run."""


def test_interrupted_runs_resume_to_the_uninterrupted_report(dr_run, tmp_path, monkeypatch):
    """Kills while the plan is stored, while events reach the hubs and while releases
    are collected: each resumed run reuses what was announced (the exchange runs once)
    and the report equals the uninterrupted one."""
    params, reference = dr_run
    p = DemoParams(households=params.households, days=params.days, start=params.start, data_dir=tmp_path / "d",
                   business_share=params.business_share)
    exchanges = []
    real_exchange = dr_demo.run_exchange
    monkeypatch.setattr(dr_demo, "run_exchange", lambda *a, **k: exchanges.append(1) or real_exchange(*a, **k))

    def torn_save(self, *a, **k):  # the tables exist, the plan does not
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(dr_demo.DRStore, "save_plan", torn_save)
        with pytest.raises(Killed):
            run_demo(p)
    assert (p.data_dir / "dr.sqlite").exists()
    real_attach, calls = dr_demo.attach, []

    def attach_then_die(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_attach(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(dr_demo, "attach", attach_then_die)
        with pytest.raises(Killed):
            run_demo(p)
    assert len(exchanges) == 2  # announced again only because the first plan was torn
    assert all(r.verified for r in run_demo(p))
    assert len(exchanges) == 2  # a stored plan is reused
    real_collect, got = dr_demo._collect, []

    def collect_then_die(*a, **k):
        got.append(real_collect(*a, **k))
        if len(got) == 1:
            raise Killed
        return got[-1]

    with monkeypatch.context() as m:
        m.setattr(dr_demo, "_collect", collect_then_die)
        with pytest.raises(Killed):
            dr_demo.run(p)
    assert dr_demo.run(p).to_dict() == reference.to_dict()
