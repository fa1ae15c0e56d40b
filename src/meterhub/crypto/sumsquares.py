"""The sum of squares ``S = sum M_h^2`` of committed values as one inner-product argument.

Version 2 of the sum-of-squares proof (tag ``0x12``, the tag of version 1 in
:mod:`meterhub.crypto.rangeproof`, which stays verifiable there). Version 1 commits to
every square and proves each one (about 100 bytes and four scalar multiplications per
value); version 2 is logarithmic in size and its check is one multi-scalar
multiplication, whose shared part (the vector generators) is paid once per batch of
customers.

Statement: commitments ``C_h = M_h G + R_h H`` (``h < n``, zero-padded to
``N = 2^k >= n`` with the identity) and a public ``S`` with blinding ``r_S``
(``C_S = S G + r_S H``); the prover knows every ``M_h, R_h`` and claims ``S = <M, M>``.
The construction is that of Bünz et al., "Bulletproofs", IEEE S&P 2018, section 4.1/4.3
(range proof), with other constraints, built only from the inner-product argument of
:mod:`meterhub.crypto.bulletproofs` (section 3, protocol 2) over the vector generators
``G_i, H_i`` there:

1. ``A = <a, G_vec> + <a, H_vec> + alpha H`` with ``a = M`` on both sides, and
   ``S' = <s_L, G_vec> + <s_R, H_vec> + rho H`` with random ``s_L, s_R``; challenges
   ``y``, ``z`` and a seed for the link coefficients ``c_h`` (128 bits each,
   :func:`link_coefficients`), all from the Fiat-Shamir transcript after ``A, S'``.
2. With ``u = (1, y, .., y^(N-1))``, ``d_L = z u + z^2 c`` and ``d_R = -z u``:
   ``l(X) = a + d_R + s_L X``, ``r(X) = a + d_L + s_R X``,
   ``t(X) = <l(X), r(X)> = t0 + t1 X + t2 X^2`` where, for an honest prover,
   ``t0 = S + z^2 V + delta``, ``V = <M, c>``, ``delta = <d_R, d_L>``. ``T1, T2`` commit to
   ``t1, t2``; after challenge ``x`` the prover sends ``t_x = t(x)``,
   ``tau_x = tau2 x^2 + tau1 x + r_S + z^2 <R, c>`` and ``mu = alpha + rho x``.
3. The verifier checks ``t_x G + tau_x H == C_S + z^2 C_V + delta G + x T1 + x^2 T2``
   with ``C_V = sum c_h C_h``, and, by the inner-product argument over
   ``P = A + x S' + <d_R, G_vec> + <d_L, H_vec> - mu H``, that ``P`` opens to ``l, r``
   with ``<l, r> = t_x``. Both checks are one equation (section 6.2), see
   :class:`SquaresCheck`.

Soundness (docs/proofs.md, "Sum of squares, version 2"): as in section 4.2 of the
paper, from ``t(X)`` at three ``x`` the extractor obtains ``a_L, a_R`` in ``A`` with
``t0 = <a_L, a_R> + z <a_L - a_R, u> + z^2 <a_L, c> + delta`` (the committed values, fixed
before ``y, z, c``). Equality with ``S + z^2 V + delta`` for every ``z`` of a
polynomial identity of degree 2 gives ``<a_L, a_R> = S``, ``<a_L - a_R, u> = 0`` and
``<a_L, c> = V = <M, c>``; since ``u`` (powers of ``y``) and ``c`` (random-oracle
outputs of 128 bits) come after ``A``, ``a_L = a_R`` and ``a_L = M`` except with
probability about ``N/Q + 2^-128`` per oracle query. Zero knowledge: ``l, r`` are masked
by ``s_L, s_R``; ``t1, t2`` by ``tau1, tau2``; ``A, S'`` by ``alpha, rho`` (section 4.2).

Byte encoding (big-endian)::

    version 0x02 | tag 0x12 | n (4)
    | A | S' | T1 | T2          (4 x 33, compressed points)
    | t_x | tau_x | mu          (3 x 32, scalars < Q)
    | L_1..L_k | R_1..R_k       (2k x 33, k = log2 N)
    | a | b                     (2 x 32)

The transcript (protocol ``meterhub/sum-of-squares/ipa/v2``) absorbs the proof context
(meter, period, statement label), ``n``, every ``C_h``, ``S`` and ``r_S`` before any
challenge, so a proof is bound to its meter, period and values and cannot be moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .bulletproofs._tables import _g_table, _h_table, _lincomb_fixed, generator_array, generators
from .bulletproofs.ipa import (
    ArgumentBody,
    _batch_inverse,
    _body_size,
    _challenge_squares,
    _ip,
    _ipa_prove,
    _pad,
    _powers,
    _prove_polynomial,
    _verifier_challenges,
)
from .group import Point, PointArray, Q, msm, msm_fixed_plan, random_scalar
from .group.arrays import _limbs
from .pedersen import Commitment, Opening, commit
from .transcript import ProofContext, ProofError, Transcript

__all__ = [
    "VERSION_IPA",
    "TAG_SUM_SQUARES",
    "MAX_VALUES",
    "SquaresCheck",
    "check_equations",
    "link_coefficient_bytes",
    "link_coefficients",
    "proof_size",
    "prove",
    "squares_check",
    "verify",
    "verify_batch",
]

VERSION_IPA = 0x02
TAG_SUM_SQUARES = 0x12
#: Largest number of values (the generators are derived on demand and cached).
MAX_VALUES = 1 << 14
_PROTOCOL = b"meterhub/sum-of-squares/ipa/v2"
_LINK_DST = b"meterhub/v1/sum-of-squares/link"


def proof_size(n: int) -> int:
    """Encoded size of a version-2 proof over ``n`` values."""
    k = _pad(n).bit_length() - 1
    return 6 + _body_size(k, 1)


#: ``h`` as 4 big-endian bytes for the indices up to the largest count asked so far
#: (at most MAX_VALUES); replaced, never changed in place, so threads may share it.
_INDEX_BYTES: tuple[bytes, ...] = ()


def link_coefficient_bytes(seed: bytes, count: int) -> bytes:
    """The link coefficients' 16-byte big-endian encodings, concatenated (the digests'
    first halves, :func:`link_coefficients`). The prefix ``len || DST || seed`` is hashed
    once and its state copied per index; the halves are cut from all digests at once."""
    global _INDEX_BYTES
    suffixes = _INDEX_BYTES
    if len(suffixes) < count:
        suffixes = tuple(h.to_bytes(4, "big") for h in range(count))
        if count <= MAX_VALUES:
            _INDEX_BYTES = suffixes
    copy = hashlib.sha256(bytes([len(_LINK_DST)]) + _LINK_DST + seed).copy
    out = []
    for suffix in suffixes[:count]:
        d = copy()
        d.update(suffix)
        out.append(d.digest())
    return np.frombuffer(b"".join(out), dtype=np.uint8).reshape(count, 32)[:, :16].tobytes()


def link_coefficients(seed: bytes, count: int) -> list[int]:
    """``c_h = SHA-256(len || DST || seed || h)``, first 16 bytes: 128-bit coefficients
    that tie the vector in ``A`` to the commitments ``C_h``. Short on purpose: the
    verifier multiplies the data points by them, and 128 bits keep a cheating
    prover's chance at ``2^-128`` per oracle query."""
    raw = link_coefficient_bytes(seed, count)
    return [int.from_bytes(raw[16 * h : 16 * h + 16], "big") for h in range(count)]


