"""The demo end to end through the utility's HTTP service (uvicorn on a real socket)
against PostgreSQL (docs/service.md): every registration, day and bill statement is
delivered over HTTP with per-party keys, and the service's verdicts agree."""

from __future__ import annotations

import json

from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.service.app import create_app
from meterhub.service.runner import serve_in_thread
from meterhub.tariffs import demo_supplier_key
from meterhub.utility.deliveries import TrustAnchors
from meterhub.utility.store import UtilityStore


def test_demo_through_the_api_on_postgres(tmp_path, pg_dsn, capsys):
    keys = tmp_path / "api-keys.json"
    app = create_app(pg_dsn, keys, supplier_key=ecdsa.public_bytes(demo_supplier_key()), trust=TrustAnchors.demo())
    with serve_in_thread(app) as url:
        args = ["demo", "--households", "2", "--days", "2", "--data-dir", str(tmp_path / "d"), "--json",
                "--no-progress", "--server", url, "--server-keys", str(keys)]
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert all(h["verified"] for h in out["households"])
        # the settlement and forecasting outputs went through the service and verified there
        assert out["service_outputs"]["verified"] == {"samples": 2, "scores": 2, "settlement": 2}
        # a second run resumes: every delivery is an identical re-delivery, still exit 0
        assert main(args) == 0
        capsys.readouterr()
    u = UtilityStore(pg_dsn)
    try:
        assert u.conn.execute("SELECT count(*) FROM days").fetchone()[0] == 4
        assert u.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0
        verdicts = u.bill_verdicts()
        assert len(verdicts) == 2 and all(v[3] for v in verdicts)
        outs = u.conn.execute("SELECT kind, count(*), min(verified) FROM outputs GROUP BY kind ORDER BY kind").fetchall()
        assert [tuple(r) for r in outs] == [("samples", 2, 1), ("scores", 2, 1), ("settlement", 2, 1)]
        suppliers = {r[0] for r in u.conn.execute("SELECT supplier FROM meters")}
        assert len(suppliers) == 2 and None not in suppliers
    finally:
        u.close()
    doc = json.loads(keys.read_text())
    assert {k["role"] for k in doc["keys"]} == {"grid", "meter", "supplier"}


def test_demo_stops_when_the_service_refuses(tmp_path, capsys):
    keys = tmp_path / "api-keys.json"
    app = create_app(str(tmp_path / "u.sqlite"), keys, supplier_key=None)  # cannot register meters
    with serve_in_thread(app) as url:
        rc = main(["demo", "--households", "1", "--days", "1", "--data-dir", str(tmp_path / "d"),
                   "--no-progress", "--server", url, "--server-keys", str(keys)])
    assert rc == 1
    assert "HTTP 403" in capsys.readouterr().err


def _pg_ctl(action: str) -> None:
    """Stop or start the test cluster of scripts/postgres.sh (its data directory is in
    .pgdsn.dir, or $MH_PG_DATADIR for a server given by $MH_PG_DSN)."""
    import glob
    import os
    import subprocess
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[2]
    datadir = os.environ.get("MH_PG_DATADIR")
    if not datadir:
        f = root / ".pgdsn.dir"
        if not f.exists():
            pytest.fail("cannot restart PostgreSQL: no .pgdsn.dir (scripts/postgres.sh) and no $MH_PG_DATADIR")
        datadir = f.read_text().strip() + "/data"
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else ["sudo", "-u", "postgres"]
    # start: the server's output to the cluster's log (an inherited pipe would never close)
    opts = ["-m", "fast"] if action == "stop" else ["-l", str(Path(datadir).parent / "log")]
    subprocess.run([*as_pg, pg_ctl, "-D", datadir, *opts, "-w", action], check=True, capture_output=True, timeout=60)


def test_postgres_restart_during_ingest(tmp_path, pg_dsn):
    """A real database restart while a meter delivers: the server is stopped (the
    service's connection dies), deliveries get 503 and are retried until it is back;
    nothing is lost or stored twice."""
    import threading
    import time

    from helpers import make_history
    from meterhub.service.keys import ApiKeys
    from meterhub.service.push import PushClient
    from meterhub.tariffs import dump_tariff, example_signed_tariff

    h = make_history(n_days=8, seed=9, meter_id="m-restart")
    u = UtilityStore(pg_dsn)
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    u.register_meter("m-restart", ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    u.close()
    keys = ApiKeys({})
    key = keys.add("meter-host", "meter", ["m-restart"])
    app = create_app(pg_dsn, keys)
    ups = h.uploads()
    with serve_in_thread(app) as url:
        c = PushClient(url, key, retries=12)
        assert [r["status"] for r in c.push_days(ups[:2])] == ["stored"] * 2
        _pg_ctl("stop")

        def start_later() -> None:
            time.sleep(1.5)
            _pg_ctl("start")

        starter = threading.Thread(target=start_later)
        starter.start()
        try:
            t0 = time.monotonic()
            res = []
            for k in range(2, 8):  # one day per delivery: the first ones while the server is down
                res.extend(c.push_days([ups[k]]))
            assert time.monotonic() - t0 >= 1.0  # the first delivery waited for the restart
        finally:
            starter.join()
        res.extend(c.push_days(ups))  # everything again: all duplicates
        c.close()
    assert [r["status"] for r in res[:6]] == ["stored"] * 6
    assert [r["status"] for r in res[6:]] == ["duplicate"] * 8
    u = UtilityStore(pg_dsn)
    try:
        assert tuple(u.conn.execute("SELECT count(*), count(DISTINCT day) FROM days").fetchone()) == (8, 8)
        assert u.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0
    finally:
        u.close()
