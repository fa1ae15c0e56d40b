"""Proven bills under non-linear tariffs: the tier proof, the hub prover, the utility verifier."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import History, make_history
from meterhub.crypto import bulletproofs as bp
from meterhub.crypto import rangeproof as rp
from meterhub.crypto.bulletproofs import tier as bp_tier
from meterhub.crypto.group import G, Q
from meterhub.crypto.pedersen import Commitment, Opening, commit
from meterhub.crypto.transcript import ProofContext, ProofError
from meterhub.hub.proving import ProofBundle, ProvenBillStatement, prove_bill, reading_context
from meterhub.model.errors import FormatError
from meterhub.model.timebase import day_starts
from meterhub.tariffs import KIND_INCLINING_BLOCK, KIND_POLYNOMIAL, KIND_TIERED, NonLinearTariff
from meterhub.tariffs.nonlinear import example_nonlinear_tariff
from meterhub.utility.proof_verifier import verify_proven_bill
from meterhub.utility.verifier import verify_bill

CTX = ProofContext("meter-1", "2027-01", "tiered", 2, b"t")
OTHER_CONTEXTS = [
    dataclasses.replace(CTX, meter_id="meter-2"),
    dataclasses.replace(CTX, period="2027-02"),
    dataclasses.replace(CTX, tariff_id="other"),
    dataclasses.replace(CTX, tariff_version=3),
    dataclasses.replace(CTX, statement=b"u"),
]
ROWS = [(0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 4096, 6, 1650)]
NARROW = [(0, 64, 3, 0), (64, 128, 4, 192), (128, 192, 5, 448), (192, 256, 6, 768)]
EDGES = [0, 1, 99, 100, 249, 250, 399, 400, 4095]


def verdict(f: Any) -> bool:
    try:
        return bool(f())
    except ProofError:
        return False


def row_of(m: int, rows: list[tuple[int, int, int, int]] = ROWS) -> int:
    return next(j for j, r in enumerate(rows) if r[0] <= m < r[1])


# -- the tier proof (crypto) -------------------------------------------------------------
def test_tier_bits_and_size() -> None:
    assert bp.tier_bits(ROWS) == 16 and bp.tier_bits(NARROW) == 8
    assert bp.tier_bits([(0, 2, 1, 0)]) == 1
    assert bp.tier_bits([(0, 3, 1, 0)]) == 2
    c, o = commit(5)
    # Version 2: the inner-product argument stops at vectors of length 8.
    assert len(bp.prove_tier(c, o, ROWS, CTX)[0]) == bp.tier_proof_size(ROWS) == 1239
    assert len(bp.prove_tier(c, o, NARROW, CTX)[0]) == bp.tier_proof_size(NARROW) == 1173
    assert bp.tier_proof_size(ROWS, 1) == 989 and bp.tier_proof_size(NARROW, 1) == 923
    with pytest.raises(ProofError):
        bp.tier_proof_size(ROWS, 3)


@pytest.mark.parametrize("width", [2, 3, 5, 16])
def test_tier_tiny_tables_fold_less(width: int) -> None:
    """Tables so narrow that 2n is below the fold length (n = 1, 2, 4) still prove,
    verify, reject a flipped byte and have the size tier_proof_size says."""
    rows = [(0, width, 2, 0), (width, 2 * width, 3, 2 * width)]
    for m in (0, width - 1, width, 2 * width - 1):
        c, o = commit(m)
        proof, _, po = bp.prove_tier(c, o, rows, CTX)
        assert len(proof) == bp.tier_proof_size(rows) and bp.verify_tier(c, rows, proof, CTX)
        assert po.m == (m - rows[row_of(m, rows)][0]) * rows[row_of(m, rows)][2] + rows[row_of(m, rows)][3]
        bad = bytearray(proof)
        bad[-40] ^= 4
        assert not verdict(lambda bad=bytes(bad), c=c: bp.verify_tier(c, rows, bad, CTX))


@pytest.mark.parametrize("rows", [ROWS, NARROW])
def test_tier_version_1_still_verifies(rows: list[tuple[int, int, int, int]]) -> None:
    """Proofs of the older encoding (folded to length 1) verify, alone and batched
    with version-2 proofs; neither verifies relabelled as the other version."""
    c, o = commit(130)
    old, p_old, _ = bp_tier._prove_tier(c, o, rows, CTX, None, 1)
    new, _, _ = bp.prove_tier(c, o, rows, CTX)
    assert old[0] == 1 and new[0] == 2 and len(old) == bp.tier_proof_size(rows, 1)
    assert bp.verify_tier(c, rows, old, CTX) and bp.tier_price_commitment(old) == p_old
    assert bp.verify_tier_batch([bp.TierItem(c, rows, old, CTX), bp.TierItem(c, rows, new, CTX)])
    for proof, other in ((old, 2), (new, 1)):
        assert not verdict(lambda p=proof, v=other: bp.verify_tier(c, rows, bytes([v]) + p[1:], CTX))
    wrong = commit(131)[0]
    assert not bp.verify_tier(wrong, rows, old, CTX)
    for i in range(0, len(old), 7):
        bad = bytearray(old)
        bad[i] ^= 1 << (i % 8)
        assert not verdict(lambda bad=bytes(bad): bp.verify_tier(c, rows, bad, CTX)), i


@settings(max_examples=12, deadline=None)
@given(st.one_of(st.sampled_from(EDGES), st.integers(0, 4095)))
def test_tier_complete(m: int) -> None:
    c, o = commit(m)
    proof, p, po = bp.prove_tier(c, o, ROWS, CTX)
    assert bp.verify_tier(c, ROWS, proof, CTX)
    lo, _, f1, f2 = ROWS[row_of(m)]
    assert po.m == (m - lo) * f1 + f2
    assert bp.tier_price_commitment(proof) == p == commit(po.m, po.r)[0]


@pytest.mark.parametrize("m", [4096, 5000, 2**16, Q - 1])
def test_tier_prover_refuses_values_outside_the_table(m: int) -> None:
    c, o = commit(m)
    with pytest.raises(ValueError):
        bp.prove_tier(c, o, ROWS, CTX)


@pytest.mark.parametrize("m", [0, 99, 100, 249, 250, 399, 400, 4095])
def test_tier_wrong_row_rejected(m: int) -> None:
    # A cheating prover claims every other row, boundaries included.
    c, o = commit(m)
    honest, _, _ = bp_tier._prove_tier(c, o, ROWS, CTX, row_of(m))
    assert bp.verify_tier(c, ROWS, honest, CTX)  # the forcing path itself is sound
    for j in range(len(ROWS)):
        if j != row_of(m):
            forged, _, _ = bp_tier._prove_tier(c, o, ROWS, CTX, j)
            assert not bp.verify_tier(c, ROWS, forged, CTX)


@pytest.mark.parametrize("m", [4096, 4096 + 65535, Q - 1])
def test_tier_values_just_outside_rejected(m: int) -> None:
    # Above the table (c_max - 1 - m < 0) or "negative": no row can be claimed.
    c, o = commit(m)
    for j in range(len(ROWS)):
        forged, _, _ = bp_tier._prove_tier(c, o, ROWS, CTX, j)
        assert not bp.verify_tier(c, ROWS, forged, CTX)


def test_tier_2n_minus_1_edge() -> None:
    # The widest row's width is exactly 2^n: the top value is 2^n - 1 away from c_min.
    rows = [(0, 1, 1, 0), (1, 1 + 256, 2, 1)]
    assert bp.tier_bits(rows) == 8
    for m in (0, 1, 256):
        c, o = commit(m)
        assert bp.verify_tier(c, rows, bp.prove_tier(c, o, rows, CTX)[0], CTX)
    c, o = commit(257)
    for j in range(2):
        assert not bp.verify_tier(c, rows, bp_tier._prove_tier(c, o, rows, CTX, j)[0], CTX)


def test_tier_wrong_price_or_table_rejected() -> None:
    c, o = commit(300)
    proof, _, _ = bp.prove_tier(c, o, ROWS, CTX)
    other = [list(r) for r in ROWS]
    other[2][3] += 1  # F2 of the reading's own row
    assert not bp.verify_tier(c, other, proof, CTX)
    other = [list(r) for r in ROWS]
    other[0][2] += 1  # a row the reading is not in
    assert not bp.verify_tier(c, other, proof, CTX)
    # The price commitment replaced by one to price + 1 (same blinding).
    p = bp.tier_price_commitment(proof)
    swapped = proof[:69] + (p + Commitment(G)).to_bytes() + proof[102:]
    assert not verdict(lambda: bp.verify_tier(c, ROWS, swapped, CTX))
    c2, _ = commit(300)
    assert not bp.verify_tier(c2, ROWS, proof, CTX)


@pytest.mark.parametrize("ctx", OTHER_CONTEXTS)
def test_tier_bound_to_context(ctx: ProofContext) -> None:
    c, o = commit(120)
    proof, _, _ = bp.prove_tier(c, o, NARROW, CTX)
    assert bp.verify_tier(c, NARROW, proof, CTX)
    assert not bp.verify_tier(c, NARROW, proof, ctx)


def test_tier_every_byte_flip_rejected() -> None:
    c, o = commit(130)
    proof, _, _ = bp.prove_tier(c, o, NARROW, CTX)
    for i in range(len(proof)):
        bad = bytearray(proof)
        bad[i] ^= 1 << (i % 8)
        assert not verdict(lambda bad=bytes(bad): bp.verify_tier(c, NARROW, bad, CTX)), i


def test_tier_strict_decoding() -> None:
    c, o = commit(7)
    proof, _, _ = bp.prove_tier(c, o, NARROW, CTX)
    for bad in (proof[:-1], proof + b"\x00", b"", proof[:1] + b"\x20" + proof[2:], b"\x03" + proof[1:]):
        with pytest.raises(ProofError):
            bp.verify_tier(c, NARROW, bad, CTX)
    with pytest.raises(ProofError, match="bit length"):
        bp.verify_tier(c, NARROW, proof[:2] + b"\x10" + proof[3:], CTX)
    for rows in ([], [(0, 0, 1, 1)], [(0, 1, 1)], [(0, 2**65, 1, 1)], [(0, 1, -1, 0)]):
        with pytest.raises(ProofError):
            bp.verify_tier(c, rows, proof, CTX)  # type: ignore[arg-type]
    with pytest.raises(ProofError):
        bp.verify_tier_batch([])


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=1300))
def test_tier_random_bytes_never_crash(data: bytes) -> None:
    c, _ = commit(1)
    assert verdict(lambda: bp.verify_tier(c, NARROW, data, CTX)) is False


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_tier_random_body_valid_header(data: st.DataObject) -> None:
    c, o = commit(9)
    proof, _, _ = bp.prove_tier(c, o, NARROW, CTX)
    body = bytearray(proof)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(3, len(proof) - 1))
        body[i] = data.draw(st.integers(0, 255))
    if bytes(body) != proof:
        assert verdict(lambda: bp.verify_tier(c, NARROW, bytes(body), CTX)) is False


def test_tier_batch_rejects_one_bad_and_swaps() -> None:
    pairs = [commit(m) for m in (0, 70, 150, 255)]
    ctxs = [dataclasses.replace(CTX, statement=bytes([i])) for i in range(4)]
    proofs = [bp.prove_tier(c, o, NARROW, x)[0] for (c, o), x in zip(pairs, ctxs, strict=True)]
    items = [bp.TierItem(c, NARROW, p, x) for (c, _), p, x in zip(pairs, proofs, ctxs, strict=True)]
    assert bp.verify_tier_batch(items)
    # Swap two readings' proofs.
    swapped = list(items)
    swapped[0] = dataclasses.replace(items[0], proof=proofs[1])
    swapped[1] = dataclasses.replace(items[1], proof=proofs[0])
    assert not verdict(lambda: bp.verify_tier_batch(swapped))
    # One forged (wrong row) among honest ones.
    forged = bp_tier._prove_tier(pairs[2][0], pairs[2][1], NARROW, ctxs[2], 3)[0]
    bad = list(items)
    bad[2] = dataclasses.replace(items[2], proof=forged)
    assert not bp.verify_tier_batch(bad)


# -- squares (polynomial) ------------------------------------------------------------------
def test_prove_squares_openings_and_forgery() -> None:
    pairs = [commit(m) for m in (0, 3, 4095)]
    cs, os_ = [c for c, _ in pairs], [o for _, o in pairs]
    proof, sq = rp.prove_squares(cs, os_, CTX)
    assert rp.verify_sum_of_squares(cs, proof, CTX)
    got = rp.square_commitments(3, proof)
    assert [commit(o.m, o.r)[0] for o in sq] == got
    assert [o.m for o in sq] == [0, 9, 4095**2]
    # A square commitment to m^2 + 1 cannot be proved.
    bad, _ = rp.prove_squares(cs, [Opening(o.m, o.r) for o in os_], CTX)
    mutated = bad[:6] + (got[1] + Commitment(G)).to_bytes() + bad[39:]
    assert not verdict(lambda: rp.verify_sum_of_squares(cs, mutated, CTX))


# -- end to end: hub prover and utility verifier --------------------------------------------
def _history(seed: int = 3, meter_id: str = "m-test", start: date = date(2027, 3, 26)) -> History:
    return make_history(start=start, n_days=1, seed=seed, meter_id=meter_id)


HIST = _history()
TARIFFS = {k: example_nonlinear_tariff(k) for k in (KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL)}


def _prove(h: History, tariff: NonLinearTariff, **kw: Any) -> ProvenBillStatement:
    return prove_bill(
        meter_id=h.registration.meter_id,
        tariff=tariff,
        period_from=h.start,
        period_to=h.start + timedelta(days=len(h.days) - 1),
        first_index=h.days[0].first_index,
        openings=h.openings,
        **kw,
    )


STATEMENTS = {k: _prove(HIST, t) for k, t in TARIFFS.items()}


def _check(st_: ProvenBillStatement, tariff: NonLinearTariff | None = None, h: History = HIST, **kw: Any) -> Any:
    tariff = tariff or TARIFFS[st_.tariff_kind]
    return verify_proven_bill(st_, h.registration, h.day_commitments(), tariff, **kw)


def _reference(kind: str, h: History = HIST) -> int:
    t = TARIFFS[kind]
    starts = [s for k in range(len(h.days)) for s in day_starts(h.start + timedelta(days=k), "Europe/Berlin", 15)]
    sched = t.linear_prices_for(starts) if kind == KIND_INCLINING_BLOCK else t.band_indices_for(starts)
    return t.energy_charge(sched, [o.m for o in h.openings])


@pytest.mark.parametrize("kind", list(TARIFFS))
def test_honest_bill_verifies_and_is_exact(kind: str) -> None:
    st_ = STATEMENTS[kind]
    v = _check(st_)
    assert v.ok, v.reason
    assert st_.energy_charge == _reference(kind)
    assert st_.total == st_.energy_charge + TARIFFS[kind].standing_charge_per_day
    again = ProvenBillStatement.from_json(st_.to_json())
    assert again == st_ and _check(again).ok


@pytest.mark.parametrize("kind", list(TARIFFS))
@pytest.mark.parametrize("delta", [1, -1, 1000, Q - 1])
def test_wrong_bill_rejected(kind: str, delta: int) -> None:
    st_ = STATEMENTS[kind]
    energy = (st_.energy_charge + delta) % Q
    bad = dataclasses.replace(st_, energy_charge=energy, total=energy + st_.standing_charge)
    v = _check(bad)
    assert not v.ok and ("bill" in v.reason or "out of range" in v.reason), v.reason
    # The blinding off by one is caught as well.
    v = _check(dataclasses.replace(st_, blinding=(st_.blinding + delta) % Q))
    assert not v.ok


@pytest.mark.parametrize("kind", list(TARIFFS))
def test_public_inputs_mutated_rejected(kind: str) -> None:
    st_ = STATEMENTS[kind]
    t = TARIFFS[kind]
    changes: list[dict[str, Any]] = [
        {"meter_id": "m-other"},
        {"period_from": st_.period_from - timedelta(days=1)},
        {"period_to": st_.period_to + timedelta(days=1)},
        {"first_index": 1},
        {"count": st_.count - 1},
        {"tariff_id": "other"},
        {"tariff_version": st_.tariff_version + 1},
        {"tariff_digest": bytes(32)},
        {"tariff_kind": next(k for k in TARIFFS if k != kind)},
        {"standing_charge": st_.standing_charge + 1, "total": st_.total + 1},
        {"total": st_.total + 1},
        {"currency": "USD"},
        {"subunits_per_unit": 100},
    ]
    for ch in changes:
        v = _check(dataclasses.replace(st_, **ch), t)
        assert not v.ok, ch


@pytest.mark.parametrize("kind", list(TARIFFS))
def test_tariff_version_mismatch_rejected(kind: str) -> None:
    st_ = STATEMENTS[kind]
    t2 = dataclasses.replace(TARIFFS[kind], base=dataclasses.replace(TARIFFS[kind].base, version=2))
    v = _check(st_, t2)
    assert not v.ok and "version mismatch" in v.reason
    # Relabelling the statement to the new version and digest still fails: the
    # proofs' transcripts absorbed version 1.
    relabelled = dataclasses.replace(st_, tariff_version=2, tariff_digest=t2.digest())
    v = _check(relabelled, t2)
    assert not v.ok and ("proof" in v.reason or "bill" in v.reason), v.reason


def test_replayed_for_another_period_or_meter_rejected() -> None:
    st_ = STATEMENTS[KIND_INCLINING_BLOCK]
    for kw in ({"start": date(2027, 3, 25)}, {"meter_id": "m-other"}):
        other = _history(seed=3, **kw)  # same readings, another day or meter
        honest = _prove(other, TARIFFS[KIND_INCLINING_BLOCK])
        assert _check(honest, h=other).ok
        replay = dataclasses.replace(honest, proof=st_.proof)
        v = _check(replay, h=other)
        assert not v.ok and "proof" in v.reason, v.reason


def test_reading_in_the_wrong_tier_rejected() -> None:
    st_ = STATEMENTS[KIND_TIERED]
    t = TARIFFS[KIND_TIERED]
    bundle = ProofBundle.from_bytes(st_.proof)
    i = next(k for k, o in enumerate(HIST.openings) if o.m >= 100)
    c = HIST.openings[i]
    starts = day_starts(HIST.start, "Europe/Berlin", 15)
    rows = [r.as_tuple() for r in t.tiers[t.band_indices_for(starts)[i]]]
    ctx = reading_context(st_.context(), i)
    cm = commit(c.m, c.r)[0]
    forged, _, price = bp_tier._prove_tier(cm, c, rows, ctx, 0)  # claim the cheapest row
    proofs = list(bundle.proofs)
    old_price = bp.tier_price_commitment(proofs[i])
    proofs[i] = forged
    # Keep the bill consistent with the forged price so only the tier claim is wrong.
    honest_price = next(r for r in rows if r[0] <= c.m < r[1])
    new_energy = st_.energy_charge - ((c.m - honest_price[0]) * honest_price[2] + honest_price[3]) + price.m
    assert old_price != bp.tier_price_commitment(forged)
    bad = dataclasses.replace(
        st_,
        proof=dataclasses.replace(bundle, proofs=tuple(proofs)).to_bytes(),
        energy_charge=new_energy,
        total=new_energy + st_.standing_charge,
    )
    v = _check(bad)
    assert not v.ok and "tier" in v.reason, v.reason


def test_proofs_swapped_between_readings_rejected() -> None:
    st_ = STATEMENTS[KIND_TIERED]
    bundle = ProofBundle.from_bytes(st_.proof)
    proofs = list(bundle.proofs)
    proofs[3], proofs[4] = proofs[4], proofs[3]
    v = _check(dataclasses.replace(st_, proof=dataclasses.replace(bundle, proofs=tuple(proofs)).to_bytes()))
    assert not v.ok


@pytest.mark.parametrize("kind", list(TARIFFS))
def test_bundle_byte_flips_rejected(kind: str) -> None:
    st_ = STATEMENTS[kind]
    rng = random.Random(kind)
    n = len(st_.proof)
    positions = sorted({0, 1, 2, 3, 6, 7, 8, n - 1} | {rng.randrange(n) for _ in range(12 if kind == KIND_TIERED else 40)})
    for i in positions:
        bad = bytearray(st_.proof)
        bad[i] ^= 1 << (i % 8)
        v = _check(dataclasses.replace(st_, proof=bytes(bad)))
        assert not v.ok, (kind, i)
    for bad_proof in (st_.proof[:-1], st_.proof + b"\x00", b""):
        v = _check(dataclasses.replace(st_, proof=bad_proof))
        assert not v.ok and "malformed" in v.reason


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_bundle_decoder_only_raises_proof_error(data: bytes) -> None:
    try:
        ProofBundle.from_bytes(data)
    except ProofError as exc:
        assert "\n" not in str(exc)


def test_block_total_in_wrong_block_rejected() -> None:
    st_ = STATEMENTS[KIND_INCLINING_BLOCK]
    t = TARIFFS[KIND_INCLINING_BLOCK]
    total = Commitment(sum((c.point for c in (commit(o.m, o.r)[0] for o in HIST.openings)), start=G * 0))
    t_open = Opening(sum(o.m for o in HIST.openings), sum(o.r for o in HIST.openings) % Q)
    rows = [r.as_tuple() for r in t.blocks]
    assert t_open.m < 150_000  # in the first block; claim the second
    forged, _, _ = bp_tier._prove_tier(total, t_open, rows, st_.context(), 1)
    bundle = dataclasses.replace(ProofBundle.from_bytes(st_.proof), proofs=(forged,))
    v = _check(dataclasses.replace(st_, proof=bundle.to_bytes()))
    assert not v.ok and "block proof" in v.reason


def test_reading_range_proofs() -> None:
    t = TARIFFS[KIND_POLYNOMIAL]
    st_ = _prove(HIST, t, reading_range=True)
    assert _check(st_, require_reading_range=True).ok
    assert not _check(STATEMENTS[KIND_POLYNOMIAL], require_reading_range=True).ok
    bundle = ProofBundle.from_bytes(st_.proof)
    r = bytearray(bundle.ranges[0])
    r[-5] ^= 1
    bad = dataclasses.replace(bundle, ranges=(bytes(r),))
    assert not _check(dataclasses.replace(st_, proof=bad.to_bytes())).ok
    # A tariff whose m_max is below a reading cannot be proved at all.
    low = dataclasses.replace(t, m_max=max(o.m for o in HIST.openings))
    with pytest.raises(ValueError):
        _prove(HIST, low)


def test_statement_json_strict() -> None:
    d = STATEMENTS[KIND_POLYNOMIAL].to_dict()
    for name, value in (("proof", "!!"), ("blinding", "00"), ("tariff_kind", "flat"), ("count", -1), ("format", "x")):
        bad = dict(d)
        bad[name] = value
        with pytest.raises(FormatError) as info:
            ProvenBillStatement.from_dict(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(FormatError):
        ProvenBillStatement.from_dict({k: v for k, v in d.items() if k != "proof"})
    with pytest.raises(FormatError):
        ProvenBillStatement.from_json("{")


def test_linear_verifier_refuses_nonlinear_tariff() -> None:
    # The v1 path must not bill a non-linear tariff with zero prices.
    st1 = dataclasses.replace(
        HIST.statement,
        tariff_id=TARIFFS[KIND_TIERED].tariff_id,
        tariff_digest=TARIFFS[KIND_TIERED].digest(),
    )
    v = verify_bill(st1, HIST.registration, HIST.day_commitments(), TARIFFS[KIND_TIERED])  # type: ignore[arg-type]
    assert not v.ok and "no linear prices" in v.reason
