"""The customer's dashboard (docs/dashboards.md) through Starlette's TestClient: every
page, the loopback-only Host check, CSRF on the consent forms, escaping of untrusted
strings, and grant/revoke going through the card's privacy guard (a revoked consent's
export is refused)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dashboard_setup import DAYS, METER, START, copy_of, demo_dir, export, install_export
from meterhub.cli import main
from meterhub.model.timebase import range_starts
from meterhub.utility.settlement import HubRefused
from meterhub.web.customer import DashboardError, create_customer_app, open_household

LAST = START + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def client(demo):
    return TestClient(create_customer_app(open_household(demo, METER)), base_url="http://127.0.0.1:8765")


@pytest.fixture
def household(demo, tmp_path):
    d = copy_of(demo, tmp_path / "data")
    install_export(d)
    c = TestClient(create_customer_app(open_household(d, METER)), base_url="http://127.0.0.1:8765")
    return d, c


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)))


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


@pytest.mark.parametrize("view", ["day", "week", "month"])
def test_consumption_views_by_band(client, view):
    r = client.get(f"/?view={view}")
    assert r.status_code == 200
    assert "Content-Security-Policy" in r.headers and "script-src 'self'" in r.headers["content-security-policy"]
    t = _text(r.text)
    assert "by tariff band (de-tou-2027 v1" in t
    # The table beside the chart: one row per interval (day/week) or per day (month).
    rows = re.findall(r"<tr><th scope=\"row\">", r.text)
    week = len(range_starts(LAST - timedelta(days=6), 7, "Europe/Berlin", 60))  # 167: the spring DST day has 23 hours
    assert len(rows) == {"day": 24, "week": week, "month": DAYS}[view]
    assert 'data-spec="consumption-spec"' in r.text and '<script type="application/json" id="consumption-spec">' in r.text
    assert 'class="skip" href="#main"' in r.text and 'id="main"' in r.text


def test_consumption_chart_holds_the_hub_readings(client, demo):
    from helpers import card_vault
    from meterhub.hub.store import HubStore

    hub = HubStore(demo / "hub.sqlite")
    vault = card_vault(demo / "hubs" / f"{METER}.sqlite")  # the card opens the sealed records
    try:
        with hub.attached(METER, vault):
            _, openings = hub.openings(METER, LAST, LAST)
    finally:
        vault.card.close()
        hub.close()
    r = client.get(f"/?view=day&day={LAST}")
    wh = [int(v.replace(",", "")) for v in re.findall(r"<td>([0-9,]+)</td><td>", r.text)]
    assert wh == [o.m for o in openings]  # full resolution, exactly what the hub holds


def test_bad_day_is_a_clear_error(client):
    r = client.get("/?day=2027-13-40")
    assert r.status_code == 400 and "day: a date YYYY-MM-DD" in r.text


def test_bills_are_checked_against_own_readings(client, demo):
    r = client.get("/bills")
    assert r.status_code == 200
    t = _text(r.text)
    assert f"{START} to {LAST}" in t and "verified: recomputed from your" in t and "de-tou-2027 v1" in t


def test_a_tampered_bill_is_flagged(demo, tmp_path):
    import json

    from helpers import card_vault
    from meterhub.hub.store import HubStore

    d = copy_of(demo, tmp_path / "data")
    hub = HubStore(d / "hub.sqlite")
    vault = card_vault(d / "hubs" / f"{METER}.sqlite")  # the household's own card re-seals it
    try:
        with hub.attached(METER, vault):
            st = json.loads(hub.statement(METER, START, LAST))
            st["total"] += 1
            hub.save_statement(METER, START, LAST, json.dumps(st))
    finally:
        vault.card.close()
        hub.close()
    c = TestClient(create_customer_app(open_household(d, METER)), base_url="http://127.0.0.1")
    t = _text(c.get("/bills").text)
    assert "DOES NOT MATCH your readings: total" in t


def test_releases_page_shows_log_policy_budgets(client):
    r = client.get("/releases")
    assert r.status_code == 200
    t = _text(r.text)
    assert "release log verified" in t and "Release policy in force: version 1" in t
    assert "supplier may receive: bill, settlement" in t
    # what/to whom/when/policy of every entry, and the settlement and DR releases
    assert re.search(r"settlement supplier \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d v1", t)
    assert "energy" in t and "kWh and its market value" in t
    assert 'id="budget-spec"' in r.text


def test_dr_page_shows_events_and_response(client):
    r = client.get("/dr")
    assert r.status_code == 200
    t = _text(r.text)
    assert "dr-2027-" in t and "optIn" in t or "optOut" in t
    assert "baseline days" in t


def test_loopback_host_only(demo):
    app = create_customer_app(open_household(demo, METER))
    assert TestClient(app, base_url="http://evil.example:8765").get("/").status_code == 421
    assert TestClient(app, base_url="http://localhost:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://[::1]:8765").get("/").status_code == 200
    remote = create_customer_app(open_household(demo, METER), allow_remote=True)
    assert TestClient(remote, base_url="http://hub.lan:8765").get("/").status_code == 200


def _grant(c, cid="advice-1", purpose="energy advice", token=None):
    page = c.get("/consents")
    form = {"csrf": token if token is not None else _csrf(page.text), "consent_id": cid, "recipient": "third-party",
            "purpose": purpose, "resolution": "60", "period_from": str(START), "period_to": str(START + timedelta(days=2)),
            "expires": str(START + timedelta(days=60))}
    return c.post("/consents", data=form, follow_redirects=False)


def test_grant_and_revoke_go_through_the_guard(household):
    d, c = household
    last = START + timedelta(days=2)
    with pytest.raises(HubRefused):  # no consent yet
        export(d, "advice-1", START, last)
    r = _grant(c)
    assert r.status_code == 303 and r.headers["location"] == "/consents?granted=advice-1"
    assert export(d, "advice-1", START, last).startswith(b"<?xml")
    page = c.get("/consents")
    assert "Revoke consent advice-1" in page.text and "energy advice" in page.text
    r = c.post("/consents/advice-1/revoke", data={"csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    with pytest.raises(HubRefused) as e:
        export(d, "advice-1", START, last)
    assert e.value.sw == 0x6982
    t = _text(c.get("/consents?revoked=advice-1").text)
    assert "Consent advice-1 revoked" in t and "revoked" in t
    log = _text(c.get("/releases").text)
    assert "revoke third-party" in log and "export third-party" in log


def test_csrf_is_required(household):
    d, c = household
    assert _grant(c, token="0" * 64).status_code == 403
    fresh = TestClient(c.app, base_url="http://127.0.0.1:8765")  # no session cookie at all
    r = fresh.post("/consents/advice-1/revoke", data={"csrf": "x"})
    assert r.status_code == 403 and "no session cookie" in r.text
    assert _grant(c).status_code == 303
    token = _csrf(c.get("/consents").text)
    r = c.post("/consents/advice-1/revoke", data={"csrf": token}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.text
    assert export(d, "advice-1", START, START + timedelta(days=2))  # still in force


def test_untrusted_strings_are_escaped(household):
    d, c = household
    evil = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'
    assert _grant(c, cid="evil-1", purpose=evil).status_code == 303
    html = c.get("/consents").text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;img src=x onerror=alert(1)&gt;" in html


def test_bad_consent_is_a_clear_error(household):
    d, c = household
    r = _grant(c, cid="bad id!")
    assert r.status_code == 409 and "consent_id" in r.text
    token = _csrf(c.get("/consents").text)
    r = c.post("/consents/nosuch/revoke", data={"csrf": token})
    assert r.status_code == 409 and "6A88" in r.text


def test_open_household_refuses_bad_input(demo, tmp_path):
    with pytest.raises(DashboardError, match="hub cards; name one with --meter"):
        open_household(demo)
    with pytest.raises(DashboardError, match="no hub card for meter"):
        open_household(demo, "nosuch")
    with pytest.raises(DashboardError, match="no hub.sqlite"):
        open_household(tmp_path)


def test_cli_refuses_non_loopback_and_bad_dirs(demo, tmp_path, capsys):
    assert main(["hub", "dashboard", "--data-dir", str(demo), "--meter", METER, "--listen", "0.0.0.0:0"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main(["hub", "dashboard", "--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"]) == 2
    assert "no hub.sqlite" in capsys.readouterr().err


def test_demo_hint_commands_parse():
    import shlex

    from meterhub.cli import build_parser
    from meterhub.cli.hub_web import dashboards_hint

    hint = dashboards_hint("meterhub-data", METER)
    cmds = [line.split("meterhub ", 1)[1].split("   then")[0] for line in hint.splitlines() if "meterhub " in line]
    assert len(cmds) == 3
    parser = build_parser()
    for cmd in cmds:
        args = parser.parse_args(shlex.split(cmd))
        assert callable(args.func)
    assert parser.parse_args(shlex.split(cmds[0])).meter == METER


@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
@settings(max_examples=200, deadline=None)
def test_form_parser_only_raises_form_error(body):
    import asyncio

    from starlette.requests import Request

    from meterhub.web.common import FormError, read_form

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    req = Request({"type": "http", "method": "POST", "headers": [], "path": "/", "query_string": b""}, receive)
    try:
        out = asyncio.run(read_form(req, max_bytes=256, max_fields=5))
    except FormError:
        assert len(body) > 256 or body.count(b"&") + body.count(b";") >= 5 or not _utf8(body)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items()) and len(out) <= 5


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
