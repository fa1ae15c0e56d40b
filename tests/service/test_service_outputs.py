"""Outputs delivered through the utility's HTTP service (docs/service.md, "Outputs"):
settlement statements, profile scores, samples, DR releases and feeder days, each
verified on receipt by the verifier the CLI uses, with its reference data; role and
meter authorisation, idempotent and conflicting re-delivery, and the queries. Every
test runs against SQLite and PostgreSQL (fixture ``utility_db``)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from helpers import History, signed_index
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import demo_vtn_key
from meterhub.service.app import create_app
from meterhub.service.keys import ApiKeys
from meterhub.service.push import PushClient, PushError
from meterhub.tariffs import demo_supplier_key, dump_tariff, example_signed_tariff
from meterhub.tariffs.price_index import demo_index_publisher_key, dump_series
from meterhub.tariffs.profiles import demo_profile_key, reference_profiles
from meterhub.utility.deliveries import TrustAnchors, coin_toss_json, feeder_day_json
from meterhub.utility.fraud import demo_grid_key
from test_demand_response import released  # noqa: F401 - module fixture: a hub's DR release
from test_forecasting import START as SCORES_START
from test_forecasting import scored  # noqa: F401 - module fixture: a hub's profile scores
from test_fraud_aggregation import _group, _truth, feeder  # noqa: F401 - module fixture: seven hubs
from test_sampling import tossed  # noqa: F401 - module fixture: a coin toss and its samples
from test_settlement import settled  # noqa: F401 - module fixture: a settlement statement

TRUST = TrustAnchors(
    price_index=ecdsa.public_bytes(demo_index_publisher_key()),
    load_profile=ecdsa.public_bytes(demo_profile_key()),
    dr_vtn=ecdsa.public_bytes(demo_vtn_key()),
    aggregation_group=ecdsa.public_bytes(demo_grid_key()),
)


def scores_json(sc) -> bytes:
    """The profiling applet's score document (applets/profiling.py) of a parsed statement."""
    import base64

    return json.dumps({
        "format": "meterhub-profile-scores/1", "meter_id": sc.meter_id, "period_from": sc.period_from.isoformat(),
        "period_to": sc.period_to.isoformat(), "first_index": sc.first_index, "count": sc.count,
        "point_minutes": sc.point_minutes, "applet_aid": sc.applet_aid, "code_hash": sc.code_hash,
        "energy_wh": sc.energy_wh, "energy_blinding": f"{sc.energy_blinding:064x}", "squares": sc.squares,
        "squares_blinding": f"{sc.squares_blinding:064x}",
        "squares_proof": base64.b64encode(sc.squares_proof).decode(),
        "scores": [{"series_id": e.series_id, "version": e.version, "digest": e.digest.hex(), "score": e.score,
                    "blinding": f"{e.blinding:064x}"} for e in sc.scores],
    }, sort_keys=True, separators=(",", ":")).encode()


def samples_json(rel) -> bytes:
    """The profiling applet's sample release document of a parsed release."""
    return json.dumps({
        "format": "meterhub-samples/1", "meter_id": rel.meter_id, "period_from": rel.period_from.isoformat(),
        "period_to": rel.period_to.isoformat(), "first_index": rel.first_index, "count": rel.count, "k": rel.k,
        "commitment": rel.commitment.hex(), "utility_nonce": rel.utility_nonce.hex(),
        "hub_nonce": rel.hub_nonce.hex(), "applet_aid": rel.applet_aid, "code_hash": rel.code_hash,
        "samples": [[x.index, x.m, f"{x.r:064x}"] for x in rel.samples],
    }, sort_keys=True, separators=(",", ":")).encode()


@dataclasses.dataclass
class Env:
    client: TestClient
    keys: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def post(self, path: str, body: bytes, who: str, status: int = 200) -> dict:
        r = self.client.post(path, content=body, headers=self.h(who))
        assert r.status_code == status, r.text
        if status != 200:
            assert r.headers["content-type"] == "application/problem+json"
        return r.json()

    def get(self, path: str, who: str, status: int = 200) -> dict:
        r = self.client.get(path, headers=self.h(who))
        assert r.status_code == status, r.text
        return r.json()

    def install(self, *histories: History, supplier: str = "sup-a") -> None:
        """Register the meters (grid) and deliver their days (meter key)."""
        for h in histories:
            reg = {
                "meter_id": h.registration.meter_id,
                "public_key": ecdsa.public_bytes(h.meter.signing_key).hex(),
                "tz": "Europe/Berlin",
                "interval_minutes": 15,
                "tariff": dump_tariff(example_signed_tariff()).decode(),
                "supplier": supplier,
            }
            r = self.client.post("/v1/meters", json=reg, headers=self.h("grid"))
            assert r.status_code == 200, r.text
            body = "".join(u.to_json() + "\n" for u in h.uploads()).encode()
            self.post("/v1/days", body, "meter")


