"""The per-party commands and their exit codes (0 verified, 1 rejected, 2 usage error)."""

from __future__ import annotations

import json

import pytest

from meterhub.cli import main


@pytest.fixture()
def party_files(tmp_path):
    d = tmp_path
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "2", "--start", "2027-06-01", "--out", str(d / "meter")]) == 0
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    m = d / "meter"
    args = ["--meter", str(m / "m1.meter.json"), "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub")]
    assert main(["hub", "bill", *args, "--key", str(m / "m1.homelink.key"), "--homelink", str(m / "m1.homelink.jsonl"),
                 "--from", "2027-06-01", "--to", "2027-06-02", "--out", str(d / "st.json"), "--data-dir", str(d / "hub")]) == 0
    verify = ["utility", "verify", *args, "--uploads", str(m / "m1.uploads.jsonl"), "--data-dir", str(d / "util")]
    return d, verify


def test_honest_statement_verifies(party_files, capsys):
    d, verify = party_files
    assert main([*verify, "--statement", str(d / "st.json")]) == 0
    assert "VERIFIED m1" in capsys.readouterr().out
    assert main(["utility", "bills", "--data-dir", str(d / "util")]) == 0


@pytest.mark.parametrize(
    "field,delta", [("energy_charge", 1), ("energy_charge", -1), ("blinding", None), ("tariff_version", 1)]
)
def test_tampered_statement_exits_1(party_files, capsys, field, delta):
    d, verify = party_files
    st = json.loads((d / "st.json").read_text())
    if field == "blinding":
        st["blinding"] = (int(st["blinding"], 16) ^ 1).to_bytes(32, "big").hex()
    else:
        st[field] += delta
        if field == "energy_charge":
            st["total"] += delta
    (d / "bad.json").write_text(json.dumps(st))
    assert main([*verify, "--statement", str(d / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("REJECTED") and len(out.strip().splitlines()) == 1


def test_tampered_upload_exits_1(party_files, capsys):
    d, verify = party_files
    lines = (d / "meter" / "m1.uploads.jsonl").read_text().splitlines()
    o = json.loads(lines[1])
    o["records"] = o["records"][:100] + ("0" if o["records"][100] != "0" else "1") + o["records"][101:]
    lines[1] = json.dumps(o)
    (d / "bad.jsonl").write_text("\n".join(lines))
    verify = [a if not a.endswith("m1.uploads.jsonl") else str(d / "bad.jsonl") for a in verify]
    assert main([*verify, "--statement", str(d / "st.json")]) == 1
    assert "REJECTED" in capsys.readouterr().out


def test_malformed_statement_exits_1_and_missing_file_exits_2(party_files, capsys):
    d, verify = party_files
    (d / "junk.json").write_text("{not json")
    assert main([*verify, "--statement", str(d / "junk.json")]) == 1
    assert main([*verify, "--statement", str(d / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot read bill statement" in err and "Traceback" not in err


def test_usage_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["utility", "verify"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["meter", "simulate", "--meter-id", "x", "--out", str(tmp_path), "--start", "yesterday"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not an ISO date" in err
    assert main(["meter", "simulate", "--meter-id", "x", "--out", str(tmp_path), "--interval", "7"]) == 2
    assert main(["tariff", "check", str(tmp_path / "none.json")]) == 2
    (tmp_path / "t.json").write_text('{"tariff": 1}')
    assert main(["tariff", "check", str(tmp_path / "t.json")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


def test_meter_simulate_from_csv_and_resume(tmp_path, capsys):
    from meterhub.model.timebase import range_starts

    starts = range_starts(__import__("datetime").date(2027, 6, 1), 2, "Europe/Berlin", 15)
    rows = ["timestamp,Wh"] + [f"{s.isoformat().replace('+00:00', 'Z')},{k % 50}" for k, s in enumerate(starts)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "m"
    assert main(["meter", "simulate", "--meter-id", "c1", "--csv", str(tmp_path / "r.csv"), "--out", str(out)]) == 0
    assert "recorded 2 new day(s)" in capsys.readouterr().out
    assert main(["meter", "simulate", "--meter-id", "c1", "--csv", str(tmp_path / "r.csv"), "--out", str(out)]) == 0
    assert "recorded 0 new day(s)" in capsys.readouterr().out
    assert len((out / "c1.uploads.jsonl").read_text().splitlines()) == 2
    (tmp_path / "bad.csv").write_text("timestamp,Wh\n2027-06-01T00:00:00Z,-5\n")
    assert main(["meter", "simulate", "--meter-id", "c2", "--csv", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2


def test_bad_data_dirs_and_keys_are_one_line_errors(tmp_path, capsys, party_files):
    d, verify = party_files
    garbage = tmp_path / "g"
    garbage.mkdir()
    (garbage / "utility.sqlite").write_bytes(b"garbage, not a database" * 10)
    assert main(["utility", "bills", "--data-dir", str(garbage)]) == 2
    (tmp_path / "short.key").write_text("0011\n")
    m = d / "meter"
    args = ["--meter", str(m / "m1.meter.json"), "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub")]
    assert main(["hub", "bill", *args, "--key", str(tmp_path / "short.key"), "--homelink", str(m / "m1.homelink.jsonl"),
                 "--from", "2027-06-01", "--to", "2027-06-02", "--data-dir", str(tmp_path / "hub")]) == 2
    assert main(["meter", "simulate", "--meter-id", "x", "--days", "1", "--out", "/dev/null/x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 3
    with pytest.raises(SystemExit) as e:
        main(["demo", "--business-share", "2"])
    assert e.value.code == 2
