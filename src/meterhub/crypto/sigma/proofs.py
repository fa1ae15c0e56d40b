"""Named sigma proofs on the engine: statement builders (opening, equality, linear,
product, square), their prove/verify pairs, and the OR conveniences (one of values,
equal to one of, row membership for tiered tariffs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..group import (
    G,
    H,
    Point,
    Q,
    base_mul,
)
from ..pedersen import Commitment, Opening
from ..transcript import ProofContext, ProofError, Transcript
from .engine import (
    _MAX_BRANCHES,
    TAG_EQUALITY,
    TAG_LINEAR,
    TAG_OPENING,
    TAG_PRODUCT,
    TAG_ROW,
    TAG_SQUARE,
    Equation,
    LinearStatement,
    SigmaProof,
    _shape,
    lincomb,
    prove_clauses,
    prove_or,
    verify_clauses,
    verify_or,
)

__all__ = [
    "opening_statement",
    "equality_statement",
    "linear_statement",
    "product_statement",
    "square_statement",
    "prove_opening",
    "verify_opening",
    "prove_equality",
    "verify_equality",
    "prove_linear",
    "verify_linear",
    "prove_product",
    "verify_product",
    "prove_square",
    "verify_square",
    "prove_one_of_values",
    "verify_one_of_values",
    "prove_equal_to_one_of",
    "verify_equal_to_one_of",
    "prove_row_membership",
    "verify_row_membership",
]

# ---------------------------------------------------------------------------
# Statement builders
# ---------------------------------------------------------------------------
def _pt(c: Commitment | Point) -> Point:
    if isinstance(c, Commitment):
        return c.point
    if isinstance(c, Point):
        return c
    raise ProofError("expected a commitment or a point")


def opening_statement(c: Commitment | Point) -> LinearStatement:
    """``C = m G + r H``; witness ``(m, r)``."""
    return LinearStatement(2, (Equation(_pt(c), ((0, G), (1, H))),))


def equality_statement(c1: Commitment | Point, c2: Commitment | Point) -> LinearStatement:
    """Same committed value: ``C1 - C2 = (r1 - r2) H``; witness ``(r1 - r2,)``."""
    return LinearStatement(1, (Equation(_pt(c1) - _pt(c2), ((0, H),)),))


def linear_statement(
    coeffs: Sequence[int], commitments: Sequence[Commitment | Point], b: int
) -> LinearStatement:
    """``sum a_j v_j = b`` (mod Q): ``sum a_j C_j - b G = (sum a_j r_j) H``."""
    if len(coeffs) != len(commitments) or not coeffs:
        raise ProofError("coefficients and commitments differ in length or are empty")
    lhs = lincomb([*coeffs, -b], [*(_pt(c) for c in commitments), G])
    return LinearStatement(1, (Equation(lhs, ((0, H),)),))


def product_statement(
    ca: Commitment | Point, cb: Commitment | Point, cc: Commitment | Point
) -> LinearStatement:
    """``c = a*b``: witness ``(a, r_a, b, r_b, s)`` with ``C_a = aG + r_aH``,
    ``C_b = bG + r_bH`` and ``C_c = a C_b + s H`` (so ``s = r_c - a r_b``)."""
    pa, pb, pc = _pt(ca), _pt(cb), _pt(cc)
    return LinearStatement(
        5,
        (
            Equation(pa, ((0, G), (1, H))),
            Equation(pb, ((2, G), (3, H))),
            Equation(pc, ((0, pb), (4, H))),
        ),
    )


def square_statement(ca: Commitment | Point, cc: Commitment | Point) -> LinearStatement:
    """``c = a^2``: witness ``(a, r_a, s)`` with ``C_a = aG + r_aH``, ``C_c = a C_a + sH``."""
    pa, pc = _pt(ca), _pt(cc)
    return LinearStatement(3, (Equation(pa, ((0, G), (1, H))), Equation(pc, ((0, pa), (2, H)))))


# ---------------------------------------------------------------------------
# Named proofs
# ---------------------------------------------------------------------------
_P_OPENING = b"meterhub/sigma/opening/v1"
_P_EQUALITY = b"meterhub/sigma/equality/v1"
_P_LINEAR = b"meterhub/sigma/linear/v1"
_P_PRODUCT = b"meterhub/sigma/product/v1"
_P_SQUARE = b"meterhub/sigma/square/v1"


def _prove_single(
    protocol: bytes,
    tag: int,
    stmt: LinearStatement,
    witness: Sequence[int],
    ctx: ProofContext,
    absorb: Callable[[Transcript], None] | None = None,
) -> bytes:
    t = ctx.transcript(protocol)
    if absorb is not None:
        absorb(t)
    return prove_clauses(t, [[stmt]], [(0, witness)], tag).to_bytes()


def _verify_single(
    protocol: bytes,
    tag: int,
    stmt: LinearStatement,
    proof: bytes,
    ctx: ProofContext,
    absorb: Callable[[Transcript], None] | None = None,
) -> bool:
    p = SigmaProof.from_bytes(proof, tag, _shape([[stmt]]))
    t = ctx.transcript(protocol)
    if absorb is not None:
        absorb(t)
    return verify_clauses(t, [[stmt]], p)


def prove_opening(c: Commitment, opening: Opening, ctx: ProofContext) -> bytes:
    """Proof of knowledge of an opening of ``c`` (Schnorr/Okamoto, Maurer 2009)."""
    return _prove_single(_P_OPENING, TAG_OPENING, opening_statement(c), (opening.m, opening.r), ctx)


def verify_opening(c: Commitment, proof: bytes, ctx: ProofContext) -> bool:
    return _verify_single(_P_OPENING, TAG_OPENING, opening_statement(c), proof, ctx)


def prove_equality(
    c1: Commitment, o1: Opening, c2: Commitment, o2: Opening, ctx: ProofContext
) -> bytes:
    """``c1`` and ``c2`` commit to the same value (mod Q)."""
    return _prove_single(
        _P_EQUALITY, TAG_EQUALITY, equality_statement(c1, c2), ((o1.r - o2.r) % Q,), ctx
    )


def verify_equality(c1: Commitment, c2: Commitment, proof: bytes, ctx: ProofContext) -> bool:
    return _verify_single(_P_EQUALITY, TAG_EQUALITY, equality_statement(c1, c2), proof, ctx)


def _absorb_linear(
    coeffs: Sequence[int], cs: Sequence[Commitment], b: int
) -> Callable[[Transcript], None]:
    def f(t: Transcript) -> None:
        # Strong Fiat-Shamir: the original public inputs, not only the derived point.
        t.append_u64(b"lin/n", len(coeffs))
        for a in coeffs:
            t.append_int(b"lin/a", a)
        t.append_points(b"lin/C", [_pt(c) for c in cs])
        t.append_int(b"lin/b", b)

    return f


def prove_linear(
    coeffs: Sequence[int],
    commitments: Sequence[Commitment],
    openings: Sequence[Opening],
    b: int,
    ctx: ProofContext,
) -> bytes:
    """``sum a_j v_j = b`` over committed ``v_j`` (mod Q; callers bound the sizes)."""
    if len(openings) != len(commitments):
        raise ValueError("one opening per commitment is needed")
    w = sum(a * o.r for a, o in zip(coeffs, openings, strict=True)) % Q
    stmt = linear_statement(coeffs, commitments, b)
    return _prove_single(
        _P_LINEAR, TAG_LINEAR, stmt, (w,), ctx, _absorb_linear(coeffs, commitments, b)
    )


def verify_linear(
    coeffs: Sequence[int],
    commitments: Sequence[Commitment],
    b: int,
    proof: bytes,
    ctx: ProofContext,
) -> bool:
    stmt = linear_statement(coeffs, commitments, b)
    return _verify_single(
        _P_LINEAR, TAG_LINEAR, stmt, proof, ctx, _absorb_linear(coeffs, commitments, b)
    )


def prove_product(
    ca: Commitment,
    oa: Opening,
    cb: Commitment,
    ob: Opening,
    cc: Commitment,
    oc: Opening,
    ctx: ProofContext,
) -> bytes:
    """``c = a*b`` (mod Q) on committed values."""
    s = (oc.r - oa.m * ob.r) % Q
    stmt = product_statement(ca, cb, cc)
    return _prove_single(_P_PRODUCT, TAG_PRODUCT, stmt, (oa.m, oa.r, ob.m, ob.r, s), ctx)


def verify_product(
    ca: Commitment, cb: Commitment, cc: Commitment, proof: bytes, ctx: ProofContext
) -> bool:
    return _verify_single(_P_PRODUCT, TAG_PRODUCT, product_statement(ca, cb, cc), proof, ctx)


def prove_square(
    ca: Commitment, oa: Opening, cc: Commitment, oc: Opening, ctx: ProofContext
) -> bytes:
    """``c = a^2`` (mod Q) on committed values."""
    s = (oc.r - oa.m * oa.r) % Q
    return _prove_single(_P_SQUARE, TAG_SQUARE, square_statement(ca, cc), (oa.m, oa.r, s), ctx)


def verify_square(ca: Commitment, cc: Commitment, proof: bytes, ctx: ProofContext) -> bool:
    return _verify_single(_P_SQUARE, TAG_SQUARE, square_statement(ca, cc), proof, ctx)


# ---------------------------------------------------------------------------
# OR conveniences (tier membership: "the committed price matches some row")
# ---------------------------------------------------------------------------
def _values_branches(c: Commitment, values: Sequence[int]) -> list[LinearStatement]:
    if not 0 < len(values) <= _MAX_BRANCHES:
        raise ProofError("need 1 to 65536 candidate values")
    return [LinearStatement(1, (Equation(c.point - G * v, ((0, H),)),)) for v in values]


def prove_one_of_values(
    c: Commitment, opening: Opening, values: Sequence[int], ctx: ProofContext
) -> bytes:
    """``c`` commits to one of the public ``values`` (CDS94 over ``C - v_i G = rH``)."""
    m = opening.m % Q
    idx = next((i for i, v in enumerate(values) if v % Q == m), None)
    if idx is None:
        raise ValueError("the committed value is not among the candidates")
    return prove_or(_values_branches(c, values), idx, (opening.r,), ctx)


def verify_one_of_values(
    c: Commitment, values: Sequence[int], proof: bytes, ctx: ProofContext
) -> bool:
    return verify_or(_values_branches(c, values), proof, ctx)


def _equal_branches(c: Commitment, others: Sequence[Commitment]) -> list[LinearStatement]:
    if not 0 < len(others) <= _MAX_BRANCHES:
        raise ProofError("need 1 to 65536 candidate commitments")
    return [equality_statement(c, o) for o in others]


def prove_equal_to_one_of(
    c: Commitment,
    opening: Opening,
    others: Sequence[Commitment],
    index: int,
    other_opening: Opening,
    ctx: ProofContext,
) -> bytes:
    """``c`` commits to the same value as ``others[index]``, hiding ``index``."""
    return prove_or(_equal_branches(c, others), index, ((opening.r - other_opening.r) % Q,), ctx)


def verify_equal_to_one_of(
    c: Commitment, others: Sequence[Commitment], proof: bytes, ctx: ProofContext
) -> bool:
    return verify_or(_equal_branches(c, others), proof, ctx)


# ---------------------------------------------------------------------------
# Row membership (tiered tariffs: the committed row parameters are one row)
# ---------------------------------------------------------------------------
_P_ROW = b"meterhub/sigma/row-membership/v1"


def _row_branches(
    t: Transcript, commitments: Sequence[Commitment], rows: Sequence[Sequence[int]]
) -> tuple[list[LinearStatement], list[int]]:
    """Absorb the rows and the commitments, then compress each row's ``k``
    equations ``C_l - v_jl G = r_l H`` into one with transcript weights ``rho_l``:
    ``sum rho_l C_l - (sum rho_l v_jl) G = (sum rho_l r_l) H``. If some column of
    row ``j`` differs, the compressed equation's ``G`` part vanishes only with
    probability ``1/Q`` over ``rho``, which is drawn after everything is fixed."""
    k = len(commitments)
    if not 0 < k <= 64 or not 0 < len(rows) <= _MAX_BRANCHES:
        raise ProofError("need 1 to 64 commitments and 1 to 65536 rows")
    if any(len(row) != k for row in rows):
        raise ProofError("every row must have one value per commitment")
    t.append_u64(b"rows/count", len(rows))
    t.append_u64(b"rows/columns", k)
    for row in rows:
        for v in row:
            t.append_int(b"rows/value", v)
    t.append_points(b"rows/commitments", [_pt(c) for c in commitments])
    rho = t.challenge_scalars(b"rows/rho", k)
    p = lincomb(rho, [_pt(c) for c in commitments])
    return [
        LinearStatement(
            1,
            (Equation(p - base_mul(sum(r * v for r, v in zip(rho, row, strict=True))), ((0, H),)),),
        )
        for row in rows
    ], rho


def prove_row_membership(
    commitments: Sequence[Commitment],
    openings: Sequence[Opening],
    rows: Sequence[Sequence[int]],
    ctx: ProofContext,
) -> bytes:
    """The committed tuple ``(v_1..v_k)`` equals one of the public ``rows``, hiding
    which (CDS94 OR; e.g. a tier row ``(c_min, c_max, F1, F2)``, Rial & Danezis
    WPES 2011, section 4.2). One 1-witness branch per row (see :func:`_row_branches`)."""
    if len(openings) != len(commitments):
        raise ValueError("one opening per commitment is needed")
    ms = [o.m % Q for o in openings]
    idx = next((j for j, row in enumerate(rows) if [v % Q for v in row] == ms), None)
    if idx is None:
        raise ValueError("the committed tuple is not among the rows")
    t = ctx.transcript(_P_ROW)
    branches, rho = _row_branches(t, commitments, rows)
    w = sum(r * o.r for r, o in zip(rho, openings, strict=True)) % Q
    return prove_clauses(t, [branches], [(idx, (w,))], TAG_ROW, absorb_statements=False).to_bytes()


def verify_row_membership(
    commitments: Sequence[Commitment],
    rows: Sequence[Sequence[int]],
    proof: bytes,
    ctx: ProofContext,
) -> bool:
    if not 0 < len(rows) <= _MAX_BRANCHES:
        raise ProofError("need 1 to 65536 rows")
    p = SigmaProof.from_bytes(proof, TAG_ROW, [(1,) * len(rows)])
    t = ctx.transcript(_P_ROW)
    branches, _ = _row_branches(t, commitments, rows)
    return verify_clauses(t, [branches], p, absorb_statements=False)
