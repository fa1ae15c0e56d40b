"""Daily operations THROUGH the card and its privacy guard (issue 16): a day missing then
delivered late (estimate, then the one correction), a supplier switch on the 17th declared
in the customer's policy, a tariff change on the 10th; each verified end to end at the
utility, and the refusals: a recipient-chosen split, a second correction, a correction
without a missing day, a late day that does not fit its neighbours."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.crypto import ecdsa
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    BILLING_MODULE_AID,
    BILLING_PACKAGE_AID,
    BillingClient,
    GuardClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from meterhub.hub.store import HubError
from meterhub.meter.device import Meter
from meterhub.model.formats.bill_parts import BillParts
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.policy import PolicyError, default_policy, verify_release_log
from meterhub.policy.model import Cycle
from meterhub.tariffs import Tariff, demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from meterhub.utility.contracts import Contract, TariffPeriod, split_period
from meterhub.utility.invoices import InvoiceStore, bill_segments, make_period_bill
from meterhub.utility.store import UtilityStore
from test_guard import _tsm

TZ = "Europe/Berlin"
MALO = "51238696781"
JUNE = date(2027, 6, 1)


def _d(n: int) -> date:
    return JUNE + timedelta(days=n - 1)


def _meter_days(n_days: int, seed: int = 3):
    rng = random.Random(seed)
    meter = Meter("m-ops", ecdsa.generate_signing_key(), register_wh=100_000)
    days = [meter.record_day(_d(n), [rng.randint(0, 300) for _ in day_starts(_d(n), TZ, 15)])
            for n in range(1, n_days + 1)]
    return meter, days


def _card(tmp_path, policy):
    card = open_hub_card(tmp_path / "hub.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                         supplier_keys=demo_scp03_keys("supplier"),
                         supplier_dap=demo_dap_key("supplier").public_key(), policy=policy)
    with _tsm(card, "supplier") as t:
        t.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
    return card


def _tariff(version: int = 1, valid_from: date | None = None, extra: int = 0):
    d = example_tariff(2027).to_dict()
    for b in d["bands"]:
        b["price"] += extra
    t = dataclasses.replace(Tariff.from_dict(d), version=version)
    if valid_from is not None:
        t = dataclasses.replace(t, valid_from=valid_from, holidays=frozenset(h for h in t.holidays if h >= valid_from))
    return sign_tariff(t, demo_supplier_key())


def _client(card, tariffs, meter) -> BillingClient:
    with _tsm(card, "supplier") as t:
        for signed in tariffs:
            t.push_tariff(BILLING_APP_AID, dump_tariff(signed))
    c = BillingClient(card.transmit)
    c.select()
    c.pair(meter.meter_id, TZ, 15, bytes(16))
    return c


def _utility(tmp_path, meter, days, tariffs):
    u = UtilityStore(tmp_path / "utility.sqlite")
    for t in tariffs:
        u.add_tariff(t, dump_tariff(t))
    u.register_meter(meter.meter_id, ecdsa.public_bytes(meter.signing_key), TZ, 15, tariff=tariffs[0])
    for d in days:
        assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
    return u


def _log(card, policy):
    g = GuardClient(card.transmit)
    g.select()
    _, head = g.head()
    return verify_release_log(g.raw_entries(), head, policies={policy.version: policy})


def test_policy_split_days_are_the_customers_and_bounded():
    p = default_policy(splits=(_d(17),))
    assert p.cycle.pieces(_d(3)) == [(_d(1), _d(16)), (_d(17), _d(30))]
    assert p.cycle.pieces(_d(3), (_d(10),)) == [(_d(1), _d(9)), (_d(10), _d(16)), (_d(17), _d(30))]
    assert default_policy().cycle.pieces(_d(3)) == [(_d(1), _d(30))]
    assert "splits" not in default_policy().to_dict()["cycle"]  # older policies keep their digest
    assert type(p).from_dict(p.to_dict()) == p
    with pytest.raises(PolicyError, match="at most 2 split days"):
        Cycle(JUNE, 0, (_d(5), _d(10), _d(20)))
    with pytest.raises(PolicyError, match="already starts a period"):
        Cycle(JUNE, 0, (date(2027, 7, 1),))
    with pytest.raises(PolicyError, match="ascending"):
        Cycle(JUNE, 0, (_d(10), _d(5)))
    d = p.to_dict()
    d["cycle"]["splits"] = ["2027-06-3"]
    with pytest.raises(PolicyError, match="dates"):
        type(p).from_dict(d)
    d["cycle"]["splits"] = []
    with pytest.raises(PolicyError, match="omitted"):
        type(p).from_dict(d)


def test_a_day_missing_then_delivered_late_through_the_card(tmp_path):
    meter, days = _meter_days(5)
    policy = default_policy(anchor=_d(1), days=5)
    card = _card(tmp_path, policy)
    t1 = _tariff()
    c = _client(card, [t1], meter)
    u = _utility(tmp_path, meter, [days[k] for k in (0, 1, 3, 4)], [t1])
    inv = InvoiceStore(tmp_path / "invoices.sqlite")
    try:
        for k in (0, 1, 3, 4):  # day 3 is lost on the link; the card stores the days after it
            c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
        rel = c.banded_bill_parts(_d(1), _d(5), MALO, "VK-1")
        assert [(p.period_from, p.period_to) for p in rel.parts] == [(_d(1), _d(2)), (_d(4), _d(5))]
        assert rel.missing == ((_d(3), _d(3)),) and rel.corrects == 0
        with pytest.raises(HubError, match="6A88"):  # the missing day has not arrived
            c.banded_bill_parts(_d(1), _d(5), MALO, "VK-1", correction=True)
        est = make_period_bill(u, rel.parts, meter_id="m-ops", metering_point=MALO, contract_id="VK-1",
                               period_from=_d(1), period_to=_d(5))
        assert est.status == "estimated" and [(e.first_day, e.last_day) for e in est.estimates] == [(_d(3), _d(3))]
        assert est.estimates[0].method == "register-interpolation"
        assert inv.record(est) == (1, None)
        # The late day must fit exactly between its neighbours' indices.
        with pytest.raises(HubError, match="6A80"):
            c.put_openings(_d(3), days[2].first_index + 1, days[2].openings)
        c.put_openings(_d(3), days[2].first_index, days[2].openings)
        assert u.ingest_day(DayUpload(days[2].batch, encode_records(days[2].first_index, days[2].commitments))).accepted
        corr = c.banded_bill_parts(_d(1), _d(5), MALO, "VK-1", correction=True)
        assert [(p.period_from, p.period_to) for p in corr.parts] == [(_d(3), _d(3))] and corr.missing == ()
        assert c.banded_bill_parts(_d(1), _d(5), MALO, "VK-1", correction=True) == corr  # a re-ask
        entries = _log(card, policy)
        assert corr.corrects == entries[-2].seq and entries[-1].kind == "correction"
        assert entries[-1].functionals == len(corr.parts[0].bands)
        c.select()
        final = make_period_bill(u, [*rel.parts, *corr.parts], meter_id="m-ops", metering_point=MALO,
                                 contract_id="VK-1", period_from=_d(1), period_to=_d(5))
        assert final.status == "verified" and final.energy_wh == sum(o.m for d in days for o in d.openings)
        v2, diff = inv.record(final)
        assert v2 == 2 and diff is not None and (diff.old_status, diff.new_status) == ("estimated", "verified")
        assert diff.total == final.total - est.total
        # One correction only: another request for it is refused.
        with pytest.raises(HubError, match="6985"):
            c.banded_bill_parts(_d(1), _d(5), MALO, "VK-2", correction=True)
        # The re-ask of the first release still answers the same bytes.
        assert c.banded_bill_parts(_d(1), _d(5), MALO, "VK-1") == rel
    finally:
        u.close()
        inv.close()


def test_a_correction_needs_a_bill_with_missing_days(tmp_path):
    meter, days = _meter_days(2)
    card = _card(tmp_path, default_policy(anchor=_d(1), days=2))
    c = _client(card, [_tariff()], meter)
    with pytest.raises(HubError, match="6A88"):  # no bill yet
        c.banded_bill_parts(_d(1), _d(2), MALO, "VK-1", correction=True)
    for k in range(2):
        c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
    whole = c.banded_bill_parts(_d(1), _d(2), MALO, "VK-1")
    assert whole.missing == () and len(whole.parts) == 1
    with pytest.raises(HubError, match="6985"):
        c.banded_bill_parts(_d(1), _d(2), MALO, "VK-1", correction=True)
    # A day before the last stored day that is no gap is refused.
    with pytest.raises(HubError, match="6A80"):
        c.put_openings(_d(1) - timedelta(days=1), 0, days[0].openings)


@pytest.fixture(scope="module")
def june():
    return _meter_days(30, seed=5)


def test_supplier_switch_on_the_17th_through_the_card(tmp_path, june):
    meter, days = june
    policy = default_policy(anchor=JUNE, splits=(_d(17),))  # the customer declares the switch
    card = _card(tmp_path, policy)
    t1 = _tariff()
    c = _client(card, [t1], meter)
    for k, d in enumerate(days):
        c.put_openings(_d(k + 1), d.first_index, d.openings)
    with pytest.raises(HubError, match="6A80"):
        c.banded_bill_parts(_d(1), _d(30), MALO, "VK-ALPHA-1")  # the whole month crosses the switch
    with pytest.raises(HubError, match="6A80"):
        c.banded_bill_parts(_d(1), _d(10), MALO, "VK-ALPHA-1")  # a split the recipient chose
    a = c.banded_bill_parts(_d(1), _d(16), MALO, "VK-ALPHA-1").parts
    b = c.banded_bill_parts(_d(17), _d(30), MALO, "VK-BETA-7").parts
    u = _utility(tmp_path, meter, days, [t1])
    try:
        ca = Contract("VK-ALPHA-1", "alpha", MALO, _d(1), _d(16))
        cb = Contract("VK-BETA-7", "beta", MALO, _d(17))
        segs, vacant = split_period(_d(1), _d(30), [ca, cb], [TariffPeriod(ca.contract_id, _d(1), "de-tou-2027", 1),
                                                             TariffPeriod(cb.contract_id, _d(17), "de-tou-2027", 1)])
        bills = bill_segments(u, segs, [*a, *b], meter_id="m-ops")
        assert [(x.contract_id, x.status) for x in bills] == [("VK-ALPHA-1", "verified"), ("VK-BETA-7", "verified")]
        readings = [sum(o.m for o in d.openings) for d in days]
        assert [x.energy_wh for x in bills] == [sum(readings[:16]), sum(readings[16:])]
        entries = _log(card, policy)
        assert [(e.kind, e.period_from, e.period_to) for e in entries[1:]] == [
            ("bill", "2027-06-01", "2027-06-16"), ("bill", "2027-06-17", "2027-06-30")]
        # The two pieces share the month's budget (the split costs one functional per band).
        assert sum(e.functionals for e in entries[1:]) == len(a[0].bands) + len(b[0].bands)
    finally:
        u.close()


def test_tariff_change_on_the_10th_through_the_card(tmp_path, june):
    meter, days = june
    policy = default_policy(anchor=JUNE)
    card = _card(tmp_path, policy)
    t1, t2 = _tariff(), _tariff(version=2, valid_from=_d(10), extra=20)
    c = _client(card, [t1], meter)
    for k, d in enumerate(days):
        if k == 5:  # the supplier announces the new prices on the 6th, from the 10th
            with _tsm(card, "supplier") as t:
                t.push_tariff(BILLING_APP_AID, dump_tariff(t2))
            c.select()
        c.put_openings(_d(k + 1), d.first_index, d.openings)
    with pytest.raises(HubError, match="6985"):
        c.banded_bill_parts(_d(1), _d(30), MALO, "VK-1")  # the tariff change splits the month
    with pytest.raises(HubError, match="6A80"):
        c.banded_bill_parts(_d(1), _d(8), MALO, "VK-1")  # not a piece: the boundary is the tariff's
    first = c.banded_bill_parts(_d(1), _d(9), MALO, "VK-1").parts[0]
    second = c.banded_bill_parts(_d(10), _d(30), MALO, "VK-1").parts[0]
    assert (first.tariff_version, second.tariff_version) == (1, 2)
    u = _utility(tmp_path, meter, days, [t1, t2])
    try:
        ct = Contract("VK-1", "alpha", MALO, _d(1))
        segs, _ = split_period(_d(1), _d(30), [ct], [TariffPeriod("VK-1", _d(1), "de-tou-2027", 1),
                                                    TariffPeriod("VK-1", _d(10), "de-tou-2027", 2)])
        bills = bill_segments(u, segs, [first, second], meter_id="m-ops")
        assert [(x.tariff_version, x.status) for x in bills] == [(1, "verified"), (2, "verified")]
        prices2 = t2.tariff.period_prices(_d(10), 21, TZ, 15)
        flat = [o.m for d in days[9:] for o in d.openings]
        assert second.energy_charge == sum(p * m for p, m in zip(prices2, flat, strict=True))
    finally:
        u.close()
    # A second tariff taking effect inside the same month is refused (one change per period).
    with _tsm(card, "supplier") as t, pytest.raises(Exception, match="6985"):
        t.push_tariff(BILLING_APP_AID, dump_tariff(_tariff(version=3, valid_from=_d(20))))


def test_bill_parts_parser_is_strict(tmp_path):
    meter, days = _meter_days(3)
    card = _card(tmp_path, default_policy(anchor=_d(1), days=3))
    c = _client(card, [_tariff()], meter)
    for k in (0, 2):
        c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
    rel = c.banded_bill_parts(_d(1), _d(3), MALO, "VK-1")
    assert BillParts.from_json(rel.to_json()) == rel
    d = json.loads(rel.to_json())
    d["missing"] = []
    with pytest.raises(Exception, match="cover the period"):
        BillParts.from_dict(d)
    d = json.loads(rel.to_json())
    d["missing"] = [{"period_from": "2027-06-02", "period_to": "2027-06-03"}]
    with pytest.raises(Exception, match="overlap"):
        BillParts.from_dict(d)


def test_meter_exchange_on_the_15th_through_the_card(tmp_path):
    """The new meter is paired with a second billing applet instance of the supplier; the
    customer declares the exchange day as a split, so each meter's piece is one release."""
    from meterhub.utility.exchange_meter import (
        RegistrationRecord,
        check_exchange_registers,
        meter_segments,
        register_signed,
        sign_registration,
    )

    rng = random.Random(8)
    old = Meter("m1", ecdsa.generate_signing_key(), register_wh=40_000)
    old_days = [old.record_day(_d(n), [rng.randint(0, 300) for _ in day_starts(_d(n), TZ, 15)]) for n in range(1, 15)]
    new = Meter("m1-b", ecdsa.generate_signing_key(), register_wh=0)
    new_days = [new.record_day(_d(n), [rng.randint(0, 300) for _ in day_starts(_d(n), TZ, 15)]) for n in range(15, 31)]
    policy = default_policy(anchor=JUNE, splits=(_d(15),))
    card = _card(tmp_path, policy)
    t1 = _tariff()
    second = BILLING_APP_AID[:-2] + "02"
    with _tsm(card, "supplier") as t:
        # A second instance from the load file already on the card, for the new meter.
        t.install(BILLING_PACKAGE_AID, BILLING_MODULE_AID, second, params=ecdsa.public_bytes(demo_supplier_key()))
        for aid in (BILLING_APP_AID, second):
            t.push_tariff(aid, dump_tariff(t1))
    sts = []
    for aid, meter, days, first in ((BILLING_APP_AID, old, old_days, 1), (second, new, new_days, 15)):
        c = BillingClient(card.transmit, aid)
        c.select()
        c.pair(meter.meter_id, TZ, 15, bytes(16))
        for k, d in enumerate(days):
            c.put_openings(_d(first + k), d.first_index, d.openings)
        last = first + len(days) - 1
        if first == 1:
            with pytest.raises(HubError, match="6A80"):
                c.banded_bill_parts(_d(1), _d(30), MALO, "VK-1")  # the exchange splits the month
        sts.append(c.banded_bill_parts(_d(first), _d(last), MALO, "VK-1").parts[0])
    operator = ecdsa.generate_signing_key()

    def rec(m, since, reg, replaces=None):
        return sign_registration(RegistrationRecord(m.meter_id, m.public_key_bytes, TZ, 15, MALO, since, reg, replaces),
                                 operator)

    u = UtilityStore(tmp_path / "utility.sqlite")
    try:
        u.add_tariff(t1, dump_tariff(t1))
        records = [register_signed(u, r, operator.public_key(), tariff=t1)
                   for r in (rec(old, _d(1), 40_000), rec(new, _d(15), 0, ("m1", _d(14), old.register_wh)))]
        for d in old_days + new_days:
            assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
        assert check_exchange_registers(u, records[1]) == ""
        segs = meter_segments(_d(1), _d(30), records, MALO)
        bills = [make_period_bill(u, [st], meter_id=m, metering_point=MALO, contract_id="VK-1", period_from=a,
                                  period_to=b) for st, (m, a, b) in zip(sts, segs, strict=True)]
        assert [b.status for b in bills] == ["verified", "verified"]
        assert sum(b.energy_wh for b in bills) == sum(o.m for d in old_days + new_days for o in d.openings)
    finally:
        u.close()
    entries = _log(card, policy)
    assert [(e.kind, e.period_from, e.applet_aid[-2:]) for e in entries[1:]] == [
        ("bill", "2027-06-01", "01"), ("bill", "2027-06-15", "02")]