def _env(db: str, meters: list[str], trust: TrustAnchors = TRUST) -> Env:
    keys = ApiKeys({})
    k = {
        "meter": keys.add("meter-host", "meter", meters),
        "sup-a": keys.add("sup-a", "supplier"),
        "sup-b": keys.add("sup-b", "supplier"),
        "grid": keys.add("grid", "grid"),
    }
    app = create_app(db, keys, supplier_key=ecdsa.public_bytes(demo_supplier_key()), trust=trust)
    return Env(TestClient(app), k)


def test_openapi_documents_every_output_and_query(tmp_path):
    e = _env(str(tmp_path / "u.sqlite"), [])
    paths = e.client.get("/openapi.json").json()["paths"]
    for p in ("/v1/settlement-statements", "/v1/profile-scores", "/v1/samples", "/v1/dr-releases",
              "/v1/feeder-days", "/v1/references/{kind}", "/v1/meters/{meter_id}/outputs",
              "/v1/meters/{meter_id}/forecast", "/v1/shares", "/v1/dr-events/{event_id}/settlement",
              "/v1/groups/{group_id}/feeder-days"):
        assert p in paths and all("409" in op["responses"] for op in paths[p].values()), p


def test_settlement_statement(utility_db, settled):  # noqa: F811
    h, _, idx, st = settled
    e = _env(utility_db, [h.registration.meter_id])
    with e.client:
        e.install(h)
        body = st.to_json().encode()
        # without the price index on record: refused, nothing recorded
        p = e.post("/v1/settlement-statements", body, "sup-a", 422)
        assert "price-index" in p["detail"] and "has not been delivered" in p["detail"]
        assert e.get(f"/v1/meters/{h.registration.meter_id}/outputs", "grid")["outputs"] == []
        # reference data: grid only, signature checked under the trust anchor
        index = dump_series(idx)
        e.post("/v1/references/price-index", index, "sup-a", 403)
        forged = dump_series(signed_index(h, key=ecdsa.generate_signing_key()))
        assert "another key" in e.post("/v1/references/price-index", forged, "grid", 422)["detail"]
        assert e.post("/v1/references/price-index", index, "grid")["duplicate"] is False
        assert e.post("/v1/references/price-index", index, "grid")["duplicate"] is True
        # roles and ownership: the supplier of the customer only
        e.post("/v1/settlement-statements", body, "meter", 403)
        e.post("/v1/settlement-statements", body, "grid", 403)
        assert "not a customer of sup-b" in e.post("/v1/settlement-statements", body, "sup-b", 403)["detail"]
        v = e.post("/v1/settlement-statements", body, "sup-a")
        assert v["verified"] and not v["duplicate"] and v["figures"]["energy_wh"] == st.energy_wh
        assert e.post("/v1/settlement-statements", body, "sup-a")["duplicate"] is True
        # another statement for the verified period: a conflict, never a silent replacement
        other = dataclasses.replace(st, energy_wh=st.energy_wh + 1).to_json().encode()
        assert "already verified" in e.post("/v1/settlement-statements", other, "sup-a", 409)["detail"]
        e.post("/v1/settlement-statements", b'{"format": "meterhub-settlement/1"}', "sup-a", 400)
        outs = e.get(f"/v1/meters/{h.registration.meter_id}/outputs", "sup-a")["outputs"]
        assert [(o["kind"], o["verified"]) for o in outs] == [("settlement", True)]
        e.get(f"/v1/meters/{h.registration.meter_id}/outputs", "sup-b", 403)
        shares = e.get("/v1/shares", "grid")["shares"]
        assert shares == [{"supplier": "sup-a", "customers": 1, "energy_wh": st.energy_wh, "value": st.value,
                           "energy_share": 1.0, "value_share": 1.0}]
        assert e.get("/v1/shares", "sup-b")["shares"] == []  # not a competitor's figures
        e.get("/v1/shares", "meter", 403)


