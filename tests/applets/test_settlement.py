"""The settlement applet through the supplier's TSM, and the settlement service's checks."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import History, make_history, signed_index
from helpers import SettlementHub as Hub
from meterhub.crypto import ecdsa
from meterhub.crypto.group import Point, Q, uncompress_many
from meterhub.hub.secure_element import (
    RECIPIENT_SDS,
    SETTLEMENT_APP_AID,
    ReadingsClient,
)
from meterhub.model.timebase import range_starts
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.tariffs.price_index import (
    dump_series,
    example_price_index,
)
from meterhub.utility.settlement import (
    HubRefused,
    SettlementStatement,
    aggregate,
    expected_code_hash,
    settlement_request,
    verify_settlement,
)

GRID = RECIPIENT_SDS["grid-operator"]
CODE_HASH = expected_code_hash("meterhub.applets.settlement/1")


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    h = make_history(n_days=3, seed=61)
    hub = Hub(tmp_path_factory.mktemp("hub") / "hub.sqlite", h)
    idx = signed_index(h)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    mb.push_series(idx)
    hub.feed()
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    raw = mb.request(settlement_request(h.start, hub.last, idx.series.series_id, 1), "settlement")
    return h, hub, idx, SettlementStatement.from_json(raw)


def test_statement_is_exact_and_verifies(settled):
    h, _, idx, st = settled
    readings = [m for day in h.readings for m in day]
    prices = idx.series.values_for(range_starts(h.start, 3, "Europe/Berlin", 15), 15)
    assert st.energy_wh == sum(readings)
    assert st.value == sum(p * m for p, m in zip(prices, readings, strict=True))
    assert st.energy_blinding == sum(o.r for o in h.openings) % Q
    assert st.code_hash == CODE_HASH and st.applet_aid == SETTLEMENT_APP_AID
    assert verify_settlement(st, h.registration, h.day_commitments(), idx.series, code_hash=CODE_HASH).ok
    assert SettlementStatement.from_json(st.to_json()) == st


@pytest.mark.parametrize(
    "change, reason",
    [
        (dict(energy_wh=1), "energy"),
        (dict(value=1), "value"),
        (dict(energy_blinding=1), "energy"),
        (dict(value_blinding=1), "value"),
        (dict(index_version=2), "index"),
        (dict(index_digest=bytes(32)), "digest"),
        (dict(code_hash="00" * 32), "code hash"),
        (dict(meter_id="m-other"), "meter"),
        (dict(count=-1), "covers"),
        (dict(first_index=1), "covers"),
        (dict(period_to=date(2027, 3, 28)), "period"),
    ],
)
def test_tampered_statement_is_rejected(settled, change, reason):
    h, _, idx, st = settled
    key = next(iter(change))
    value = change[key]
    if key in ("energy_wh", "value", "energy_blinding", "value_blinding", "count"):
        value = getattr(st, key) + value
    bad = dataclasses.replace(st, **{key: value})
    v = verify_settlement(bad, h.registration, h.day_commitments(), idx.series, code_hash=CODE_HASH)
    assert not v.ok
    assert v.reason


def test_tampered_index_or_commitments_are_rejected(settled):
    h, _, idx, st = settled
    s = idx.series
    vals = list(s.values)
    vals[5] += 1
    tampered = dataclasses.replace(s, values=tuple(vals))
    assert "digest" in verify_settlement(st, h.registration, h.day_commitments(), tampered).reason
    days = h.day_commitments()
    c = bytearray(days[1].c33)
    c[40] ^= 1
    days[1] = dataclasses.replace(days[1], c33=bytes(c))
    assert not verify_settlement(st, h.registration, days, s).ok
    assert "no signed batch" in verify_settlement(st, h.registration, h.day_commitments()[:2], s).reason


def test_index_refusals_name_the_reason(settlement_hub):
    h = make_history(n_days=2, seed=62)
    hub = settlement_hub(h)
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    with pytest.raises(HubRefused, match="not the publisher key the customer pinned") as e:
        mb.push_series(signed_index(h, key=ecdsa.generate_signing_key()))
    assert e.value.sw == 0x6982
    good = signed_index(h, version=2)
    raw = dump_series(good)
    unsigned = raw[: raw.index(b',"signature"')] + b"}"
    with pytest.raises(HubRefused, match="unsigned") as e:
        mb.push_raw_series(unsigned, "unsigned index")
    assert e.value.sw == 0x6A80
    wrong_format = raw.replace(b"meterhub-series/1", b"meterhub-series/9")
    with pytest.raises(HubRefused, match="format version"):
        mb.push_raw_series(wrong_format, "index")
    mb.push_series(good)
    mb.push_series(good)  # the same version again is fine
    with pytest.raises(HubRefused, match="older version") as e:
        mb.push_series(signed_index(h, version=1))
    assert e.value.sw == 0x6985
    # Expired: the hub holds readings past the index's expiry day.
    hub.feed()
    mb = hub.mailbox("supplier", SETTLEMENT_APP_AID)
    stale = signed_index(h, version=3, expires=h.start + timedelta(days=1))
    with pytest.raises(HubRefused, match="expired") as e:
        mb.push_series(stale)
    assert e.value.sw == 0x6984
    # A request for another version than the hub holds.
    with pytest.raises(HubRefused) as e:
        mb.request(settlement_request(h.start, hub.last, good.series.series_id, 7), "settlement")
    assert e.value.sw == 0x6A88
    with pytest.raises(HubRefused, match="release policy") as e:  # not one whole period
        mb.request(settlement_request(h.start, hub.last + timedelta(days=1), good.series.series_id, 2), "settlement")
    assert e.value.sw == 0x6A80


def test_outputs_go_only_to_the_suppliers_domain(settlement_hub):
    h = make_history(n_days=1, seed=63)
    hub = settlement_hub(h)
    hub.feed()
    # The host's plain channel has no output command (STORE DATA is not an applet INS).
    rc = ReadingsClient(hub.card.transmit, SETTLEMENT_APP_AID)
    rc.select()
    capdu = CommandAPDU(0x80, 0xE2, 0x80, 0x00, settlement_request(h.start, h.start, "x", 1), le=256)
    assert ResponseAPDU.from_bytes(hub.card.transmit(capdu.to_bytes())).sw == 0x6D00
    # Another recipient's domain cannot reach the settlement applet.
    with pytest.raises(HubRefused) as e:
        hub.mailbox("grid-operator", SETTLEMENT_APP_AID).push_series(signed_index(h))
    assert e.value.sw == 0x6A88


@pytest.mark.parametrize("top", [0, 31, 32, 22_000, 1 << 40])
def test_small_price_msm_equals_the_plain_sum(top):
    """The settlement check's multiplication (PointArray.msm over small scalars)."""
    import random

    from meterhub.crypto.group import G, H, Point, PointArray

    rng = random.Random(top)
    pts = [G * rng.randrange(1, Q) + H * rng.randrange(1, Q) for _ in range(40)]
    ks = [rng.randint(0, top) for _ in pts]
    want = Point.identity()
    for k, p in zip(ks, pts, strict=True):
        want = want + p * k
    blob = b"".join(p.to_bytes_uncompressed() for p in pts)
    assert PointArray.parse(blob, 65).msm(ks) == want


