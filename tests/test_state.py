"""The data directory's state: reproducible demo runs, resume checks, failed commands that
leave nothing behind, lost or corrupt stores reported as errors, and the lock
(docs/operations.md)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.cli import main
from meterhub.demo.system import DemoParams, DemoRandom, run_demo
from meterhub.storage.sqlite import MANIFEST, StoreError, data_dir_lock, open_db

DEMO = ["demo", "--households", "2", "--days", "2", "--no-progress", "--json"]


def _demo(capsys, data_dir: Path, *extra: str) -> tuple[int, str, str]:
    rc = main([*DEMO, "--data-dir", str(data_dir), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meterhub: error:"), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """A finished demo data directory and its --json output (copy before damaging)."""
    d = tmp_path_factory.mktemp("demo") / "data"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main([*DEMO, "--data-dir", str(d)])
    assert rc == 0
    return d, buf.getvalue()


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(finished[0], d)
    return d


# -- reproducibility ------------------------------------------------------------------
def test_two_fresh_runs_with_one_seed_print_the_same(finished, tmp_path, capsys):
    rc, out, _ = _demo(capsys, tmp_path / "again")
    assert rc == 0
    assert out == finished[1]
    doc = json.loads(out)
    assert doc["settlement"]["readings_released"]["samples"] > 0  # sampling is in the output


def test_the_seeded_source_is_a_parameter(tmp_path):
    """Another injected source tosses another coin: the samples come from it."""
    from meterhub.utility.settlement import SettlementStore

    p1 = DemoParams(households=1, days=1, data_dir=tmp_path / "a")
    p2 = DemoParams(households=1, days=1, data_dir=tmp_path / "b")
    run_demo(p1)
    run_demo(p2, rng=DemoRandom(12345))
    coins = []
    for p in (p1, p2):
        s = SettlementStore(p.data_dir / "settlement.sqlite")
        coins.append(s.coin("hh-0000", p.start, p.start))
        s.close()
    assert coins[0] is not None and coins[1] is not None
    assert coins[0][1] == DemoRandom(p1.seed).utility_nonce("hh-0000", p1.start, p1.start)
    assert coins[0][1] != coins[1][1] and coins[0][3] != coins[1][3]


# -- resume checks every parameter --------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [
        ["--households", "3"],
        ["--days", "3"],
        ["--interval", "30"],
        ["--seed", "7"],
        ["--start", "2027-04-01"],
        ["--business-share", "0.9"],
        ["--thieves", "0"],  # the fraud section's output depends on it
    ],
)
def test_resume_with_another_parameter_is_refused(copy, capsys, extra):
    opts = {"--households": "2", "--days": "2", "--data-dir": str(copy)}
    opts[extra[0]] = extra[1]
    before = (copy / "demo.json").read_bytes()
    rc = main(["demo", "--no-progress", "--json", *(x for kv in opts.items() for x in kv)])
    _, err = capsys.readouterr()
    assert rc == 2
    _one_line_error(err)
    assert "other parameters" in err and extra[0].lstrip("-").split("-")[0] in err.replace("_", "-")
    assert (copy / "demo.json").read_bytes() == before


def test_resume_with_another_price_index_is_refused(copy, tmp_path, capsys):
    """A valid CSV index for the period, where the first run used the example index;
    then the same file name with other prices."""
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2027, 3, 14, 23, 0, tzinfo=UTC)
    csv = tmp_path / "prices.csv"
    csv.write_text("start,price\n" + "".join(f"{(t0 + timedelta(hours=k)).isoformat()},{40 + k % 24:.2f}\n"
                                             for k in range(48)))
    rc, _, err = _demo(capsys, copy, "--price-index", str(csv))
    assert rc == 2
    _one_line_error(err)
    assert "price_index_csv None" in err
    d = tmp_path / "with-csv"
    rc, _, err = _demo(capsys, d, "--price-index", str(csv))
    assert rc == 0, err
    csv.write_text(csv.read_text().replace(",41.00", ",99.00"))
    rc, _, err = _demo(capsys, d, "--price-index", str(csv))
    assert rc == 2
    _one_line_error(err)
    assert "sha256" in err


# -- failed commands leave nothing behind -----------------------------------------------------
def test_negative_seed_is_refused_and_leaves_no_state(tmp_path, capsys):
    d = tmp_path / "d"
    rc, _, err = _demo(capsys, d, "--seed", "-1")
    assert rc == 2
    _one_line_error(err)
    assert not d.exists()
    rc, out, _ = _demo(capsys, d, "--seed", "1")
    assert rc == 0 and json.loads(out)["all_verified"]


def test_meter_simulate_with_a_bad_zone_saves_nothing(tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--tz", "Mars/Olympus", "--out", str(out)])
    _, err = capsys.readouterr()
    assert rc == 2
    _one_line_error(err)
    assert "Mars/Olympus" in err
    assert not out.exists()
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "1", "--tz", "Europe/Vienna", "--out", str(out)]) == 0
    reg = json.loads((out / "m1.meter.json").read_text())
    assert reg["tz"] == "Europe/Vienna"


def test_meter_simulate_records_no_day_of_an_incomplete_csv(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    rows = [f"2027-06-01T{h:02d}:00:00+02:00,{100 + h}" for h in range(24)]
    rows += [f"2027-06-02T{h:02d}:00:00+02:00,{100 + h}" for h in range(12)]  # half a day
    csv.write_text("timestamp,Wh\n" + "\n".join(rows) + "\n")
    out = tmp_path / "m"
    rc = main(["meter", "simulate", "--meter-id", "m1", "--interval", "60", "--csv", str(csv), "--out", str(out)])
    _, err = capsys.readouterr()
    assert rc == 2
    _one_line_error(err)
    con = sqlite3.connect(f"file:{out / 'meter.sqlite'}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
    finally:
        con.close()


def test_hub_bill_with_a_wrong_key_does_not_poison_the_hub(tmp_path, capsys):
    m = tmp_path / "m"
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "2", "--out", str(m)]) == 0
    assert main(["tariff", "example", "--out", str(tmp_path / "t.json"), "--key-out", str(tmp_path / "s.key")]) == 0
    wrong = tmp_path / "wrong.key"
    wrong.write_text("00" * 16 + "\n")
    hub = tmp_path / "hub"
    common = ["hub", "bill", "--meter", str(m / "m1.meter.json"), "--homelink", str(m / "m1.homelink.jsonl"),
              "--tariff", str(tmp_path / "t.json"), "--supplier-key", str(tmp_path / "s.key"),
              "--from", "2027-03-15", "--to", "2027-03-16", "--data-dir", str(hub), "--out", str(tmp_path / "b.json")]
    capsys.readouterr()
    assert main([*common, "--key", str(wrong)]) == 2
    _one_line_error(capsys.readouterr().err)
    assert main([*common, "--key", str(m / "m1.homelink.key")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["meter_id"] == "m1"
    # Now paired: another key is refused in one line, and the right one still works.
    assert main([*common, "--key", str(wrong)]) == 2
    _one_line_error(capsys.readouterr().err)
    assert main([*common, "--key", str(m / "m1.homelink.key")]) == 0


# -- lost or corrupt stores ----------------------------------------------------------------
def _exec(path: Path, sql: str) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute(sql)
        con.commit()
    finally:
        con.close()


def test_emptied_settlement_statements_are_an_error(copy, capsys):
    _exec(copy / "settlement.sqlite", "DELETE FROM statements")
    rc = main(["utility", "settle", "--data-dir", str(copy)])
    out, err = capsys.readouterr()
    assert rc != 0 and "0 statements verified" not in out
    _one_line_error(err)


def test_truncated_settlement_store_is_an_error(copy, capsys):
    (copy / "settlement.sqlite").write_bytes(b"")
    for cmd in ("settle", "forecast"):
        rc = main(["utility", cmd, "--data-dir", str(copy)])
        out, err = capsys.readouterr()
        assert rc == 2 and out == ""
        _one_line_error(err)


def test_empty_customer_table_is_not_supplier_unknown(copy, capsys):
    _exec(copy / "settlement.sqlite", "DELETE FROM customers")
    rc = main(["utility", "settle", "--data-dir", str(copy)])
    out, _ = capsys.readouterr()
    assert rc == 1
    assert "unknown" not in out.split("REJECTED")[0]
    assert "no customer record" in out


def test_empty_coin_toss_table_does_not_skip_sample_verification(copy, capsys):
    assert main(["utility", "forecast", "--data-dir", str(copy)]) == 0
    capsys.readouterr()
    _exec(copy / "settlement.sqlite", "DELETE FROM coin_toss")
    rc = main(["utility", "forecast", "--data-dir", str(copy)])
    out, _ = capsys.readouterr()
    assert rc == 1
    assert "no coin-toss record" in out


@pytest.mark.parametrize("how", ["empty", "half", "garbage", "deleted"])
def test_damaged_utility_store_is_an_error_not_recreated(copy, capsys, how):
    p = copy / "utility.sqlite"
    raw = p.read_bytes()
    if how == "empty":
        p.write_bytes(b"")
    elif how == "half":
        p.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        p.write_bytes(b"\x00" * len(raw))
    else:
        p.unlink()
    for argv in (["utility", "bills", "--data-dir", str(copy)], ["utility", "settle", "--data-dir", str(copy)],
                 [*DEMO, "--data-dir", str(copy)]):
        rc = main(argv)
        out, err = capsys.readouterr()
        assert rc == 2, (argv, out)
        _one_line_error(err)
    if how == "deleted":
        assert not p.exists()
    else:
        assert p.stat().st_size == (0 if how == "empty" else len(raw) // 2 if how == "half" else len(raw))


def test_lost_hub_card_is_an_error(copy, capsys):
    sorted((copy / "hubs").glob("*.sqlite"))[0].unlink()
    rc, _, err = _demo(capsys, copy)
    assert rc == 2
    _one_line_error(err)
    assert "hub card missing" in err


def test_stores_but_no_demo_json_is_an_error(copy, capsys):
    (copy / "demo.json").unlink()
    rc, _, err = _demo(capsys, copy)
    assert rc == 2
    _one_line_error(err)


def test_demo_shares_a_directory_with_the_utility_and_hub_commands(tmp_path, capsys):
    from meterhub.hub.store import HubStore
    from meterhub.utility.store import UtilityStore

    d = tmp_path / "shared"
    UtilityStore(d / "utility.sqlite").close()  # as `utility verify` leaves it
    HubStore(d / "hub.sqlite").close()  # as `hub bill` leaves it
    rc, out, err = _demo(capsys, d)
    assert rc == 0, err
    assert json.loads(out)["all_verified"]


@pytest.mark.parametrize("store", ["meter.sqlite", "hub.sqlite", "utility.sqlite", "settlement.sqlite"])
def test_other_schema_version_is_refused(copy, capsys, store):
    _exec(copy / store, "PRAGMA user_version=99")
    rc, _, err = _demo(capsys, copy)
    assert rc == 2
    _one_line_error(err)
    assert "schema version 99" in err


def test_card_store_schema_version_is_checked(copy, capsys):
    _exec(sorted((copy / "hubs").glob("*.sqlite"))[0], "PRAGMA user_version=99")
    rc, _, err = _demo(capsys, copy)
    assert rc == 2
    _one_line_error(err)
    assert "schema version 99" in err


def test_first_run_creates_and_a_listed_store_must_exist(tmp_path):
    schema = "CREATE TABLE t (x INTEGER)"
    conn = open_db(tmp_path / "s.sqlite", schema, schema_version=3)
    conn.close()
    assert json.loads((tmp_path / MANIFEST).read_text())["stores"] == {"s.sqlite": 3}
    (tmp_path / "s.sqlite").unlink()
    with pytest.raises(StoreError, match="store missing"):
        open_db(tmp_path / "s.sqlite", schema, schema_version=3)
    with pytest.raises(StoreError, match="no store here"):
        open_db(tmp_path / "other.sqlite", schema, schema_version=3, create=False)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(StoreError, match="corrupt"):
        open_db(tmp_path / "s.sqlite", schema, schema_version=3)


# -- the lock ----------------------------------------------------------------------------------
def test_second_process_on_a_data_dir_is_refused(copy, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom meterhub.storage.sqlite import data_dir_lock\n"
         "with data_dir_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(copy)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for argv in ([*DEMO, "--data-dir", str(copy)], ["utility", "settle", "--data-dir", str(copy)],
                     ["utility", "bills", "--data-dir", str(copy)], ["utility", "fraud", "--data-dir", str(copy)],
                     ["utility", "dr", "--data-dir", str(copy)]):
            rc = main(argv)
            out, err = capsys.readouterr()
            assert rc == 2 and out == ""
            _one_line_error(err)
            assert f"pid {holder.pid}" in err and "in use by another meterhub process" in err
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder: nothing stale is left behind.
    t0 = time.monotonic()
    with data_dir_lock(copy):
        assert time.monotonic() - t0 < 5


# -- hub serve's card ---------------------------------------------------------------------------
def test_hub_serve_card_is_provisioned_atomically(tmp_path):
    from meterhub.hub.serve import CARD_FILE, DAP_KEY_FILE, ServeError, build_hub_card

    # Leftovers of a first start killed half-way are discarded, not trusted.
    (tmp_path / f".{CARD_FILE}.new").write_bytes(b"half a card")
    (tmp_path / f".{DAP_KEY_FILE}.new").write_bytes(b"")
    card = build_hub_card(tmp_path)
    card.close()
    assert not (tmp_path / f".{CARD_FILE}.new").exists()
    # An emptied card is an error, never silently provisioned afresh.
    (tmp_path / CARD_FILE).write_bytes(b"")
    with pytest.raises(ServeError, match="without an issuer security domain"):
        build_hub_card(tmp_path)


def test_hub_serve_card_reopens_with_its_storage_key(tmp_path):
    # The card is built under a temporary name; its storage key (the card encrypts
    # values at rest) must move with it, or the next start cannot read the ISD.
    from meterhub.card.gp.registry import isd_aid
    from meterhub.card.store import STORAGE_KEY_SUFFIX
    from meterhub.hub.serve import CARD_FILE, build_hub_card

    build_hub_card(tmp_path).close()
    assert (tmp_path / f"{CARD_FILE}{STORAGE_KEY_SUFFIX}").exists()
    assert not list(tmp_path.glob(".*.new*"))
    card = build_hub_card(tmp_path)
    try:
        assert isd_aid(card.store) is not None
    finally:
        card.close()


# -- the small files a data directory holds: any content is a one-line refusal ------------------
@settings(max_examples=150)
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                     st.builds(lambda d: json.dumps(d).encode(),
                               st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=4), max_size=4))))
def test_any_manifest_content_is_read_or_refused(tmp_path_factory, raw):
    d = tmp_path_factory.mktemp("m")
    (d / MANIFEST).write_bytes(raw)
    try:
        conn = open_db(d / "s.sqlite", "CREATE TABLE t (x INTEGER)", schema_version=1)
    except StoreError as exc:
        assert "\n" not in str(exc)
    else:
        conn.close()
        assert json.loads((d / MANIFEST).read_text())["stores"]["s.sqlite"] == 1


@settings(max_examples=100)
@given(raw=st.one_of(st.binary(max_size=120), st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["households", "days", "seed", "start", "format"]), st.integers() | st.none(), max_size=5))))
def test_any_demo_json_content_is_refused_in_one_line(tmp_path_factory, raw):
    from meterhub.demo.system import DemoError, _check_resume

    d = tmp_path_factory.mktemp("dj")
    (d / "demo.json").write_bytes(raw)
    with pytest.raises((StoreError, DemoError)) as exc:
        _check_resume(DemoParams(households=1, days=1, data_dir=d))
    assert "\n" not in str(exc.value)
