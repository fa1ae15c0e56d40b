"""Tier proofs: one committed reading (or a monthly total) in a hidden row of a
public table, a Bulletproof plus a CDS94 OR proof (docs/nonlinear.md "tiered").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..group import G, Point, Q, random_scalar
from ..pedersen import Commitment, Opening
from ..sigma import SigmaProof, lincomb
from ..transcript import ProofContext, ProofError, Transcript
from ._tables import _g_table, _h_table, _lincomb_fixed
from .ipa import _read_point
from .range_proof import (
    _ALLOWED_N,
    TAG_BULLETPROOF,
    _check_terms,
    _prove,
    _size_for,
    _Terms,
    _terms,
)

__all__ = [
    "TAG_TIER",
    "MAX_ROWS",
    "tier_bits",
    "tier_proof_size",
    "prove_tier",
    "verify_tier",
    "tier_price_commitment",
    "TierItem",
    "verify_tier_batch",
]

# ---------------------------------------------------------------------------
# Tier proof: one reading (or a monthly total) in a hidden row of a public table
# ---------------------------------------------------------------------------
TAG_TIER = 0x22
#: Tier proofs are made in version 2: the inner-product argument stops at
#: vectors of length ``TIER_FOLD`` (sent in the clear; Bünz et al. 2018, section
#: 3: protocol 1 sends the vectors, protocol 2 halves them, and any number of
#: halvings in between is sound and, with section 4.2, zero-knowledge).
#: Version 1 (folded to length 1) is still verified.
TIER_VERSION = 0x02
TIER_FOLD = 8
#: version -> (transcript protocol label, fold)
_TIER_VERSIONS = {0x01: (b"meterhub/tier/v1", 1), 0x02: (b"meterhub/tier/v2", TIER_FOLD)}
#: Most rows in one tier table.
MAX_ROWS = 64


def tier_bits(rows: Sequence[Sequence[int]]) -> int:
    """Bulletproof width for ``rows``: the smallest allowed ``n`` with
    ``c_max - c_min - 1 < 2^n`` for every row (narrow rows, narrow proofs)."""
    widest = max(int(r[1]) - int(r[0]) - 1 for r in rows)
    return next(x for x in _ALLOWED_N if widest < 1 << x)


def _check_rows(rows: Sequence[Sequence[int]]) -> list[tuple[int, int, int, int]]:
    """Rows ``(c_min, c_max, F1, F2)`` with ``0 <= c_min < c_max <= 2^64`` and
    ``0 <= F1, F2 < 2^64``; the table itself (a partition) is the tariff's business."""
    if not isinstance(rows, Sequence) or not 0 < len(rows) <= MAX_ROWS:
        raise ProofError(f"a tier table needs 1 to {MAX_ROWS} rows")
    out = []
    for row in rows:
        if not isinstance(row, Sequence) or len(row) != 4:
            raise ProofError("a tier row is (c_min, c_max, F1, F2)")
        c_min, c_max, f1, f2 = row
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in row):
            raise ProofError("tier row entries must be integers")
        if not (0 <= c_min < c_max <= 1 << 64 and 0 <= f1 < 1 << 64 and 0 <= f2 < 1 << 64):
            raise ProofError("tier row out of range (0 <= c_min < c_max <= 2^64, F1, F2 < 2^64)")
        out.append((c_min, c_max, f1, f2))
    return out


def tier_proof_size(rows: Sequence[Sequence[int]], version: int = TIER_VERSION) -> int:
    """Encoded size of :func:`prove_tier` for this table (``version`` 1 or 2)."""
    if version not in _TIER_VERSIONS:
        raise ProofError(f"unsupported tier proof version {version}")
    k = len(rows)
    return 3 + 3 * 33 + _or_length(k) + _size_for(2 * tier_bits(_check_rows(rows)), _TIER_VERSIONS[version][1])