def test_a_false_settlement_statement_is_rejected_and_may_be_replaced(utility_db, settled):  # noqa: F811
    h, _, idx, st = settled
    e = _env(utility_db, [h.registration.meter_id])
    with e.client:
        e.install(h)
        e.post("/v1/references/price-index", dump_series(idx), "grid")
        false = dataclasses.replace(st, value=st.value + 1).to_json().encode()
        v = e.post("/v1/settlement-statements", false, "sup-a")
        assert not v["verified"] and "value" in v["reason"]
        again = e.post("/v1/settlement-statements", false, "sup-a")
        assert not again["verified"] and again["duplicate"]  # same verdict: not appended twice
        assert e.post("/v1/settlement-statements", st.to_json().encode(), "sup-a")["verified"]
        outs = e.get(f"/v1/meters/{h.registration.meter_id}/outputs", "grid")["outputs"]
        assert [o["verified"] for o in outs] == [False, True]


def test_profile_scores_and_forecast(utility_db, scored):  # noqa: F811
    h, _, _, sc = scored
    mid = h.registration.meter_id
    e = _env(utility_db, [mid])
    with e.client:
        e.install(h)
        body = scores_json(sc)
        assert "load-profile" in e.post("/v1/profile-scores", body, "grid", 422)["detail"]
        for p in reference_profiles(SCORES_START, 3):
            e.post("/v1/references/load-profile", dump_series(p), "grid")
        e.post("/v1/profile-scores", body, "sup-a", 403)  # the grid operator's output
        e.post("/v1/profile-scores", body, "meter", 403)
        v = e.post("/v1/profile-scores", body, "grid")
        assert v["verified"] and v["figures"]["class"] == "bdew-g1"
        fc = e.get(f"/v1/meters/{mid}/forecast", "grid")["periods"]
        assert fc == [{"period": v["period"], "by_scores": "bdew-g1", "r": v["figures"]["r"], "by_samples": None}]
        tampered = scores_json(dataclasses.replace(sc, energy_wh=sc.energy_wh + 1))
        e.post("/v1/profile-scores", tampered, "grid", 409)


def test_samples_need_the_utilitys_coin_toss(utility_db, tossed):  # noqa: F811
    h, hub, coin, rel = tossed
    mid = h.registration.meter_id
    e = _env(utility_db, [mid])
    with e.client:
        e.install(h)
        body = samples_json(rel)
        assert "coin-toss" in e.post("/v1/samples", body, "grid", 422)["detail"]
        c = coin_toss_json(mid, h.start, hub.last, coin["k"], coin["commitment"], coin["utility_nonce"],
                           coin["hub_commitment"])
        e.post("/v1/references/coin-toss", c, "sup-a", 403)
        e.post("/v1/references/coin-toss", c, "grid")
        other = json.loads(c)
        other["k"] += 1
        e.post("/v1/references/coin-toss", json.dumps(other).encode(), "grid", 409)  # write-once
        v = e.post("/v1/samples", body, "grid")
        assert v["verified"] and v["figures"]["samples"] == len(rel.samples)
        wrong = samples_json(dataclasses.replace(rel, samples=rel.samples[:-1]))
        e.post("/v1/samples", wrong, "grid", 409)


def test_dr_release_and_event_settlement(utility_db, released):  # noqa: F811
    h, _, ev, rel = released
    mid = h.registration.meter_id
    e = _env(utility_db, [mid])
    with e.client:
        e.install(h)
        raw = rel.to_bytes()
        assert "dr-event" in e.post("/v1/dr-releases", raw, "grid", 422)["detail"]
        forged = dataclasses.replace(ev, signature=bytes(64)).to_bytes()
        assert "VTN signature" in e.post("/v1/references/dr-event", forged, "grid", 422)["detail"]
        e.post("/v1/references/dr-event", ev.to_bytes(), "grid")
        e.post("/v1/dr-releases", raw, "sup-a", 403)
        v = e.post("/v1/dr-releases", raw, "grid")
        assert v["verified"] and v["period"] == ev.event_id
        st = e.get(f"/v1/dr-events/{ev.event_id}/settlement", "grid")
        assert st["releases"] == 1 and st["payments"] == v["figures"]["payment"]
        e.get(f"/v1/dr-events/{ev.event_id}/settlement", "sup-a", 403)
        e.post("/v1/dr-releases", raw[:-1], "grid", 400)


