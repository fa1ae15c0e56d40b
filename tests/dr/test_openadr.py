"""OpenADR 2.0b with openleadr: a real VTN and VENs in one process over localhost (TLS,
XML signatures, pinned fingerprints), events delivered into the DR applet."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.dr.event import EventError
from meterhub.dr.openadr import (
    VEN,
    OptRules,
    event_from_oadr,
    oadr_event,
    run_exchange,
    self_signed,
)
from meterhub.hub.dr_host import EventRefused
from meterhub.utility.settlement import HubRefused
from test_demand_response import N_DAYS, START, VTN_KEY, Hub, make_event


def card_delivery(hub: Hub):
    def deliver(ev, raw, opt_in) -> bool:
        hub.client.select()
        try:
            hub.client.put_event(ev.event_id, raw, opt_in)
        except EventRefused:
            return False
        return True
    return deliver


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    out = []
    for k, mid in enumerate(("ven-a", "ven-b")):
        h = make_history(start=START, n_days=N_DAYS, seed=30 + k, meter_id=mid)
        out.append(Hub(tmp_path_factory.mktemp(mid) / "hub.sqlite", h))
    return out


def test_event_reaches_the_card_and_opt_ins_reach_the_vtn(hubs):
    a, b = hubs
    ev = make_event(a.h, targets=("ven-a", "ven-b"))
    vens = [VEN("ven-a", OptRules(), card_delivery(a)), VEN("ven-b", OptRules(participate=False), card_delivery(b))]
    opts = run_exchange(self_signed("vtn", VTN_KEY), [(ev, ["ven-a", "ven-b"])], vens)
    assert opts == {("ven-a", ev.event_id): "optIn", ("ven-b", ev.event_id): "optOut"}
    a.feed()
    assert a.release(ev.event_id).event_digest == ev.digest()
    b.feed()
    with pytest.raises(HubRefused, match="6985"):  # opted out: the card releases nothing
        b.release(ev.event_id)


def test_wrong_pin_delivers_nothing(hubs):
    a, _ = hubs
    ev = make_event(a.h, event_id="ev-pin", targets=("ven-a",))
    seen = []
    ven = VEN("ven-a", OptRules(), lambda e, raw, opt: seen.append(e) or True)
    opts = run_exchange(self_signed("vtn", VTN_KEY), [(ev, ["ven-a"])], [ven],
                        pinned="00:11:22:33:44:55:66:77:88:99", timeout=2.0)
    assert opts == {} and seen == []


def test_record_signed_by_another_key_is_refused_by_the_card_and_opted_out(tmp_path):
    h = make_history(start=START, n_days=N_DAYS, seed=40, meter_id="ven-c")
    hub = Hub(tmp_path / "hub.sqlite", h)
    other = ecdsa.generate_signing_key()
    ev = make_event(h, key=other, targets=("ven-c",))
    # The VTN's TLS and XML signature are fine (its own certificate); only the record's key is foreign.
    opts = run_exchange(self_signed("vtn", VTN_KEY), [(ev, ["ven-c"])], [VEN("ven-c", OptRules(), card_delivery(hub))])
    assert opts == {("ven-c", ev.event_id): "optOut"}


def test_record_survives_the_oadr_round_trip_and_tampering_is_caught(hubs):
    a, _ = hubs
    ev = make_event(a.h, targets=("ven-a",))
    oe = dataclasses.asdict(oadr_event(ev))
    assert event_from_oadr(oe) == ev
    oe["event_descriptor"]["vtn_comment"] = "something else"
    with pytest.raises(EventError):
        event_from_oadr(oe)


def test_a_pjm_event_carries_its_method_through_openadr_to_the_card(tmp_path):
    """The baseline method travels in vtnComment (OpenADR has no field for it) and is
    covered by the record's signature: a PJM event arrives as PJM, and a comment that
    names another method does not rebuild a verifying record."""
    from test_demand_response import pjm_event

    a = Hub(tmp_path / "hub.sqlite", make_history(start=START, n_days=N_DAYS, seed=33, meter_id="ven-a"))
    ev = pjm_event(a.h, targets=("ven-a",))
    oe = dataclasses.asdict(oadr_event(ev))
    assert event_from_oadr(oe) == ev and ev.method == 1
    oe["event_descriptor"]["vtn_comment"] = oe["event_descriptor"]["vtn_comment"].replace(
        "baseline=pjm-high-4-of-5", "baseline=caiso-10-in-10")
    assert not event_from_oadr(oe).verify(ecdsa.public_bytes(VTN_KEY))
    opts = run_exchange(self_signed("vtn", VTN_KEY), [(ev, ["ven-a"])], [VEN("ven-a", OptRules(), card_delivery(a))])
    assert opts == {("ven-a", ev.event_id): "optIn"}
    a.feed()
    assert a.release(ev.event_id).method == 1


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=120), st.dictionaries(st.sampled_from(["ven_id", "group_id"]), st.text(max_size=8), max_size=2))
def test_oadr_record_parser_only_raises_event_error(comment, target):
    h = make_history(start=START, n_days=1, seed=3, meter_id="ven-h")
    oe = dataclasses.asdict(oadr_event(make_event(h, targets=("ven-h",), baseline_days=())))
    oe["event_descriptor"]["vtn_comment"] = comment
    oe["targets"] = [target]
    try:
        event_from_oadr(oe)
    except EventError:
        pass


def test_a_ven_session_sends_registration_reports_event_request_and_answer_only(monkeypatch):
    """The one-shot VEN session (dr.openadr._session): no optional oadrQueryRegistration
    and no oadrPoll after the event sync, which OpenADRClient.run adds (a third of the
    signed messages of the demo's exchange)."""
    import openleadr.client

    sent: list[str] = []
    orig = openleadr.client.create_message

    def spy(message_type, *a, **kw):
        sent.append(message_type)
        return orig(message_type, *a, **kw)

    monkeypatch.setattr(openleadr.client, "create_message", spy)  # the client binds it at construction
    h = make_history(start=START, n_days=2, seed=40, meter_id="ven-c")
    ev = make_event(h, targets=("ven-c",))
    opts = run_exchange(self_signed("vtn", VTN_KEY), [(ev, ["ven-c"])], [VEN("ven-c", OptRules(), lambda *a: True)])
    assert opts == {("ven-c", ev.event_id): "optIn"}
    assert sent == ["oadrCreatePartyRegistration", "oadrRegisterReport", "oadrRequestEvent", "oadrCreatedEvent"]