def _or_length(k: int) -> int:
    """Length of the compact OR proof over ``k`` rows (one 1-witness branch each)."""
    return SigmaProof.encoded_length([(1,) * k])


def _tier_transcript(
    ctx: ProofContext,
    n: int,
    rows: Sequence[tuple[int, int, int, int]],
    c: Point,
    own: Sequence[Point],
    protocol: bytes,
) -> tuple[Transcript, list[int]]:
    t = ctx.transcript(protocol)
    t.append_u64(b"tier/n", n)
    t.append_u64(b"tier/rows", len(rows))
    for row in rows:
        for v in row:
            t.append_int(b"tier/value", v)
    t.append_point(b"tier/C", c)
    t.append_points(b"tier/own", own)
    return t, t.challenge_scalars(b"tier/rho", 3)


#: ``-G``: the prover's own commitments add it to a commitment to ``v + 1``.
_MINUS_G = -G


def prove_tier(
    commitment: Commitment,
    opening: Opening,
    rows: Sequence[Sequence[int]],
    ctx: ProofContext,
) -> tuple[bytes, Commitment, Opening]:
    """Prove that the committed ``m`` lies in some row ``c_min <= m < c_max`` of
    the public table and that the returned commitment ``P`` commits to that row's
    price ``(m - c_min) F1 + F2``, hiding the row (Rial & Danezis WPES 2011,
    section 4.2, tiered tariffs). One transcript for everything:

    * commitments ``V1`` to ``m - c_min``, ``V2`` to ``c_max - 1 - m``, ``P``;
    * a CDS94 OR over the rows of the linear relations tying ``V1``, ``V2``,
      ``P`` to ``C`` and the row (a product proof is not needed: in each branch
      ``F1`` is public);
    * one aggregated Bulletproof (Bünz et al. 2018, section 4.3) that ``V1`` and
      ``V2`` open to ``[0, 2^n)``, ``n = tier_bits(rows)``.

    Returns the proof, ``P`` and its opening (the price and its blinding).
    """
    return _prove_tier(commitment, opening, rows, ctx, None, TIER_VERSION)


def _prove_tier(
    commitment: Commitment,
    opening: Opening,
    rows: Sequence[Sequence[int]],
    ctx: ProofContext,
    force_row: int | None,
    version: int = TIER_VERSION,
) -> tuple[bytes, Commitment, Opening]:
    """:func:`prove_tier`; ``force_row`` makes a cheating prover claim that row
    (for soundness tests: the range proof then covers out-of-range values);
    ``version`` 1 makes the older encoding (for compatibility tests)."""
    protocol, fold = _TIER_VERSIONS[version]
    table = _check_rows(rows)
    n = tier_bits(table)
    m = opening.m
    idx = next((j for j, r in enumerate(table) if r[0] <= m < r[1]), None)
    if force_row is not None:
        idx = force_row
    if idx is None:
        raise ValueError("the committed value lies in no row of the table")
    c_min, c_max, f1, f2 = table[idx]
    s1, s2, s3 = random_scalar(), random_scalar(), random_scalar()
    d1, d2, price = m - c_min, c_max - 1 - m, (m - c_min) * f1 + f2
    th = _h_table()
    # v + 1 and -G: a zero v (the reading at its row's lower bound, a zero price) would skip
    # the generator multiplication and answer sooner (docs/privacy.md, "Timing").
    own = [_lincomb_fixed([(s, th)], [v + 1], [G]) + _MINUS_G for v, s in ((d1, s1), (d2, s2), (price, s3))]
    t, rho = _tier_transcript(ctx, n, table, commitment.point, own, protocol)
    sig = _tier_or_prove(t, table, idx, rho, (d1, d2, price, m), (s1, s2, s3, opening.r))
    vs = own[:2]
    t.append_u64(b"bp/n", n)
    t.append_u64(b"bp/m", 2)
    t.append_points(b"bp/V", vs)
    rng = _prove(t, [d1 % Q, d2 % Q], [s1, s2], n, TAG_BULLETPROOF, 2, fold, version)
    head = bytes([version, TAG_TIER, n])
    body = b"".join(p.to_bytes() for p in own) + sig.to_bytes() + rng
    return head + body, Commitment(own[2]), Opening(price, s3)


