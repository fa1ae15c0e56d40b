"""The utility's HTTP service (docs/service.md): authentication, authorisation per role,
malformed and oversized bodies, idempotent and conflicting re-delivery, a database
connection lost during ingest, and the push client."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.hub.billing import bill_statement
from meterhub.model.formats.upload import DayUpload
from meterhub.service.app import create_app
from meterhub.service.keys import ApiKeys
from meterhub.service.push import PushClient, PushError
from meterhub.tariffs import demo_supplier_key, dump_tariff, example_signed_tariff

SUPPLIER_PUB = ecdsa.public_bytes(demo_supplier_key())


@dataclasses.dataclass
class Env:
    client: TestClient
    keys: dict[str, str]
    history: object

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def days_body(self, uploads) -> bytes:
        return "".join(u.to_json() + "\n" for u in uploads).encode()


def _registration(h, supplier: str) -> dict:
    return {
        "meter_id": h.meter.meter_id,
        "public_key": ecdsa.public_bytes(h.meter.signing_key).hex(),
        "tz": "Europe/Berlin",
        "interval_minutes": 15,
        "tariff": dump_tariff(example_signed_tariff()).decode(),
        "supplier": supplier,
    }


def _env(db: str, history, max_body: int = 1 << 20) -> Env:
    keys = ApiKeys({})
    k = {
        "meter": keys.add("meter-host", "meter", ["m-test"]),
        "other-meter": keys.add("other-host", "meter", ["m-other"]),
        "sup-a": keys.add("sup-a", "supplier"),
        "sup-b": keys.add("sup-b", "supplier"),
        "grid": keys.add("grid", "grid"),
    }
    app = create_app(db, keys, supplier_key=SUPPLIER_PUB, max_body=max_body)
    client = TestClient(app)
    env = Env(client, k, history)
    r = client.post("/v1/meters", json=_registration(history, "sup-a"), headers=env.h("grid"))
    assert r.status_code == 200, r.text
    return env


@pytest.fixture()
def env(tmp_path, history):
    e = _env(str(tmp_path / "u.sqlite"), history)
    with e.client:
        yield e


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    p = r.json()
    assert p["status"] == status and p["type"].startswith("tag:meterhub") and p["detail"]
    return p


def test_openapi_lists_the_deliveries(env):
    doc = env.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.") and {"/v1/days", "/v1/statements", "/v1/meters"} <= set(doc["paths"])


def test_authentication_is_required(env):
    body = env.days_body(env.history.uploads())
    _problem(env.client.post("/v1/days", content=body), 401)
    _problem(env.client.post("/v1/days", content=body, headers={"Authorization": "Bearer nope"}), 401)
    _problem(env.client.get("/v1/meters/m-test/coverage", headers={"Authorization": "Basic x"}), 401)


def test_roles_and_ownership(env, caplog):
    body = env.days_body(env.history.uploads())
    st = env.history.statement.to_json()
    with caplog.at_level(logging.WARNING, "meterhub.service"):
        # a meter key cannot post statements, nor deliver for a meter that is not its own
        _problem(env.client.post("/v1/statements", content=st, headers=env.h("meter")), 403)
        _problem(env.client.post("/v1/days", content=body, headers=env.h("other-meter")), 403)
        # a supplier cannot post for another supplier's customer, nor deliver meter data
        p = _problem(env.client.post("/v1/statements", content=st, headers=env.h("sup-b")), 403)
        assert "not a customer of sup-b" in p["detail"]
        _problem(env.client.post("/v1/days", content=body, headers=env.h("sup-a")), 403)
        # only the grid operator registers meters
        _problem(env.client.post("/v1/meters", json=_registration(env.history, "sup-b"), headers=env.h("sup-b")), 403)
        _problem(env.client.get("/v1/meters/m-test/verdicts", headers=env.h("sup-b")), 403)
    assert "refused POST /v1/statements from meter-host: 403" in caplog.text
    cov = env.client.get("/v1/meters/m-test/coverage", headers=env.h("grid")).json()
    assert cov["uploaded"] == []  # nothing of the refused deliveries was stored


def test_idempotent_and_conflicting_redelivery(env):
    ups = env.history.uploads()
    r = env.client.post("/v1/days", content=env.days_body(ups), headers=env.h("meter"))
    assert [x["status"] for x in r.json()["results"]] == ["stored"] * 3
    r = env.client.post("/v1/days", content=env.days_body(ups), headers=env.h("meter"))
    assert [x["status"] for x in r.json()["results"]] == ["duplicate"] * 3
    flipped = bytearray(ups[1].records)
    flipped[-1] ^= 1
    p = _problem(
        env.client.post("/v1/days", content=env.days_body([DayUpload(ups[1].batch, bytes(flipped))]), headers=env.h("meter")),
        409,
    )
    assert "conflicts with the stored upload" in p["detail"] and p["results"][0]["status"] == "rejected"
    # statements: verified, identical re-delivery returns the recorded verdict, a different
    # statement for the same period is a conflict (V21)
    st = env.history.statement
    v = env.client.post("/v1/statements", content=st.to_json(), headers=env.h("sup-a")).json()
    assert v["verified"] and not v["duplicate"]
    v = env.client.post("/v1/statements", content=st.to_json(), headers=env.h("sup-a")).json()
    assert v["verified"] and v["duplicate"]
    h = env.history
    day0 = h.days[0]
    other = bill_statement(  # an honest bill of the first day alone: overlaps the 3-day bill
        meter_id="m-test", tariff=h.tariff, period_from=h.start, period_to=h.start, first_index=0,
        prices=h.prices()[: day0.batch.batch.count], openings=day0.openings,
    )
    p = _problem(env.client.post("/v1/statements", content=other.to_json(), headers=env.h("sup-a")), 409)
    assert "overlaps verified bill" in p["detail"]
    verdicts = env.client.get("/v1/meters/m-test/verdicts", headers=env.h("sup-a")).json()["verdicts"]
    assert [x["verified"] for x in verdicts] == [True, False]
    cov = env.client.get("/v1/meters/m-test/coverage", headers=env.h("meter")).json()
    assert len(cov["billed"]) == 3 and cov["unbilled"] == []


def test_a_false_statement_is_rejected_not_conflict(env):
    env.client.post("/v1/days", content=env.days_body(env.history.uploads()), headers=env.h("meter"))
    bad = dataclasses.replace(env.history.statement, total=env.history.statement.total + 1)
    v = env.client.post("/v1/statements", content=bad.to_json(), headers=env.h("sup-a"))
    assert v.status_code == 200 and v.json()["verified"] is False and v.json()["reason"]


def test_rejected_upload_is_422(env):
    ups = env.history.uploads()
    forged = make_history(seed=99).uploads()[1]  # the same meter id, signed by another key
    p = _problem(env.client.post("/v1/days", content=env.days_body([ups[0], forged]), headers=env.h("meter")), 422)
    assert [x["status"] for x in p["results"]] == ["stored", "rejected"]


def test_malformed_and_oversized_bodies(tmp_path, history):
    e = _env(str(tmp_path / "u.sqlite"), history, max_body=4096)
    with e.client:
        _problem(e.client.post("/v1/days", content=b"{not json\n", headers=e.h("meter")), 400)
        _problem(e.client.post("/v1/days", content=b"\xff\xfe", headers=e.h("meter")), 400)
        _problem(e.client.post("/v1/days", content=b"", headers=e.h("meter")), 400)
        _problem(e.client.post("/v1/statements", content=b"[]", headers=e.h("sup-a")), 400)
        _problem(e.client.post("/v1/days", content=e.days_body(history.uploads()), headers=e.h("meter")), 413)

        def chunks():  # no Content-Length: the limit holds on the streamed body too
            for _ in range(10):
                yield b"x" * 1000

        _problem(e.client.post("/v1/days", content=chunks(), headers=e.h("meter")), 413)
        _problem(e.client.get("/v1/nothing", headers=e.h("meter")), 404)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_arbitrary_bodies_get_a_problem_never_a_crash(env, body):
    for path, who in (("/v1/days", "meter"), ("/v1/statements", "sup-a"), ("/v1/meters", "grid")):
        r = env.client.post(path, content=body, headers=env.h(who))
        assert r.status_code in (400, 403, 409, 413, 422), (path, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"


def test_push_client_through_the_api(env):
    c = PushClient("http://testserver", env.keys["meter"], client=env.client)
    res = c.push_days(env.history.uploads(), days_per_request=2)
    assert [x["status"] for x in res] == ["stored"] * 3
    s = PushClient("http://testserver", env.keys["sup-a"], client=env.client)
    assert s.push_statement(env.history.statement.to_json())["verified"]
    with pytest.raises(PushError, match="HTTP 403"):
        c.push_statement(env.history.statement.to_json())


def test_database_connection_lost_during_ingest(pg_dsn, pg_admin_dsn, monkeypatch):
    """The server drops the service's PostgreSQL connection in the middle of a
    delivery (as a database restart does): the delivery answers 503, the client
    retries it, and in the end every day is stored exactly once."""
    import psycopg

    from meterhub.utility import store as store_mod

    h = make_history(n_days=6, seed=5)
    e = _env(pg_dsn, h)
    real = store_mod._Delivery.ingest  # the per-day checks of a batched delivery
    calls = {"n": 0}

    def flaky(self, upload):
        calls["n"] += 1
        if calls["n"] in (2, 7):  # mid-delivery: after the delivery's first day was checked
            pid = self.store.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return real(self, upload)

    monkeypatch.setattr(store_mod._Delivery, "ingest", flaky)
    with e.client:
        first = e.client.app.state.service.store()
        c = PushClient("http://testserver", e.keys["meter"], client=e.client)
        res = c.push_days(h.uploads(), days_per_request=3)
        assert [x["status"] for x in res] == ["stored"] * 6  # the failed attempts left nothing
        assert calls["n"] == 6 + 2 + 2  # each delivery failed on its 2nd day once, then was retried whole
        store = e.client.app.state.service.store()
        assert store is not first  # reconnected
        days = store.conn.execute("SELECT count(*), count(DISTINCT day) FROM days").fetchone()
        assert tuple(days) == (6, 6)
        assert store.conn.execute("SELECT count(*) FROM rejected_uploads").fetchone()[0] == 0
        cov = e.client.get("/v1/meters/m-test/coverage", headers=e.h("grid")).json()
        assert len(cov["uploaded"]) == 6


def test_keys_file_round_trip(tmp_path):
    keys = ApiKeys({})
    k = keys.add("sup-a", "supplier")
    keys.save(tmp_path / "keys.json")
    doc = json.loads((tmp_path / "keys.json").read_text())
    assert k not in (tmp_path / "keys.json").read_text()  # only the digest is kept
    assert doc["keys"][0]["role"] == "supplier"
    again = ApiKeys.load(tmp_path / "keys.json")
    assert again.party(k).name == "sup-a" and again.party(k + "x") is None


def test_cli_keys_push_and_usage_errors(tmp_path, capsys):
    """`utility keys add` and `utility push` against a served app (real socket), with the
    files `meter simulate`, `tariff example` and `hub bill` write."""
    from meterhub.cli import main
    from meterhub.service.runner import serve_in_thread

    d = tmp_path
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "2", "--start", "2027-06-01", "--out", str(d / "m")]) == 0
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    m = d / "m"
    assert main(["hub", "bill", "--meter", str(m / "m1.meter.json"), "--key", str(m / "m1.homelink.key"),
                 "--homelink", str(m / "m1.homelink.jsonl"), "--tariff", str(d / "t.json"),
                 "--supplier-key", str(d / "sup.pub"), "--from", "2027-06-01", "--to", "2027-06-02",
                 "--data-dir", str(d / "hub"), "--out", str(d / "st.json")]) == 0
    keys = d / "keys.json"
    for party, role, extra in (("grid", "grid", []), ("sup-a", "supplier", []), ("he", "meter", ["--meter", "m1"])):
        assert main(["utility", "keys", "add", "--keys", str(keys), "--party", party, "--role", role, *extra,
                     "--key-out", str(d / f"{party}.key")]) == 0
    assert (d / "he.key").stat().st_mode & 0o077 == 0
    reg = json.loads((m / "m1.meter.json").read_text())
    app = create_app(str(d / "u.sqlite"), keys, supplier_key=bytes.fromhex((d / "sup.pub").read_text().strip()))
    with serve_in_thread(app) as url:
        grid = PushClient(url, (d / "grid.key").read_text().strip())
        grid.register_meter({"meter_id": "m1", "public_key": reg["public_key"], "tz": reg["tz"],
                             "interval_minutes": reg["interval_minutes"], "tariff": (d / "t.json").read_text(),
                             "supplier": "sup-a"})
        grid.close()
        capsys.readouterr()
        push = ["utility", "push", "--server", url]
        assert main([*push, "--api-key", str(d / "he.key"), "--uploads", str(m / "m1.uploads.jsonl")]) == 0
        assert "days: 2 stored, 0 already there" in capsys.readouterr().out
        assert main([*push, "--api-key", str(d / "sup-a.key"), "--statement", str(d / "st.json")]) == 0
        assert "VERIFIED" in capsys.readouterr().out
        # a meter key cannot post statements: refused, exit 1, one line
        assert main([*push, "--api-key", str(d / "he.key"), "--statement", str(d / "st.json")]) == 1
        out = capsys.readouterr().out
        assert out.startswith("REJECTED") and "HTTP 403" in out and out.count("\n") == 1
        assert main([*push, "--api-key", str(d / "he.key")]) == 2  # nothing to push
        assert main([*push, "--api-key", str(d / "nope.key"), "--uploads", str(m / "m1.uploads.jsonl")]) == 2
    assert main(["utility", "serve", "--db", "mysql://x"]) == 2
    assert main(["utility", "keys", "add", "--keys", str(d / "st.json"), "--party", "x", "--role", "grid",
                 "--key-out", str(d / "x.key")]) == 2  # not a keys file