def test_feeder_day(utility_db, feeder):  # noqa: F811
    from meterhub.hub.aggregation import AGGREGATION_APP_AID
    from meterhub.utility.fraud import collect_day, push_group
    from test_fraud_aggregation import DAY

    ids = sorted(feeder)[:5]
    g = _group(feeder, ids, gid="svc-feeder")
    for i in ids:
        push_group(feeder[i].mailbox(), g)
    rel, rec, missing = collect_day({i: feeder[i].mailbox() for i in ids}, g, DAY, AGGREGATION_APP_AID)
    assert not missing
    e = _env(utility_db, ids)
    with e.client:
        e.install(*(feeder[i].h for i in ids))
        body = feeder_day_json(g.group_id, DAY, rel, rec)
        assert "aggregation-group" in e.post("/v1/feeder-days", body, "grid", 422)["detail"]
        e.post("/v1/references/aggregation-group", g.to_bytes(), "grid")
        e.post("/v1/feeder-days", body, "meter", 403)
        e.post("/v1/feeder-days", body, "sup-a", 403)
        # a hub that under-reports one hour: the sum no longer matches the commitments
        bad = dict(rel)
        r0 = bad[ids[0]]
        bad[ids[0]] = dataclasses.replace(r0, values=((r0.values[0][0] - 1, r0.values[0][1]), *r0.values[1:]))
        v0 = e.post("/v1/feeder-days", feeder_day_json(g.group_id, DAY, bad, rec), "grid")
        assert not v0["verified"] and v0["reason"].startswith("hour 0:")
        v = e.post("/v1/feeder-days", body, "grid")
        assert v["verified"] and v["figures"]["complete"] and v["figures"]["sums_wh"] == _truth(feeder, ids, DAY)
        days = e.get(f"/v1/groups/{g.group_id}/feeder-days", "grid")["days"]
        assert [d["day"] for d in days] == [DAY.isoformat()]
        e.post("/v1/feeder-days", feeder_day_json(g.group_id, DAY, bad, rec), "grid", 409)
        e.post("/v1/feeder-days", b'{"group_id": "x", "day": "2027-13-01", "releases": [], "recoveries": []}',
               "grid", 400)


def test_push_client_and_cli_deliver_outputs(tmp_path, settled, capsys):  # noqa: F811
    """`utility push --reference price-index=FILE --settlement FILE` against a served app."""
    from meterhub.cli import main
    from meterhub.service.runner import serve_in_thread

    h, _, idx, st = settled
    mid = h.registration.meter_id
    keys_path = tmp_path / "keys.json"
    keys = ApiKeys({})
    grid, sup = keys.add("grid", "grid"), keys.add("sup-a", "supplier")
    meter = keys.add("meter-host", "meter", [mid])
    keys.save(keys_path)
    TRUST.save(tmp_path / "trust.json")
    assert TrustAnchors.load(tmp_path / "trust.json") == TRUST
    for name, k in (("grid", grid), ("sup", sup), ("meter", meter)):
        (tmp_path / f"{name}.key").write_text(k)
    (tmp_path / "index.json").write_bytes(dump_series(idx))
    (tmp_path / "st.json").write_text(st.to_json())
    (tmp_path / "false.json").write_text(dataclasses.replace(st, value=st.value + 1).to_json())
    (tmp_path / "up.jsonl").write_text("".join(u.to_json() + "\n" for u in h.uploads()))
    app = create_app(str(tmp_path / "u.sqlite"), keys_path, supplier_key=ecdsa.public_bytes(demo_supplier_key()),
                     trust=TrustAnchors.load(tmp_path / "trust.json"))
    with serve_in_thread(app) as url:
        g = PushClient(url, grid)
        reg = {"meter_id": mid, "public_key": ecdsa.public_bytes(h.meter.signing_key).hex(), "tz": "Europe/Berlin",
               "interval_minutes": 15, "tariff": dump_tariff(example_signed_tariff()).decode(), "supplier": "sup-a"}
        g.register_meter(reg)
        base = ["utility", "push", "--server", url]
        assert main([*base, "--api-key", str(tmp_path / "meter.key"), "--uploads", str(tmp_path / "up.jsonl")]) == 0
        assert main([*base, "--api-key", str(tmp_path / "grid.key"),
                     "--reference", f"price-index={tmp_path / 'index.json'}"]) == 0
        assert "STORED price-index" in capsys.readouterr().out
        assert main([*base, "--api-key", str(tmp_path / "sup.key"), "--settlement", str(tmp_path / "false.json")]) == 1
        assert "REJECTED settlement" in capsys.readouterr().out
        assert main([*base, "--api-key", str(tmp_path / "sup.key"), "--settlement", str(tmp_path / "st.json")]) == 0
        assert "VERIFIED settlement" in capsys.readouterr().out
        # the meter key may not deliver it: refused, exit 1, the problem's detail printed
        assert main([*base, "--api-key", str(tmp_path / "meter.key"), "--settlement", str(tmp_path / "st.json")]) == 1
        assert "HTTP 403" in capsys.readouterr().out
        assert main([*base, "--api-key", str(tmp_path / "sup.key"), "--reference", "nonsense=x"]) == 2
        assert g.shares()["shares"][0]["energy_wh"] == st.energy_wh
        assert g.outputs(mid)["outputs"][-1]["verified"]
        with pytest.raises(ValueError, match="unknown output kind"):
            g.push_output("bill", b"{}")
        with pytest.raises(PushError, match="HTTP 403"):
            PushClient(url, meter).push_output("settlement", st.to_json().encode())
        g.close()


