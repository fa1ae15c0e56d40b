"""Bill verification: an honest bill verifies; every single tampering is rejected with its reason."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.crypto.group import G, H, Q
from meterhub.crypto.pedersen import Opening, commit
from meterhub.hub.billing import bill_statement, linear_bill
from meterhub.meter.device import DailyBatch, SignedBatch, chain_head
from meterhub.tariffs import demo_supplier_key, example_tariff, sign_tariff
from meterhub.utility.verifier import DayCommitments, verify_bill


def _verify(h, statement=None, days=None, tariff=None, reg=None):
    return verify_bill(
        statement or h.statement, reg or h.registration, days if days is not None else h.day_commitments(), tariff or h.tariff
    )


def _restated(h, openings):
    """The statement the hub would compute from (possibly altered) openings."""
    return bill_statement(
        meter_id=h.statement.meter_id,
        tariff=h.tariff,
        period_from=h.statement.period_from,
        period_to=h.statement.period_to,
        first_index=0,
        prices=h.prices(),
        openings=openings,
    )


def test_honest_bill_verifies_and_equals_bill_from_readings(history):
    v = _verify(history)
    assert v.ok, v.reason
    prices = history.prices()
    raw = [m for day in history.readings for m in day]
    assert history.statement.energy_charge == sum(t * m for t, m in zip(prices, raw, strict=True))
    assert history.statement.count == 96 + 92 + 96  # 2027-03-28 is the spring DST day


def test_homomorphic_identity_holds(history):
    bill, r = linear_bill(history.prices(), history.openings)
    acc = G * 0
    for d in history.days:
        for k in range(d.batch.batch.count):
            from meterhub.crypto.group import Point

            acc = acc + Point.from_bytes(d.commitments[33 * k : 33 * k + 33]) * history.prices()[d.first_index + k]
    assert acc == G * bill + H * r


@given(st.integers(min_value=1, max_value=10**9), st.booleans())
@settings(max_examples=20, deadline=None)
def test_bill_changed_by_any_amount_is_rejected(history, delta, sign):
    d = delta if sign else -delta
    st_ = dataclasses.replace(
        history.statement,
        energy_charge=history.statement.energy_charge + d,
        total=history.statement.total + d,
    )
    v = _verify(history, statement=st_)
    assert not v.ok
    assert "sum t_i*C_i" in v.reason or "out of range" in v.reason


def test_blinding_changed_is_rejected(history):
    st_ = dataclasses.replace(history.statement, blinding=(history.statement.blinding + 1) % Q)
    assert "sum t_i*C_i" in _verify(history, statement=st_).reason


def test_reading_changed_in_the_hub_is_rejected():
    h = make_history(n_days=2, seed=5)
    for pos, delta in [(0, 1), (17, -3), (150, 1000)]:
        ops = list(h.openings)
        ops[pos] = Opening(max(0, ops[pos].m + delta), ops[pos].r)
        if ops[pos].m == h.openings[pos].m:
            continue
        assert "sum t_i*C_i" in _verify(h, statement=_restated(h, ops)).reason


def test_opening_blinding_changed_in_the_hub_is_rejected():
    h = make_history(n_days=1, seed=9)
    ops = list(h.openings)
    ops[10] = Opening(ops[10].m, (ops[10].r + 7) % Q)
    assert "sum t_i*C_i" in _verify(h, statement=_restated(h, ops)).reason


def _replace_day(h, k, **kw):
    days = h.day_commitments()
    days[k] = dataclasses.replace(days[k], **kw)
    return days


def test_commitment_changed_is_rejected(history):
    d = history.day_commitments()[1]
    c, _ = commit(123)
    blob = bytearray(d.c33)
    blob[33 * 4 : 33 * 5] = c.to_bytes()
    v = _verify(history, days=_replace_day(history, 1, c33=bytes(blob)))
    assert not v.ok and "chain head" in v.reason and "2027-03-28" in v.reason


def test_commitment_scaled_to_keep_chain_cannot_forge():
    # Even re-signing is impossible without the meter key: a changed commitment
    # with a recomputed chain head breaks the batch signature.
    h = make_history(n_days=1, seed=3)
    d = h.day_commitments()[0]
    blob = bytearray(d.c33)
    c, _ = commit(1)
    blob[0:33] = c.to_bytes()
    b = d.batch.batch
    forged = dataclasses.replace(b, head=chain_head(b.prev_head, b.first_index, bytes(blob)))
    v = _verify(h, days=[DayCommitments(SignedBatch(forged, d.batch.signature), bytes(blob))])
    assert "signature does not verify" in v.reason


def test_interval_dropped_is_rejected(history):
    d = history.day_commitments()[0]
    idx = list(d.indices)
    del idx[10]
    blob = d.c33[: 33 * 10] + d.c33[33 * 11 :]
    v = _verify(history, days=_replace_day(history, 0, c33=blob, indices=idx))
    assert not v.ok and "interval 10 missing" in v.reason


def test_interval_duplicated_is_rejected(history):
    d = history.day_commitments()[0]
    idx = list(d.indices)
    idx.insert(6, 5)
    blob = d.c33[: 33 * 6] + d.c33[33 * 5 : 33 * 6] + d.c33[33 * 6 :]
    v = _verify(history, days=_replace_day(history, 0, c33=blob, indices=idx))
    assert not v.ok and "interval 5 duplicated" in v.reason


def test_intervals_swapped_are_rejected(history):
    d = history.day_commitments()[2]
    first = d.batch.batch.first_index
    idx = list(d.indices)
    idx[3], idx[4] = idx[4], idx[3]
    v = _verify(history, days=_replace_day(history, 2, indices=idx))
    assert not v.ok and f"interval {first + 3} missing" in v.reason or "out of order" in v.reason
    # Swapped commitments under correct indices: the chain catches it.
    blob = bytearray(d.c33)
    blob[0:33], blob[33:66] = d.c33[33:66], d.c33[0:33]
    v = _verify(history, days=_replace_day(history, 2, c33=bytes(blob)))
    assert not v.ok and "chain head" in v.reason


def test_foreign_interval_is_rejected(history):
    d = history.day_commitments()[0]
    idx = list(d.indices)
    idx[-1] = 10_000
    v = _verify(history, days=_replace_day(history, 0, indices=idx))
    assert not v.ok and "foreign" in v.reason


def test_day_dropped_or_reordered_is_rejected(history):
    days = history.day_commitments()
    v = _verify(history, days=[days[0], days[2]])
    assert not v.ok and "no signed batch for day 2027-03-28" in v.reason
    v = _verify(history, days=[days[1], days[0], days[2]])
    assert not v.ok and "out of order" in v.reason


def test_batch_resigned_by_another_meter_is_rejected(history):
    other = ecdsa.generate_signing_key()
    d = history.day_commitments()[1]
    resigned = SignedBatch(d.batch.batch, ecdsa.sign(other, d.batch.batch.signed_message()))
    v = _verify(history, days=_replace_day(history, 1, batch=resigned))
    assert not v.ok and "signature does not verify" in v.reason


def test_batch_from_another_meter_is_rejected(history):
    foreign = make_history(meter_id="m-other", n_days=3)
    v = _verify(history, days=foreign.day_commitments())
    assert not v.ok and "foreign batch" in v.reason


def test_tariff_swapped_is_rejected(history):
    key = demo_supplier_key()
    t2 = dataclasses.replace(example_tariff(), version=history.tariff.version + 1)
    t2 = sign_tariff(t2, key).tariff
    v = _verify(history, tariff=t2)
    assert not v.ok and "tariff version mismatch" in v.reason
    st_ = dataclasses.replace(history.statement, tariff_version=t2.version)
    v = _verify(history, statement=st_, tariff=t2)
    assert not v.ok and "digest" in v.reason


def test_statement_for_another_meter_or_range_is_rejected(history):
    v = _verify(history, statement=dataclasses.replace(history.statement, meter_id="x"))
    assert "not 'm-test'" in v.reason
    v = _verify(history, statement=dataclasses.replace(history.statement, first_index=1))
    assert "statement covers intervals" in v.reason
    v = _verify(history, statement=dataclasses.replace(history.statement, standing_charge=0, total=history.statement.energy_charge))
    assert "standing charge" in v.reason


def test_period_outside_tariff_validity_is_rejected(history):
    st_ = dataclasses.replace(history.statement, period_from=history.tariff.valid_from - timedelta(days=1))
    assert not _verify(history, statement=st_).ok


def test_batch_bytes_round_trip_and_strictness(history):
    b = history.days[0].batch.batch
    assert DailyBatch.from_bytes(b.to_bytes()) == b
    import pytest

    from meterhub.meter.device import BatchError

    for bad in [b"", b.to_bytes()[:-1], b"\x02" + b.to_bytes()[1:], b.to_bytes() + b"\x00"]:
        with pytest.raises(BatchError):
            DailyBatch.from_bytes(bad)


@given(st.data())
@settings(max_examples=25, deadline=None)
def test_any_single_reading_or_commitment_change_is_rejected(history, data):
    day = data.draw(st.integers(min_value=0, max_value=len(history.days) - 1))
    d = history.day_commitments()[day]
    pos = data.draw(st.integers(min_value=0, max_value=d.batch.batch.count - 1))
    delta = data.draw(st.integers(min_value=1, max_value=2**32 - 1))
    # The hub changes one reading (kept non-negative) and restates the bill.
    k = d.batch.batch.first_index + pos
    ops = list(history.openings)
    ops[k] = Opening((ops[k].m + delta) % 2**32, ops[k].r)
    assert "sum t_i*C_i" in _verify(history, statement=_restated(history, ops)).reason or (
        history.prices()[k] == 0
    )
    # Or someone replaces that commitment with a commitment to another value.
    c, _ = commit(delta)
    blob = bytearray(d.c33)
    blob[33 * pos : 33 * pos + 33] = c.to_bytes()
    v = _verify(history, days=_replace_day(history, day, c33=bytes(blob)))
    assert not v.ok and "chain head" in v.reason


def test_bill_on_shared_points_equals_the_bill_on_its_own_parse(history, monkeypatch):
    """verify_bill on the customer-month's shared parsed points (BillCheck.points) gives
    the verdicts of the kind's own parse, cold and warm, for the honest bill and
    tampered ones; with the shared points unavailable the kind parses itself."""
    from meterhub.utility import verifier as mod

    cases = [history.statement,
             dataclasses.replace(history.statement, energy_charge=history.statement.energy_charge + 1,
                                 total=history.statement.total + 1),
             dataclasses.replace(history.statement, blinding=(history.statement.blinding + 1) % Q)]
    mod.clear_shared_caches()
    shared_cold = [_verify(history, statement=s) for s in cases]
    shared_warm = [_verify(history, statement=s) for s in cases]

    def unavailable(days):
        raise mod.PointDecodeError("shared points withheld by the test")

    monkeypatch.setattr(mod, "period_points", unavailable)
    own = [_verify(history, statement=s) for s in cases]
    assert [v.ok for v in shared_cold] == [v.ok for v in shared_warm] == [v.ok for v in own] == [True, False, False]
    assert [v.reason for v in shared_cold] == [v.reason for v in own]


def test_bill_on_hourly_sums_equals_the_quarter_hour_sum(history):
    """With prices constant over each hour the bill's ``sum t_i C_i`` is taken on the
    shared hourly sums when another check formed them; it equals the sum over every quarter-hour point, and prices that
    change within an hour take the quarter-hour points (the hourly sums would be wrong)."""
    from meterhub.crypto.group import naive_msm
    from meterhub.model.billing import time_of_use as tou
    from meterhub.utility import verifier as mod

    days = history.day_commitments()
    starts = mod.check_period(history.statement, history.registration, days, history.tariff)
    mod.clear_shared_caches()
    assert mod.bill_check(history.registration, days, history.tariff, starts).group_sums is None  # not formed for the bill alone
    mod.period_point_sums(days, 4)  # as the settlement or score check of the customer-month does
    check = mod.bill_check(history.registration, days, history.tariff, starts)
    assert check.group_sums is not None and check.points is not None and check.group_sums[0] == 4
    pts = check.points.points()
    n = len(pts)
    hourly = [7 + (k // 4) % 5 for k in range(n)]
    within = [7 + k % 5 for k in range(n)]
    one_off = list(hourly)  # constant per hour except one quarter-hour deep in the period
    one_off[4 * (n // 8) + 3] += 1
    for prices in (hourly, within, one_off):
        want = naive_msm(prices, pts)
        assert tou._lincomb(check, prices) == want
        assert tou._lincomb(dataclasses.replace(check, group_sums=None), prices) == want
    assert check.group_sums[1].msm(within[::4]) != naive_msm(within, pts)


def test_commitments_given_as_bytearray_verify_like_bytes(history):
    """A store or caller handing the day's commitments as a ``bytearray`` (a mutable
    buffer, e.g. from a socket) gets the same verdict as with ``bytes``; before, the
    shared-points cache raised TypeError (unhashable key) instead of a verdict."""
    from meterhub.utility import verifier as mod

    days = [dataclasses.replace(d, c33=bytearray(d.c33)) for d in history.day_commitments()]
    mod.clear_shared_caches()
    assert _verify(history, days=days).ok
    bad = dataclasses.replace(history.statement, blinding=(history.statement.blinding + 1) % Q)
    assert not _verify(history, days=days, statement=bad).ok