def test_period_bill_cli_takes_the_cards_bill_parts(tmp_path, capsys):
    """`utility period-bill --statement` reads the card's release and its correction."""
    from meterhub.cli import main

    meter, days = _meter_days(3)
    card = _card(tmp_path, default_policy(anchor=_d(1), days=3))
    t1 = _tariff()
    c = _client(card, [t1], meter)
    for k in (0, 2):
        c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
    rel = c.banded_bill_parts(_d(1), _d(3), MALO, "VK-1")
    c.put_openings(_d(2), days[1].first_index, days[1].openings)
    fix = c.banded_bill_parts(_d(1), _d(3), MALO, "VK-1", correction=True)
    (tmp_path / "rel.json").write_text(rel.to_json())
    (tmp_path / "fix.json").write_text(fix.to_json())
    u = _utility(tmp_path / "", meter, days, [t1])
    u.close()
    base = ["utility", "period-bill", "--meter-id", meter.meter_id, "--metering-point", MALO, "--contract", "VK-1",
            "--from", _d(1).isoformat(), "--to", _d(3).isoformat(), "--data-dir", str(tmp_path)]
    assert main([*base, "--statement", str(tmp_path / "rel.json")]) == 0
    assert "v1: estimated" in capsys.readouterr().out
    assert main([*base, "--statement", str(tmp_path / "rel.json"), "--statement", str(tmp_path / "fix.json")]) == 0
    assert "v2: verified" in capsys.readouterr().out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers(-3, 70) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["format", "period_from", "period_to", "parts", "missing", "corrects",
                                         "x"]), inner, max_size=7), max_leaves=20))