def test_schema_2_store_is_upgraded_in_place(tmp_path):
    """A utility.sqlite of schema version 2 (before the outputs tables) opens as version
    4 (outputs, then their per-party index) with its data kept; each step one transaction."""
    import sqlite3

    from meterhub.utility import store as store_mod

    path = tmp_path / "utility.sqlite"
    conn = sqlite3.connect(path)
    for stmt in store_mod._SCHEMA.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    conn.execute("INSERT INTO tariffs VALUES ('t', 1, x'00')")
    conn.execute("PRAGMA user_version=2")
    conn.commit()
    conn.close()
    u = store_mod.UtilityStore(path)
    try:
        assert u.conn.execute("PRAGMA user_version").fetchone()[0] == 4
        assert u.conn.execute("SELECT count(*) FROM tariffs").fetchone()[0] == 1
        assert u.conn.execute("SELECT 1 FROM sqlite_master WHERE name='outputs_by_party'").fetchone()
        assert u.conn.execute("SELECT count(*) FROM outputs").fetchone()[0] == 0
    finally:
        u.close()


def test_schema_2_postgres_store_is_upgraded_in_place(pg_dsn):
    import psycopg

    from meterhub.storage.postgres import pg_schema
    from meterhub.utility import store as store_mod

    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE meterhub_schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        for stmt in pg_schema(store_mod._PG_SCHEMA_V2).split(";"):
            if stmt.strip():
                c.execute(stmt)
        c.execute("INSERT INTO meterhub_schema VALUES ('utility', 2)")
    u = store_mod.UtilityStore(pg_dsn)
    try:
        assert u.conn.execute("SELECT version FROM meterhub_schema").fetchone()[0] == 4
        assert u.conn.execute("SELECT 1 FROM pg_indexes WHERE indexname='outputs_by_party'").fetchone()
        assert u.conn.execute("SELECT count(*) FROM outputs").fetchone()[0] == 0
    finally:
        u.close()


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    e = _env(str(tmp_path_factory.mktemp("fuzz") / "u.sqlite"), ["m-test"])
    with e.client:
        yield e


_PATHS = ["/v1/settlement-statements", "/v1/profile-scores", "/v1/samples", "/v1/dr-releases", "/v1/feeder-days",
          "/v1/references/price-index", "/v1/references/load-profile", "/v1/references/dr-event",
          "/v1/references/aggregation-group", "/v1/references/coin-toss"]


@settings(max_examples=80, deadline=None)
@given(path=st.sampled_from(_PATHS), body=st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(["group_id", "day", "releases", "recoveries", "meter_id", "period_from",
                                     "period_to", "k", "commitment", "utility_nonce", "hub_commitment", "format"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.text(max_size=8), max_size=3)),
                    max_size=8).map(lambda d: json.dumps(d).encode()),
))
def test_arbitrary_deliveries_get_a_problem_never_a_crash(fuzz_env, path, body):
    """Every output and reference parser, through the API: a problem+json (400, 403,
    409, 422), never a 500; the grid key reaches the parsers of every kind."""
    who = "sup-a" if path == "/v1/settlement-statements" else "grid"
    r = fuzz_env.client.post(path, content=body, headers=fuzz_env.h(who))
    assert r.status_code in (400, 403, 409, 422), (path, body, r.text)
    assert r.headers["content-type"] == "application/problem+json"