def _check_count(n: int) -> None:
    if not 0 < n <= MAX_VALUES:
        raise ProofError(f"need 1 to {MAX_VALUES} values")


def _transcript(ctx: ProofContext, points: Sequence[Point] | bytes, squares: int, blinding: int) -> Transcript:
    """``points`` as Points or as their concatenated 33-byte encodings (the same bytes
    :meth:`Transcript.append_points` absorbs)."""
    if not 0 <= squares < Q or not 0 <= blinding < Q:
        raise ProofError("sum of squares and its blinding must be below the group order")
    t = ctx.transcript(_PROTOCOL)
    if isinstance(points, bytes):
        n = len(points) // 33
        t.append_u64(b"sos/n", n)
        t.append_message(b"sos/C", n.to_bytes(8, "big") + points)
    else:
        t.append_u64(b"sos/n", len(points))
        t.append_points(b"sos/C", points)
    t.append_scalar(b"sos/S", squares)
    t.append_scalar(b"sos/r_S", blinding)
    return t


def _challenges(t: Transcript, big_a: Point, big_s: Point, n: int, nn: int) -> tuple[int, int, list[int], list[int], list[int]]:
    """``y, z``, the link coefficients and ``d_L, d_R`` (module docstring, step 2)."""
    t.append_point(b"sos/A", big_a)
    t.append_point(b"sos/S'", big_s)
    y = t.challenge_scalar(b"sos/y")
    z = t.challenge_scalar(b"sos/z")
    c = link_coefficients(t.challenge_bytes(b"sos/c", 32), n) + [0] * (nn - n)
    zz = z * z % Q
    u = _powers(y, nn)
    d_l = [(z * ui + zz * ci) % Q for ui, ci in zip(u, c, strict=True)]
    d_r = [(-z * ui) % Q for ui in u]
    return y, z, c, d_l, d_r