def test_aggregate_shares():
    shares = aggregate([("a", 100, 50), ("b", 300, 150), ("a", 100, 0)])
    assert [(s.supplier, s.customers, s.energy_wh, s.value) for s in shares] == [("a", 2, 200, 50), ("b", 1, 300, 150)]
    assert shares[0].energy_share == pytest.approx(0.4) and shares[1].value_share == pytest.approx(0.75)


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_statement_parser_only_raises_value_error(data):
    try:
        SettlementStatement.from_json(data)
    except ValueError:
        pass


@given(st.dictionaries(st.sampled_from(["format", "meter_id", "energy_wh", "value", "count"]),
                       st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans())))
def test_statement_parser_on_objects(d):
    import json

    with pytest.raises(ValueError):
        SettlementStatement.from_json(json.dumps(d))


def _statement_for(h: History, st: SettlementStatement, index) -> SettlementStatement:
    """``st`` recomputed from the history's openings under another ``index`` (what the
    applet would release under it)."""
    prices = index.values_for(range_starts(h.start, len(h.days), "Europe/Berlin", 15), 15)
    return dataclasses.replace(
        st, index_id=index.series_id, index_version=index.version, index_digest=index.digest(),
        value=sum(p * o.m for p, o in zip(prices, h.openings, strict=True)),
        value_blinding=sum(p * o.r for p, o in zip(prices, h.openings, strict=True)) % Q)