def test_output_bodies_over_the_limit_are_refused(tmp_path):
    keys = ApiKeys({})
    grid = keys.add("grid", "grid")
    app = create_app(str(tmp_path / "u.sqlite"), keys, trust=TRUST, max_body=2048)
    with TestClient(app) as c:
        for path in ["/v1/settlement-statements", "/v1/profile-scores", "/v1/samples", "/v1/dr-releases",
                     "/v1/feeder-days", "/v1/references/price-index", "/v1/references/coin-toss"]:
            r = c.post(path, content=b"x" * 2049, headers={"Authorization": f"Bearer {grid}"})
            assert r.status_code == 413 and r.headers["connection"] == "close", (path, r.text)
        r = c.post("/v1/references/no-such-kind", content=b"{}", headers={"Authorization": f"Bearer {grid}"})
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def _limited_env(db: str, meters: list[str], limits, clock=None) -> Env:
    keys = ApiKeys({})
    k = {"meter": keys.add("meter-host", "meter", meters), "sup-a": keys.add("sup-a", "supplier"),
         "sup-b": keys.add("sup-b", "supplier"), "grid": keys.add("grid", "grid")}
    app = create_app(db, keys, supplier_key=ecdsa.public_bytes(demo_supplier_key()), trust=TRUST, limits=limits,
                     clock=clock)
    return Env(TestClient(app), k)


def test_a_key_cannot_flood_the_outputs_table_with_rejections(utility_db, settled, caplog, monkeypatch):  # noqa: F811
    """Distinct false statements from one key: each rejection is recorded until the key
    reaches its cap; then 429 (problem+json, Retry-After, a log line) before verification,
    nothing more recorded; other keys are not affected; when the window has passed the
    key may deliver again."""
    import logging
    import time

    from meterhub.service import app as app_mod
    from meterhub.service.app import OutputLimits

    # a fresh refusal-log budget (20 lines a second, process-wide): the tests before this
    # one may have used up the current second's
    monkeypatch.setattr(app_mod, "_log_budget", app_mod._LogBudget())
    h, _, idx, st = settled
    now = [time.time()]
    e = _limited_env(utility_db, [h.registration.meter_id], OutputLimits(max_rejected=3, window=3600),
                     clock=lambda: now[0])
    with e.client:
        e.install(h)
        e.post("/v1/references/price-index", dump_series(idx), "grid")
        false = [dataclasses.replace(st, value=st.value + k).to_json().encode() for k in range(1, 6)]
        now[0] = time.time()
        for body in false[:3]:
            assert not e.post("/v1/settlement-statements", body, "sup-a")["verified"]
        with caplog.at_level(logging.WARNING, logger="meterhub.service"):
            r = e.client.post("/v1/settlement-statements", content=false[3], headers=e.h("sup-a"))
        assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("too-many-requests") and "3 rejected outputs" in r.json()["detail"]
        assert 3500 <= int(r.headers["Retry-After"]) <= 3660  # the test clock stands still; `at` runs on
        assert any("429" in m and "sup-a" in m for m in caplog.messages)
        # the honest statement is refused too while the key is at its cap: the cap is per key
        e.post("/v1/settlement-statements", st.to_json().encode(), "sup-a", 429)
        outs = e.get(f"/v1/meters/{h.registration.meter_id}/outputs", "grid")["outputs"]
        assert [o["verified"] for o in outs] == [False] * 3  # nothing more recorded
        # another key is not limited by sup-a's rejections (refused for ownership, not 429)
        e.post("/v1/settlement-statements", false[4], "sup-b", 403)
        now[0] = time.time() + 3601  # the rejections (recorded in real time) leave the window
        assert e.post("/v1/settlement-statements", st.to_json().encode(), "sup-a")["verified"]


def test_output_deliveries_are_rate_limited_per_key(tmp_path, settled):  # noqa: F811
    from meterhub.service.app import OutputLimits

    h, _, idx, st = settled
    e = _limited_env(str(tmp_path / "u.sqlite"), [h.registration.meter_id], OutputLimits(rate=0.01, burst=2))
    with e.client:
        e.install(h)
        e.post("/v1/references/price-index", dump_series(idx), "grid")
        body = st.to_json().encode()
        assert e.post("/v1/settlement-statements", body, "sup-a")["verified"]
        assert e.post("/v1/settlement-statements", body, "sup-a")["duplicate"]
        r = e.client.post("/v1/settlement-statements", content=body, headers=e.h("sup-a"))
        assert r.status_code == 429 and "output deliveries a second" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 90  # one token per 100 s
        # per key: the grid's bucket is full; other requests (days, references) are not limited
        e.post("/v1/profile-scores", b"{}", "grid", 400)
        e.post("/v1/references/price-index", dump_series(idx), "grid")
