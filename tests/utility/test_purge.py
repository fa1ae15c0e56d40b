"""`meterhub utility purge --meter ID`: one customer's data leaves every utility store;
other customers' data stays and still verifies."""

from __future__ import annotations

import sqlite3

from meterhub.cli import main


def _run_verify(d, mid: str) -> int:
    m = d / mid
    return main(["utility", "verify", "--meter", str(m / f"{mid}.meter.json"), "--uploads", str(m / f"{mid}.uploads.jsonl"),
                 "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub"), "--statement", str(d / f"{mid}.st.json"),
                 "--data-dir", str(d / "util")])


def test_purge_erases_one_meter_and_keeps_the_others(tmp_path, capsys):
    d = tmp_path
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    for mid in ("m1", "m2"):
        assert main(["meter", "simulate", "--meter-id", mid, "--days", "2", "--start", "2027-06-01", "--out", str(d / mid)]) == 0
        assert main(["hub", "bill", "--meter", str(d / mid / f"{mid}.meter.json"), "--key", str(d / mid / f"{mid}.homelink.key"),
                     "--homelink", str(d / mid / f"{mid}.homelink.jsonl"), "--tariff", str(d / "t.json"),
                     "--supplier-key", str(d / "sup.pub"), "--from", "2027-06-01", "--to", "2027-06-02",
                     "--out", str(d / f"{mid}.st.json"), "--data-dir", str(d / "hub" / mid)]) == 0
        assert _run_verify(d, mid) == 0
    capsys.readouterr()
    assert main(["utility", "purge", "--meter", "m1", "--data-dir", str(d / "util")]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("purged meter m1: utility.sqlite ") and " 0 rows" not in out
    conn = sqlite3.connect(d / "util" / "utility.sqlite")
    for table in ("meters", "days", "bills", "rejected_uploads"):
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE meter_id='m1'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM days WHERE meter_id='m2'").fetchone()[0] == 2
    conn.close()
    # secure_delete: the purged meter's commitments are not left in the file's free pages.
    m1_c33 = bytes.fromhex((d / "m1" / "m1.uploads.jsonl").read_text().splitlines()[0].split('"records":"')[1][16:82])
    assert m1_c33 not in (d / "util" / "utility.sqlite").read_bytes()
    # Idempotent, and the other customer still verifies.
    assert main(["utility", "purge", "--meter", "m1", "--data-dir", str(d / "util")]) == 0
    assert "utility.sqlite 0 rows" in capsys.readouterr().out
    assert main(["utility", "bills", "--data-dir", str(d / "util")]) == 0
    assert main(["utility", "purge", "--meter", "m1", "--data-dir", str(d / "nowhere")]) == 2