def _tier_or_prove(
    t: Transcript,
    table: Sequence[tuple[int, int, int, int]],
    idx: int,
    rho: Sequence[int],
    values: tuple[int, int, int, int],
    blinds: tuple[int, int, int, int],
) -> SigmaProof:
    """CDS94 OR over the rows of :func:`_tier_or_verify`, computed from the
    prover's representation ``lhs_j = alpha_j G + beta_j H`` (it knows every
    opening), so a simulated branch ``A_j = z_j H - c_j lhs_j`` costs one
    multiplication and one generator multiplication. The proof is the same
    compact proof :func:`meterhub.crypto.sigma.verify_clauses` checks."""
    r1, r2, r3 = rho
    (d1, d2, price, m), (s1, s2, s3, r) = values, blinds
    ax = r1 * d1 + r2 * d2 + r3 * price + (r2 - r1) * m
    bx = r1 * s1 + r2 * s2 + r3 * s3 + (r2 - r1) * r
    th = _h_table()
    nonce = random_scalar()
    chal: list[int] = []
    resp: list[int] = []
    points: list[Point] = []
    for j, (c_min, c_max, f1, f2) in enumerate(table):
        if j == idx:
            chal.append(0)
            resp.append(0)
            points.append(_lincomb_fixed([(nonce, th)]))
            continue
        k = r1 * c_min - r2 * (c_max - 1) - r3 * (f2 - f1 * c_min)
        alpha = (ax + k - r3 * f1 * m) % Q
        beta = (bx - r3 * f1 * r) % Q
        cj, zj = random_scalar(), random_scalar()
        chal.append(cj)
        resp.append(zj)
        points.append(_lincomb_fixed([(zj - cj * beta, th)], [-cj * alpha], [G]))
    t.append_points(b"sigma/commitments", points)
    c = t.challenge_scalar(b"sigma/challenge")
    f1 = table[idx][2]
    w = (r1 * (s1 - r) + r2 * (s2 + r) + r3 * (s3 - f1 * r)) % Q
    chal[idx] = (c - sum(chal)) % Q
    resp[idx] = (nonce + chal[idx] * w) % Q
    return SigmaProof(TAG_TIER, c, (tuple(chal[:-1]),), (tuple((z,) for z in resp),))


def _tier_or_verify(
    t: Transcript,
    table: Sequence[tuple[int, int, int, int]],
    c: Point,
    own: Sequence[Point],
    rho: Sequence[int],
    sig: SigmaProof,
) -> bool:
    """The compact OR check (as :func:`meterhub.crypto.sigma.verify_clauses`).

    Row ``j`` holds iff ``V1 - C + c_min G``, ``V2 + C - (c_max - 1) G`` and
    ``P - F1 C - (F2 - F1 c_min) G`` are all multiples of ``H``. The three are
    compressed with the transcript weights ``rho`` (drawn after ``C``, ``V1``,
    ``V2``, ``P`` and the rows), as in
    :func:`meterhub.crypto.sigma.prove_row_membership`: one 1-witness branch
    ``lhs_j = X + k_j G - rho_3 F1_j C = w H`` per row, with
    ``X = rho_1 V1 + rho_2 V2 + rho_3 P + (rho_2 - rho_1) C``. A tuple that fails
    some equation for every row passes with probability at most ``rows/Q``.
    The verifier recomputes ``A_j = z_j H - c_j lhs_j`` with ``X`` formed once."""
    r1, r2, r3 = rho
    v1, v2, p = own
    x = lincomb([r1, r2, r3, (r2 - r1) % Q], [v1, v2, p, c])
    th, tg = _h_table(), _g_table()
    (chal,) = sig.branch_challenges
    chals = (*chal, (sig.c - sum(chal)) % Q)
    points = []
    for (c_min, c_max, f1, f2), cj, (zj,) in zip(table, chals, sig.responses[0], strict=True):
        k = r1 * c_min - r2 * (c_max - 1) - r3 * (f2 - f1 * c_min)
        points.append(_lincomb_fixed([(zj, th), (-cj * k, tg)], [-cj, cj * r3 * f1], [x, c]))
    t.append_points(b"sigma/commitments", points)
    return t.challenge_scalar(b"sigma/challenge") == sig.c


