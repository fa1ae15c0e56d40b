"""Aggregated range proofs (Bünz et al. 2018, sections 4.1, 4.3 and 6.2): prove,
verify, the bounded variant ``0 <= v <= m_max`` and batch verification.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..group import G, Point, Q, random_scalar
from ..pedersen import Commitment, Opening
from ..sigma import VERSION
from ..transcript import ProofContext, ProofError, Transcript
from ._tables import (
    TABLE_GENERATORS,
    _combine_addrs,
    _g_table,
    _gen_bases,
    _gen_tables_when_worth,
    _h_table,
    _lincomb_fixed,
    _neg_sum_h,
    _table_addrs,
    generators,
)
from .ipa import (
    ArgumentBody,
    _body_size,
    _ip,
    _ipa_prove,
    _ipa_prove_fixed,
    _pad,
    _powers,
    _prove_polynomial,
    _verifier_challenges,
    _verifier_scalars,
)

__all__ = [
    "TAG_BULLETPROOF",
    "TAG_BULLETPROOF_BOUNDED",
    "MAX_VALUES",
    "bulletproof_size",
    "prove",
    "verify",
    "prove_bounded",
    "verify_bounded",
    "BatchItem",
    "verify_batch",
]

TAG_BULLETPROOF = 0x20
TAG_BULLETPROOF_BOUNDED = 0x21
#: Largest number of values in one aggregated proof.
MAX_VALUES = 1 << 16
_ALLOWED_N = (1, 2, 4, 8, 16, 32, 64)
_P_RANGE = b"meterhub/bulletproofs/range/v1"
_P_BOUNDED = b"meterhub/bulletproofs/bounded/v1"


def bulletproof_size(n: int, m: int = 1) -> int:
    """Encoded size in bytes of an aggregated proof of ``m`` values of ``n`` bits
    (a bounded proof of ``m`` readings aggregates ``2m`` values)."""
    return _size_for(n * _pad(m))


def _size_for(nm: int, fold: int = 1) -> int:
    """Size of a proof over ``nm`` bits whose inner-product argument stops at
    vectors of length ``fold`` (sent in the clear, ``2 fold`` scalars; a fold
    above ``nm`` means no round at all)."""
    fold = min(fold, nm)
    k = (nm // fold).bit_length() - 1
    return 7 + _body_size(k, fold)


def _delta(n: int, m: int, y: int, z: int) -> int:
    """``(z - z^2) <1, y^(nm)> - sum_j z^(j+3) <1, 2^n>`` (section 4.3)."""
    nm = n * m
    sum_y = sum(_powers(y, nm)) % Q
    sum_2 = (1 << n) - 1
    sum_z = sum(_powers(z, m)) % Q
    zz = z * z % Q
    return ((z - zz) * sum_y - zz * z % Q * sum_z * sum_2) % Q


def _check_params(n: int, m: int) -> None:
    if n not in _ALLOWED_N:
        raise ProofError("bit length must be a power of two up to 64")
    if not 0 < m <= MAX_VALUES:
        raise ProofError(f"need 1 to {MAX_VALUES} values")


def _start(protocol: bytes, ctx: ProofContext, n: int, m: int, vs: Sequence[Point]) -> Transcript:
    t = ctx.transcript(protocol)
    t.append_u64(b"bp/n", n)
    t.append_u64(b"bp/m", m)
    t.append_points(b"bp/V", vs)
    return t


def _prove(
    t: Transcript,
    values: Sequence[int],
    blindings: Sequence[int],
    n: int,
    tag: int,
    m: int,
    fold: int = 1,
    version: int = VERSION,
) -> bytes:
    mp = len(values)
    nm = n * mp
    gv, hv = generators(nm)
    a_l = [(v >> i) & 1 for v in values for i in range(n)]
    a_r = [(b - 1) % Q for b in a_l]
    alpha = random_scalar()
    th = _h_table()
    gt, ht = _gen_tables_when_worth(nm)
    s_l = [random_scalar() for _ in range(nm)]
    s_r = [random_scalar() for _ in range(nm)]
    rho = random_scalar()
    fixed = nm <= TABLE_GENERATORS and len(gt) == nm
    if fixed:
        # Every base is a tabled fixed point. A = alpha H + sum_{bit 1} (G_i + H_i) - sum_i H_i:
        # digit-1 entries of window 0 (offset 64) and one precomputed point, no multiplication.
        gb, hb = _gen_bases(nm)
        ones = np.array(a_l, dtype=bool)
        big_a = _combine_addrs(
            np.concatenate(
                [
                    _table_addrs([alpha], [th[1]]),
                    gb[ones] + 1,
                    hb[ones] + 1,
                ]
            ),
            [_neg_sum_h(nm)],
        )
        big_s = _combine_addrs(
            _table_addrs([rho, *s_l, *s_r], np.concatenate([np.array([th[1]], dtype=np.int64), gb, hb]))
        )
    else:
        # Bits and bits-minus-one are 0/1/-1: bucketing turns A into additions.
        big_a = _lincomb_fixed([(alpha, th)], [*a_l, *a_r], [*gv, *hv])
        big_s = _lincomb_fixed(
            [(rho, th), *zip(s_l, gt, strict=False), *zip(s_r, ht, strict=False)],
            [*s_l[len(gt) :], *s_r[len(ht) :]],
            [*gv[len(gt) :], *hv[len(ht) :]],
        )
    t.append_point(b"bp/A", big_a)
    t.append_point(b"bp/S", big_s)
    y = t.challenge_scalar(b"bp/y")
    z = t.challenge_scalar(b"bp/z")
    zz = z * z % Q
    yn = _powers(y, nm)
    zj = _powers(z, mp)
    two = [1 << i for i in range(n)]
    z2 = [zz * zj[j] % Q * two[i] % Q for j in range(mp) for i in range(n)]
    l0 = [(x - z) % Q for x in a_l]
    l1 = s_l
    r0 = [(yn[i] * (a_r[i] + z) + z2[i]) % Q for i in range(nm)]
    r1 = [yn[i] * s_r[i] % Q for i in range(nm)]
    tau0 = sum(zz * zj[j] * g for j, g in enumerate(blindings))
    big_t1, big_t2, t_x, tau_x, mu, lv, rv, w = _prove_polynomial(t, b"bp/", l0, l1, r0, r1, tau0, alpha, rho)
    y_inv = pow(y, -1, Q)
    fold = min(fold, nm)
    if fixed:
        ls, rs, a, b = _ipa_prove_fixed(t, w, _powers(y_inv, nm), lv, rv, fold)
    else:
        ls, rs, a, b = _ipa_prove(t, w, gv, hv, _powers(y_inv, nm), lv, rv, (gt, ht), fold)
    head = bytes([version, tag, n]) + m.to_bytes(4, "big")
    return head + ArgumentBody(big_a, big_s, big_t1, big_t2, t_x, tau_x, mu, ls, rs, a, b).to_bytes()


class _Terms:
    """The verification equation of one proof (section 6.2) as scalars: one list
    for the proof's own points, and dense vectors for the shared generators, so
    that several proofs can be summed into one multi-scalar multiplication."""

    __slots__ = ("own_scalars", "own_points", "g_vec", "h_vec", "g", "h")

    def __init__(
        self,
        own_scalars: list[int],
        own_points: list[Point],
        g_vec: list[int],
        h_vec: list[int],
        g: int,
        h: int,
    ) -> None:
        self.own_scalars = own_scalars
        self.own_points = own_points
        self.g_vec = g_vec
        self.h_vec = h_vec
        self.g = g
        self.h = h


def _check_terms(terms: Sequence[_Terms]) -> bool:
    """``sum_k e_k * check_k == 0`` with fresh random ``e_k`` (one MSM)."""
    own_scalars: list[int] = []
    own_points: list[Point] = []
    g_acc: list[int] = []
    h_acc: list[int] = []
    g_total = 0
    h_total = 0
    for tm in terms:
        e = random_scalar() or 1
        own_scalars.extend(k * e % Q for k in tm.own_scalars)
        own_points.extend(tm.own_points)
        if len(tm.g_vec) > len(g_acc):
            g_acc.extend([0] * (len(tm.g_vec) - len(g_acc)))
            h_acc.extend([0] * (len(tm.h_vec) - len(h_acc)))
        for i, k in enumerate(tm.g_vec):
            g_acc[i] += k * e
        for i, k in enumerate(tm.h_vec):
            h_acc[i] += k * e
        g_total += tm.g * e
        h_total += tm.h * e
    gv, hv = generators(len(g_acc))
    gt, ht = _gen_tables_when_worth(len(g_acc))
    kt = len(gt)
    return _lincomb_fixed(
        [(h_total, _h_table()), (g_total, _g_table()), *zip(g_acc, gt, strict=False), *zip(h_acc, ht, strict=False)],
        [*own_scalars, *g_acc[kt:], *h_acc[kt:]],
        [*own_points, *gv[kt:], *hv[kt:]],
    ).is_identity


def _verify(t: Transcript, vs: Sequence[Point], n: int, m: int, proof: bytes, tag: int) -> bool:
    terms = _terms(t, vs, n, m, proof, tag)
    return terms is not None and _check_terms([terms])


def _terms(
    t: Transcript,
    vs: Sequence[Point],
    n: int,
    m: int,
    proof: bytes,
    tag: int,
    fold: int = 1,
    version: int = VERSION,
) -> _Terms | None:
    """Decode strictly, replay the transcript and return the weighted terms of the
    single-multiplication check, or ``None`` if a challenge is degenerate.

    ``fold``: the inner-product argument stopped at vectors of that length,
    sent in the clear. The check is section 6.2's with the ``s`` vector over
    the folded (high) index bits only: ``G_j`` gets ``-z - a_(j mod fold) s_q``
    with ``q = j div fold``, ``H_j`` likewise with ``b`` and ``1/s_q``."""
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    mp = len(vs)
    nm = n * mp
    fold = min(fold, nm)
    k = (nm // fold).bit_length() - 1
    expected = _size_for(nm, fold)
    if len(proof) != expected:
        raise ProofError(f"bulletproof must be {expected} bytes, got {len(proof)}")
    if proof[0] != version:
        raise ProofError(f"unsupported proof version {proof[0]}")
    if proof[1] != tag:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected {tag:#04x}")
    if proof[2] != n or int.from_bytes(proof[3:7], "big") != m:
        raise ProofError("bulletproof is for another bit length or number of values")
    body = ArgumentBody.read(proof, 7, k, fold)
    big_a, big_s, big_t1, big_t2 = body.big_a, body.big_s, body.big_t1, body.big_t2
    t_x, tau_x, mu, ls, rs = body.t_x, body.tau_x, body.mu, body.ls, body.rs
    a_vec, b_vec = body.a, body.b

    t.append_point(b"bp/A", big_a)
    t.append_point(b"bp/S", big_s)
    y = t.challenge_scalar(b"bp/y")
    z = t.challenge_scalar(b"bp/z")
    t.append_point(b"bp/T1", big_t1)
    t.append_point(b"bp/T2", big_t2)
    x = t.challenge_scalar(b"bp/x")
    t.append_scalar(b"bp/t_x", t_x)
    t.append_scalar(b"bp/tau_x", tau_x)
    t.append_scalar(b"bp/mu", mu)
    w = t.challenge_scalar(b"bp/w")
    us = _verifier_challenges(t, ls, rs)
    if 0 in us or y == 0:
        return None  # probability 2^-256; keeps inversions defined
    # s_q over the folded (high) index bits only (section 6.2).
    nq = nm // fold
    u_sq, u_inv_sq, s = _verifier_scalars(us, nq)
    y_inv = pow(y, -1, Q)
    y_inv_pow = _powers(y_inv, nm)
    zz = z * z % Q
    zj = _powers(z, mp)
    two = [1 << i for i in range(n)]
    c = random_scalar() or 1  # fresh batching weight: the prover cannot predict it
    lf = fold.bit_length() - 1
    mask = fold - 1
    g_sc = [(-z - a_vec[i & mask] * s[i >> lf]) % Q for i in range(nm)]
    h_sc = [
        (z + y_inv_pow[i] * (zz * zj[i // n] % Q * two[i % n] - b_vec[i & mask] * s[nq - 1 - (i >> lf)])) % Q
        for i in range(nm)
    ]
    base_g = (w * (t_x - _ip(a_vec, b_vec)) + c * (_delta(n, mp, y, z) - t_x)) % Q
    base_h = (-mu - c * tau_x) % Q
    own = [1, x, c * x % Q, c * x % Q * x % Q, *u_sq, *u_inv_sq]
    own += [c * zz % Q * zj[j] % Q for j in range(mp)]
    own_points = [big_a, big_s, big_t1, big_t2, *ls, *rs, *vs]
    return _Terms(own, own_points, g_sc, h_sc, base_g, base_h)


def _padded(vs: Sequence[Point]) -> list[Point]:
    return list(vs) + [Point.identity()] * (_pad(len(vs)) - len(vs))


def prove(
    commitments: Sequence[Commitment], openings: Sequence[Opening], n: int, ctx: ProofContext
) -> bytes:
    """Aggregated proof that every committed value lies in ``[0, 2^n)``."""
    m = len(commitments)
    _check_params(n, m)
    if len(openings) != m:
        raise ValueError("one opening per commitment is needed")
    if any(not 0 <= o.m < 1 << n for o in openings):
        raise ValueError(f"value out of range [0, 2^{n})")
    vs = _padded([c.point for c in commitments])
    values = [o.m for o in openings] + [0] * (len(vs) - m)
    blinds = [o.r for o in openings] + [0] * (len(vs) - m)
    t = _start(_P_RANGE, ctx, n, m, vs)
    return _prove(t, values, blinds, n, TAG_BULLETPROOF, m)


def verify(commitments: Sequence[Commitment], n: int, proof: bytes, ctx: ProofContext) -> bool:
    """Verify :func:`prove` with one multi-scalar multiplication (section 6.2)."""
    m = len(commitments)
    _check_params(n, m)
    vs = _padded([c.point for c in commitments])
    return _verify(_start(_P_RANGE, ctx, n, m, vs), vs, n, m, proof, TAG_BULLETPROOF)


def _bounded_targets(m_max: int) -> tuple[int, int]:
    if not isinstance(m_max, int) or not 0 <= m_max < 1 << 64:
        raise ProofError("m_max must be in [0, 2^64)")
    bits = max(1, m_max.bit_length())
    n = next(x for x in _ALLOWED_N if x >= bits)
    # v + shift in [0, 2^n) and v in [0, 2^n)  <=>  0 <= v <= m_max (no wrap: 2^65 << Q).
    return n, (1 << n) - 1 - m_max


def _bounded_points(commitments: Sequence[Commitment], shift: int) -> list[Point]:
    sg = G * shift
    return [c.point for c in commitments] + [c.point + sg for c in commitments]


def prove_bounded(
    commitments: Sequence[Commitment], openings: Sequence[Opening], m_max: int, ctx: ProofContext
) -> bytes:
    """Prove ``0 <= v_i <= m_max`` for every reading: one aggregated proof over
    ``v_i`` and ``v_i + (2^n - 1 - m_max)`` (the standard shift)."""
    n, shift = _bounded_targets(m_max)
    m = len(commitments)
    _check_params(n, 2 * m)
    if len(openings) != m:
        raise ValueError("one opening per commitment is needed")
    if any(not 0 <= o.m <= m_max for o in openings):
        raise ValueError("value out of range [0, m_max]")
    vs = _padded(_bounded_points(commitments, shift))
    values = [o.m for o in openings] + [o.m + shift for o in openings]
    blinds = [o.r for o in openings] * 2
    values += [0] * (len(vs) - 2 * m)
    blinds += [0] * (len(vs) - 2 * m)
    t = _start(_P_BOUNDED, ctx, n, m, vs)
    t.append_u64(b"bp/m_max", m_max)
    return _prove(t, values, blinds, n, TAG_BULLETPROOF_BOUNDED, m)


def verify_bounded(
    commitments: Sequence[Commitment], m_max: int, proof: bytes, ctx: ProofContext
) -> bool:
    """Verify :func:`prove_bounded`."""
    n, shift = _bounded_targets(m_max)
    m = len(commitments)
    _check_params(n, 2 * m)
    vs = _padded(_bounded_points(commitments, shift))
    t = _start(_P_BOUNDED, ctx, n, m, vs)
    t.append_u64(b"bp/m_max", m_max)
    return _verify(t, vs, n, m, proof, TAG_BULLETPROOF_BOUNDED)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One proof for :func:`verify_batch`: a range proof over ``commitments`` with
    ``n`` bits, or (``m_max`` set) a bounded proof of ``0 <= v <= m_max``."""

    commitments: Sequence[Commitment]
    proof: bytes
    ctx: ProofContext
    n: int = 0
    m_max: int | None = None


