"""Hub billing, tariff prices on other meter grids, exchange formats and the parties' stores."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import card_vault, make_history
from meterhub.crypto.group import Q
from meterhub.crypto.pedersen import Opening
from meterhub.hub.billing import linear_bill
from meterhub.hub.store import HubError, HubStore
from meterhub.model.errors import FormatError
from meterhub.model.formats.sealed import (
    SealedDay,
    new_home_link_key,
    open_sealed_openings,
    seal_openings,
)
from meterhub.model.formats.statements import BillStatement
from meterhub.model.formats.units import decode_records, encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import TariffError, example_tariff
from meterhub.utility.store import UtilityStore


def test_linear_bill_is_exact_and_reduces_blinding():
    ops = [Opening(0, Q - 1), Opening(5, Q - 1), Opening(2**32 - 1, 3)]
    bill, r = linear_bill([400, 300, 7], ops)
    assert bill == 5 * 300 + (2**32 - 1) * 7
    assert r == (400 * (Q - 1) + 300 * (Q - 1) + 21) % Q
    with pytest.raises(ValueError):
        linear_bill([1], ops)


def test_prices_on_finer_and_coarser_meter_grids():
    t = example_tariff(2027)
    day = date(2027, 3, 16)
    p15 = t.prices_for(day_starts(day, "Europe/Berlin", 15))
    p5 = t.prices_for(day_starts(day, "Europe/Berlin", 5), 5)
    assert p5 == [p for p in p15 for _ in range(3)]
    p60 = t.prices_for(day_starts(day, "Europe/Berlin", 60), 60)
    assert p60 == p15[::4]
    with pytest.raises(TariffError, match="does not fit"):
        t.prices_for(day_starts(day, "Europe/Berlin", 15), 7)


def test_coarse_meter_interval_straddling_a_band_is_refused():
    t = example_tariff(2027)
    d = t.to_dict()
    # Move one boundary to a quarter past: a 60-minute interval then straddles it.
    for band in d["bands"]:
        if band["end"] == "06:00":
            band["end"] = "06:15"
        if band["start"] == "06:00":
            band["start"] = "06:15"
    t2 = type(t).from_dict(d)
    with pytest.raises(TariffError, match="straddles"):
        t2.prices_for(day_starts(date(2027, 3, 16), "Europe/Berlin", 60), 60)


def test_records_round_trip_and_framing():
    h = make_history(n_days=1, seed=2)
    d = h.days[0]
    rec = encode_records(d.first_index, d.commitments)
    idx, blob = decode_records(rec)
    assert idx == list(range(96)) and blob == d.commitments
    with pytest.raises(FormatError):
        decode_records(rec[:-1])
    up = DayUpload(d.batch, rec)
    assert DayUpload.from_json(up.to_json()) == up


@given(st.text(max_size=300))
def test_day_upload_parser_rejects_garbage_cleanly(text):
    try:
        DayUpload.from_json(text)
    except FormatError:
        pass


def test_day_upload_parser_specific_errors():
    h = make_history(n_days=1, seed=2)
    good = json.loads(DayUpload(h.days[0].batch, encode_records(0, h.days[0].commitments)).to_json())
    for mutate, match in [
        (lambda o: o.pop("batch"), "exactly"),
        (lambda o: o.update(signature="00"), "64 bytes"),
        (lambda o: o.update(records=o["records"][:-2]), "41-byte"),
        (lambda o: o.update(batch="zz"), "lower-case hex"),
        (lambda o: o.update(batch=o["batch"].upper()), "lower-case hex"),
        (lambda o: o.update(batch="03" + o["batch"][2:]), "version"),  # 01 and 02 are defined
        (lambda o: o.update(batch="02" + o["batch"][2:]), "wrong length"),  # v2 carries registers
    ]:
        o = dict(good)
        mutate(o)
        with pytest.raises(FormatError, match=match):
            DayUpload.from_json(json.dumps(o))


def test_home_link_seal_round_trip_and_tamper():
    key = new_home_link_key()
    ops = [Opening(m, (m * 7919) % Q) for m in range(10)]
    sealed = seal_openings(key, "m1", date(2027, 5, 1), 96, ops)
    assert open_sealed_openings(key, SealedDay.from_json(sealed.to_json())) == ops
    with pytest.raises(FormatError, match="authentication"):
        open_sealed_openings(new_home_link_key(), sealed)
    for field, value in [("meter_id", "m2"), ("day", date(2027, 5, 2)), ("first_index", 97), ("count", 9)]:
        with pytest.raises(FormatError):
            open_sealed_openings(key, dataclasses.replace(sealed, **{field: value}))
    ct = bytearray(sealed.ciphertext)
    ct[5] ^= 1
    with pytest.raises(FormatError, match="authentication"):
        open_sealed_openings(key, dataclasses.replace(sealed, ciphertext=bytes(ct)))


@given(st.text(max_size=200))
def test_sealed_day_parser_rejects_garbage_cleanly(text):
    try:
        SealedDay.from_json(text)
    except FormatError:
        pass


def test_statement_round_trip_and_strictness():
    h = make_history(n_days=1, seed=4)
    s = h.statement
    assert BillStatement.from_json(s.to_json()) == s
    o = json.loads(s.to_json())
    for mutate, match in [
        (lambda o: o.pop("total"), "missing"),
        (lambda o: o.update(extra=1), "unknown"),
        (lambda o: o.update(total="1"), "must be a non-negative int"),
        (lambda o: o.update(total=True), "must be a non-negative int"),
        (lambda o: o.update(total=-5), "must be a non-negative int"),
        (lambda o: o.update(blinding="ff" * 32), "below the group order"),
        (lambda o: o.update(format="v0"), "unknown bill statement format"),
        (lambda o: o.update(period_to="2000-01-01"), "ends before"),
    ]:
        bad = dict(o)
        mutate(bad)
        with pytest.raises(FormatError, match=match):
            BillStatement.from_json(json.dumps(bad))
    with pytest.raises(FormatError):
        BillStatement.from_json(b"\xff\xfe")


@given(st.binary(max_size=200))
def test_statement_parser_fuzz(data):
    try:
        BillStatement.from_json(data)
    except FormatError:
        pass


def test_hub_store_checks_and_idempotence(tmp_path):
    h = make_history(n_days=2, seed=8)
    key = new_home_link_key()
    vault = card_vault(tmp_path / "card.sqlite")
    hub = HubStore(tmp_path / "hub.sqlite", {"m-test": vault})
    hub.pair_meter("m-test", key, "Europe/Berlin", 15)
    sealed = [seal_openings(key, "m-test", d.batch.batch.day, d.first_index, d.openings) for d in h.days]
    assert hub.receive(sealed[0]) is True
    assert hub.receive(sealed[0]) is False
    with pytest.raises(HubError, match="no readings for day"):
        hub.openings("m-test", h.start, h.start + timedelta(days=1))
    hub.receive(sealed[1])
    first, ops = hub.openings("m-test", h.start, h.start + timedelta(days=1))
    assert first == 0 and ops == h.openings
    forged = seal_openings(new_home_link_key(), "m-test", h.start + timedelta(days=2), 999, h.days[0].openings)
    with pytest.raises(HubError, match="authentication"):
        hub.receive(forged)
    with pytest.raises(HubError, match="not paired"):
        hub.receive(dataclasses.replace(forged, meter_id="zz"))
    hub.close()
    # Survives a reopen (the card too).
    vault.card.close()
    hub = HubStore(tmp_path / "hub.sqlite", {"m-test": card_vault(tmp_path / "card.sqlite")})
    assert hub.openings("m-test", h.start, h.start)[1] == h.days[0].openings
    hub.close()


def test_utility_store_ingest_checks(tmp_path):
    from meterhub.crypto import ecdsa
    from meterhub.tariffs import dump_tariff, example_signed_tariff

    h = make_history(n_days=3, seed=6)
    u = UtilityStore(tmp_path / "u.sqlite")
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    pub = ecdsa.public_bytes(h.meter.signing_key)
    u.register_meter("m-test", pub, "Europe/Berlin", 15, tariff=signed)
    ups = h.uploads()
    # Tampered records are refused and logged; nothing is stored.
    bad = bytearray(ups[0].records)
    bad[41 * 3 + 10] ^= 1
    res = u.ingest_day(DayUpload(ups[0].batch, bytes(bad)))
    assert not res.accepted and "chain head" in res.reason
    assert u.ingest_day(ups[0]).accepted
    assert u.ingest_day(ups[0]).duplicate
    # A day after a gap is stored (its chain link waits for the missing day), but a
    # statement over the gap is not verified until the missing day arrives.
    assert u.ingest_day(ups[2]).accepted
    assert u.verify_statement(h.statement, record=False).reason == f"no signed batch for day {h.days[1].batch.batch.day}"
    assert u.ingest_day(ups[1]).accepted
    assert u.verify_statement(h.statement).ok
    wrong = dataclasses.replace(h.statement, energy_charge=h.statement.energy_charge + 1, total=h.statement.total + 1)
    v = u.verify_statement(wrong)
    assert not v.ok
    assert [r[3] for r in u.bill_verdicts()] == [True, False]  # V21: the history keeps both verdicts
    with pytest.raises(ValueError, match="another key"):
        u.register_meter("m-test", ecdsa.public_bytes(ecdsa.generate_signing_key()), "Europe/Berlin", 15)
    u.close()


def test_utility_verifies_pending_statements_in_pages(tmp_path):
    from meterhub.crypto import ecdsa
    from meterhub.tariffs import dump_tariff, example_signed_tariff

    u = UtilityStore(tmp_path / "u.sqlite")
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    statements = []
    for k in range(3):
        h = make_history(n_days=1, seed=20 + k, meter_id=f"m{k}")
        u.register_meter(f"m{k}", ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
        assert u.ingest_day(h.uploads()[0]).accepted
        statements.append(h.statement)
    bad = dataclasses.replace(statements[1], blinding=(statements[1].blinding + 1) % Q)
    for s in (statements[0], bad, statements[2]):
        u.submit_statement(s)
    assert [r[3] for r in u.bill_verdicts()] == [None, None, None]
    assert u.verify_pending(page=2) == (2, 1)
    verdicts = {r[0]: r[3] for r in u.bill_verdicts()}
    assert verdicts == {"m0": True, "m1": False, "m2": True}
    assert u.verify_pending() == (0, 0)  # nothing left pending
    u.close()