def test_bill_parts_parser_never_crashes(doc):
    """Arbitrary JSON: a parsed document or a one-line FormatError, nothing else."""
    from meterhub.model.errors import FormatError

    try:
        BillParts.from_dict(doc)
    except FormatError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), st.integers(), st.text(max_size=12), st.lists(st.one_of(st.text(max_size=12), st.integers()),
                                                                           max_size=30), st.lists(st.dates(date(2027, 1, 1), date(2027, 12, 31)).map(date.isoformat), max_size=30)))
def test_policy_splits_parser_never_crashes(splits):
    """Arbitrary ``cycle.splits``: a policy whose pieces tile each cell, or a PolicyError."""
    d = default_policy().to_dict()
    d["cycle"]["splits"] = splits
    try:
        p = type(default_policy()).from_dict(d)
    except PolicyError:
        return
    for s in p.cycle.splits:
        pieces = p.cycle.pieces(s)
        assert pieces[0][0] == p.cycle.period_of(s)[0] and pieces[-1][1] == p.cycle.period_of(s)[1]
        assert all(b + timedelta(days=1) == c for (_, b), (c, _) in zip(pieces, pieces[1:], strict=False))
        assert any(a == s for a, _ in pieces)


def test_a_longer_gap_fills_in_any_order_and_a_released_piece_is_not_cut(tmp_path):
    meter, days = _meter_days(6)
    card = _card(tmp_path, default_policy(anchor=_d(1), days=6))
    c = _client(card, [_tariff()], meter)
    for k in (0, 4, 5):  # the 2nd to the 4th are missing
        c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
    with pytest.raises(HubError, match="6A80"):  # beyond the next stored day's first index
        c.put_openings(_d(3), days[2].first_index + 200, days[2].openings)
    c.put_openings(_d(3), days[2].first_index, days[2].openings)  # the middle first: no neighbour stored
    with pytest.raises(HubError, match="6A80"):  # day 2 must end where day 3 starts
        c.put_openings(_d(2), days[1].first_index - 1, days[1].openings)
    c.put_openings(_d(2), days[1].first_index, days[1].openings)
    rel = c.banded_bill_parts(_d(1), _d(6), MALO, "VK-1")
    assert [(p.period_from.day, p.period_to.day) for p in rel.parts] == [(1, 3), (5, 6)]
    assert rel.missing == ((_d(4), _d(4)),)
    # A tariff that takes effect inside the released period cannot split it afterwards.
    with _tsm(card, "supplier") as t, pytest.raises(Exception, match="6985"):
        t.push_tariff(BILLING_APP_AID, dump_tariff(_tariff(version=2, valid_from=_d(3))))