def test_hourly_index_is_checked_on_the_hourly_sums(settled, monkeypatch):
    """An hourly index over 15-minute readings: the value check runs on the hourly sums
    (never on the 15-minute points), and still rejects a value or blinding off by one."""
    from meterhub.utility import settlement as mod
    from meterhub.utility.verifier import clear_shared_caches

    h, _, _, st = settled
    hourly = example_price_index(h.start, len(h.days), interval_minutes=60)
    good = _statement_for(h, st, hourly)

    def no_quarter_hours(days):
        raise AssertionError("the 15-minute points were used for an hourly index")

    monkeypatch.setattr(mod, "period_points", no_quarter_hours)
    clear_shared_caches()
    assert verify_settlement(good, h.registration, h.day_commitments(), hourly).ok
    for bad in (dataclasses.replace(good, value=good.value + 1),
                dataclasses.replace(good, value_blinding=(good.value_blinding + 1) % Q),
                dataclasses.replace(good, energy_blinding=(good.energy_blinding + 1) % Q)):
        v = verify_settlement(bad, h.registration, h.day_commitments(), hourly)
        assert not v.ok and ("value" in v.reason or "energy" in v.reason)


def test_shared_caches_never_change_a_verdict(settled):
    """Verdicts with the customer-month's signatures and points already verified and
    parsed (warm) equal those from a cold start, for the good statement and tampered ones;
    a cache hit needs the exact bytes (another key, signature or point misses)."""
    from meterhub.model.formats.batch import SignedBatch
    from meterhub.utility.verifier import MeterRegistration, clear_shared_caches

    h, _, idx, st = settled
    days = h.day_commitments()
    sig = bytearray(days[1].batch.signature)
    sig[10] ^= 1
    bad_sig = list(days)
    bad_sig[1] = dataclasses.replace(days[1], batch=SignedBatch(days[1].batch.batch, bytes(sig)))
    other_key = MeterRegistration(h.registration.meter_id, ecdsa.generate_signing_key().public_key(),
                                  "Europe/Berlin", 15)
    # The utility's stored uncompressed copy of the points, one point altered in it.
    swapped = [dataclasses.replace(d, c65=uncompress_many(d.c33)) for d in days]
    pts = bytearray(swapped[0].c65 or b"")
    pts[:65] = (-Point.from_bytes(bytes(pts[:65]))).to_bytes_uncompressed()
    swapped[0] = dataclasses.replace(swapped[0], c65=bytes(pts))
    cases = [(st, h.registration, days), (dataclasses.replace(st, value=st.value + 1), h.registration, days),
             (st, h.registration, bad_sig), (st, other_key, days), (st, h.registration, swapped)]

    def verdicts(cold: bool) -> list[bool]:
        out = []
        for s, reg, ds in cases:
            if cold:
                clear_shared_caches()
            out.append(verify_settlement(s, reg, ds, idx.series).ok)
        return out

    clear_shared_caches()
    assert verdicts(cold=True) == [True, False, False, False, False]
    verify_settlement(st, h.registration, days, idx.series)  # warm: signatures and points cached
    assert verdicts(cold=False) == [True, False, False, False, False]


def test_checked_days_cache_answers_only_for_the_same_days(settled):
    """The day-by-day checks (chain, signatures, intervals) remembered for one
    customer-month never answer for other days: an altered commitment, a dropped or
    reordered day, another registration (interval, key), a missing index are rejected
    warm as cold, and only the good days are remembered."""
    from meterhub.utility import verifier as vf

    h, _, idx, st = settled
    days = h.day_commitments()
    c33 = bytearray(days[1].c33)
    c33[40] ^= 1
    altered = list(days)
    altered[1] = dataclasses.replace(days[1], c33=bytes(c33), c65=None)
    swapped = [days[1], days[0], *days[2:]]
    reg = h.registration
    cases = [(reg, days), (reg, altered), (reg, swapped), (reg, days[:-1]),
             (dataclasses.replace(reg, interval_minutes=60), days),
             (dataclasses.replace(reg, public_key=ecdsa.generate_signing_key().public_key()), days),
             (reg, [dataclasses.replace(d, indices=list(d.indices or [])[:-1]) if k == 1 else d
                    for k, d in enumerate(days)])]
    cold = []
    for r, ds in cases:
        vf.clear_shared_caches()
        cold.append(verify_settlement(st, r, ds, idx.series).ok)
    assert cold == [True, False, False, False, False, False, False]
    vf.clear_shared_caches()
    assert verify_settlement(st, reg, days, idx.series).ok
    assert len(vf._DAYS) == 1
    assert [verify_settlement(st, r, ds, idx.series).ok for r, ds in cases] == cold
    assert len(vf._DAYS) == 1
