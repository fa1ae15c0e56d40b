"""Non-interactive sigma protocols over Pedersen commitments.

One generic engine covers every statement: Maurer's unified zero-knowledge
proof of knowledge of a preimage under a group homomorphism (Maurer,
"Unifying zero-knowledge proofs of knowledge", AFRICACRYPT 2009, section 4).
A :class:`LinearStatement` lists equations ``P_k = sum_j x_{i(k,j)} * B_{k,j}``
over a witness vector ``x``; openings, equality, linear relations, products
and squares are all such statements. Conjunctions share one challenge;
disjunctions use the CDS composition (Cramer, Damgård and Schoenmakers,
"Proofs of partial knowledge", CRYPTO 1994): simulated branches get random
challenges, the real branch gets ``c - sum(others)``.

Proofs use the compact form (challenge and responses, no commitments): the
verifier recomputes ``A_k = sum_j z_j B_{k,j} - c_k P_k`` and re-derives the
challenge from the transcript. It is shorter than sending the ``A_k``, and on
this stack it is also cheaper to verify: a random-linear-combination batch
would still need one scalar multiplication for every ``A_k``, which the
compact form does not send at all.

Byte encoding of every sigma proof (big-endian, scalars strictly ``< Q``)::

    version (1) = 0x01 | tag (1) | c (32)
    | for each clause, for each branch but the last: branch challenge (32)
    | for each clause, for each branch, for each witness: response (32)

The shape (clauses, branches, witnesses per branch) is fixed by the public
statement, so the verifier knows the exact length; anything else is rejected
with :class:`ProofError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .group import (
    G,
    H,
    Point,
    Q,
    base_mul,
    msm,
    random_scalar,
    scalar_from_bytes,
    scalar_to_bytes,
)
from .pedersen import Commitment, Opening
from .transcript import ProofContext, ProofError, Transcript

__all__ = [
    "VERSION",
    "TAG_OPENING",
    "TAG_EQUALITY",
    "TAG_LINEAR",
    "TAG_PRODUCT",
    "TAG_SQUARE",
    "TAG_OR",
    "TAG_STATEMENT",
    "TAG_ROW",
    "ProofError",
    "Equation",
    "LinearStatement",
    "SigmaProof",
    "lincomb",
    "prove_clauses",
    "verify_clauses",
    "prove_statement",
    "verify_statement",
    "prove_or",
    "verify_or",
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

#: Encoding version of all proofs in this module.
VERSION = 0x01
TAG_OPENING = 0x01
TAG_EQUALITY = 0x02
TAG_LINEAR = 0x03
TAG_PRODUCT = 0x04
TAG_SQUARE = 0x05
TAG_OR = 0x06
TAG_STATEMENT = 0x07
TAG_ROW = 0x08

_MAX_BRANCHES = 1 << 16


def lincomb(scalars: Sequence[int], points: Sequence[Point]) -> Point:
    """``sum k_i P_i`` by bucketing equal scalars (one multiplication per distinct
    non-trivial scalar). On this stack libsecp256k1 multiplications beat a
    Python-level Pippenger, so the bucketing limit is lifted. Terms on ``G`` are
    merged and use the fixed-base generator multiplication (about twice as fast)."""
    g_scalar = 0
    rest_k: list[int] = []
    rest_p: list[Point] = []
    for k, p in zip(scalars, points, strict=True):
        if p is G:
            g_scalar += k
        else:
            rest_k.append(k)
            rest_p.append(p)
    out = msm(rest_k, rest_p, grouping_limit=1 << 30)
    return out + base_mul(g_scalar) if g_scalar % Q else out


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Equation:
    """``lhs = sum x_i * base`` over the ``(i, base)`` terms."""

    lhs: Point
    terms: tuple[tuple[int, Point], ...]


@dataclass(frozen=True, slots=True)
class LinearStatement:
    """Knowledge of ``x`` in ``Z_Q^w`` satisfying every equation (Maurer 2009, section 4).

    Every witness must appear in some equation with a non-identity base;
    otherwise its response would be unconstrained and proofs malleable.
    """

    num_witnesses: int
    equations: tuple[Equation, ...]

    def __post_init__(self) -> None:
        if not 0 < self.num_witnesses <= 1 << 20 or not self.equations:
            raise ProofError("statement must have witnesses and equations")
        used = [False] * self.num_witnesses
        for eq in self.equations:
            if not eq.terms:
                raise ProofError("statement equation has no terms")
            for i, base in eq.terms:
                if not 0 <= i < self.num_witnesses:
                    raise ProofError("statement witness index out of range")
                if not base.is_identity:
                    used[i] = True
        if not all(used):
            raise ProofError("statement leaves a witness unconstrained (identity base)")

    def holds(self, witness: Sequence[int]) -> bool:
        """Whether ``witness`` satisfies every equation (for tests and debugging)."""
        if len(witness) != self.num_witnesses:
            return False
        return all(
            lincomb([witness[i] for i, _ in eq.terms], [b for _, b in eq.terms]) == eq.lhs
            for eq in self.equations
        )

    def absorb(self, t: Transcript) -> None:
        """Bind the full statement (shape, indices, every point) to the transcript."""
        t.append_u64(b"stmt/witnesses", self.num_witnesses)
        t.append_u64(b"stmt/equations", len(self.equations))
        for eq in self.equations:
            t.append_point(b"stmt/lhs", eq.lhs)
            t.append_message(
                b"stmt/terms",
                b"".join(i.to_bytes(4, "big") + b.to_bytes() for i, b in eq.terms),
            )


Clause = Sequence[LinearStatement]  # an OR of branches; one branch = plain statement


@dataclass(frozen=True, slots=True)
class SigmaProof:
    """A compact CDS/Maurer proof: the challenge ``c``, the free branch challenges
    (all but the last of each clause) and the responses."""

    tag: int
    c: int
    branch_challenges: tuple[tuple[int, ...], ...]
    responses: tuple[tuple[tuple[int, ...], ...], ...]

    def to_bytes(self) -> bytes:
        out = [bytes([VERSION, self.tag]), scalar_to_bytes(self.c)]
        out.extend(scalar_to_bytes(x) for cl in self.branch_challenges for x in cl)
        out.extend(scalar_to_bytes(z) for cl in self.responses for br in cl for z in br)
        return b"".join(out)

    @staticmethod
    def encoded_length(shape: Sequence[Sequence[int]]) -> int:
        """Length in bytes for ``shape`` (per clause, witnesses per branch)."""
        n = 34
        for cl in shape:
            n += 32 * (len(cl) - 1) + 32 * sum(cl)
        return n

    @classmethod
    def from_bytes(cls, data: bytes, tag: int, shape: Sequence[Sequence[int]]) -> SigmaProof:
        """Strict decoding against the shape the public statement dictates."""
        return cls.read(data, 0, tag, shape, exact=True)[0]

    @classmethod
    def read(
        cls, data: bytes, offset: int, tag: int, shape: Sequence[Sequence[int]], *, exact: bool
    ) -> tuple[SigmaProof, int]:
        """Decode from ``data[offset:]``; returns the proof and the next offset."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProofError("proof must be bytes")
        data = bytes(data)
        need = cls.encoded_length(shape)
        if len(data) - offset < need or (exact and len(data) - offset != need):
            raise ProofError(f"sigma proof must be {need} bytes, got {len(data) - offset}")
        if data[offset] != VERSION:
            raise ProofError(f"unsupported proof version {data[offset]}")
        if data[offset + 1] != tag:
            raise ProofError(f"wrong proof type tag {data[offset + 1]:#04x}, expected {tag:#04x}")
        pos = offset + 2

        def scalar() -> int:
            nonlocal pos
            try:
                k = scalar_from_bytes(data[pos : pos + 32])
            except ValueError as exc:
                raise ProofError("proof scalar is not reduced mod the group order") from exc
            pos += 32
            return k

        c = scalar()
        chal = tuple(tuple(scalar() for _ in range(len(cl) - 1)) for cl in shape)
        resp = tuple(tuple(tuple(scalar() for _ in range(w)) for w in cl) for cl in shape)
        return cls(tag, c, chal, resp), pos


