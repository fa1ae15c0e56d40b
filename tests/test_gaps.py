"""A day missing then delivered late: the bill verifies what it can, estimates the gap by a
documented method (register interpolation, or band averages without registers), and the
late day's statement corrects it; the history keeps both, with the difference."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import pytest

from meterhub.crypto import ecdsa
from meterhub.hub.billing import banded_statement
from meterhub.meter.device import Meter, SignedBatch, chain_head
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.invoices import BillRefused, InvoiceStore, make_period_bill
from meterhub.utility.store import UtilityStore
from meterhub.utility.substitute import interpolate_gap, uncovered_days

TZ = "Europe/Berlin"
MALO = "51238696781"
START = date(2027, 6, 7)  # Monday; five summer days


def _setup(tmp_path, *, register: int | None = 500_000, n_days: int = 5):
    rng = random.Random(11)
    meter = Meter("m-gap", ecdsa.generate_signing_key(), register_wh=register)
    days = []
    for k in range(n_days):
        d = START + timedelta(days=k)
        days.append(meter.record_day(d, [rng.randint(0, 400) for _ in day_starts(d, TZ, 15)]))
    signed = example_signed_tariff()
    u = UtilityStore(tmp_path / "utility.sqlite")
    u.add_tariff(signed, dump_tariff(signed))
    u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=signed)
    return meter, days, signed.tariff, u


def _upload(day) -> DayUpload:
    return DayUpload(day.batch, encode_records(day.first_index, day.commitments))


def _hub_statement(days, tariff):
    """What the hub releases for a run of consecutive days it holds."""
    return banded_statement(
        meter_id="m-gap", metering_point=MALO, contract_id="VK-1", tariff=tariff,
        period_from=days[0].batch.batch.day, period_to=days[-1].batch.batch.day,
        first_index=days[0].first_index, tz=TZ, interval_minutes=15,
        openings=[o for d in days for o in d.openings],
    )


def _priced(days, tariff) -> int:
    n = len(days)
    prices = tariff.period_prices(days[0].batch.batch.day, n, TZ, 15)
    return sum(p * o.m for p, o in zip(prices, [o for d in days for o in d.openings], strict=True))


def test_a_day_missing_then_delivered_late(tmp_path):
    meter, days, tariff, u = _setup(tmp_path)
    inv = InvoiceStore(tmp_path / "invoices.sqlite")
    try:
        # Day 3 (index 2) is lost on the link: the days after it are stored all the same.
        for k in (0, 1, 3, 4):
            assert u.ingest_day(_upload(days[k])).accepted
        parts = [_hub_statement(days[0:2], tariff), _hub_statement(days[3:5], tariff)]
        est = make_period_bill(u, parts, meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                               period_from=START, period_to=START + timedelta(days=4))
        assert est.status == "estimated" and len(est.estimates) == 1
        gap = est.estimates[0]
        assert (gap.first_day, gap.last_day, gap.count) == (days[2].batch.batch.day,) * 2 + (96,)
        assert gap.method == "register-interpolation"
        b2 = days[2].batch.batch
        # The inputs are the meter-signed registers either side, so the gap's kWh are exact;
        # only their split over the bands is estimated (evenly in time).
        assert gap.inputs["register_start_wh"] == days[1].batch.batch.register_end_wh == b2.register_start_wh
        assert gap.inputs["register_end_wh"] == days[3].batch.batch.register_start_wh == b2.register_end_wh
        assert gap.energy_wh == sum(o.m for o in days[2].openings)
        assert est.registers == (500_000, days[4].batch.batch.register_end_wh)
        assert est.energy_wh == est.registers[1] - est.registers[0]
        v1, corr = inv.record(est)
        assert (v1, corr) == (1, None)
        assert inv.record(est) == (1, None)  # idempotent

        # The day arrives late; it must link both neighbours, and the hub bills it alone.
        assert u.ingest_day(_upload(days[2])).accepted
        late = _hub_statement(days[2:3], tariff)
        final = make_period_bill(u, [*parts, late], meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                                 period_from=START, period_to=START + timedelta(days=4))
        assert final.status == "verified" and not final.estimates
        assert final.energy_charge == _priced(days, tariff)  # the exact bill, from the readings
        v2, corr = inv.record(final)
        assert v2 == 2 and corr is not None
        assert (corr.old_status, corr.new_status, corr.energy_wh) == ("estimated", "verified", 0)
        assert corr.total == final.total - est.total == late.energy_charge - gap.energy_charge
        assert sum(corr.bands_wh.values()) == 0
        hist = inv.history("m-gap")
        assert [(h["version"], h["status"]) for h in hist] == [(1, "estimated"), (2, "verified")]
        assert hist[0]["estimated_parts"][0]["method"] == "register-interpolation"
    finally:
        u.close()
        inv.close()


def test_without_registers_the_gap_takes_the_band_averages(tmp_path):
    _, days, tariff, u = _setup(tmp_path, register=None)
    try:
        for k in (0, 1, 3, 4):
            assert u.ingest_day(_upload(days[k])).accepted
        parts = [_hub_statement(days[0:2], tariff), _hub_statement(days[3:5], tariff)]
        est = make_period_bill(u, parts, meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                               period_from=START, period_to=START + timedelta(days=4))
        gap = est.estimates[0]
        assert gap.method == "band-average" and est.registers is None
        # Each band's gap intervals get that band's mean energy per interval over the four verified days.
        for b, name, wh in gap.bands:
            e = sum(x.energy_wh for p in parts for x in p.bands if x.band == b)
            assert name == tariff.bands[b].name
            assert abs(wh - e / 4) <= 0.5  # the same band intervals each weekday, rounded half up
        assert gap.inputs["verified_periods"] == [f"{p.period_from}..{p.period_to}" for p in parts]
    finally:
        u.close()


def test_a_bill_is_refused_when_a_part_does_not_verify_or_nothing_is_left_to_estimate_from(tmp_path):
    _, days, tariff, u = _setup(tmp_path, register=None)
    try:
        for k in (0, 1):
            assert u.ingest_day(_upload(days[k])).accepted
        good = _hub_statement(days[0:2], tariff)
        bad = dataclasses.replace(good, total=good.total + 1)
        with pytest.raises(BillRefused, match="REJECTED: total is not energy charge plus standing charge"):
            make_period_bill(u, [bad], meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                             period_from=START, period_to=START + timedelta(days=4))
        with pytest.raises(BillRefused, match="no substitute value"):
            make_period_bill(u, [], meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                             period_from=START, period_to=START + timedelta(days=4))
    finally:
        u.close()


def test_rule_V09_a_day_after_a_gap_must_leave_exactly_the_missing_intervals(tmp_path):
    meter, days, _, u = _setup(tmp_path)
    try:
        assert u.ingest_day(_upload(days[0])).accepted
        b = days[2].batch.batch
        shifted = dataclasses.replace(b, first_index=b.first_index - 1,
                                      head=chain_head(b.prev_head, b.first_index - 1, days[2].commitments))
        forged = DayUpload(SignedBatch(shifted, ecdsa.sign(meter.signing_key, shifted.signed_message())),
                           encode_records(shifted.first_index, days[2].commitments))
        res = u.ingest_day(forged)
        assert not res.accepted and res.reason.endswith(
            f"batch of day {b.day} starts at interval {b.first_index - 1}; after day {START} "
            f"and 1 missing days it must start at {b.first_index}")
        assert u.ingest_day(_upload(days[2])).accepted
        # A late day 2 from another chain does not link to its stored neighbours.
        other = Meter("m-gap", meter.signing_key, register_wh=days[1].batch.batch.register_start_wh,
                      next_index=days[1].first_index, last_day=START)
        fake = other.record_day(days[1].batch.batch.day, [1] * 96)
        res = u.ingest_day(_upload(fake))
        assert not res.accepted and "does not follow on" in res.reason
    finally:
        u.close()


def test_interpolation_splits_exactly_and_uncovered_days_are_runs():
    tariff = example_signed_tariff().tariff
    e = interpolate_gap(tariff, TZ, 15, START, START + timedelta(days=1), (START, 100), (START, 100 + 4801))
    assert e.energy_wh == 4801 and e.count == 192
    with pytest.raises(ValueError, match="backwards"):
        interpolate_gap(tariff, TZ, 15, START, START, (START, 100), (START, 99))
    assert uncovered_days(START, START + timedelta(days=9), []) == [(START, START + timedelta(days=9))]


def test_billing_export_csv_and_json_show_the_estimate_and_the_correction(tmp_path):
    import csv
    import io
    import json
    from decimal import Decimal

    from meterhub.utility.billing_export import CSV_COLUMNS, decimal_amount, to_csv, to_json

    _, days, tariff, u = _setup(tmp_path)
    inv = InvoiceStore(tmp_path / "invoices.sqlite")
    try:
        for k in (0, 1, 3, 4):
            assert u.ingest_day(_upload(days[k])).accepted
        parts = [_hub_statement(days[0:2], tariff), _hub_statement(days[3:5], tariff)]
        kw = dict(meter_id="m-gap", metering_point=MALO, contract_id="VK-1", period_from=START,
                  period_to=START + timedelta(days=4))
        inv.record(make_period_bill(u, parts, **kw))
        assert u.ingest_day(_upload(days[2])).accepted
        inv.record(make_period_bill(u, [*parts, _hub_statement(days[2:3], tariff)], **kw))
        hist = inv.history()
        rows = list(csv.DictReader(io.StringIO(to_csv(hist))))
        assert tuple(rows[0]) == CSV_COLUMNS
        for version, status in ((1, "estimated"), (2, "verified")):
            mine = [r for r in rows if r["version"] == str(version)]
            assert {r["status"] for r in mine} == {status}
            total = next(r for r in mine if r["line"] == "total")
            parts_sum = sum(Decimal(r["amount"]) for r in mine if r["line"] in ("band", "standing"))
            assert parts_sum == Decimal(total["amount"])  # band amounts + standing charge = total, exactly
            band_kwh = sum(Decimal(r["energy_kwh"]) for r in mine if r["line"] == "band")
            assert band_kwh == Decimal(total["energy_kwh"])
            assert total["register_start_kwh"] == "500.000"
            assert (Decimal(total["estimated_kwh"]) > 0) == (status == "estimated")
        doc = json.loads(to_json(hist))
        assert doc["format"] == "meterhub/billing-export/v1"
        assert [b["status"] for b in doc["bills"]] == ["estimated", "verified"]
        assert doc["bills"][0]["estimated_parts"][0]["inputs"]["register_start_wh"] > 0
    finally:
        u.close()
        inv.close()
    assert decimal_amount(16080000, 10**6) == "16.080000" and decimal_amount(-5, 100) == "-0.05"


def test_mscons_carries_the_bills_band_quantities_only(tmp_path):
    import datetime as dt
    import warnings
    from decimal import Decimal

    from pydifact.segmentcollection import Interchange

    from meterhub.utility.mscons import mscons_for_bills

    _, days, tariff, u = _setup(tmp_path)
    inv = InvoiceStore(tmp_path / "invoices.sqlite")
    try:
        for k in (0, 1, 3, 4):
            assert u.ingest_day(_upload(days[k])).accepted
        parts = [_hub_statement(days[0:2], tariff), _hub_statement(days[3:5], tariff)]
        inv.record(make_period_bill(u, parts, meter_id="m-gap", metering_point=MALO, contract_id="VK-1",
                                    period_from=START, period_to=START + timedelta(days=4)))
        bill = inv.history()[0]
    finally:
        u.close()
        inv.close()
    text = mscons_for_bills([bill], sender="9900000000003", recipient="9900000000010", control_reference="R1",
                            now=dt.datetime(2027, 6, 12, 10, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydifact has no segment directory for service v3 to validate against
        ic = Interchange.from_str(text)
    assert text.startswith("UNB+UNOC:3+9900000000003:500+9900000000010:500+270612:1000+R1'UNH+")
    assert "MSCONS:D:04B:UN:2.4c" in text
    assert [s.elements for s in ic.get_segments("LOC")] == [["172", MALO]]
    pia = [s.elements[1][0] for s in ic.get_segments("PIA")]
    qty = [s.elements[0] for s in ic.get_segments("QTY")]
    assert pia[-1] == "1-0:1.8.0" and len(pia) == len(bill["bands"]) + 1
    # Every band of this bill holds a part of the estimated day: all are substitute values (67).
    assert {q[0] for q in qty} == {"67"} and all(q[2] == "KWH" for q in qty)
    assert sum(Decimal(q[1]) for q in qty[:-1]) == Decimal(qty[-1][1]) == Decimal(bill["energy_wh"]) / 1000
    dtm = [s.elements[0][1] for s in ic.get_segments("DTM") if s.elements[0][0] in ("163", "164")]
    assert dtm[:2] == ["202706070000+02", "202706120000+02"]  # local midnight, CEST
    with pytest.raises(ValueError, match="13 digits"):
        mscons_for_bills([bill], sender="99", recipient="9900000000010", control_reference="R1",
                         now=dt.datetime(2027, 6, 12))


def test_a_period_bill_under_a_non_linear_tariff_is_a_clear_refusal(tmp_path):
    """Substitute values and per-band energy are time-of-use notions: a customer on a
    non-linear tariff gets a one-line refusal, not an AttributeError from deep inside."""
    from meterhub.tariffs import demo_supplier_key, sign_tariff
    from meterhub.tariffs.nonlinear import example_nonlinear_tariff

    meter = Meter("m-nl", ecdsa.generate_signing_key(), register_wh=0)
    signed = sign_tariff(example_nonlinear_tariff("tiered"), demo_supplier_key())
    u = UtilityStore(tmp_path / "utility.sqlite")
    try:
        u.add_tariff(signed, dump_tariff(signed))
        u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=signed)
        with pytest.raises(BillRefused, match="period bills need a time-of-use tariff, not a tiered one"):
            make_period_bill(u, [], meter_id="m-nl", metering_point=MALO, contract_id="VK-1",
                             period_from=START, period_to=START + timedelta(days=4))
    finally:
        u.close()