def test_the_hosts_delivery_and_bill_through_the_card(tmp_path):
    """hub.card_bill: the host delivers pairing, tariff and sealed days; the card bills."""
    from meterhub.hub.card_bill import bill_through_card, deliver_to_card
    from meterhub.model.formats.sealed import seal_openings

    meter, days = _meter_days(4)
    card = _card(tmp_path, default_policy(anchor=_d(1), days=4))
    key = bytes(range(16))
    sealed = [seal_openings(key, meter.meter_id, d.batch.batch.day, d.first_index, d.openings) for d in days]
    t1 = dump_tariff(_tariff())
    kw = dict(meter_id=meter.meter_id, tz=TZ, interval_minutes=15, home_link_key=key, tariff=t1)
    c = deliver_to_card(card.transmit, days=[sealed[k] for k in (3, 0, 1)], **kw)  # any order; the 3rd is lost
    with pytest.raises(HubError, match="6A88"):
        bill_through_card(c, _d(1), _d(4))  # GET BILL (v1) needs every day
    rel = bill_through_card(c, _d(1), _d(4), metering_point=MALO, contract_id="VK-1")
    assert isinstance(rel, BillParts) and rel.missing == ((_d(3), _d(3)),)
    # Delivering everything again is idempotent, and the late day fills the gap.
    c = deliver_to_card(card.transmit, days=sealed, **kw)
    fix = bill_through_card(c, _d(1), _d(4), metering_point=MALO, contract_id="VK-1", correction=True)
    assert [(p.period_from, p.period_to) for p in fix.parts] == [(_d(3), _d(3))]
    # Another home-link key: the card refuses the day (it is not the paired meter's).
    with pytest.raises(HubError, match="6982"):
        deliver_to_card(card.transmit, days=[seal_openings(bytes(16), meter.meter_id, _d(5), 0, days[0].openings)],
                        **{**kw, "home_link_key": bytes(16)})


