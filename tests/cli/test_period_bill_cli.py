"""`meterhub utility period-bill`: a day missing then delivered late, through the CLI, with
the estimate, the correction and the exports visible."""

from __future__ import annotations

import csv
import io
import json

from meterhub.cli import main

MALO = "51238696781"


def test_period_bill_estimate_then_correction(tmp_path, capsys):
    d = tmp_path
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "5", "--start", "2027-06-07", "--out", str(d / "meter")]) == 0
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    m = d / "meter"
    for a, b in (("07", "08"), ("10", "11"), ("09", "09")):
        assert main(["hub", "bill", "--meter", str(m / "m1.meter.json"), "--key", str(m / "m1.homelink.key"),
                     "--homelink", str(m / "m1.homelink.jsonl"), "--tariff", str(d / "t.json"),
                     "--supplier-key", str(d / "sup.pub"), "--from", f"2027-06-{a}", "--to", f"2027-06-{b}",
                     "--metering-point", MALO, "--contract", "VK-1", "--out", str(d / f"st{a}.json"),
                     "--data-dir", str(d / f"hub{a}")]) == 0
    lines = (m / "m1.uploads.jsonl").read_text().splitlines(keepends=True)
    (d / "up12").write_text("".join(lines[0:2]))
    (d / "up3").write_text(lines[2])
    (d / "up45").write_text("".join(lines[3:5]))
    assert main(["utility", "verify", "--meter", str(m / "m1.meter.json"), "--uploads", str(d / "up12"),
                 "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub"),
                 "--statement", str(d / "st07.json"), "--data-dir", str(d / "u")]) == 0
    capsys.readouterr()
    base = ["utility", "period-bill", "--meter-id", "m1", "--metering-point", MALO, "--contract", "VK-1",
            "--from", "2027-06-07", "--to", "2027-06-11", "--data-dir", str(d / "u")]
    st = ["--statement", str(d / "st07.json"), "--statement", str(d / "st10.json")]
    assert main([*base, *st, "--uploads", str(d / "up45")]) == 0
    out = capsys.readouterr().out
    assert "v1: estimated" in out and "2027-06-09..2027-06-09 by register-interpolation" in out
    assert main([*base, *st, "--statement", str(d / "st09.json"), "--uploads", str(d / "up3"),
                 "--export-csv", str(d / "b.csv"), "--export-json", str(d / "b.json")]) == 0
    out = capsys.readouterr().out
    assert "v2: verified" in out and "; corrects v1 (estimated): +0.000 kWh, " in out
    rows = list(csv.DictReader(io.StringIO((d / "b.csv").read_text())))
    assert {r["status"] for r in rows} == {"estimated", "verified"}
    assert [b["version"] for b in json.loads((d / "b.json").read_text())["bills"]] == [1, 2]
    # An estimate never supersedes the verified version; a forged statement is rejected.
    assert main([*base, "--statement", str(d / "st09.json")]) == 1
    assert "an estimate does not supersede it" in capsys.readouterr().out
    forged = json.loads((d / "st09.json").read_text())
    forged["total"] += 1
    (d / "f.json").write_text(json.dumps(forged))
    assert main([*base, "--statement", str(d / "f.json")]) == 1
    assert "REJECTED: total is not energy charge plus standing charge" in capsys.readouterr().out
