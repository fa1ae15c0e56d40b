"""The sigma-protocol engine (Maurer 2009 §4, CDS94 for OR): statements, the
compact proof encoding, and proving and verifying conjunctions of clauses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..group import (
    G,
    Point,
    Q,
    base_mul,
    msm,
    random_scalar,
    scalar_from_bytes,
    scalar_to_bytes,
)
from ..transcript import ProofContext, ProofError, Transcript

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
    """``sum k_i P_i`` by :func:`meterhub.crypto.group.msm` (equal scalars bucketed,
    then multiplications or Pippenger's additions by its cost model). Terms on ``G``
    are merged and use the fixed-base generator multiplication (about twice as fast)."""
    g_scalar = 0
    rest_k: list[int] = []
    rest_p: list[Point] = []
    for k, p in zip(scalars, points, strict=True):
        if p is G:
            g_scalar += k
        else:
            rest_k.append(k)
            rest_p.append(p)
    out = msm(rest_k, rest_p)
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
