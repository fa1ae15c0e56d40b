"""Consented export (issue 11): readings with openings as Green Button (ESPI) Atom XML,
only under a consent the customer signed; revocation stops further exports at once.
The feed is read back by greenbutton-objects, an independent ESPI parser."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from greenbutton_objects import parse as gb_parse
from hypothesis import given
from hypothesis import strategies as st

from helpers import make_history
from meterhub.applets.export import export_request
from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import (
    EXPORT_APP_AID,
    RECIPIENT_SDS,
    GuardClient,
    ReadingsClient,
    customer_key_path,
    demo_dap_key,
    demo_scp03_keys,
    export_load_file,
)
from meterhub.hub.store import HubError
from meterhub.model.formats.greenbutton import ExportFormatError, parse_export
from meterhub.policy import PolicyError, verify_release_log
from meterhub.policy.consent import (
    Consent,
    dump_consent,
    load_consent,
    sign_consent,
    sign_revocation,
)
from meterhub.utility.export import verify_export
from meterhub.utility.settlement import AppletMailbox, HubRefused
from meterhub.utility.tsm import TSM, TSMError, dap_signer
from test_settlement import Hub

THIRD = RECIPIENT_SDS["third-party"]


def _third(card) -> TSM:
    return TSM(card.transmit, demo_scp03_keys("third-party"), sd_aid=THIRD, dap=dap_signer(THIRD, demo_dap_key("third-party")))


@pytest.fixture
def setup(tmp_path):
    h = make_history(n_days=3, seed=97)
    hub = Hub(tmp_path / "hub.sqlite", h)
    with _third(hub.card) as t:
        t.deploy(export_load_file(), EXPORT_APP_AID)
    rc = ReadingsClient(hub.card.transmit, EXPORT_APP_AID)
    rc.select()
    rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
    for d in h.days:
        rc.put_openings(d.batch.batch.day, d.first_index, d.openings)
    key = ecdsa.load_signing_key(customer_key_path(tmp_path / "hub.sqlite").read_bytes())
    return h, hub, key


def _consent(h, **kw) -> Consent:
    args = dict(consent_id="advice-1", recipient="third-party", purpose="energy advice", resolution_minutes=60,
                period_from=h.start, period_to=h.start + timedelta(days=2), expires=h.start + timedelta(days=40))
    args.update(kw)
    return Consent(**args)


def _guard(hub) -> GuardClient:
    g = GuardClient(hub.card.transmit)
    g.select()
    return g


def _export(hub, cid, first, last, res):
    t = _third(hub.card)
    t.open()
    return AppletMailbox(t, EXPORT_APP_AID).request(export_request(cid, first, last, res), "export")


@pytest.mark.interop
def test_consented_export_is_green_button_and_verifies(setup, tmp_path):
    h, hub, key = setup
    last = h.start + timedelta(days=2)
    with pytest.raises(HubRefused, match="not entitled|does not verify") as e:  # no consent yet
        _export(hub, "advice-1", h.start, last, 60)
    assert e.value.sw == 0x6982
    _guard(hub).add_consent(dump_consent(sign_consent(_consent(h), key)))
    with pytest.raises(HubRefused) as e:  # finer than consented
        _export(hub, "advice-1", h.start, last, 15)
    assert e.value.sw == 0x6982
    raw = _export(hub, "advice-1", h.start, last, 60)
    assert _export(hub, "advice-1", h.start, last, 60) == raw  # a re-ask: the same bytes
    # An independent ESPI reader sees one usage point, Wh, hourly values equal to the readings.
    (tmp_path / "gb.xml").write_bytes(raw)
    ups = gb_parse.parse_feed(str(tmp_path / "gb.xml"))
    assert len(ups) == 1
    (mr,) = ups[0].meterReadings
    irs = list(mr.intervalReadings)
    hourly = [sum(r[k : k + 4]) for r in h.readings for k in range(0, len(r), 4)]
    assert [ir.value for ir in irs] == hourly
    assert mr.readingType.intervalLength == 3600 and mr.readingType.uom.name.lower().startswith("w")
    assert all(ir.timePeriod.duration == timedelta(hours=1) for ir in irs)
    starts = [ir.timePeriod.start for ir in irs]
    assert all(b - a == timedelta(hours=1) for a, b in zip(starts, starts[1:], strict=False))
    # The recipient checks every value and opening against the meter's commitments.
    exp = parse_export(raw)
    assert verify_export(exp, h.registration, h.day_commitments()).ok
    bad = dataclasses.replace(exp, readings=(dataclasses.replace(exp.readings[5], value=exp.readings[5].value + 1),)
                              + exp.readings[1:])
    assert not verify_export(bad, h.registration, h.day_commitments()).ok
    bad = dataclasses.replace(exp, readings=exp.readings[:5] + (dataclasses.replace(
        exp.readings[5], blinding=exp.readings[5].blinding ^ 1),) + exp.readings[6:])
    assert not verify_export(bad, h.registration, h.day_commitments()).ok
    assert not verify_export(dataclasses.replace(exp, readings=exp.readings[:-1]), h.registration,
                             h.day_commitments()).ok
    # Every export is in the release log, naming its consent.
    g = _guard(hub)
    count, head = g.head()
    entries = verify_release_log(g.raw_entries(), head)
    assert [(e.kind, e.consent) for e in entries] == [("policy", ""), ("consent", "advice-1"), ("export", "advice-1")]
    assert entries[-1].samples == len(hourly) and entries[-1].recipient == "third-party"


def test_revocation_stops_exports_at_once(setup):
    h, hub, key = setup
    last = h.start + timedelta(days=2)
    _guard(hub).add_consent(dump_consent(sign_consent(_consent(h), key)))
    _export(hub, "advice-1", h.start, last, 60)
    with pytest.raises(HubError, match="6982"):  # only the customer can revoke
        _guard(hub).revoke_consent(sign_revocation("advice-1", ecdsa.generate_signing_key()))
    _guard(hub).revoke_consent(sign_revocation("advice-1", key))
    with pytest.raises(HubRefused) as e:  # not even the released document again
        _export(hub, "advice-1", h.start, last, 60)
    assert e.value.sw == 0x6982
    g = _guard(hub)
    count, head = g.head()
    kinds = [e.kind for e in verify_release_log(g.raw_entries(), head)]
    assert kinds == ["policy", "consent", "export", "revoke"]


def test_consents_are_checked(setup):
    h, hub, key = setup
    last = h.start + timedelta(days=2)
    g = _guard(hub)
    with pytest.raises(HubError, match="6982"):  # not signed by the customer
        g.add_consent(dump_consent(sign_consent(_consent(h), ecdsa.generate_signing_key())))
    g.add_consent(dump_consent(sign_consent(_consent(h, consent_id="grid", recipient="grid-operator"), key)))
    g.add_consent(dump_consent(sign_consent(_consent(h, consent_id="short", period_to=h.start), key)))
    g.add_consent(dump_consent(sign_consent(_consent(h, consent_id="old", expires=h.start + timedelta(days=1)), key)))
    with pytest.raises(HubError, match="6985"):  # the same id again
        g.add_consent(dump_consent(sign_consent(_consent(h, consent_id="old"), key)))
    for cid, first, to in [("grid", h.start, last), ("short", h.start, last), ("old", h.start, last), ("nope", h.start, last)]:
        with pytest.raises(HubRefused) as e:
            _export(hub, cid, first, to, 60)
        assert e.value.sw == 0x6982, cid
    # A consent for a shorter period allows exactly that.
    exp = parse_export(_export(hub, "short", h.start, h.start, 60))
    assert exp.period_to == h.start and len(exp.readings) == 24
    g = _guard(hub)
    count, head = g.head()
    assert [e.kind for e in verify_release_log(g.raw_entries(), head)].count("export") == 1


def test_export_applet_takes_no_install_key(setup):
    h, hub, key = setup
    from meterhub.applets.export import ExportApplet
    from meterhub.card.gp import make_load_file

    with _third(hub.card) as t, pytest.raises(TSMError) as e:
        t.deploy(make_load_file("F04D4800455899", {"F04D480045589901": ExportApplet}), "F04D48004558990101",
                 params=ecdsa.public_bytes(key))
    assert e.value.sw == 0x6982


def test_consent_files_round_trip_and_refuse_garbage():
    key = ecdsa.generate_signing_key()
    h = make_history(n_days=1, seed=98)
    signed = sign_consent(_consent(h), key)
    assert load_consent(dump_consent(signed)) == signed
    d = json.loads(dump_consent(signed))
    d["consent"]["resolution_minutes"] = 7
    with pytest.raises(PolicyError):
        load_consent(json.dumps(d))


@given(st.binary(max_size=400))
def test_export_parser_only_raises_format_error(data):
    try:
        parse_export(data)
    except ExportFormatError:
        pass


@given(st.text(max_size=200))
def test_export_parser_on_xml_like_text(text):
    doc = ('<feed xmlns="http://www.w3.org/2005/Atom" xmlns:mh="urn:meterhub:export:1">' + text + "</feed>").encode()
    try:
        parse_export(doc)
    except ExportFormatError:
        pass