def _shape(clauses: Sequence[Clause]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(s.num_witnesses for s in cl) for cl in clauses)


def _recompute(stmt: LinearStatement, c: int, z: Sequence[int]) -> list[Point]:
    """``A_k = sum z_i B_{k,i} - c P_k`` for each equation (the verifier's side)."""
    neg_c = (-c) % Q
    return [
        lincomb([z[i] for i, _ in eq.terms] + [neg_c], [b for _, b in eq.terms] + [eq.lhs])
        for eq in stmt.equations
    ]


def _check_clauses(clauses: Sequence[Clause]) -> None:
    if not clauses:
        raise ProofError("no clauses to prove")
    for cl in clauses:
        if not 0 < len(cl) <= _MAX_BRANCHES:
            raise ProofError("a clause must have 1 to 65536 branches")


def prove_clauses(
    t: Transcript,
    clauses: Sequence[Clause],
    witnesses: Sequence[tuple[int, Sequence[int]]],
    tag: int,
    *,
    absorb_statements: bool = True,
) -> SigmaProof:
    """Prove the AND of ``clauses``, each an OR of linear statements (CDS94, section 4;
    with one branch per clause this is plain Maurer 2009). ``witnesses[i]`` is
    ``(index of the true branch, its witness)``. The statements are absorbed here
    unless the caller has already absorbed everything that determines them
    (``absorb_statements=False``, e.g. range proofs absorb the bit commitments)."""
    _check_clauses(clauses)
    if len(witnesses) != len(clauses):
        raise ValueError("one witness per clause is needed")
    if absorb_statements:
        for cl in clauses:
            for s in cl:
                s.absorb(t)
    commitments: list[Point] = []
    state: list[tuple[int, list[int], dict[int, int], dict[int, list[int]]]] = []
    for cl, (k, x) in zip(clauses, witnesses, strict=True):
        if not 0 <= k < len(cl) or len(x) != cl[k].num_witnesses:
            raise ValueError("witness does not match the clause shape")
        sim_c: dict[int, int] = {}
        sim_z: dict[int, list[int]] = {}
        nonces: list[int] = []
        for j, s in enumerate(cl):
            if j == k:
                # Real branch: A = sum nonce_i B_i (Maurer 2009, protocol 1).
                nonces = [random_scalar() for _ in range(s.num_witnesses)]
                commitments.extend(
                    lincomb([nonces[i] for i, _ in eq.terms], [b for _, b in eq.terms])
                    for eq in s.equations
                )
            else:
                # Simulated branch (CDS94): pick challenge and responses, solve for A.
                sim_c[j] = random_scalar()
                sim_z[j] = [random_scalar() for _ in range(s.num_witnesses)]
                commitments.extend(_recompute(s, sim_c[j], sim_z[j]))
        state.append((k, nonces, sim_c, sim_z))
    t.append_points(b"sigma/commitments", commitments)
    c = t.challenge_scalar(b"sigma/challenge")
    all_chal: list[tuple[int, ...]] = []
    all_resp: list[tuple[tuple[int, ...], ...]] = []
    for cl, (k, x), (_, nonces, sim_c, sim_z) in zip(clauses, witnesses, state, strict=True):
        ck = (c - sum(sim_c.values())) % Q
        chals = [sim_c.get(j, ck) for j in range(len(cl))]
        resps = [
            tuple((nonces[i] + ck * x[i]) % Q for i in range(len(x))) if j == k else tuple(sim_z[j])
            for j in range(len(cl))
        ]
        all_chal.append(tuple(chals[:-1]))
        all_resp.append(tuple(resps))
    return SigmaProof(tag, c, tuple(all_chal), tuple(all_resp))


