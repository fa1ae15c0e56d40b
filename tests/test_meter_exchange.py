"""A meter exchanged mid-month: the operator signs the new meter's registration; the
metering point's period is billed from both meters' commitments."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, timedelta

import pytest

from meterhub.crypto import ecdsa
from meterhub.hub.billing import banded_statement
from meterhub.meter.device import Meter
from meterhub.model.errors import FormatError
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.exchange_meter import (
    RegistrationRecord,
    check_exchange_registers,
    meter_segments,
    register_signed,
    sign_registration,
    verify_registration,
)
from meterhub.utility.invoices import make_period_bill
from meterhub.utility.store import UtilityStore

TZ = "Europe/Berlin"
MALO = "51238696781"
D1 = date(2027, 6, 1)


def _d(n: int) -> date:
    return D1 + timedelta(days=n - 1)


def _record(meter: Meter, valid_from: date, register: int, replaces=None) -> RegistrationRecord:
    return RegistrationRecord(meter.meter_id, meter.public_key_bytes, TZ, 15, MALO, valid_from, register, replaces)


def _days(meter: Meter, first: int, last: int, rng):
    return [meter.record_day(_d(n), [rng.randint(0, 300) for _ in day_starts(_d(n), TZ, 15)])
            for n in range(first, last + 1)]


def _statement(meter_id: str, days, tariff):
    return banded_statement(
        meter_id=meter_id, metering_point=MALO, contract_id="VK-1", tariff=tariff,
        period_from=days[0].batch.batch.day, period_to=days[-1].batch.batch.day,
        first_index=days[0].first_index, tz=TZ, interval_minutes=15,
        openings=[o for d in days for o in d.openings],
    )


def test_a_meter_exchanged_mid_month(tmp_path):
    rng = random.Random(3)
    operator = ecdsa.generate_signing_key()
    old = Meter("m1", ecdsa.generate_signing_key(), register_wh=40_000)
    old_days = _days(old, 1, 14, rng)
    new = Meter("m1-b", ecdsa.generate_signing_key(), register_wh=0)  # a new meter starts at zero
    new_days = _days(new, 15, 20, rng)
    rec_old = sign_registration(_record(old, _d(1), 40_000), operator)
    rec_new = sign_registration(
        _record(new, _d(15), 0, replaces=("m1", _d(14), old.register_wh)), operator)

    signed = example_signed_tariff()
    u = UtilityStore(tmp_path / "utility.sqlite")
    try:
        u.add_tariff(signed, dump_tariff(signed))
        # No first-use trust: a record that is not the operator's is refused, nothing registered.
        with pytest.raises(FormatError, match="does not verify under the operator key"):
            register_signed(u, rec_new, ecdsa.generate_signing_key().public_key(), tariff=signed)
        with pytest.raises(KeyError):
            u.registration("m1-b")
        records = [register_signed(u, r, operator.public_key(), tariff=signed) for r in (rec_old, rec_new)]
        for days in (old_days, new_days):
            for d in days:
                assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
        assert check_exchange_registers(u, records[1]) == ""

        segs = meter_segments(_d(1), _d(20), records, MALO)
        assert segs == [("m1", _d(1), _d(14)), ("m1-b", _d(15), _d(20))]
        tariff = signed.tariff
        sts = {"m1": _statement("m1", old_days, tariff), "m1-b": _statement("m1-b", new_days, tariff)}
        bills = [make_period_bill(u, [sts[m]], meter_id=m, metering_point=MALO, contract_id="VK-1",
                                  period_from=a, period_to=b) for m, a, b in segs]
        assert [b.status for b in bills] == ["verified", "verified"]
        assert bills[0].registers == (40_000, old.register_wh) and bills[1].registers == (0, new.register_wh)
        total = sum(o.m for d in old_days + new_days for o in d.openings)
        assert sum(b.energy_wh for b in bills) == total
        # A statement of the old meter's key for the new meter's days does not verify.
        forged = dataclasses.replace(sts["m1"], meter_id="m1-b")
        assert not u.verify_statement(forged, record=False)
        # The operator's recorded final register must be the old meter's signed one.
        wrong = dataclasses.replace(records[1], replaces=("m1", _d(14), old.register_wh + 5))
        assert check_exchange_registers(u, wrong).startswith("meter m1 ends at")
    finally:
        u.close()


def test_registration_record_parser_is_strict():
    operator = ecdsa.generate_signing_key()
    m = Meter("m9", ecdsa.generate_signing_key())
    good = sign_registration(_record(m, _d(3), 7, replaces=("m8", _d(2), 99)), operator)
    rec = verify_registration(good, operator.public_key())
    assert rec.replaces == ("m8", _d(2), 99) and rec.register_start_wh == 7
    o = json.loads(good)
    for change, why in [
        (lambda o: o["record"].update(register_start_wh=8), "does not verify"),
        (lambda o: o["record"].update(metering_point="51238696782"), "MaLo"),
        (lambda o: o["record"].pop("tz"), "exactly the fields"),
        (lambda o: o["record"]["replaces"].update(last_day="2027-06-01"), "day before valid_from"),
        (lambda o: o.update(x=1), "exactly record and signature"),
        (lambda o: o["record"].update(register_start_wh=-1), r"\[0, 2\^64\)"),
    ]:
        bad = json.loads(json.dumps(o))
        change(bad)
        with pytest.raises(FormatError, match=why):
            verify_registration(json.dumps(bad), operator.public_key())
    with pytest.raises(ValueError, match="does not replace"):
        a = verify_registration(sign_registration(_record(m, _d(1), 0), operator), operator.public_key())
        b = dataclasses.replace(a, meter_id="mX", valid_from=_d(5), replaces=("other", _d(4), 0))
        meter_segments(_d(1), _d(9), [a, b], MALO)
