"""Red-team review (hostile supplier, grid operator, aggregator, web attacker) of demand
response with PJM, the group registry and the dashboards.

Two kinds of tests:

* FINDING tests: an attack that worked on the code under review (the test failed before
  its fix, named in the docstring);
* REFUSED tests: attacks that were tried and are correctly refused, kept as regression
  guards.

Open findings whose fix is a design change are in ``tests/leaks/`` (not collected).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta

import pytest
from starlette.testclient import TestClient

from dashboard_setup import METER, START, copy_of, demo_dir
from meterhub.policy import PolicyError
from meterhub.policy.consent import Consent, load_revocation, sign_revocation

# -- dashboards -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_dir(tmp_path_factory)


@pytest.fixture
def customer(demo, tmp_path):
    from meterhub.web.customer import create_customer_app, open_household

    d = copy_of(demo, tmp_path / "data")
    return TestClient(create_customer_app(open_household(d, METER)), base_url="http://127.0.0.1:8765")


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)))


def test_finding_consents_page_does_not_confirm_a_revocation_that_did_not_happen(customer):
    """FINDING (low, fixed): ``/consents?revoked=ID`` printed "Consent ID revoked: no
    further exports." for any text in the link, so a hostile third party could send
    the customer a link that confirms the revocation of a consent still in force (or
    "granted" for one never granted). The page now reports only what the guard's log
    shows."""
    page = customer.get("/consents")
    form = {"csrf": _csrf(page.text), "consent_id": "advice-9", "recipient": "third-party",
            "purpose": "energy advice", "resolution": "60", "period_from": str(START),
            "period_to": str(START + timedelta(days=2)), "expires": str(START + timedelta(days=60))}
    assert customer.post("/consents", data=form, follow_redirects=False).status_code == 303
    t = _text(customer.get("/consents?revoked=advice-9").text)  # in force, not revoked
    assert "Consent advice-9 revoked" not in t and "Revoke consent advice-9" in t
    t = _text(customer.get("/consents?granted=Your+hub+was+reset.+Call+0900-123+to+restore").text)
    assert "Call 0900-123" not in t
    assert "Consent advice-9 granted." in _text(customer.get("/consents?granted=advice-9").text)  # the real one


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example",
                                  "LOCALHOST.evil.example", "evil.example:8765", "[::ffff:7f00:1]", ""])
def test_refused_dns_rebinding_hosts(customer, host):
    """REFUSED: a page elsewhere reaching the customer view through DNS rebinding (its
    Host header is the attacker's name) gets 421 on every route, GET and POST."""
    for method, path in (("GET", "/"), ("GET", "/consents"), ("POST", "/consents"),
                         ("POST", "/consents/advice-1/revoke")):
        r = customer.request(method, path, headers={"Host": host})
        assert r.status_code == 421, (host, path)


@pytest.mark.parametrize("origin", ["null", "http://localhost:8766", "http://127.0.0.1", "https://127.0.0.1:8765"])
def test_refused_cross_origin_posts_with_a_valid_token(customer, origin):
    """REFUSED: even with the session's own token (as a page on another local port or a
    sandboxed frame would need to steal), a foreign Origin is refused."""
    token = _csrf(customer.get("/consents").text)
    r = customer.post("/consents/advice-1/revoke", data={"csrf": token}, headers={"Origin": origin})
    assert r.status_code == 403 and "cross-origin" in r.text


def test_refused_csrf_token_of_another_session(customer):
    """REFUSED: a token issued to the attacker's own session (fixating the victim's
    cookie is not enough: the token is bound to the session id)."""
    attacker = TestClient(customer.app, base_url="http://127.0.0.1:8765")
    token = _csrf(attacker.get("/consents").text)
    customer.get("/consents")
    r = customer.post("/consents/advice-1/revoke", data={"csrf": token})
    assert r.status_code == 403 and "does not match" in r.text


@pytest.mark.parametrize("path", ["/static/../customer.py", "/static/%2e%2e/customer.py", "/static/..%2fcustomer.py",
                                  "/static/templates%2fbase.html", "/static/__init__.py"])
def test_refused_static_path_traversal(customer, path):
    r = customer.get(path)
    assert r.status_code == 404 and "import" not in r.text


@pytest.fixture(scope="module")
def utility(demo):
    from meterhub.service.app import create_app
    from meterhub.service.keys import ApiKeys

    k = ApiKeys({})
    grid, supplier = k.add("grid-op", "grid"), k.add("supplier-a", "supplier")
    return create_app(str(demo / "utility.sqlite"), k), grid, supplier


def _login(c: TestClient, key: str):
    token = _csrf(c.get("/dashboard/login").text)
    return c.post("/dashboard/login", data={"csrf": token, "api_key": key}, follow_redirects=False)


def test_refused_session_fixation_and_reuse_after_logout(utility):
    """REFUSED: a session id the attacker planted is never authenticated (login issues a
    fresh random one), and a session id copied before logout is dead after it."""
    app, grid, _ = utility
    c = TestClient(app)
    planted = "A" * 43
    c.cookies.set("meterhub_dashboard", planted, path="/dashboard")
    r = _login(c, grid)
    assert r.status_code == 303
    sid = re.search(r"meterhub_dashboard=([^;]+)", r.headers["set-cookie"]).group(1)
    assert sid != planted
    other = TestClient(app)
    other.cookies.set("meterhub_dashboard", planted, path="/dashboard")
    assert other.get("/dashboard/").status_code == 401
    thief = TestClient(app)
    thief.cookies.set("meterhub_dashboard", sid, path="/dashboard")
    assert thief.get("/dashboard/").status_code == 200
    c.cookies.delete("meterhub_dashboard", path="/dashboard")
    c.cookies.set("meterhub_dashboard", sid, path="/dashboard")
    token = _csrf(c.get("/dashboard/login").text)
    assert c.post("/dashboard/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert thief.get("/dashboard/").status_code == 401  # the server forgot the session


def test_refused_role_mixing(utility):
    """REFUSED: a supplier's key cannot ride on a grid session (a presented Bearer key
    decides; the session is not a fallback), and a supplier's login session sees no page."""
    app, grid, supplier = utility
    c = TestClient(app)
    assert _login(c, grid).status_code == 303
    for path in ("/dashboard/", "/dashboard/dr", "/dashboard/fraud", "/dashboard/settlement"):
        assert c.get(path, headers={"Authorization": f"Bearer {supplier}"}).status_code == 403
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    s = TestClient(app)
    assert _login(s, supplier).status_code == 303
    assert s.get("/dashboard/dr").status_code == 403
    assert s.get("/v1/meters/hh-0000/verdicts").status_code == 401  # a dashboard session is no API credential


# -- consents (the customer's signed documents) ---------------------------------------------


def test_finding_consent_ids_with_a_trailing_newline_are_refused():
    """FINDING (low, fixed): the consent id pattern ended in ``$``, which Python's ``re``
    also matches before a final newline, so ``"advice-1\\n"`` passed as an id of "1-64
    characters A-Z a-z 0-9 _ . -": two consents that look the same in every listing,
    and a revocation of one that leaves the other in force."""
    with pytest.raises(PolicyError):
        Consent("advice-1\n", "third-party", "energy advice", 60, date(2027, 1, 1), date(2027, 1, 2),
                date(2027, 2, 1))
    from meterhub.crypto import ecdsa

    raw = sign_revocation("advice-1\n", ecdsa.generate_signing_key())
    with pytest.raises(PolicyError):
        load_revocation(raw)


# -- demand response (PJM) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pjm(tmp_path_factory):
    from helpers import make_history
    from test_demand_response import N_DAYS, Hub, pjm_event
    from test_demand_response import START as START_DR

    h = make_history(start=START_DR, n_days=N_DAYS, seed=77)
    hub = Hub(tmp_path_factory.mktemp("pjm-red") / "hub.sqlite", h)
    ev = pjm_event(h)
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    return h, hub, ev, hub.release(ev.event_id)


def _verify(h, ev, rel):
    from meterhub.hub.dr_host import DR_APP_AID
    from meterhub.utility.demand_response import verify_release
    from test_demand_response import CODE_HASH, commitments

    return verify_release(rel, ev, h.registration, commitments(h), code_hash=CODE_HASH, app_aid=DR_APP_AID)


def test_refused_pjm_release_field_forgeries(pjm):
    """REFUSED: a hub (which knows every opening) re-labelling a valid PJM release: another
    proof width, another candidate count, a drop index out of range, the CAISO version
    byte, a larger reduction with a matching blinding it cannot produce."""
    from meterhub.dr.release import DRRelease
    from meterhub.utility.verifier import Rejected

    h, hub, ev, rel = pjm
    assert _verify(h, ev, rel).adjustment == rel.adjustment
    for change in ({"bits": 32 if rel.bits == 16 else 16}, {"bits": 64}, {"n_days": 3}, {"adjustment": 5},
                   {"method": 0}, {"scaled_reduction": rel.scaled_reduction + rel.n_days}):
        bad = dataclasses.replace(rel, **change)
        with pytest.raises(Rejected):
            _verify(h, ev, bad)
    raw = bytearray(rel.to_bytes())
    raw[0] = 1  # the CAISO version byte on a PJM body: field check (a < 800) fails
    with pytest.raises(ValueError):
        DRRelease.from_bytes(bytes(raw))


def test_refused_aggregator_switches_a_released_event_to_another_method(pjm):
    """REFUSED: after the release the aggregator re-sends the event under a newer
    modification with the CAISO method, another window and other candidate days (a
    second functional of the same day): the applet refuses it, and a re-ask answers the
    stored bytes only."""
    from meterhub.dr.event import METHOD_CAISO
    from meterhub.hub.dr_host import EventRefused
    from test_demand_response import make_event

    h, hub, ev, rel = pjm
    day = ev.start
    other = make_event(h, event_id=ev.event_id, modification=ev.modification + 1, method=METHOD_CAISO,
                       start=day + timedelta(hours=1))
    with pytest.raises(EventRefused):
        hub.client.put_event(other.event_id, other.to_bytes(), True)
    assert hub.release(ev.event_id) == rel


# -- the group registry --------------------------------------------------------------------


def test_finding_real_households_with_phantom_keys_are_refused():
    """FINDING (medium, fixed): the span test counts households by meter id, the masks
    by hub key. A grid operator that lists *real* households ``b0..b4`` under keys it
    holds in ``G2 = {a0..a4, b0..b4}`` (their real keys in ``H = {b0..b4, c0..c4}``)
    passes the span test ({G1 = {v, a0..a4}, G2, H} isolates nobody by id) but removes
    the phantom ``b`` masks itself: ``G2`` gives ``sum(a)`` and ``G1 - sum(a)`` is
    household ``v``. Unlike invented phantom ids (docs/fraud.md, residual risk), the ids
    are the feeder's real customers, so no customer count gives it away. Every hub now
    refuses a registry that lists one household with two hub keys on overlapping days."""
    from meterhub.crypto import ecdsa
    from meterhub.model.formats.aggregation import (
        GroupDefinition,
        GroupMember,
        PolicyRefusal,
        demo_group_key,
    )
    from meterhub.model.group_registry import RegistryBlock, RegistryView, isolated_households

    year = (date(2027, 1, 1), date(2027, 12, 31))

    def grp(gid, names, fake=()):
        ms = tuple(GroupMember(n, (b"\xff" if n in fake else b"\x01") + n.encode().ljust(31, b"\0"))
                   for n in sorted(names))
        return GroupDefinition(gid, "f", 60, year[0], year[1], ms).signed(demo_group_key())

    a, b, c = ([f"{p}{k}" for k in range(5)] for p in "abc")
    g1, g2, h = grp("G1", ["v", *a]), grp("G2", [*a, *b], fake=b), grp("H", [*b, *c])
    assert isolated_households([g1.meter_ids, g2.meter_ids, h.meter_ids]) == []  # fooled by ids
    block = RegistryBlock("f", 0, bytes(32), (g1, g2, h)).signed(demo_group_key())
    with pytest.raises(PolicyRefusal, match="different hub keys"):
        RegistryView().check_extension(block, [ecdsa.public_bytes(demo_group_key())], lambda d: False)
    # the same groups with the real keys, and a key change on days that do not overlap, pass
    ok = RegistryBlock("f", 0, bytes(32), (g1, grp("G2", [*a, *b]), h)).signed(demo_group_key())
    RegistryView().check_extension(ok, [ecdsa.public_bytes(demo_group_key())], lambda d: False)
    later = GroupDefinition("H2", "f", 60, date(2028, 1, 1), date(2028, 12, 31),
                            tuple(GroupMember(n, b"\x02" + n.encode().ljust(31, b"\0")) for n in sorted([*b, *c]))
                            ).signed(demo_group_key())
    moved = RegistryBlock("f", 0, bytes(32), (h, later)).signed(demo_group_key())
    RegistryView().check_extension(moved, [ecdsa.public_bytes(demo_group_key())], lambda d: False)


_SAT = date(2027, 5, 1)  # a Saturday
_TUE = date(2027, 5, 4)


def _pjm_days(day: date, n: int) -> tuple[date, ...]:
    from meterhub.dr.event import METHOD_PJM, similar_days

    days = similar_days(day, set(), set(), "Europe/Berlin", method=METHOD_PJM)
    if n > len(days):  # more candidates than PJM names: the CAISO weekday set
        days = similar_days(day, set(), set(), "Europe/Berlin")
    return tuple(days[:n])


@pytest.mark.parametrize(("name", "day", "days"), [
    ("four of five", _TUE, lambda: _pjm_days(_TUE, 4)),
    ("six candidates", _TUE, lambda: (*_pjm_days(_TUE, 5), _TUE - timedelta(days=14))),
    ("lowest of ten", _TUE, lambda: _pjm_days(_TUE, 10)),
    ("a repeated candidate", _TUE, lambda: (*_pjm_days(_TUE, 4), _pjm_days(_TUE, 1)[0])),
    ("the event day", _TUE, lambda: (*_pjm_days(_TUE, 4), _TUE)),
    ("a Saturday for a Tuesday", _TUE, lambda: (*_pjm_days(_TUE, 4), _SAT)),
    ("a Sunday for a Saturday", _SAT, lambda: (*_pjm_days(_SAT, 2), _SAT - timedelta(days=6))),
    ("two of three", _SAT, lambda: _pjm_days(_SAT, 2)),
])
def test_refused_crafted_pjm_candidate_sets(tmp_path, name, day, days):
    """REFUSED: an aggregator choosing PJM candidate sets that would tell it more than
    the lowest of 5 (3) days (a minimum over 10, a day weighted twice, a day of
    another kind): the applet refuses the record (6A80). The honest set is accepted."""
    from helpers import make_history
    from meterhub.dr.event import METHOD_PJM
    from meterhub.hub.dr_host import EventRefused
    from meterhub.model.timebase import local_midnight_utc
    from test_demand_response import START as START_DR
    from test_demand_response import Hub, make_event

    h = make_history(start=START_DR, n_days=2, seed=5)
    hub = Hub(tmp_path / "hub.sqlite", h)  # holds no day yet: any later event day is open
    start = local_midnight_utc(day, "Europe/Berlin") + timedelta(hours=17)
    honest = make_event(h, event_id="honest", start=start, method=METHOD_PJM,
                        baseline_days=_pjm_days(day, 3 if day.weekday() >= 5 else 5))
    hub.client.put_event(honest.event_id, honest.to_bytes(), True)
    bad = make_event(h, event_id="crafted", start=start, method=METHOD_PJM, baseline_days=days())
    with pytest.raises(EventRefused, match="6A80"):
        hub.client.put_event(bad.event_id, bad.to_bytes(), True)
