"""Supplier switch on the 17th, a tariff change on the 10th, move-out and move-in: the
period splits at each change, each segment is verified under its own contract and
tariff, and each supplier receives only its own segments."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta

import pytest

from meterhub.crypto import ecdsa
from meterhub.hub.billing import banded_statement
from meterhub.meter.device import Meter
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from meterhub.utility.contracts import Contract, TariffPeriod, segments_for, split_period
from meterhub.utility.invoices import BillRefused, bill_segments
from meterhub.utility.store import UtilityStore

TZ = "Europe/Berlin"
MALO = "51238696781"
JUNE = date(2027, 6, 1)


def _d(n: int) -> date:
    return JUNE + timedelta(days=n - 1)


A = Contract("VK-ALPHA-1", "alpha", MALO, _d(1), _d(16))
B = Contract("VK-BETA-7", "beta", MALO, _d(17))
TARIFFS = [TariffPeriod(A.contract_id, _d(1), "de-tou-2027", 1), TariffPeriod(A.contract_id, _d(10), "de-tou-2027", 2),
           TariffPeriod(B.contract_id, _d(17), "de-tou-2027", 1)]


def test_split_at_the_tariff_change_and_the_supplier_switch():
    segs, vacant = split_period(_d(1), _d(20), [A, B], TARIFFS)
    assert [(s.period_from.day, s.period_to.day, s.contract.supplier, s.tariff_version) for s in segs] == [
        (1, 9, "alpha", 1), (10, 16, "alpha", 2), (17, 20, "beta", 1)]
    assert vacant == []
    assert [s.period_from.day for s in segments_for("beta", segs)] == [17]
    assert all(s.contract.supplier == "alpha" for s in segments_for("alpha", segs))


def test_move_out_leaves_vacant_days_and_overlaps_are_refused():
    out = dataclasses.replace(B, end=_d(20))
    new = Contract("VK-GAMMA-2", "alpha", MALO, _d(25))
    segs, vacant = split_period(_d(1), _d(30), [A, out, new], [*TARIFFS, TariffPeriod(new.contract_id, _d(25), "de-tou-2027", 2)])
    assert vacant == [(_d(21), _d(24))]
    assert [(s.contract.contract_id, s.period_from.day, s.period_to.day) for s in segs][-1] == ("VK-GAMMA-2", 25, 30)
    with pytest.raises(ValueError, match="overlap"):
        split_period(_d(1), _d(20), [A, dataclasses.replace(B, start=_d(16))], TARIFFS)
    with pytest.raises(ValueError, match="no tariff"):
        split_period(_d(1), _d(20), [A, B], TARIFFS[:1])
    with pytest.raises(ValueError):
        Contract("VK-1", "alpha", "51238696782", _d(1))  # a MaLo with a wrong check digit


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    rng = random.Random(5)
    meter = Meter("m-sw", ecdsa.generate_signing_key(), register_wh=0)
    days = []
    for n in range(1, 21):
        days.append(meter.record_day(_d(n), [rng.randint(0, 300) for _ in day_starts(_d(n), TZ, 15)]))
    t1 = sign_tariff(example_tariff(2027), demo_supplier_key())
    d2 = example_tariff(2027).to_dict()
    for b in d2["bands"]:
        b["price"] += 20  # the new prices from the 10th
    t2 = sign_tariff(dataclasses.replace(example_tariff(2027).from_dict(d2), version=2), demo_supplier_key())
    u = UtilityStore(tmp_path_factory.mktemp("sw") / "utility.sqlite")
    u.add_tariff(t1, dump_tariff(t1))
    u.add_tariff(t2, dump_tariff(t2))
    u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=t1)
    for d in days:
        assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
    yield days, {1: t1.tariff, 2: t2.tariff}, u
    u.close()


def _statement(days, first: int, last: int, tariff, contract: Contract):
    part = days[first - 1 : last]
    return banded_statement(
        meter_id="m-sw", metering_point=contract.metering_point, contract_id=contract.contract_id, tariff=tariff,
        period_from=_d(first), period_to=_d(last), first_index=part[0].first_index, tz=TZ, interval_minutes=15,
        openings=[o for d in part for o in d.openings],
    )


def test_supplier_switch_on_the_17th_and_tariff_change_on_the_10th_end_to_end(month):
    days, tariffs, u = month
    segs, _ = split_period(_d(1), _d(20), [A, B], TARIFFS)
    # The hub bills each segment under its contract and tariff; nothing crosses a boundary.
    sts = [_statement(days, 1, 9, tariffs[1], A), _statement(days, 10, 16, tariffs[2], A),
           _statement(days, 17, 20, tariffs[1], B)]
    bills = bill_segments(u, segs, sts, meter_id="m-sw")
    assert [(b.contract_id, b.tariff_version, b.status) for b in bills] == [
        ("VK-ALPHA-1", 1, "verified"), ("VK-ALPHA-1", 2, "verified"), ("VK-BETA-7", 1, "verified")]
    readings = [sum(o.m for o in d.openings) for d in days]
    assert [b.energy_wh for b in bills] == [sum(readings[0:9]), sum(readings[9:16]), sum(readings[16:20])]
    # Registers: each segment starts where the previous ended (meter-signed).
    assert [b.registers for b in bills] == [
        (0, sum(readings[:9])), (sum(readings[:9]), sum(readings[:16])), (sum(readings[:16]), sum(readings))]
    # The new prices apply from the 10th only.
    prices2 = tariffs[2].period_prices(_d(10), 7, TZ, 15)
    flat = [o.m for d in days[9:16] for o in d.openings]
    assert bills[1].energy_charge == sum(p * m for p, m in zip(prices2, flat, strict=True))
    # Each supplier receives only its own segments.
    assert {b.contract_id for b, s in zip(bills, segs, strict=True) if s.contract.supplier == "beta"} == {"VK-BETA-7"}


def test_statements_that_cross_a_change_or_use_the_old_tariff_are_refused(month):
    days, tariffs, u = month
    segs, _ = split_period(_d(1), _d(20), [A, B], TARIFFS)
    crossing = [_statement(days, 1, 10, tariffs[1], A)]
    with pytest.raises(BillRefused, match="crosses the segment 2027-06-01..2027-06-09 of contract VK-ALPHA-1"):
        bill_segments(u, segs, crossing, meter_id="m-sw")
    old_prices = [_statement(days, 11, 12, tariffs[1], A)]
    with pytest.raises(BillRefused, match="tariff version mismatch"):
        bill_segments(u, segs[1:2], old_prices, meter_id="m-sw")
    other_supplier = [_statement(days, 17, 18, tariffs[1], A)]  # alpha's contract after the switch
    with pytest.raises(BillRefused, match="statement names contract 'VK-ALPHA-1', the meter's is 'VK-BETA-7'"):
        bill_segments(u, segs[2:], other_supplier, meter_id="m-sw")