def _commit_vectors(m: list[int], s_l: list[int], s_r: list[int], alpha: int, rho: int, nn: int) -> tuple[Point, Point]:
    """``A = <m, G_vec> + <m, H_vec> + alpha H`` and ``S' = <s_L, G_vec> + <s_R, H_vec> + rho H``
    (module docstring, step 1) with work that does not depend on the readings (docs/privacy.md,
    "Timing"). ``A`` is never a multi-scalar multiplication over the readings themselves (a
    month of equal or zero hours would take a shorter path and the grid operator, who asks
    for the statement, could time it): ``A + S'`` has the scalars ``m + s_L``, ``m + s_R``,
    uniform mod ``Q`` whatever the readings, so ``A = (A + S') - S'`` costs two multi-scalar
    multiplications with the same fixed plan (:func:`meterhub.crypto.group.msm_fixed_plan`,
    chosen from ``2N`` and 256 bits) and random scalars. The points, and so the proof's bytes,
    are those of the direct computation."""
    gens = generator_array(nn)
    th = _h_table()
    masked = [(a + s) % Q for a, s in zip(m + m, s_l + s_r, strict=True)]
    big_s = _lincomb_fixed([(rho, th)]) + msm_fixed_plan(s_l + s_r, gens)
    big_as = _lincomb_fixed([((alpha + rho) % Q, th)]) + msm_fixed_plan(masked, gens)
    return big_as - big_s, big_s


def prove(
    commitments: Sequence[Commitment], openings: Sequence[Opening], ctx: ProofContext
) -> tuple[bytes, Commitment, Opening]:
    """Prove ``S = sum m_h^2``; returns the proof, ``C_S`` and its opening ``(S, r_S)``
    (both published by the profiling applet next to the proof)."""
    n = len(commitments)
    _check_count(n)
    if len(openings) != n:
        raise ValueError("one opening per commitment is needed")
    nn = _pad(n)
    m = [o.m % Q for o in openings] + [0] * (nn - n)
    rr = [o.r for o in openings] + [0] * (nn - n)
    squares = sum(o.m * o.m for o in openings)
    if squares >= Q:
        raise ValueError("sum of squares does not fit below the group order")
    r_s = random_scalar()
    t = _transcript(ctx, [c.point for c in commitments], squares, r_s)
    gv, hv = generators(nn)
    alpha, rho = random_scalar(), random_scalar()
    s_l = [random_scalar() for _ in range(nn)]
    s_r = [random_scalar() for _ in range(nn)]
    big_a, big_s = _commit_vectors(m, s_l, s_r, alpha, rho, nn)
    _, z, c, d_l, d_r = _challenges(t, big_a, big_s, n, nn)
    l0 = [(a + d) % Q for a, d in zip(m, d_r, strict=True)]
    r0 = [(a + d) % Q for a, d in zip(m, d_l, strict=True)]
    tau0 = r_s + z * z % Q * _ip(rr, c)
    big_t1, big_t2, t_x, tau_x, mu, lv, rv, w = _prove_polynomial(t, b"sos/", l0, s_l, r0, s_r, tau0, alpha, rho)
    ls, rs, a, b = _ipa_prove(t, w, gv, hv, [1] * nn, lv, rv)
    head = bytes([VERSION_IPA, TAG_SUM_SQUARES]) + n.to_bytes(4, "big")
    proof = head + ArgumentBody(big_a, big_s, big_t1, big_t2, t_x, tau_x, mu, ls, rs, a, b).to_bytes()
    opening = Opening(squares, r_s)
    return proof, commit(squares, r_s)[0], opening


