"""Range proofs and a verifiable sum of squares over Pedersen commitments.

Bit decomposition (the first step of issue 5; the logarithmic-size
Bulletproofs of Bünz et al. 2018 are in :mod:`meterhub.crypto.bulletproofs`):
for ``0 <= v < 2^n`` the prover commits to every bit,
``C_j = b_j G + r_j H``, with the last blinding chosen so that
``sum 2^j C_j = C`` exactly; the verifier checks that sum (by Horner, with
additions only) and a CDS94 OR proof per bit that ``C_j`` opens to 0 or 1
(``C_j = rH`` or ``C_j - G = rH``). All bits of all values share one
Fiat-Shamir challenge (an AND of ORs, see :mod:`meterhub.crypto.sigma`).

Limits (see docs/proofs.md): the proof is linear in ``n``, 129 bytes per bit
(33 for the bit commitment, 32 for one branch challenge, 64 for two responses),
and verification costs about four scalar multiplications per bit.

The bounded range ``0 <= v <= m_max`` for any ``m_max`` (Rial & Danezis WPES
2011, section 4: readings below a maximum) uses two ``n``-bit proofs with
``n = bitlen(m_max)``: on ``v`` and on ``m_max - v`` (commitment
``m_max G - C``), which the verifier computes. As ``2^(n+1)`` is far below
``Q``, both together imply ``0 <= v <= m_max`` over the integers.

The sum of squares commits to each ``m_i^2`` with a square proof
(:func:`meterhub.crypto.sigma.square_statement`); the sum of the square
commitments then commits to ``sum m_i^2`` by the homomorphism.

Byte encodings (big-endian)::

    range (tag 0x10) / bounded (tag 0x11):
        version 0x01 | tag | n (1) | count (4)
        | bit commitments, value-major, bit 0 first (count * n' * 33)
        | sigma proof with the same tag (see sigma.py), one clause per bit
      where n' counts the proved values (count, or 2*count for bounded when
      m_max + 1 is not a power of two: first all v, then all m_max - v).

    sum of squares (tag 0x12):
        version 0x01 | tag | count (4) | square commitments (count * 33)
        | sigma proof with the same tag, one clause (3 witnesses) per reading
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .group import G, H, Point, PointDecodeError, Q, random_scalar
from .pedersen import Commitment, Opening
from .sigma import (
    VERSION,
    Equation,
    LinearStatement,
    SigmaProof,
    prove_clauses,
    square_statement,
    verify_clauses,
)
from .transcript import ProofContext, ProofError, Transcript

__all__ = [
    "TAG_RANGE_BITS",
    "TAG_BOUNDED",
    "TAG_SUM_SQUARES",
    "MAX_BITS",
    "range_proof_size",
    "prove_range",
    "verify_range",
    "prove_bounded",
    "verify_bounded",
    "prove_squares",
    "square_commitments",
    "prove_sum_of_squares",
    "verify_sum_of_squares",
    "sum_of_squares_commitment",
]

TAG_RANGE_BITS = 0x10
TAG_BOUNDED = 0x11
TAG_SUM_SQUARES = 0x12
#: Largest bit length supported (readings and bills fit in 64 bits).
MAX_BITS = 64
#: Largest number of values in one proof (keeps allocations bounded).
MAX_COUNT = 1 << 16

_P_RANGE = b"meterhub/range/bits/v1"
_P_BOUNDED = b"meterhub/range/bounded/v1"
_P_SQUARES = b"meterhub/sum-of-squares/v1"


def _point(data: bytes) -> Point:
    try:
        return Point.from_bytes(data)
    except PointDecodeError as exc:
        raise ProofError("proof contains an invalid point encoding") from exc


def _bit_clause(cj: Point) -> list[LinearStatement]:
    # Branch 0: C_j = r H (bit 0); branch 1: C_j - G = r H (bit 1).
    return [
        LinearStatement(1, (Equation(cj, ((0, H),)),)),
        LinearStatement(1, (Equation(cj - G, ((0, H),)),)),
    ]


def _horner(bits: Sequence[Point]) -> Point:
    """``sum 2^j C_j`` with additions only (bit 0 first), cheaper than n multiplications."""
    acc = Point.identity()
    for p in reversed(bits):
        acc = acc + acc + p
    return acc


def range_proof_size(n: int, count: int = 1, *, values_per_commitment: int = 1) -> int:
    """Encoded size of a bit-decomposition proof of ``count`` values of ``n`` bits."""
    bits = n * count * values_per_commitment
    return 7 + 33 * bits + SigmaProof.encoded_length([(1, 1)] * bits)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= MAX_BITS:
        raise ProofError(f"bit length must be in 1..{MAX_BITS}")


def _prove_bits(
    protocol: bytes,
    tag: int,
    absorb: Callable[[Transcript], None],
    targets: Sequence[Point],
    values: Sequence[int],
    blindings: Sequence[int],
    n: int,
    count: int,
    ctx: ProofContext,
) -> bytes:
    inv_top = pow(1 << (n - 1), -1, Q)
    bit_points: list[Point] = []
    clauses: list[list[LinearStatement]] = []
    witnesses: list[tuple[int, Sequence[int]]] = []
    for v, r in zip(values, blindings, strict=True):
        if not 0 <= v < 1 << n:
            raise ValueError(f"value out of range [0, 2^{n})")
        rs = [random_scalar() for _ in range(n - 1)]
        # Last blinding makes sum 2^j C_j equal C exactly (no extra proof needed).
        rs.append((r - sum(rj << j for j, rj in enumerate(rs))) * inv_top % Q)
        for j, rj in enumerate(rs):
            b = (v >> j) & 1
            cj = H * rj + G if b else H * rj
            bit_points.append(cj)
            clauses.append(_bit_clause(cj))
            witnesses.append((b, (rj,)))
    t = ctx.transcript(protocol)
    _absorb_header(t, n, count, targets, bit_points)
    absorb(t)
    # The bit statements are fixed by the absorbed bit commitments and G, H.
    sigma = prove_clauses(t, clauses, witnesses, tag, absorb_statements=False)
    head = bytes([VERSION, tag, n]) + count.to_bytes(4, "big")
    return head + b"".join(p.to_bytes() for p in bit_points) + sigma.to_bytes()


def _absorb_header(
    t: Transcript, n: int, count: int, targets: Sequence[Point], bit_points: Sequence[Point]
) -> None:
    t.append_u64(b"range/n", n)
    t.append_u64(b"range/count", count)
    t.append_points(b"range/targets", targets)
    t.append_points(b"range/bits", bit_points)


def _verify_bits(
    protocol: bytes,
    tag: int,
    absorb: Callable[[Transcript], None],
    targets: Sequence[Point],
    n: int,
    count: int,
    proof: bytes,
    ctx: ProofContext,
) -> bool:
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    nbits = n * len(targets)
    expected = 7 + 33 * nbits + SigmaProof.encoded_length([(1, 1)] * nbits)
    if len(proof) != expected:
        raise ProofError(f"range proof must be {expected} bytes, got {len(proof)}")
    if proof[0] != VERSION:
        raise ProofError(f"unsupported proof version {proof[0]}")
    if proof[1] != tag:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected {tag:#04x}")
    if proof[2] != n or int.from_bytes(proof[3:7], "big") != count:
        raise ProofError("range proof is for another bit length or count")
    bit_points = [_point(proof[7 + 33 * i : 40 + 33 * i]) for i in range(nbits)]
    sigma = SigmaProof.from_bytes(proof[7 + 33 * nbits :], tag, [(1, 1)] * nbits)
    # The bits must recompose to each target exactly.
    for k, target in enumerate(targets):
        if _horner(bit_points[k * n : (k + 1) * n]) != target:
            return False
    t = ctx.transcript(protocol)
    _absorb_header(t, n, count, targets, bit_points)
    absorb(t)
    clauses = [_bit_clause(p) for p in bit_points]
    return verify_clauses(t, clauses, sigma, absorb_statements=False)


def _check_count(commitments: Sequence[Commitment]) -> None:
    if not 0 < len(commitments) <= MAX_COUNT:
        raise ProofError(f"need 1 to {MAX_COUNT} commitments")


def _no_extra(t: Transcript) -> None:
    return None


def prove_range(
    commitments: Sequence[Commitment], openings: Sequence[Opening], n: int, ctx: ProofContext
) -> bytes:
    """Prove ``0 <= v_i < 2^n`` for every committed ``v_i`` (one aggregated proof)."""
    _check_n(n)
    _check_count(commitments)
    if len(openings) != len(commitments):
        raise ValueError("one opening per commitment is needed")
    return _prove_bits(
        _P_RANGE,
        TAG_RANGE_BITS,
        _no_extra,
        [c.point for c in commitments],
        [o.m for o in openings],
        [o.r for o in openings],
        n,
        len(commitments),
        ctx,
    )


def verify_range(
    commitments: Sequence[Commitment], n: int, proof: bytes, ctx: ProofContext
) -> bool:
    """Verify :func:`prove_range`; malformed proofs raise :class:`ProofError`."""
    _check_n(n)
    _check_count(commitments)
    targets = [c.point for c in commitments]
    return _verify_bits(
        _P_RANGE, TAG_RANGE_BITS, _no_extra, targets, n, len(commitments), proof, ctx
    )


def _bounded_setup(m_max: int) -> tuple[int, bool]:
    if not isinstance(m_max, int) or not 0 <= m_max < 1 << MAX_BITS:
        raise ProofError(f"m_max must be in [0, 2^{MAX_BITS})")
    n = max(1, m_max.bit_length())
    # If m_max = 2^n - 1 the upper side is implied by the n-bit proof itself.
    return n, m_max != (1 << n) - 1


def _bounded_absorb(m_max: int) -> Callable[[Transcript], None]:
    def f(t: Transcript) -> None:
        t.append_u64(b"bounded/m_max", m_max)

    return f


def prove_bounded(
    commitments: Sequence[Commitment], openings: Sequence[Opening], m_max: int, ctx: ProofContext
) -> bytes:
    """Prove ``0 <= v_i <= m_max`` for every committed reading (fraud detection reuses it)."""
    n, two_sided = _bounded_setup(m_max)
    _check_count(commitments)
    if len(openings) != len(commitments):
        raise ValueError("one opening per commitment is needed")
    if any(not 0 <= o.m <= m_max for o in openings):
        raise ValueError("value out of range [0, m_max]")
    targets = [c.point for c in commitments]
    values = [o.m for o in openings]
    blinds = [o.r for o in openings]
    if two_sided:
        mg = G * m_max
        targets += [mg - c.point for c in commitments]
        values += [m_max - o.m for o in openings]
        blinds += [(-o.r) % Q for o in openings]
    return _prove_bits(
        _P_BOUNDED,
        TAG_BOUNDED,
        _bounded_absorb(m_max),
        targets,
        values,
        blinds,
        n,
        len(commitments),
        ctx,
    )


def verify_bounded(
    commitments: Sequence[Commitment], m_max: int, proof: bytes, ctx: ProofContext
) -> bool:
    """Verify :func:`prove_bounded`."""
    n, two_sided = _bounded_setup(m_max)
    _check_count(commitments)
    targets = [c.point for c in commitments]
    if two_sided:
        mg = G * m_max
        targets += [mg - c.point for c in commitments]
    return _verify_bits(
        _P_BOUNDED,
        TAG_BOUNDED,
        _bounded_absorb(m_max),
        targets,
        n,
        len(commitments),
        proof,
        ctx,
    )


# ---------------------------------------------------------------------------
# Sum of squares
# ---------------------------------------------------------------------------
def _squares_transcript(
    ctx: ProofContext, commitments: Sequence[Commitment], squares: Sequence[Point]
) -> Transcript:
    t = ctx.transcript(_P_SQUARES)
    t.append_points(b"squares/readings", [c.point for c in commitments])
    t.append_points(b"squares/squares", squares)
    return t


def prove_squares(
    commitments: Sequence[Commitment], openings: Sequence[Opening], ctx: ProofContext
) -> tuple[bytes, list[Opening]]:
    """Commit to each ``m_i^2`` (``C_i^sq = m_i C_i + t_i H``) and prove every square
    in one AND (Rial & Danezis WPES 2011, section 4.3, polynomial tariffs); returns
    the proof and the openings ``(m_i^2, m_i r_i + t_i)`` of the square commitments."""
    _check_count(commitments)
    if len(openings) != len(commitments):
        raise ValueError("one opening per commitment is needed")
    squares: list[Point] = []
    clauses: list[list[LinearStatement]] = []
    witnesses: list[tuple[int, Sequence[int]]] = []
    sq_openings: list[Opening] = []
    for c, o in zip(commitments, openings, strict=True):
        t_i = random_scalar()
        # C_sq = m C + s H = m^2 G + (m r + s) H: one multiplication, no base_mul.
        csq = c.point * o.m + H * t_i
        squares.append(csq)
        clauses.append([square_statement(c, csq)])
        witnesses.append((0, (o.m % Q, o.r, t_i)))
        sq_openings.append(Opening(o.m * o.m, (o.m * o.r + t_i) % Q))
    t = _squares_transcript(ctx, commitments, squares)
    # Square statements are fixed by the absorbed readings and square commitments.
    sigma = prove_clauses(t, clauses, witnesses, TAG_SUM_SQUARES, absorb_statements=False)
    head = bytes([VERSION, TAG_SUM_SQUARES]) + len(commitments).to_bytes(4, "big")
    proof = head + b"".join(p.to_bytes() for p in squares) + sigma.to_bytes()
    return proof, sq_openings


def prove_sum_of_squares(
    commitments: Sequence[Commitment], openings: Sequence[Opening], ctx: ProofContext
) -> tuple[bytes, Commitment, Opening]:
    """Commit to each ``m_i^2`` and prove it; returns the proof, the commitment
    ``S = sum C_i^sq`` to ``sum m_i^2`` and its opening (kept by the hub)."""
    proof, sq = prove_squares(commitments, openings, ctx)
    total = sum_of_squares_commitment(len(commitments), proof)
    return proof, total, Opening(sum(o.m for o in sq), sum(o.r for o in sq) % Q)


def square_commitments(count: int, proof: bytes) -> list[Commitment]:
    """The per-reading square commitments carried by a (verified) proof."""
    if not 0 < count <= MAX_COUNT:
        raise ProofError(f"need 1 to {MAX_COUNT} readings")
    return [Commitment(p) for p in _parse_squares(count, proof)[0]]


def _sum(points: Sequence[Point]) -> Point:
    acc = Point.identity()
    for p in points:
        acc = acc + p
    return acc


def _parse_squares(count: int, proof: bytes) -> tuple[list[Point], SigmaProof]:
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    shape = [(3,)] * count
    expected = 6 + 33 * count + SigmaProof.encoded_length(shape)
    if len(proof) != expected:
        raise ProofError(f"sum-of-squares proof must be {expected} bytes, got {len(proof)}")
    if proof[0] != VERSION:
        raise ProofError(f"unsupported proof version {proof[0]}")
    if proof[1] != TAG_SUM_SQUARES:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected 0x12")
    if int.from_bytes(proof[2:6], "big") != count:
        raise ProofError("sum-of-squares proof is for another number of readings")
    squares = [_point(proof[6 + 33 * i : 39 + 33 * i]) for i in range(count)]
    sigma = SigmaProof.from_bytes(proof[6 + 33 * count :], TAG_SUM_SQUARES, shape)
    return squares, sigma


def verify_sum_of_squares(
    commitments: Sequence[Commitment], proof: bytes, ctx: ProofContext
) -> bool:
    """Verify that the proof's square commitments commit to the squares of the readings."""
    _check_count(commitments)
    squares, sigma = _parse_squares(len(commitments), proof)
    clauses = [[square_statement(c, s)] for c, s in zip(commitments, squares, strict=True)]
    t = _squares_transcript(ctx, commitments, squares)
    return verify_clauses(t, clauses, sigma, absorb_statements=False)


def sum_of_squares_commitment(count: int, proof: bytes) -> Commitment:
    """The commitment to ``sum m_i^2`` carried by a (verified) proof over ``count`` readings."""
    if not 0 < count <= MAX_COUNT:
        raise ProofError(f"need 1 to {MAX_COUNT} readings")
    squares, _ = _parse_squares(count, proof)
    return Commitment(_sum(squares))
