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
from meterhub.utility.store import UtilityStore


def test_demo_through_the_api_on_postgres(tmp_path, pg_dsn, capsys):
    keys = tmp_path / "api-keys.json"
    app = create_app(pg_dsn, keys, supplier_key=ecdsa.public_bytes(demo_supplier_key()))
    with serve_in_thread(app) as url:
        args = ["demo", "--households", "2", "--days", "2", "--data-dir", str(tmp_path / "d"), "--json",
                "--no-progress", "--server", url, "--server-keys", str(keys)]
        assert main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert all(h["verified"] for h in out["households"])
        # a second run resumes: every delivery is an identical re-delivery, still exit 0
        assert main(args) == 0
        capsys.readouterr()
    u = UtilityStore(pg_dsn)
    try:
        assert u.conn.execute("SELECT count(*) FROM days").fetchone()[0] == 4
        assert u.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0
        verdicts = u.bill_verdicts()
        assert len(verdicts) == 2 and all(v[3] for v in verdicts)
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