def verify_clauses(
    t: Transcript,
    clauses: Sequence[Clause],
    proof: SigmaProof,
    *,
    absorb_statements: bool = True,
) -> bool:
    """Verify a :func:`prove_clauses` proof against the same transcript state."""
    _check_clauses(clauses)
    if _shape(clauses) != tuple(tuple(len(br) for br in cl) for cl in proof.responses) or len(
        proof.branch_challenges
    ) != len(clauses):
        raise ProofError("proof shape does not match the statement")
    if absorb_statements:
        for cl in clauses:
            for s in cl:
                s.absorb(t)
    commitments: list[Point] = []
    for cl, chal, resp in zip(clauses, proof.branch_challenges, proof.responses, strict=True):
        if len(chal) != len(cl) - 1:
            raise ProofError("proof shape does not match the statement")
        last = (proof.c - sum(chal)) % Q
        for s, cj, z in zip(cl, (*chal, last), resp, strict=True):
            commitments.extend(_recompute(s, cj, z))
    t.append_points(b"sigma/commitments", commitments)
    return t.challenge_scalar(b"sigma/challenge") == proof.c


# ---------------------------------------------------------------------------
# Generic entry points
# ---------------------------------------------------------------------------
_P_STATEMENT = b"meterhub/sigma/statement/v1"
_P_OR = b"meterhub/sigma/or/v1"


def prove_statement(stmt: LinearStatement, witness: Sequence[int], ctx: ProofContext) -> bytes:
    """Prove knowledge of ``witness`` for a generic linear statement."""
    t = ctx.transcript(_P_STATEMENT)
    return prove_clauses(t, [[stmt]], [(0, witness)], TAG_STATEMENT).to_bytes()


def verify_statement(stmt: LinearStatement, proof: bytes, ctx: ProofContext) -> bool:
    p = SigmaProof.from_bytes(proof, TAG_STATEMENT, _shape([[stmt]]))
    return verify_clauses(ctx.transcript(_P_STATEMENT), [[stmt]], p)


def prove_or(
    branches: Sequence[LinearStatement], index: int, witness: Sequence[int], ctx: ProofContext
) -> bytes:
    """CDS94 proof that one of ``branches`` holds, without revealing which."""
    t = ctx.transcript(_P_OR)
    return prove_clauses(t, [list(branches)], [(index, witness)], TAG_OR).to_bytes()


def verify_or(branches: Sequence[LinearStatement], proof: bytes, ctx: ProofContext) -> bool:
    _check_clauses([branches])
    p = SigmaProof.from_bytes(proof, TAG_OR, _shape([branches]))
    return verify_clauses(ctx.transcript(_P_OR), [list(branches)], p)


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