@dataclass(frozen=True)
class SquaresCheck:
    """One proof's verification equation, with every term on the left and zero on the
    right (section 6.2): ``sum own_scalars * own_points + <g_vec, G_vec> + <h_vec, H_vec>
    + g G + h H + sum_h link[h] C_h == 0``. The inner-product part carries a fresh
    secret weight; the ``t`` check is scaled by ``-1/z^2`` so that the data points
    ``C_h`` keep their short link coefficients and can share one multi-scalar
    multiplication with other linear checks on the same points (the caller's own
    secret weights make that sum sound, docs/proofs.md).

    The generator coefficients are kept in their factored form (section 6.2):
    ``g_vec_i = g_u u_i + g_s s_i`` and ``h_vec_i = h_u u_i + h_c c_i + h_s s_(N-1-i)``
    with ``u_i = y^i``, the argument's vector ``s`` and the link coefficients ``c``
    (zero past ``n``). ``u`` and ``s`` are themselves kept split at bit ``lo_bits`` of
    the index (``i = a 2^lo_bits + b``): ``u_i = u_hi[a] u_lo[b]`` and
    ``s_i = s_hi[a] s_lo[b]`` (both are products over the bits of ``i``), so neither
    vector is ever written out: a batch forms every generator's scalar from the tables
    by exact limb products (:func:`_generator_scalars`), one reduction per generator for
    the whole batch."""

    own_scalars: tuple[int, ...]
    own_points: tuple[Point, ...]
    u_lo: list[int]
    u_hi: list[int]
    s_lo: list[int]
    s_hi: list[int]
    g_u: int
    g_s: int
    h_u: int
    h_c: int
    h_s: int
    g: int
    h: int
    link_bytes: bytes

    @cached_property
    def link(self) -> tuple[int, ...]:
        """The link coefficients ``c_h`` (from :attr:`link_bytes`, 16 bytes each)."""
        lb = self.link_bytes
        return tuple(int.from_bytes(lb[16 * h : 16 * h + 16], "big") for h in range(len(lb) // 16))

    @property
    def size(self) -> int:
        """``N``, the padded vector length."""
        return len(self.u_lo) * len(self.u_hi)

    @property
    def u(self) -> list[int]:
        """``u_i = y^i`` (reduced), written out."""
        return [hi * lo % Q for hi in self.u_hi for lo in self.u_lo]

    @property
    def s(self) -> list[int]:
        """The argument's ``s_i`` (reduced), written out."""
        return [hi * lo % Q for hi in self.s_hi for lo in self.s_lo]

    @property
    def g_vec(self) -> tuple[int, ...]:
        """The ``G_i`` scalars ``g_u u_i + g_s s_i`` (reduced)."""
        return tuple((self.g_u * ui + self.g_s * si) % Q for ui, si in zip(self.u, self.s, strict=True))

    @property
    def h_vec(self) -> tuple[int, ...]:
        """The ``H_i`` scalars ``h_u u_i + h_c c_i + h_s s_(N-1-i)`` (reduced)."""
        u = self.u
        c = list(self.link) + [0] * (len(u) - len(self.link))
        return tuple(
            (self.h_u * ui + self.h_c * ci + self.h_s * si) % Q
            for ui, ci, si in zip(u, c, self.s[::-1], strict=True)
        )


def _split_powers(y: int, k: int) -> tuple[list[int], list[int]]:
    """``y^b`` for ``b < 2^lo`` and ``y^(a 2^lo)`` for ``a < 2^(k - lo)``, ``lo = k // 2``
    (reduced): ``y^i = hi[a] lo[b]`` for ``i = a 2^lo + b``."""
    lo_bits = k // 2
    lo = [1] * (1 << lo_bits)
    for i in range(1, len(lo)):
        lo[i] = lo[i - 1] * y % Q
    step = lo[-1] * y % Q  # y^(2^lo)
    hi = [1] * (1 << (k - lo_bits))
    for i in range(1, len(hi)):
        hi[i] = hi[i - 1] * step % Q
    return lo, hi


def _split_s(
    us: Sequence[int], k: int, u_inv: Sequence[int] | None = None
) -> tuple[list[int], list[int], list[int], list[int]]:
    """``u_j^2``, ``u_j^-2`` and the argument's ``s`` (section 6.2, as
    :func:`meterhub.crypto.bulletproofs.ipa._verifier_scalars`) split at bit
    ``lo = k // 2`` of the index: ``s_i = hi[a] lo[b]`` for ``i = a 2^lo + b``. Bit ``j``
    of ``i`` multiplies by ``u_(k-1-j)^2`` from ``s_0 = prod u^-1``. The challenges must
    be non-zero; ``u_inv``, if given, are their inverses."""
    if u_inv is None:
        u_inv = [pow(u, -1, Q) for u in us]
    u_sq, u_inv_sq, all_inv = _challenge_squares(us, u_inv)
    lo_bits = k // 2
    lo = [all_inv]
    for j in range(lo_bits):
        f = u_sq[k - 1 - j]
        lo += [x * f % Q for x in lo]
    hi = [1]
    for j in range(lo_bits, k):
        f = u_sq[k - 1 - j]
        hi += [x * f % Q for x in hi]
    return u_sq, u_inv_sq, lo, hi


def _link_dot(u_lo: Sequence[int], u_hi: Sequence[int], link_bytes: bytes) -> int:
    """``<u, c> = sum_i y^i c_i mod Q`` over the ``n`` link coefficients (16 big-endian
    bytes each in ``link_bytes``) with ``y^i = u_hi[a] u_lo[b]``, ``i = a L + b``: for each
    ``a`` the inner sum ``sum_b u_lo[b] c_(a L + b)`` is an exact ``float64`` product of
    16-bit limbs (entries below ``2^42``), carried into one integer per ``a``; then
    ``H`` Python products. Equal to the plain sum (``test_link_dot_is_the_plain_sum``)."""
    width = len(u_lo)
    n = len(link_bytes) // 16
    rows = -(-n // width)
    if not rows:
        return 0
    pad = bytes(16 * rows * width - len(link_bytes))
    c = np.frombuffer(link_bytes + pad, dtype=">u2").reshape(rows, width, 8)[:, :, ::-1].astype(np.float64)
    # inner[a, p, q] = sum_b limb p of u_lo[b] * limb q of c_(a L + b)
    inner = np.einsum("bp,abq->apq", _limbs16(u_lo), c)
    sums = np.zeros((rows, 26), dtype=np.int64)
    for p in range(16):
        sums[:, p : p + 8] += inner[:, p, :].astype(np.int64)
    for j in range(25):
        sums[:, j + 1] += sums[:, j] >> 16
        sums[:, j] &= 0xFFFF
    raw = sums.astype("<u2").tobytes()
    return sum(uh * int.from_bytes(raw[52 * a : 52 * a + 52], "little") for a, uh in enumerate(u_hi[:rows])) % Q


def _sum_of_powers(y2: int, count: int, inv: int | None = None) -> int:
    """``sum_{i < count} y2^i`` mod ``Q`` (geometric series); ``inv``, if given, is
    ``(y2 - 1)^-1`` (the caller's batch inversion)."""
    if y2 % Q == 1:
        return count % Q
    return (pow(y2, count, Q) - 1) * (pow(y2 - 1, -1, Q) if inv is None else inv) % Q


def squares_check(
    commitments: Sequence[Commitment] | bytes, squares: int, blinding: int, proof: bytes, ctx: ProofContext
) -> SquaresCheck | None:
    """Decode strictly, replay the transcript and return the equation to check, or
    ``None`` for a degenerate challenge (probability about ``2^-256``). ``commitments``
    may be given as their concatenated 33-byte encodings (the verifier's point array,
    :meth:`meterhub.crypto.group.PointArray.to_bytes`). Malformed proofs raise
    :class:`ProofError`."""
    if isinstance(commitments, bytes):
        if len(commitments) % 33:
            raise ProofError("commitment encodings are not 33-byte points")
        n = len(commitments) // 33
        absorbed: Sequence[Point] | bytes = commitments
    else:
        n = len(commitments)
        absorbed = [c.point for c in commitments]
    _check_count(n)
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    if len(proof) < 2 or proof[0] != VERSION_IPA:
        raise ProofError(f"unsupported sum-of-squares proof version {proof[0] if proof else None}")
    if proof[1] != TAG_SUM_SQUARES:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected 0x12")
    expected = proof_size(n)
    if len(proof) != expected:
        raise ProofError(f"sum-of-squares proof must be {expected} bytes, got {len(proof)}")
    if int.from_bytes(proof[2:6], "big") != n:
        raise ProofError("sum-of-squares proof is for another number of values")
    nn = _pad(n)
    k = nn.bit_length() - 1
    body = ArgumentBody.read(proof, 6, k, 1)
    big_a, big_s, big_t1, big_t2 = body.big_a, body.big_s, body.big_t1, body.big_t2
    t_x, tau_x, mu, ls, rs = body.t_x, body.tau_x, body.mu, body.ls, body.rs
    a, b = body.a[0], body.b[0]

    # The transcript of :func:`_challenges`, without the prover's vectors d_L, d_R.
    t = _transcript(ctx, absorbed, squares, blinding)
    t.append_point(b"sos/A", big_a)
    t.append_point(b"sos/S'", big_s)
    y = t.challenge_scalar(b"sos/y")
    z = t.challenge_scalar(b"sos/z")
    link_bytes = link_coefficient_bytes(t.challenge_bytes(b"sos/c", 32), n)
    t.append_point(b"sos/T1", big_t1)
    t.append_point(b"sos/T2", big_t2)
    x = t.challenge_scalar(b"sos/x")
    t.append_scalar(b"sos/t_x", t_x)
    t.append_scalar(b"sos/tau_x", tau_x)
    t.append_scalar(b"sos/mu", mu)
    w = t.challenge_scalar(b"sos/w")
    us = _verifier_challenges(t, ls, rs)
    zz = z * z % Q
    if 0 in us or y == 0 or zz == 0:
        return None
    # One inversion for the k challenges, z^2 and y^2 - 1 (non-zero unless y^2 = 1).
    y2 = y * y % Q
    invs = _batch_inverse([*us, zz] + ([y2 - 1] if y2 != 1 else []))
    u_sq, u_inv_sq, s_lo, s_hi = _split_s(us, k, invs[:k])  # section 6.2; s^-1 is s reversed
    u_lo, u_hi = _split_powers(y, k)
    # delta = <d_R, d_L> with d_L = z u + z^2 c, d_R = -z u:
    #       = -z^2 sum y^(2i) - z^3 <u, c>   (c is zero past n), with
    # <u, c> from the split powers and the link coefficients' bytes (:func:`_link_dot`).
    uc = _link_dot(u_lo, u_hi, link_bytes)
    delta = (-zz * _sum_of_powers(y2, nn, invs[k + 1] if y2 != 1 else None) - zz * z * uc) % Q
    beta = random_scalar() or 1  # secret weight of the inner-product check
    gamma = (-invs[k]) % Q  # t check scaled so that C_V enters as sum c_h C_h
    # IPA: A + x S' + sum(u^2 L + u^-2 R) + <d_R - a s, G> + <d_L - b/s, H> - mu H + w (t_x - ab) G = 0
    #   so g_vec = beta (-z u - a s), h_vec = beta (z u + z^2 c - b s reversed)
    # t:   t_x G + tau_x H - S G - r_S H - z^2 C_V - delta G - x T1 - x^2 T2 = 0   (times gamma)
    own_s = [beta, beta * x % Q, *(beta * v % Q for v in u_sq), *(beta * v % Q for v in u_inv_sq)]
    own_s += [(-gamma * x) % Q, (-gamma * x * x) % Q]
    own_p = [big_a, big_s, *ls, *rs, big_t1, big_t2]
    g = (beta * w * (t_x - a * b) + gamma * (t_x - squares - delta)) % Q
    h = (-beta * mu + gamma * (tau_x - blinding)) % Q
    return SquaresCheck(
        tuple(own_s), tuple(own_p), u_lo, u_hi, s_lo, s_hi,
        (-beta * z) % Q, (-beta * a) % Q, beta * z % Q, beta * zz % Q, (-beta * b) % Q,
        g, h, link_bytes,
    )


def _limbs16(values: Sequence[int]) -> np.ndarray:
    """Reduced scalars as sixteen little-endian 16-bit limbs each, ``float64`` (exact),
    shape ``(len(values), 16)``."""
    raw = b"".join(v.to_bytes(32, "little") for v in values)
    return np.frombuffer(raw, dtype="<u2").reshape(len(values), 16).astype(np.float64)


def _diagonal_sums(z: np.ndarray, rows: int, cols: int, p: int, q: int) -> np.ndarray:
    """From ``z[r p + i, c q + j]`` (the products of limb ``i`` of row value ``r`` and
    limb ``j`` of column value ``c``, summed over the batch) the limb sums by weight,
    ``out[r, c, l] = sum_(i + j = l) z[r p + i, c q + j]`` (``int64``, exact)."""
    zt = z.reshape(rows, p, cols, q).transpose(0, 2, 1, 3)
    out = np.zeros((rows, cols, p + q - 1), dtype=np.float64)
    for i in range(p):
        out[:, :, i : i + q] += zt[:, :, i, :]  # at most p terms below 2^42: exact
    return out.astype(np.int64)


_BLAS: Any = None


def _one_blas_thread() -> Any:
    """A context in which numpy's BLAS runs on the calling thread only: a product of this
    size would otherwise start OpenBLAS's worker threads, whose busy waiting after the
    product costs more CPU than the product itself (threadpoolctl)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import (
            ThreadpoolController,  # imported on first use: only batches need it
        )

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


#: Statements per product in :func:`_generator_scalars`: every entry of a limb product
#: is a sum of at most ``2 x 512 x (2^16 - 1)^2 < 2^42`` and stays exact in ``float64``.
_FOLD_CHUNK = 512


#: Batches from this many statements on take the limb products of
#: :func:`_generator_scalars` (about 10 ms per batch plus 0.2 ms per statement here);
#: smaller ones add the products in Python (about 1.1 ms per statement).
_LIMB_PRODUCTS_FROM = 12


def _generator_scalars_plain(parts: Sequence[tuple[SquaresCheck, int, int, int, int, int]], nn: int) -> list[int]:
    """:func:`_generator_scalars` with Python integers: per statement and index
    ``i = a L + b`` two products each for ``G_i`` and ``H_i`` from the split tables, and
    ``h_c c_i``, added unreduced; one reduction per generator."""
    g_acc = [0] * nn
    h_acc = [0] * nn
    for ck, gu, gs, hu, hc, hs in parts:
        width = len(ck.u_lo)
        u_lo, s_lo, s_lo_rev = ck.u_lo, ck.s_lo, ck.s_lo[::-1]
        for a, (uh, sh, shr) in enumerate(zip(ck.u_hi, ck.s_hi, ck.s_hi[::-1], strict=True)):
            lo, hi = a * width, a * width + width
            ga, gb = gu * uh % Q, gs * sh % Q
            ha, hb = hu * uh % Q, hs * shr % Q
            g_acc[lo:hi] = [acc + ga * x + gb * y for acc, x, y in zip(g_acc[lo:hi], u_lo, s_lo, strict=True)]
            h_acc[lo:hi] = [acc + ha * x + hb * y for acc, x, y in zip(h_acc[lo:hi], u_lo, s_lo_rev, strict=True)]
        h_acc[: len(ck.link)] = [acc + hc * ci for acc, ci in zip(h_acc, ck.link, strict=False)]
    return [k % Q for k in (*g_acc, *h_acc)]


def _generator_scalars(parts: Sequence[tuple[SquaresCheck, int, int, int, int, int]], nn: int) -> list[int]:
    """The batch's ``G_i`` then ``H_i`` scalars, reduced: ``sum_k g_vec_i`` and
    ``sum_k h_vec_i`` of every statement ``k`` with its weighted factored scalars
    ``(g_u, g_s, h_u, h_c, h_s)`` (already times ``e_k``).

    With ``i = a L + b`` (:class:`SquaresCheck`), ``g_vec_i = (g_u u_hi[a]) u_lo[b] +
    (g_s s_hi[a]) s_lo[b]``, and ``h_vec_i = (h_u u_hi[a]) u_lo[b] + (h_s s_hi[H-1-a])
    s_lo[L-1-b] + h_c c_i`` (``s_(N-1-i)`` has every index bit flipped). Summed over the
    batch, each is an integer matrix product over 16-bit limbs: row values (left factors,
    ``H`` of them per statement and term) times column values (``L``), one ``float64``
    product whose entries are exact integers below ``2^53`` (:data:`_FOLD_CHUNK`), then
    the limb products are added by weight and carried, and each generator's integer is
    reduced once. The link term is a product of ``h_c`` limbs with the link coefficients'
    bytes. The same integers as adding ``e_k g_vec_k`` one statement at a time
    (``test_generator_scalars_equal_the_vector_sums``). Batches below
    :data:`_LIMB_PRODUCTS_FROM` statements take :func:`_generator_scalars_plain`."""
    if len(parts) < _LIMB_PRODUCTS_FROM:
        return _generator_scalars_plain(parts, nn)
    acc_g = np.zeros((nn, 34), dtype=np.int64)
    acc_h = np.zeros((nn, 34), dtype=np.int64)
    by_size: dict[tuple[int, int], list[tuple[SquaresCheck, int, int, int, int, int]]] = {}
    for part in parts:
        ck = part[0]
        by_size.setdefault((len(ck.u_hi), len(ck.u_lo)), []).append(part)
    for (rows, cols), group in by_size.items():
        size = rows * cols
        for at in range(0, len(group), _FOLD_CHUNK):
            chunk = group[at : at + _FOLD_CHUNK]
            left_g: list[int] = []
            left_h: list[int] = []
            right_g: list[int] = []
            right_h: list[int] = []
            hcs: list[int] = []
            links: list[bytes] = []
            for ck, gu, gs, hu, hc, hs in chunk:
                left_g += [gu * x % Q for x in ck.u_hi] + [gs * x % Q for x in ck.s_hi]
                left_h += [hu * x % Q for x in ck.u_hi] + [hs * x % Q for x in reversed(ck.s_hi)]
                right_g += ck.u_lo + ck.s_lo
                right_h += ck.u_lo + ck.s_lo[::-1]
                hcs.append(hc)
                links.append(ck.link_bytes + bytes(16 * size - len(ck.link_bytes)))
            terms = 2 * len(chunk)
            # h_c c_i: 16 limbs of h_c times the 8 big-endian 16-bit limbs of each c_i.
            xc = _limbs16(hcs)
            yc = np.frombuffer(b"".join(links), dtype=">u2").reshape(len(chunk), size, 8)[:, :, ::-1]
            yc = yc.astype(np.float64).reshape(len(chunk), size * 8)
            xs = [(np.ascontiguousarray(_limbs16(left).reshape(terms, rows * 16).T),
                   _limbs16(right).reshape(terms, cols * 16))
                  for left, right in ((left_g, right_g), (left_h, right_h))]
            xc = np.ascontiguousarray(xc.T)
            with _one_blas_thread():
                zg, zh = (x @ y for x, y in xs)
                zc = xc @ yc
            acc_g[:size, :31] += _diagonal_sums(zg, rows, cols, 16, 16).reshape(size, 31)
            acc_h[:size, :31] += _diagonal_sums(zh, rows, cols, 16, 16).reshape(size, 31)
            acc_h[:size, :23] += _diagonal_sums(zc, 1, size, 16, 8).reshape(size, 23)
    out: list[int] = []
    for acc in (acc_g, acc_h):
        for j in range(33):  # carry: every limb below 2^16, the top one takes the rest
            acc[:, j + 1] += acc[:, j] >> 16
            acc[:, j] &= 0xFFFF
        if (acc[:, 33] >> 16).any():
            raise AssertionError("generator scalar above 2^544")  # the bounds above exclude it
        raw = acc.astype("<u2").tobytes()
        out += [int.from_bytes(raw[68 * i : 68 * i + 68], "little") % Q for i in range(nn)]
    return out


def check_equations(items: Sequence[tuple[SquaresCheck, Point]]) -> bool:
    """``sum_k e_k (check_k) == 0`` with fresh secret ``e_k`` (the first 1): each item's data
    term is given as the point ``D_k`` (already ``sum link * C_h`` plus the caller's
    other checks on the same points), so it costs one multiplication here. The vector
    generators' part (``2N`` points, full-size scalars) is one Pippenger multi-scalar
    multiplication over their cached point array; ``G`` and ``H`` use fixed-base tables.
    The generator scalars come from each check's factored form (:class:`SquaresCheck`)
    by exact integer matrix products over limbs (:func:`_generator_scalars`), reduced
    once per generator."""
    own_k: list[int] = []
    own_p: list[Point] = []
    nn = max(ck.size for ck, _ in items)
    parts: list[tuple[SquaresCheck, int, int, int, int, int]] = []
    g_tot = h_tot = 0
    for i, (ck, data) in enumerate(items):
        e = 1 if i == 0 else random_scalar() or 1
        own_k.extend(v * e % Q for v in ck.own_scalars)
        own_p.extend(ck.own_points)
        own_k.append(e)
        own_p.append(data)
        gu, gs, hu, hc, hs = (v * e % Q for v in (ck.g_u, ck.g_s, ck.h_u, ck.h_c, ck.h_s))
        parts.append((ck, gu, gs, hu, hc, hs))
        g_tot += ck.g * e
        h_tot += ck.h * e
    gens = generator_array(nn)
    own = PointArray.from_points(own_p)
    arr = PointArray(np.concatenate([gens.rows, own.rows]), np.concatenate([gens.live, own.live]))
    # Every scalar is distinct and full size: straight to Pippenger on the limbs.
    vec = arr.msm_limbs(_limbs(_generator_scalars(parts, nn) + own_k))
    return (_lincomb_fixed([(g_tot, _g_table()), (h_tot, _h_table())]) + vec).is_identity


def verify(
    commitments: Sequence[Commitment], squares: int, blinding: int, proof: bytes, ctx: ProofContext
) -> bool:
    """Verify one version-2 proof that the commitments' values have ``sum m^2 = squares``
    (``blinding`` is the published ``r_S``). Malformed proofs raise :class:`ProofError`."""
    return verify_batch([(commitments, squares, blinding, proof, ctx)])


def verify_batch(
    items: Sequence[tuple[Sequence[Commitment], int, int, bytes, ProofContext]],
) -> bool:
    """Verify many version-2 proofs with one multi-scalar multiplication over the
    shared generators (each proof's equation under a fresh secret weight, as
    :func:`meterhub.crypto.bulletproofs.verify_batch`). ``False`` if any fails."""
    if not items:
        raise ProofError("empty batch")
    checks: list[tuple[SquaresCheck, Point]] = []
    for commitments, squares, blinding, proof, ctx in items:
        ck = squares_check(commitments, squares, blinding, proof, ctx)
        if ck is None:
            return False
        checks.append((ck, msm(ck.link, [c.point for c in commitments])))
    return check_equations(checks)
