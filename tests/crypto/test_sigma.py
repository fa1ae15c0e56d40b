"""Completeness, soundness and strict-decoding tests of the sigma protocols."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto import sigma
from meterhub.crypto.group import G, H, Point, Q, base_mul
from meterhub.crypto.pedersen import Commitment, Opening, commit
from meterhub.crypto.sigma import (
    Equation,
    LinearStatement,
    ProofError,
    SigmaProof,
    opening_statement,
    prove_clauses,
    verify_clauses,
)
from meterhub.crypto.sigma import proofs as sigma_proofs
from meterhub.crypto.transcript import ProofContext

CTX = ProofContext(
    meter_id="meter-1", period="2026-11", tariff_id="tiered", tariff_version=2, statement=b"t"
)
OTHER_CONTEXTS = [
    dataclasses.replace(CTX, meter_id="meter-2"),
    dataclasses.replace(CTX, period="2026-12"),
    dataclasses.replace(CTX, tariff_id="tou"),
    dataclasses.replace(CTX, tariff_version=3),
    dataclasses.replace(CTX, statement=b"u"),
]

values = st.one_of(
    st.sampled_from([0, 1, 2**16 - 1, 2**32 - 1, 2**64 - 1, Q - 1]),
    st.integers(min_value=0, max_value=Q - 1),
)
small = st.integers(min_value=0, max_value=2**40)


def verdict(f: Callable[[], bool]) -> bool:
    """Verification outcome where a ProofError counts as a rejection."""
    try:
        return f()
    except ProofError:
        return False


def flips(proof: bytes, positions: range | list[int] | None = None) -> list[bytes]:
    out = []
    for i in positions if positions is not None else range(len(proof)):
        b = bytearray(proof)
        b[i] ^= 1 << (i % 8)
        out.append(bytes(b))
    return out


# -- opening ----------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(values)
def test_opening_complete(m: int) -> None:
    c, o = commit(m)
    proof = sigma.prove_opening(c, o, CTX)
    assert len(proof) == 2 + 32 * 3
    assert sigma.verify_opening(c, proof, CTX)


def test_opening_sound_wrong_witness() -> None:
    c, o = commit(10)
    bad = sigma.prove_opening(c, Opening(11, o.r), CTX)
    assert not sigma.verify_opening(c, bad, CTX)
    # A proof for one commitment does not verify for another.
    c2, _ = commit(10)
    assert not sigma.verify_opening(c2, sigma.prove_opening(c, o, CTX), CTX)


def test_opening_every_byte_flip_rejected() -> None:
    c, o = commit(1234)
    proof = sigma.prove_opening(c, o, CTX)
    for bad in flips(proof):
        assert not verdict(lambda bad=bad: sigma.verify_opening(c, bad, CTX))


@pytest.mark.parametrize("ctx", OTHER_CONTEXTS)
def test_opening_bound_to_context(ctx: ProofContext) -> None:
    c, o = commit(5)
    proof = sigma.prove_opening(c, o, CTX)
    assert not sigma.verify_opening(c, proof, ctx)


def test_strict_decoding() -> None:
    c, o = commit(5)
    proof = sigma.prove_opening(c, o, CTX)
    for bad in (proof[:-1], proof + b"\x00", b"", bytes([2]) + proof[1:]):
        with pytest.raises(ProofError):
            sigma.verify_opening(c, bad, CTX)
    # Another proof type's tag is refused even with the right length.
    with pytest.raises(ProofError, match="tag"):
        sigma.verify_opening(c, proof[:1] + bytes([sigma.TAG_SQUARE]) + proof[2:], CTX)
    # Scalars must be reduced: c + Q encodes the same challenge mod Q.
    k = int.from_bytes(proof[2:34], "big")
    if k + Q < 1 << 256:
        unreduced = proof[:2] + (k + Q).to_bytes(32, "big") + proof[34:]
        with pytest.raises(ProofError):
            sigma.verify_opening(c, unreduced, CTX)
    with pytest.raises(ProofError):
        sigma.verify_opening(c, "not bytes", CTX)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    c, _ = commit(3, 7)
    for f in (
        lambda: sigma.verify_opening(c, data, CTX),
        lambda: sigma.verify_one_of_values(c, [1, 2, 3, 4], data, CTX),
        lambda: sigma.verify_square(c, c, data, CTX),
    ):
        assert verdict(f) is False


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=97), st.integers(min_value=0, max_value=255))
def test_mutated_or_proof(pos: int, xor: int) -> None:
    c, o = commit(2)
    proof = sigma.prove_one_of_values(c, o, [1, 2], CTX)
    assert len(proof) == 2 + 32 + 32 + 64
    b = bytearray(proof)
    b[pos % len(b)] ^= xor
    expect = xor == 0
    assert verdict(lambda: sigma.verify_one_of_values(c, [1, 2], bytes(b), CTX)) == expect


# -- equality -----------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(values)
def test_equality_complete_and_sound(m: int) -> None:
    c1, o1 = commit(m)
    c2, o2 = commit(m)
    proof = sigma.prove_equality(c1, o1, c2, o2, CTX)
    assert sigma.verify_equality(c1, c2, proof, CTX)
    assert not sigma.verify_equality(c2, c1, proof, CTX)
    c3, o3 = commit(m + 1)
    assert not sigma.verify_equality(c1, c3, sigma.prove_equality(c1, o1, c3, o3, CTX), CTX)
    for ctx in OTHER_CONTEXTS:
        assert not sigma.verify_equality(c1, c2, proof, ctx)


# -- linear relations ---------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(small, st.integers(-1000, 1000)), min_size=1, max_size=5))
def test_linear_complete_and_sound(rows: list[tuple[int, int]]) -> None:
    pairs = [commit(v) for v, _ in rows]
    cs = [c for c, _ in pairs]
    os_ = [o for _, o in pairs]
    coeffs = [a for _, a in rows]
    b = sum(a * v for v, a in rows)
    proof = sigma.prove_linear(coeffs, cs, os_, b, CTX)
    assert sigma.verify_linear(coeffs, cs, b, proof, CTX)
    # A wrong result by any amount, or other coefficients, is rejected.
    assert not sigma.verify_linear(coeffs, cs, b + 1, proof, CTX)
    assert not sigma.verify_linear(coeffs, cs, b - 1, proof, CTX)
    assert not sigma.verify_linear([a + 1 for a in coeffs], cs, b, proof, CTX)
    # The prover cannot prove a false sum.
    bad = sigma.prove_linear(coeffs, cs, os_, b + 1, CTX)
    assert not sigma.verify_linear(coeffs, cs, b + 1, bad, CTX)


def test_linear_mismatched_lengths() -> None:
    c, _ = commit(1)
    with pytest.raises(ProofError):
        sigma.verify_linear([1, 2], [c], 1, b"\x01\x03" + bytes(64), CTX)


# -- products and squares -----------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(small, small)
def test_product_complete_and_sound(a: int, b: int) -> None:
    ca, oa = commit(a)
    cb, ob = commit(b)
    cc, oc = commit(a * b)
    proof = sigma.prove_product(ca, oa, cb, ob, cc, oc, CTX)
    assert len(proof) == 2 + 32 * 6
    assert sigma.verify_product(ca, cb, cc, proof, CTX)
    assert not sigma.verify_product(cb, ca, cc, proof, CTX) or a == b
    wrong, ow = commit(a * b + 1)
    assert not sigma.verify_product(ca, cb, wrong, proof, CTX)
    assert not sigma.verify_product(
        ca, cb, wrong, sigma.prove_product(ca, oa, cb, ob, wrong, ow, CTX), CTX
    )
    assert not sigma.verify_product(ca, cb, cc, proof, OTHER_CONTEXTS[1])


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.sampled_from([0, 1, 2**32 - 1]), small))
def test_square_complete_and_sound(a: int) -> None:
    ca, oa = commit(a)
    cc, oc = commit(a * a)
    proof = sigma.prove_square(ca, oa, cc, oc, CTX)
    assert sigma.verify_square(ca, cc, proof, CTX)
    wrong, ow = commit(a * a + 1)
    assert not sigma.verify_square(ca, wrong, sigma.prove_square(ca, oa, wrong, ow, CTX), CTX)
    assert not sigma.verify_square(ca, wrong, proof, CTX)
    # Tag separation: a square proof is not a product proof.
    with pytest.raises(ProofError):
        sigma.verify_product(ca, ca, cc, proof, CTX)


def test_square_every_byte_flip_rejected() -> None:
    ca, oa = commit(12)
    cc, oc = commit(144)
    proof = sigma.prove_square(ca, oa, cc, oc, CTX)
    for bad in flips(proof):
        assert not verdict(lambda bad=bad: sigma.verify_square(ca, cc, bad, CTX))


# -- OR composition -------------------------------------------------------------
ROWS = [100, 250, 400, 1000]


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(range(4)))
def test_one_of_values_complete(idx: int) -> None:
    c, o = commit(ROWS[idx])
    proof = sigma.prove_one_of_values(c, o, ROWS, CTX)
    assert len(proof) == 2 + 32 + 3 * 32 + 4 * 32
    assert sigma.verify_one_of_values(c, ROWS, proof, CTX)
    # Another candidate list, another order, or a context change is rejected.
    assert not sigma.verify_one_of_values(c, [101, 250, 400, 1000], proof, CTX)
    assert not sigma.verify_one_of_values(c, list(reversed(ROWS)), proof, CTX)
    for ctx in OTHER_CONTEXTS:
        assert not sigma.verify_one_of_values(c, ROWS, proof, ctx)


def test_one_of_values_sound() -> None:
    c, o = commit(101)
    with pytest.raises(ValueError):
        sigma.prove_one_of_values(c, o, ROWS, CTX)
    # A cheating prover claims branch 0 with a wrong witness.
    branches = [LinearStatement(1, (Equation(c.point - G * v, ((0, H),)),)) for v in ROWS]
    forged = sigma.prove_or(branches, 0, (o.r,), CTX)
    assert not sigma.verify_one_of_values(c, ROWS, forged, CTX)


def test_or_every_byte_flip_rejected() -> None:
    c, o = commit(250)
    proof = sigma.prove_one_of_values(c, o, ROWS, CTX)
    for bad in flips(proof):
        assert not verdict(lambda bad=bad: sigma.verify_one_of_values(c, ROWS, bad, CTX))


def test_or_swap_between_readings_rejected() -> None:
    c1, o1 = commit(100)
    c2, o2 = commit(400)
    p1 = sigma.prove_one_of_values(c1, o1, ROWS, CTX)
    p2 = sigma.prove_one_of_values(c2, o2, ROWS, CTX)
    assert not sigma.verify_one_of_values(c2, ROWS, p1, CTX)
    assert not sigma.verify_one_of_values(c1, ROWS, p2, CTX)
    with pytest.raises(ProofError):
        sigma.verify_one_of_values(c1, ROWS[:3], p1, CTX)


def test_equal_to_one_of() -> None:
    prices = [commit(v) for v in (5, 7, 9)]
    c, o = commit(7)
    others = [p for p, _ in prices]
    proof = sigma.prove_equal_to_one_of(c, o, others, 1, prices[1][1], CTX)
    assert sigma.verify_equal_to_one_of(c, others, proof, CTX)
    bad = sigma.prove_equal_to_one_of(c, o, others, 0, prices[0][1], CTX)
    assert not sigma.verify_equal_to_one_of(c, others, bad, CTX)


def test_or_of_mixed_statements() -> None:
    # OR of an opening of C1 and a square relation: proves either, hides which.
    c1, _ = commit(3)
    ca, oa = commit(4)
    cc, oc = commit(16)
    branches = [opening_statement(c1), sigma.square_statement(ca, cc)]
    proof = sigma.prove_or(branches, 1, (oa.m, oa.r, (oc.r - oa.m * oa.r) % Q), CTX)
    assert len(proof) == 2 + 32 + 32 + 5 * 32
    assert sigma.verify_or(branches, proof, CTX)
    wrong = [opening_statement(c1), sigma.square_statement(ca, commit(17)[0])]
    assert not sigma.verify_or(wrong, proof, CTX)


# -- generic engine ---------------------------------------------------------------
def test_statement_rejects_unconstrained_witness() -> None:
    with pytest.raises(ProofError):
        LinearStatement(2, (Equation(G, ((0, H),)),))
    with pytest.raises(ProofError):
        LinearStatement(1, (Equation(G, ((0, Point.identity()),)),))
    with pytest.raises(ProofError):
        LinearStatement(1, (Equation(G, ((1, H),)),))
    with pytest.raises(ProofError):
        LinearStatement(1, ())


def test_generic_statement_and_holds() -> None:
    x, y = 11, 13
    stmt = LinearStatement(
        2, (Equation(base_mul(x) + H * y, ((0, G), (1, H))), Equation(H * x, ((0, H),)))
    )
    assert stmt.holds((x, y)) and not stmt.holds((x, y + 1)) and not stmt.holds((x,))
    proof = sigma.prove_statement(stmt, (x, y), CTX)
    assert sigma.verify_statement(stmt, proof, CTX)
    assert not sigma.verify_statement(stmt, sigma.prove_statement(stmt, (x + 1, y), CTX), CTX)


def test_clauses_shape_mismatch_raises() -> None:
    c, o = commit(1)
    stmt = opening_statement(c)
    t = CTX.transcript(b"x")
    proof = prove_clauses(t, [[stmt]], [(0, (o.m, o.r))], 0x07)
    other = SigmaProof(proof.tag, proof.c, ((),), ((proof.responses[0][0][:1],),))
    with pytest.raises(ProofError):
        verify_clauses(CTX.transcript(b"x"), [[stmt]], other)
    assert verify_clauses(CTX.transcript(b"x"), [[stmt]], proof)
    assert not verify_clauses(CTX.transcript(b"y"), [[stmt]], proof)


def test_commitment_and_point_inputs() -> None:
    c, o = commit(9)
    assert sigma.verify_opening(Commitment(c.point), sigma.prove_opening(c, o, CTX), CTX)
    with pytest.raises(ProofError):
        opening_statement("C")  # type: ignore[arg-type]


# -- row membership (tier rows) ------------------------------------------------------
TIERS = [(0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 2**16, 6, 1650)]


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(range(4)))
def test_row_membership_complete(idx: int) -> None:
    pairs = [commit(v) for v in TIERS[idx]]
    cs = [c for c, _ in pairs]
    proof = sigma.prove_row_membership(cs, [o for _, o in pairs], TIERS, CTX)
    assert len(proof) == 2 + 32 + 3 * 32 + 4 * 32
    assert sigma.verify_row_membership(cs, TIERS, proof, CTX)
    for ctx in OTHER_CONTEXTS:
        assert not sigma.verify_row_membership(cs, TIERS, proof, ctx)
    changed = [list(r) for r in TIERS]
    changed[idx][3] += 1
    assert not sigma.verify_row_membership(cs, changed, proof, CTX)


def test_row_membership_sound() -> None:
    # A tuple mixing two rows (c_min of row 1, F2 of row 2) is in no row.
    vals = (100, 250, 4, 900)
    pairs = [commit(v) for v in vals]
    cs = [c for c, _ in pairs]
    os_ = [o for _, o in pairs]
    with pytest.raises(ValueError):
        sigma.prove_row_membership(cs, os_, TIERS, CTX)
    # A cheating prover claims row 1 with the compressed witness anyway.
    t = CTX.transcript(sigma_proofs._P_ROW)
    branches, rho = sigma_proofs._row_branches(t, cs, TIERS)
    w = sum(r * o.r for r, o in zip(rho, os_, strict=True)) % Q
    forged = prove_clauses(
        t, [branches], [(1, (w,))], sigma.TAG_ROW, absorb_statements=False
    ).to_bytes()
    assert not sigma.verify_row_membership(cs, TIERS, forged, CTX)
    # The same path with an honest tuple verifies, so the rejection is meaningful.
    good = [commit(v) for v in TIERS[1]]
    gcs = [c for c, _ in good]
    t = CTX.transcript(sigma_proofs._P_ROW)
    branches, rho = sigma_proofs._row_branches(t, gcs, TIERS)
    w = sum(r * o.r for r, (_, o) in zip(rho, good, strict=True)) % Q
    honest = prove_clauses(
        t, [branches], [(1, (w,))], sigma.TAG_ROW, absorb_statements=False
    ).to_bytes()
    assert sigma.verify_row_membership(gcs, TIERS, honest, CTX)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 3), st.integers(0, 3), st.integers(-2, 2).filter(lambda d: d != 0))
def test_row_membership_one_column_off(row: int, col: int, delta: int) -> None:
    # Every single-column deviation from a row is caught despite the compression.
    vals = list(TIERS[row])
    vals[col] += delta
    pairs = [commit(v) for v in vals]
    cs = [c for c, _ in pairs]
    os_ = [o for _, o in pairs]
    for claim in range(4):
        t = CTX.transcript(sigma_proofs._P_ROW)
        branches, rho = sigma_proofs._row_branches(t, cs, TIERS)
        w = sum(r * o.r for r, o in zip(rho, os_, strict=True)) % Q
        forged = prove_clauses(
            t, [branches], [(claim, (w,))], sigma.TAG_ROW, absorb_statements=False
        ).to_bytes()
        assert not sigma.verify_row_membership(cs, TIERS, forged, CTX)


def test_row_membership_mutations_and_shape() -> None:
    pairs = [commit(v) for v in TIERS[2]]
    cs = [c for c, _ in pairs]
    proof = sigma.prove_row_membership(cs, [o for _, o in pairs], TIERS, CTX)
    for bad in flips(proof, list(range(0, len(proof), 5))):
        assert not verdict(lambda bad=bad: sigma.verify_row_membership(cs, TIERS, bad, CTX))
    with pytest.raises(ProofError):
        sigma.verify_row_membership(cs[:3], TIERS, proof, CTX)
    with pytest.raises(ProofError):
        sigma.verify_row_membership(cs, TIERS[:3], proof, CTX)
    with pytest.raises(ProofError):
        sigma.verify_row_membership(cs, [], proof, CTX)
    assert not sigma.verify_row_membership([cs[1], cs[0], cs[2], cs[3]], TIERS, proof, CTX)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_row_membership_random_bytes(data: bytes) -> None:
    cs = [commit(v, 1)[0] for v in TIERS[0]]
    assert verdict(lambda: sigma.verify_row_membership(cs, TIERS, data, CTX)) is False


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=96, max_size=96))
def test_random_body_with_valid_header(body: bytes) -> None:
    # Exact length and header: decoding reaches the scalars and the challenge check.
    c, _ = commit(3, 7)
    proof = bytes([sigma.VERSION, sigma.TAG_OPENING]) + body
    assert verdict(lambda: sigma.verify_opening(c, proof, CTX)) is False