def verify_batch(items: Sequence[BatchItem]) -> bool:
    """Verify many proofs with one multi-scalar multiplication.

    Each proof's check (section 6.2) is scaled by a fresh random weight and the
    checks are summed (batch verification, section 6.2; as in dalek's batch
    verifier): the vector generators, ``G`` and ``H`` are shared, so ``k``
    proofs of ``N`` bits cost about ``2N + k(2 log N + 4 + m)`` multiplications
    instead of ``k(2N + 2 log N + 4 + m)``. A batch containing a false proof
    passes only with probability about ``1/Q``; malformed proofs raise
    ``ProofError``. On ``False`` the caller may verify one by one to find it.
    """
    if not items:
        raise ProofError("empty batch")
    terms: list[_Terms] = []
    for item in items:
        if not isinstance(item, BatchItem):
            raise ProofError("batch items must be BatchItem")
        m = len(item.commitments)
        if item.m_max is None:
            n = item.n
            _check_params(n, m)
            vs = _padded([c.point for c in item.commitments])
            t = _start(_P_RANGE, item.ctx, n, m, vs)
            tag = TAG_BULLETPROOF
        else:
            n, shift = _bounded_targets(item.m_max)
            _check_params(n, 2 * m)
            vs = _padded(_bounded_points(item.commitments, shift))
            t = _start(_P_BOUNDED, item.ctx, n, m, vs)
            t.append_u64(b"bp/m_max", item.m_max)
            tag = TAG_BULLETPROOF_BOUNDED
        tm = _terms(t, vs, n, m, item.proof, tag)
        if tm is None:
            return False
        terms.append(tm)
    return _check_terms(terms)