def test_the_customer_declares_a_split_with_hub_policy_set(tmp_path, capsys):
    from meterhub.cli import main
    from meterhub.hub.secure_element import customer_key_path
    from test_guard_cli import _hub

    _, card = _hub(tmp_path)
    assert main(["hub", "policy", "show", "--card", card, "--json"]) == 0
    pol = json.loads(capsys.readouterr().out)
    pol["version"] = 2
    pol["cycle"]["splits"] = ["2027-06-05", "2027-06-10", "2027-06-17"]  # three in one month
    pol["cycle"]["length"] = "month"
    (tmp_path / "p.json").write_text(json.dumps(pol))
    key = str(customer_key_path(card))
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "p.json"), "--key", key]) == 2
    err = capsys.readouterr().err
    assert "at most 2 split days" in err and err.count("\n") == 1
    pol["cycle"]["splits"] = ["2027-06-17"]
    (tmp_path / "p.json").write_text(json.dumps(pol))
    assert main(["hub", "policy", "set", "--card", card, "--policy", str(tmp_path / "p.json"), "--key", key]) == 0
    assert main(["hub", "policy", "show", "--card", card]) == 0
    assert "split days (a period is billed in pieces from each): 2027-06-17" in capsys.readouterr().out


def test_power_loss_at_every_write_of_a_late_day_and_its_correction(tmp_path):
    """A tear at any write point of PUT DAY (late) and of the correction leaves either no
    trace or a complete one; after the restart the same steps end in exactly one
    correction, logged, and the gap filled."""
    from meterhub.card import PowerLoss

    meter, days = _meter_days(3)
    policy = default_policy(anchor=_d(1), days=3)

    def setup(path):
        card = _card(path, policy)
        c = _client(card, [_tariff()], meter)
        for k in (0, 2):
            c.put_openings(_d(k + 1), days[k].first_index, days[k].openings)
        c.banded_bill_parts(_d(1), _d(3), MALO, "VK-1")
        return card, c

    def late_and_correct(c):
        c.select()
        c.put_openings(_d(2), days[1].first_index, days[1].openings)
        return c.banded_bill_parts(_d(1), _d(3), MALO, "VK-1", correction=True)

    card, c = setup(tmp_path / "count")
    start = card.store.write_points
    want = late_and_correct(c)
    points = card.store.write_points - start
    card.close()
    assert points >= 4
    for n in range(1, points + 1):
        d = tmp_path / f"tear{n}"
        card, c = setup(d)
        base = card.store.write_points

        def tear(what, k, base=base, n=n):
            if k - base == n:
                raise PowerLoss(what)

        card.store.fault_hook = tear
        with pytest.raises(PowerLoss):
            late_and_correct(c)
        card = open_hub_card(d / "hub.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                             supplier_keys=demo_scp03_keys("supplier"),
                             supplier_dap=demo_dap_key("supplier").public_key(), policy=policy)
        c = BillingClient(card.transmit)
        got = late_and_correct(c)
        assert got.parts == want.parts and got.missing == (), n
        kinds = [e.kind for e in _log(card, policy)]
        assert kinds.count("correction") == 1 and kinds.count("bill") == 1, n
        card.close()