def tier_price_commitment(proof: bytes) -> Commitment:
    """The price commitment ``P`` carried by a tier proof (check the proof first)."""
    if not isinstance(proof, bytes | bytearray | memoryview) or len(proof) < 3 + 99:
        raise ProofError("tier proof too short")
    return Commitment(_read_point(bytes(proof), 3 + 66))


def _tier_terms(
    commitment: Commitment, rows: Sequence[Sequence[int]], proof: bytes, ctx: ProofContext
) -> _Terms | None:
    """Strictly decode a tier proof, verify its OR part and return the
    Bulletproof's weighted terms, or ``None`` if the OR part fails."""
    table = _check_rows(rows)
    if not isinstance(commitment, Commitment):
        raise ProofError("expected a commitment")
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    n = tier_bits(table)
    if not proof or proof[0] not in _TIER_VERSIONS:
        raise ProofError(f"unsupported tier proof version {proof[0] if proof else None}")
    version = proof[0]
    protocol, fold = _TIER_VERSIONS[version]
    expected = 3 + 99 + _or_length(len(table)) + _size_for(2 * n, fold)
    if len(proof) != expected:
        raise ProofError(f"tier proof must be {expected} bytes, got {len(proof)}")
    if proof[1] != TAG_TIER:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected {TAG_TIER:#04x}")
    if proof[2] != n:
        raise ProofError("tier proof is for another bit length")
    own = [_read_point(proof, 3 + 33 * i) for i in range(3)]
    c = commitment.point
    t, rho = _tier_transcript(ctx, n, table, c, own, protocol)
    sig, pos = SigmaProof.read(proof, 102, TAG_TIER, [(1,) * len(table)], exact=False)
    if not _tier_or_verify(t, table, c, own, rho, sig):
        return None
    vs = own[:2]
    t.append_u64(b"bp/n", n)
    t.append_u64(b"bp/m", 2)
    t.append_points(b"bp/V", vs)
    return _terms(t, vs, n, 2, proof[pos:], TAG_BULLETPROOF, fold, version)


def verify_tier(
    commitment: Commitment, rows: Sequence[Sequence[int]], proof: bytes, ctx: ProofContext
) -> bool:
    """Verify :func:`prove_tier`; the price commitment is :func:`tier_price_commitment`."""
    terms = _tier_terms(commitment, rows, proof, ctx)
    return terms is not None and _check_terms([terms])


@dataclass(frozen=True, slots=True)
class TierItem:
    """One tier proof for :func:`verify_tier_batch`."""

    commitment: Commitment
    rows: Sequence[Sequence[int]]
    proof: bytes
    ctx: ProofContext


def verify_tier_batch(items: Sequence[TierItem]) -> bool:
    """Verify many tier proofs: each OR part on its own (compact proofs), all
    Bulletproofs in one multi-scalar multiplication with random weights
    (section 6.2, as :func:`verify_batch`). Malformed items raise ``ProofError``."""
    if not items:
        raise ProofError("empty batch")
    terms = []
    for item in items:
        if not isinstance(item, TierItem):
            raise ProofError("batch items must be TierItem")
        tm = _tier_terms(item.commitment, item.rows, item.proof, item.ctx)
        if tm is None:
            return False
        terms.append(tm)
    return _check_terms(terms)
