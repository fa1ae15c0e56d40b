"""`meterhub hub policy show|set` and `meterhub hub releases` on a provisioned hub card."""

from __future__ import annotations

import json

from helpers import SettlementHub as Hub
from helpers import make_history, signed_index
from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import SETTLEMENT_APP_AID, customer_key_path
from meterhub.utility.settlement import settlement_request


def _hub(tmp_path):
    h = make_history(n_days=2, seed=95)
    hub = Hub(tmp_path / "hub.sqlite", h)
    idx = signed_index(h)
    hub.mailbox("supplier", SETTLEMENT_APP_AID).push_series(idx)
    hub.feed()
    hub.mailbox("supplier", SETTLEMENT_APP_AID).request(
        settlement_request(h.start, hub.last, idx.series.series_id, 1), "settlement")
    hub.card.close()
    return h, str(tmp_path / "hub.sqlite")


def test_policy_show_set_and_releases(tmp_path, capsys):
    h, card = _hub(tmp_path)
    assert main(["hub", "policy", "show", "--card", card]) == 0
    out = capsys.readouterr().out
    assert "release policy v1" in out and "min_k=100" in out and "tariff/supplier" in out
    assert main(["hub", "policy", "show", "--card", card, "--json"]) == 0
    pol = json.loads(capsys.readouterr().out)
    pol["version"] = 2
    pol["sampling"]["min_k"] = 200
    (tmp_path / "p.json").write_text(json.dumps(pol))
    key = str(customer_key_path(card))
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "p.json"), "--key", key]) == 0
    assert "v2 set" in capsys.readouterr().out
    assert main(["hub", "releases", "--card", card, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "settlement" in out and "3 entries" in out and "release log verified" in out
    assert main(["hub", "releases", "--card", card, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["kind"] for e in doc["entries"]] == ["policy", "settlement", "policy"]


def test_policy_set_refusals_are_one_line(tmp_path, capsys):
    h, card = _hub(tmp_path)
    assert main(["hub", "policy", "show", "--card", card, "--json"]) == 0
    pol = json.loads(capsys.readouterr().out)
    pol["version"] = 2
    pol["sampling"]["min_k"] = 1  # below the hard limit
    (tmp_path / "low.json").write_text(json.dumps(pol))
    key = str(customer_key_path(card))
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "low.json"), "--key", key]) == 2
    err = capsys.readouterr().err
    assert "hard limit" in err and err.count("\n") == 1
    pol["sampling"]["min_k"] = 100
    (tmp_path / "ok.json").write_text(json.dumps(pol))
    other = tmp_path / "other.pem"
    other.write_bytes(ecdsa.signing_key_pem(ecdsa.generate_signing_key()))
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "ok.json"), "--key", str(other)]) == 1
    assert "REJECTED" in capsys.readouterr().out
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "ok.json")]) == 2
    assert "--key" in capsys.readouterr().err
    assert main(["hub", "releases", "--card", str(tmp_path / "nope.sqlite")]) == 2
    assert "no hub card" in capsys.readouterr().err


def test_demo_json_has_a_privacy_section(tmp_path, capsys):
    args = ["demo", "--households", "2", "--days", "2", "--data-dir", str(tmp_path), "--json", "--no-progress"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    p = doc["privacy"]
    assert p["hubs"] == p["logs_verified"] == 2 and p["min_k"] == 100
    rec = p["recipients"]
    assert rec["supplier"]["releases"] == {"bill": 2, "settlement": 2}
    # the demo customers allow 24 functionals (demo.DEMO_BUDGET: forecasting and suspect profiles)
    assert rec["supplier"]["max_functionals_per_period"] == 3 and rec["supplier"]["budget"] == 24
    assert rec["grid-operator"]["releases"] == {"samples": 2, "scores": 2}
    assert rec["grid-operator"]["max_functionals_per_period"] == 14
    assert rec["grid-operator"]["samples"] == sum(c["samples"] for c in doc["settlement"]["customers"])
    assert rec["third-party"]["releases"] == {} and rec["third-party"]["entitled"] == []
    # Per period: what was released in it, against the budget.
    (period,) = rec["supplier"]["periods"].items()
    assert period[1]["releases"] == {"bill": 2, "settlement": 2}
    assert period[1]["functionals"] == 3 and period[1]["budget_left"] == 24 - 3
    assert rec["third-party"]["periods"] == {}
    # A second run resumes: the same bills, and re-asks release nothing new.
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert [h["bill"] for h in again["households"]] == [h["bill"] for h in doc["households"]]
    assert again["privacy"]["recipients"] == rec


def test_consent_grant_and_revoke(tmp_path, capsys):
    h, card = _hub(tmp_path)
    key = str(customer_key_path(card))
    base = ["hub", "consent", "grant", "--card", card, "--key", key, "--id", "c1", "--recipient", "third-party",
            "--purpose", "energy advice", "--from", h.start.isoformat(), "--to", h.start.isoformat(),
            "--expires", "2027-12-31"]
    assert main(base) == 0
    assert "third-party may export" in capsys.readouterr().out
    assert main(base) == 1  # the same id again
    assert "REJECTED" in capsys.readouterr().out
    assert main(base[:-2] + ["--expires", "2000-01-01"]) == 2  # expires before the period
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["hub", "consent", "revoke", "--card", card, "--key", key, "--id", "c1"]) == 0
    assert main(["hub", "releases", "--card", card, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "consent" in out and "revoke" in out


def test_home_link_key_file_is_owner_only(tmp_path):
    import os

    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--out", str(tmp_path)]) == 0
    assert os.stat(tmp_path / "m1.homelink.key").st_mode & 0o777 == 0o600
