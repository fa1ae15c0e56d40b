"""Bill statement v3: verified energy per band, registers in v2 batches, metering point ids.

Rules V26-V29 of docs/verification.md, each tested by name.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto import ecdsa
from meterhub.crypto.group import Q
from meterhub.hub.billing import banded_statement
from meterhub.hub.proving import statement_from_json
from meterhub.meter.device import BatchError, DailyBatch, Meter, SignedBatch
from meterhub.model.billing.bands import band_indices
from meterhub.model.errors import FormatError
from meterhub.model.formats.statements import BandedBillStatement, BandEnergy
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.ids import (
    check_contract_id,
    check_metering_point,
    is_malo,
    is_melo,
    malo_check_digit,
)
from meterhub.model.timebase import day_starts
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore
from meterhub.utility.verifier import DayCommitments, MeterRegistration, verify_banded_bill

TZ = "Europe/Berlin"
MALO = "51238696781"
MELO = "DE0001234512345ABCDEFGHIJ0123456789"[:33]
START = date(2027, 3, 25)  # Thursday; 03-26 Good Friday (holiday), 03-28 the spring DST day (92 intervals)


def _meter_days(n_days: int = 4, *, register: int | None = 1_234_567, seed: int = 7, start: date = START):
    rng = random.Random(seed)
    meter = Meter("m-band", ecdsa.generate_signing_key(), register_wh=register)
    days = []
    for k in range(n_days):
        d = start + timedelta(days=k)
        n = len(day_starts(d, TZ, 15))
        days.append(meter.record_day(d, [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in range(n)]))
    reg = MeterRegistration(meter.meter_id, meter.signing_key.public_key(), TZ, 15)
    return meter, reg, days


def _statement(days, tariff, *, start: date = START, metering_point: str = MALO, contract: str = "VK-4711"):
    openings = [o for d in days for o in d.openings]
    return banded_statement(
        meter_id="m-band", metering_point=metering_point, contract_id=contract, tariff=tariff,
        period_from=start, period_to=start + timedelta(days=len(days) - 1), first_index=days[0].first_index,
        tz=TZ, interval_minutes=15, openings=openings,
    )


def _dcs(days):
    return [DayCommitments(d.batch, d.commitments) for d in days]


@pytest.fixture(scope="module")
def banded():
    meter, reg, days = _meter_days()
    tariff = example_signed_tariff().tariff
    return meter, reg, days, tariff, _statement(days, tariff)


# ------------------------------------------------------------- identifiers
def test_malo_check_digit_follows_the_bdew_algorithm():
    # 5 1 2 3 8 6 9 6 7 8: odd positions 5+2+8+9+7 = 31, even 1+3+6+6+8 = 24; 31 + 48 = 79 -> 1
    assert malo_check_digit("5123869678") == 1
    assert is_malo("51238696781") and is_malo("41373559241")
    assert not is_malo("51238696782")  # wrong check digit
    assert not is_malo("01238696781")  # leading zero
    assert not is_malo("5123869678")  # ten digits
    assert not is_malo("５1238696781")  # non-ASCII digit


def test_melo_is_33_characters():
    assert len(MELO) == 33 and is_melo(MELO)
    assert not is_melo(MELO[:-1]) and not is_melo(MELO.lower()) and not is_melo("AT" + MELO[2:])


def test_rule_V26_identifiers_are_checked_on_decode_and_against_the_assignment(banded):
    _, reg, days, tariff, st3 = banded
    o = json.loads(st3.to_json())
    for bad in ("51238696782", "123", MELO.lower()):
        with pytest.raises(FormatError, match="metering_point"):
            BandedBillStatement.from_dict({**o, "metering_point": bad})
    with pytest.raises(FormatError, match="contract_id"):
        BandedBillStatement.from_dict({**o, "contract_id": "a b"})
    assert check_metering_point(MELO) == MELO and check_contract_id("VK-4711") == "VK-4711"
    v = verify_banded_bill(st3, reg, _dcs(days), tariff, metering_point="41373559241")
    assert not v and v.reason == f"statement names metering point {MALO}, the meter's is 41373559241"
    v = verify_banded_bill(st3, reg, _dcs(days), tariff, contract_id="VK-1")
    assert not v and "statement names contract 'VK-4711'" in v.reason
    assert verify_banded_bill(st3, reg, _dcs(days), tariff, metering_point=MALO, contract_id="VK-4711")


# ------------------------------------------------------------------ batches
def test_batch_v2_carries_the_registers_and_v1_still_decodes(banded):
    _, _, days, _, _ = banded
    b = days[1].batch.batch
    assert b.version == 2 and b.register_start_wh == days[0].batch.batch.register_end_wh
    raw = b.to_bytes()
    assert raw[0] == 2 and DailyBatch.from_bytes(raw) == b
    v1 = dataclasses.replace(b, register_start_wh=None, register_end_wh=None)
    assert v1.to_bytes()[0] == 1 and len(v1.to_bytes()) == len(raw) - 16
    assert DailyBatch.from_bytes(v1.to_bytes()) == v1
    with pytest.raises(BatchError, match="wrong length"):
        DailyBatch.from_bytes(raw[:-1])
    with pytest.raises(BatchError, match="backwards"):
        DailyBatch.from_bytes(raw[:-16] + (5).to_bytes(8, "big") + (4).to_bytes(8, "big"))
    with pytest.raises(BatchError, match="unknown"):
        DailyBatch.from_bytes(b"\x03" + raw[1:])


def test_meter_register_advances_by_the_days_readings(banded):
    meter, _, days, _, _ = banded
    total = sum(o.m for d in days for o in d.openings)
    assert days[0].batch.batch.register_start_wh == 1_234_567
    assert days[-1].batch.batch.register_end_wh == 1_234_567 + total == meter.register_wh


# ----------------------------------------------------------------- statement
def test_banded_statement_verifies_and_bands_match_the_readings(banded):
    _, reg, days, tariff, st3 = banded
    assert verify_banded_bill(st3, reg, _dcs(days), tariff)
    bands_of = band_indices(tariff, START, len(days), TZ, 15)
    readings = [o.m for d in days for o in d.openings]
    for b in st3.bands:
        assert b.energy_wh == sum(m for m, k in zip(readings, bands_of, strict=True) if k == b.band)
        assert b.name == tariff.bands[b.band].name
    assert st3.energy_wh == sum(readings)
    # March 25-28: winter; weekday and weekend bands both occur.
    assert {b.name for b in st3.bands} == {
        "winter-night", "winter-day", "winter-peak", "winter-evening", "winter-weekend-day"}
    assert statement_from_json(st3.to_json()) == st3


def test_v1_batches_still_verify_without_registers():
    _, reg, days = _meter_days(2, register=None)
    assert days[0].batch.batch.version == 1
    tariff = example_signed_tariff().tariff
    assert verify_banded_bill(_statement(days, tariff), reg, _dcs(days), tariff)


def test_rule_V27_bands_are_the_periods_bands_in_range_and_price_to_the_charge(banded):
    _, reg, days, tariff, st3 = banded
    dcs = _dcs(days)
    v = verify_banded_bill(dataclasses.replace(st3, bands=st3.bands[1:]), reg, dcs, tariff)
    assert not v and v.reason.startswith("statement bands are not the bands of the period")
    renamed = (dataclasses.replace(st3.bands[0], name="x"), *st3.bands[1:])
    v = verify_banded_bill(dataclasses.replace(st3, bands=renamed), reg, dcs, tariff)
    assert not v and v.reason == f"band {st3.bands[0].band} is {st3.bands[0].name!r}, not 'x'"
    b0 = st3.bands[0]
    huge = (dataclasses.replace(b0, energy_wh=b0.energy_wh + Q), *st3.bands[1:])
    v = verify_banded_bill(dataclasses.replace(st3, bands=huge), reg, dcs, tariff)
    assert not v and "energy" in v.reason and "out of range" in v.reason
    more = (dataclasses.replace(b0, energy_wh=b0.energy_wh + 1), *st3.bands[1:])
    v = verify_banded_bill(dataclasses.replace(st3, bands=more), reg, dcs, tariff)
    assert not v and v.reason == "energy charge is not the sum of band energy x band price"


def test_rule_V28_band_sums_open_their_commitments(banded):
    _, reg, days, tariff, st3 = banded
    # winter-day and winter-evening share the price 320: moving 1 Wh between them keeps
    # the energy charge (V27) and the register total (V29); only the commitments catch it.
    by = {b.name: b for b in st3.bands}
    day, eve = by["winter-day"], by["winter-evening"]
    assert tariff.bands[day.band].price == tariff.bands[eve.band].price
    moved = tuple(
        dataclasses.replace(b, energy_wh=b.energy_wh + (1 if b is day else -1 if b is eve else 0))
        for b in st3.bands
    )
    v = verify_banded_bill(dataclasses.replace(st3, bands=moved), reg, _dcs(days), tariff)
    assert not v and v.reason == "a band's energy or blinding does not match the sum of its commitments"
    wrong_r = tuple(dataclasses.replace(b, blinding=(b.blinding + 1) % Q) if b is day else b for b in st3.bands)
    assert not verify_banded_bill(dataclasses.replace(st3, bands=wrong_r), reg, _dcs(days), tariff)


def test_rule_V29_bands_add_up_to_the_signed_register_difference(banded):
    meter, reg, days, tariff, st3 = banded

    def resigned(batch: DailyBatch) -> SignedBatch:
        return SignedBatch(batch, ecdsa.sign(meter.signing_key, batch.signed_message()))

    # A meter whose register ran 10 Wh ahead of its readings on the last day.
    last = days[-1].batch.batch
    off = dataclasses.replace(last, register_end_wh=last.register_end_wh + 10)
    dcs = _dcs(days)[:-1] + [DayCommitments(resigned(off), days[-1].commitments)]
    v = verify_banded_bill(st3, reg, dcs, tariff)
    total = st3.energy_wh
    assert not v and v.reason == (
        f"bands sum to {total} Wh, the meter's register went from 1234567 to {1234567 + total + 10} Wh "
        f"({total + 10} Wh)"
    )
    # A register that jumps between days.
    b1 = days[1].batch.batch
    jump = dataclasses.replace(b1, register_start_wh=b1.register_start_wh + 1, register_end_wh=b1.register_end_wh + 1)
    dcs = _dcs(days)
    dcs[1] = DayCommitments(resigned(jump), days[1].commitments)
    v = verify_banded_bill(st3, reg, dcs, tariff)
    assert not v and v.reason.startswith(f"day {days[1].batch.batch.day}: register starts at")


def test_banded_statement_through_the_utility_store(tmp_path, banded):
    meter, _, days, _, st3 = banded
    signed = example_signed_tariff()
    u = UtilityStore(tmp_path / "u.sqlite")
    try:
        u.add_tariff(signed, dump_tariff(signed))
        u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=signed)
        for d in days:
            assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
        assert u.verify_statement(st3)
        forged = dataclasses.replace(st3, total=st3.total + 1)
        assert not u.verify_statement(forged)
    finally:
        u.close()


# ------------------------------------------------------------------- parser
_scalar = st.integers(0, Q - 1).map(lambda r: r.to_bytes(32, "big").hex())


@settings(max_examples=150, deadline=None)
@given(
    mutation=st.sampled_from(["drop", "extra", "type", "band_drop", "band_extra", "blinding", "order", "none"]),
    value=st.one_of(st.integers(-3, 2**70), st.text(max_size=5), st.none(), st.booleans(), _scalar),
)
def test_v3_parser_accepts_exactly_the_documented_form(banded, mutation, value):
    _, _, _, _, st3 = banded
    o = json.loads(st3.to_json())
    b = o["bands"]
    if mutation == "drop":
        del o["contract_id"]
    elif mutation == "extra":
        o["x"] = value
    elif mutation == "type":
        o["count"] = value
    elif mutation == "band_drop":
        del b[0]["energy_wh"]
    elif mutation == "band_extra":
        b[0]["x"] = value
    elif mutation == "blinding":
        b[0]["blinding"] = value
    elif mutation == "order":
        b.reverse()
    try:
        parsed = BandedBillStatement.from_dict(o)
    except FormatError as exc:
        assert "\n" not in str(exc)
        assert mutation != "none"
        return
    assert mutation in ("none", "type", "blinding")
    assert json.loads(parsed.to_json()) == o
    assert isinstance(parsed.bands[0], BandEnergy)


def test_rule_V09_ingest_refuses_a_register_that_does_not_follow_on(tmp_path, banded):
    meter, _, days, _, _ = banded
    signed = example_signed_tariff()
    u = UtilityStore(tmp_path / "u.sqlite")

    def up(batch: DailyBatch, k: int) -> DayUpload:
        sb = SignedBatch(batch, ecdsa.sign(meter.signing_key, batch.signed_message()))
        return DayUpload(sb, encode_records(days[k].first_index, days[k].commitments))

    try:
        u.add_tariff(signed, dump_tariff(signed))
        u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=signed)
        assert u.ingest_day(DayUpload(days[0].batch, encode_records(0, days[0].commitments))).accepted
        b1 = days[1].batch.batch
        res = u.ingest_day(up(dataclasses.replace(b1, register_start_wh=b1.register_start_wh + 1), 1))
        assert not res.accepted and res.reason == (
            f"day {b1.day}: register starts at {b1.register_start_wh + 1} Wh, "
            f"day {days[0].batch.batch.day} ended at {b1.register_start_wh} Wh")
        res = u.ingest_day(up(dataclasses.replace(b1, register_start_wh=None, register_end_wh=None), 1))
        assert not res.accepted and "batch version 1 after a version-2 batch" in res.reason
        assert u.ingest_day(DayUpload(days[1].batch, encode_records(b1.first_index, days[1].commitments))).accepted
    finally:
        u.close()


def test_billing_applet_releases_the_banded_bill_through_the_guard(tmp_path):
    """GET BANDED BILL: a v3 statement that verifies, counted as one functional per band,
    and one bill per period (a v1 bill for the same period is then refused)."""
    from meterhub.hub.secure_element import BILLING_APP_AID, BillingClient, HubError
    from meterhub.tariffs import demo_supplier_key, example_tariff, sign_tariff
    from test_guard import _billing_hub, _log, _tsm

    h, card = _billing_hub(tmp_path)
    with _tsm(card, "supplier") as t:
        t.push_tariff(BILLING_APP_AID, dump_tariff(sign_tariff(example_tariff(2027), demo_supplier_key())))
    client = BillingClient(card.transmit)
    client.select()
    client.pair("m-test", TZ, 15, bytes(16))
    for d in h.days:
        client.put_openings(d.batch.batch.day, d.first_index, d.openings)
    with pytest.raises(HubError, match="6A80"):
        client.banded_bill(h.start, h.start, "51238696782", "VK-1")  # wrong check digit
    st3 = client.banded_bill(h.start, h.start, MALO, "VK-1")
    assert client.banded_bill(h.start, h.start, MALO, "VK-1") == st3  # a re-ask: the same bytes
    assert verify_banded_bill(st3, h.registration, h.day_commitments(), h.tariff, metering_point=MALO)
    assert st3.energy_wh == sum(h.readings[0])
    with pytest.raises(HubError):
        client.bill(h.start, h.start)  # one bill per period
    _, raws = _log(card)
    entries = [json.loads(r) for r in raws]
    assert [e["kind"] for e in entries] == ["policy", "bill"]
    assert entries[1]["functionals"] == len(st3.bands) > 1
