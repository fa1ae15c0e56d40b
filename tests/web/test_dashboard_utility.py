"""The utility's dashboard mounted in the service (docs/dashboards.md) through
Starlette's TestClient: authentication as the API's (bearer key or the login form and its
session), role grid only, CSRF on login/logout, every panel's content from the re-verified
stored outputs, explicit no-data states, and escaping of stored untrusted strings."""

from __future__ import annotations

import re
import shutil
import sqlite3

import pytest
from starlette.testclient import TestClient

from dashboard_setup import copy_of, demo_dir
from meterhub.service.app import create_app
from meterhub.service.keys import ApiKeys

PAGES = ["/dashboard/", "/dashboard/settlement", "/dashboard/fraud", "/dashboard/dr"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def keys():
    k = ApiKeys({})
    return k, k.add("grid-op", "grid"), k.add("supplier-a", "supplier")


@pytest.fixture(scope="module")
def client(demo, keys):
    k, grid, _ = keys
    return TestClient(create_app(str(demo / "utility.sqlite"), k))


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)))


@pytest.mark.parametrize("path", PAGES)
def test_pages_need_a_grid_key(client, keys, path):
    _, grid, supplier = keys
    r = client.get(path)
    assert r.status_code == 401 and 'name="api_key"' in r.text and 'type="password"' in r.text
    assert client.get(path, headers=_auth("wrong")).status_code == 401
    r = client.get(path, headers=_auth(supplier))
    assert r.status_code == 403 and "role grid only" in r.text
    r = client.get(path, headers=_auth(grid))
    assert r.status_code == 200 and "Signed in as grid-op (grid)" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'class="skip" href="#main"' in r.text


def test_login_form_session_and_logout(demo, keys):
    k, grid, _ = keys
    c = TestClient(create_app(str(demo / "utility.sqlite"), k))
    page = c.get("/dashboard/login").text
    token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page).group(1)
    assert c.post("/dashboard/login", data={"csrf": "0" * 64, "api_key": grid}).status_code == 403
    r = c.post("/dashboard/login", data={"csrf": token, "api_key": "wrong"})
    assert r.status_code == 401 and "unknown API key" in r.text
    r = c.post("/dashboard/login", data={"csrf": token, "api_key": grid}, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower() and grid not in r.headers["set-cookie"]
    assert c.get("/dashboard/").status_code == 200  # the session cookie
    assert c.get("/v1/meters/hh-0000/coverage").status_code == 401  # the API itself still wants the key
    assert c.post("/dashboard/logout", data={"csrf": "bad"}).status_code == 403
    assert c.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    c.cookies.delete("meterhub_dashboard", path="/dashboard")
    assert c.get("/dashboard/").status_code == 401


def test_verification_panel(client, keys, demo):
    t = _text(client.get("/dashboard/", headers=_auth(keys[1])).text)
    assert "Bill statements received, by verdict" in t and "5 statements received" in t
    assert re.search(r"verified 5 rejected 0 pending 0", t)
    conn = sqlite3.connect(demo / "utility.sqlite")
    meters = [r[0] for r in conn.execute("SELECT meter_id FROM meters")]
    conn.close()
    for m in meters:  # every meter's coverage: 20 uploaded, 20 billed, 0 unbilled, no gap
        assert f"{m} 20 20 0 none 2027-03-15 2027-04-03" in t
    assert "Gaps (days without upload)" in t and "Rejected day uploads" in t


def test_settlement_forecast_classification(client, keys):
    r = client.get("/dashboard/settlement", headers=_auth(keys[1]))
    t = _text(r.text)
    for s in ("supplier-a", "supplier-b", "supplier-c"):
        assert s in t
    assert "statements verified, 0 rejected" in t and "SLP share" in t
    shares = [float(x) for x in re.findall(r"(\d+\.\d\d)%", t.split("SLP share")[1].split("Forecast")[0])]
    assert abs(sum(shares[0::2]) - 100) < 0.05 and abs(sum(shares[1::2]) - 100) < 0.05
    assert "Forecast against actual" in t and "Weighted absolute error of the SLP forecast" in t
    assert "customers classified, 0 rejected" in t
    for chart in ("shares", "forecast", "classes"):
        assert f'id="{chart}-spec"' in r.text


def test_fraud_panel(client, keys):
    t = _text(client.get("/dashboard/fraud", headers=_auth(keys[1])).text)
    assert "Feeder feeder-0: unexplained loss against the technical-loss band" in t
    assert "Localisation progress" in t and "Technical loss kWh" in t


def test_dr_panel(client, keys):
    t = _text(client.get("/dashboard/dr", headers=_auth(keys[1])).text)
    assert "dr-2027-" in t and "Verified reductions per event and feeder" in t and "0 rejected" in t
    assert "Window peak kW with" in t or "No data." in t


def test_no_data_states(demo, keys, tmp_path):
    k, grid, _ = keys
    d = copy_of(demo, tmp_path / "data")
    for name in ("fraud.sqlite", "dr.sqlite", "settlement.sqlite"):
        (d / name).unlink()
    c = TestClient(create_app(str(d / "utility.sqlite"), k))
    for path, what in (("/dashboard/fraud", "fraud.sqlite"), ("/dashboard/dr", "dr.sqlite"),
                       ("/dashboard/settlement", "settlement.sqlite")):
        t = _text(c.get(path, headers=_auth(grid)).text)
        assert "No data." in t and f"no {what} in" in t


def test_stored_strings_are_escaped(demo, keys, tmp_path):
    k, grid, _ = keys
    d = tmp_path / "data"
    d.mkdir()
    for n in ("utility.sqlite", "utility.sqlite-wal", "utility.sqlite-shm"):
        if (demo / n).exists():
            shutil.copy(demo / n, d / n)
    conn = sqlite3.connect(d / "utility.sqlite")
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    with conn:
        conn.execute("INSERT INTO rejected_uploads VALUES (?,?,?,?)", (evil, "2027-03-20", evil, "now"))
    conn.close()
    html = TestClient(create_app(str(d / "utility.sqlite"), k)).get("/dashboard/", headers=_auth(grid)).text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html


def test_static_plotly_from_the_wheel(client):
    r = client.get("/dashboard/static/plotly.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert b"plotly.js v" in r.content[:2000]
    assert client.get("/dashboard/static/plotly.min.js", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.get("/dashboard/static/../keys.py").status_code == 404
    assert client.get("/dashboard/static/dashboard.js").status_code == 200
