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

import numpy as np

from .bulletproofs._tables import _g_table, _h_table, _lincomb_fixed, generator_array, generators
from .bulletproofs.ipa import (
    ArgumentBody,
    _body_size,
    _ip,
    _ipa_prove,
    _pad,
    _powers,
    _prove_polynomial,
    _verifier_challenges,
    _verifier_scalars,
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


def link_coefficient_bytes(seed: bytes, count: int) -> bytes:
    """The link coefficients' 16-byte big-endian encodings, concatenated (the digests'
    first halves, :func:`link_coefficients`)."""
    pre = hashlib.sha256(bytes([len(_LINK_DST)]) + _LINK_DST + seed)
    copy = pre.copy
    out = []
    for h in range(count):
        d = copy()
        d.update(h.to_bytes(4, "big"))
        out.append(d.digest()[:16])
    return b"".join(out)


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
    (zero past ``n``), so that a batch adds each statement's part with five
    multiplications per generator and one reduction per generator for the whole batch
    (:func:`check_equations`)."""

    own_scalars: tuple[int, ...]
    own_points: tuple[Point, ...]
    u: list[int]
    s: list[int]
    g_u: int
    g_s: int
    h_u: int
    h_c: int
    h_s: int
    g: int
    h: int
    link: tuple[int, ...]
    link_bytes: bytes = b""

    @property
    def g_vec(self) -> tuple[int, ...]:
        """The ``G_i`` scalars ``g_u u_i + g_s s_i`` (reduced)."""
        return tuple((self.g_u * ui + self.g_s * si) % Q for ui, si in zip(self.u, self.s, strict=True))

    @property
    def h_vec(self) -> tuple[int, ...]:
        """The ``H_i`` scalars ``h_u u_i + h_c c_i + h_s s_(N-1-i)`` (reduced)."""
        c = list(self.link) + [0] * (len(self.u) - len(self.link))
        return tuple(
            (self.h_u * ui + self.h_c * ci + self.h_s * si) % Q
            for ui, ci, si in zip(self.u, c, self.s[::-1], strict=True)
        )


def _sum_of_powers(y2: int, count: int) -> int:
    """``sum_{i < count} y2^i`` mod ``Q`` (geometric series)."""
    if y2 % Q == 1:
        return count % Q
    return (pow(y2, count, Q) - 1) * pow(y2 - 1, -1, Q) % Q


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
    c = [int.from_bytes(link_bytes[16 * h : 16 * h + 16], "big") for h in range(n)]
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
    u_sq, u_inv_sq, s = _verifier_scalars(us, nn)  # section 6.2; s^-1 is s reversed
    u = _powers(y, nn)
    # delta = <d_R, d_L> with d_L = z u + z^2 c, d_R = -z u:
    #       = -z^2 sum y^(2i) - z^3 <u, c>   (c is zero past n)
    delta = (-zz * _sum_of_powers(y * y, nn) - zz * z * (sum(ui * ci for ui, ci in zip(u, c, strict=False)) % Q)) % Q
    beta = random_scalar() or 1  # secret weight of the inner-product check
    gamma = (-pow(zz, -1, Q)) % Q  # t check scaled so that C_V enters as sum c_h C_h
    # IPA: A + x S' + sum(u^2 L + u^-2 R) + <d_R - a s, G> + <d_L - b/s, H> - mu H + w (t_x - ab) G = 0
    #   so g_vec = beta (-z u - a s), h_vec = beta (z u + z^2 c - b s reversed)
    # t:   t_x G + tau_x H - S G - r_S H - z^2 C_V - delta G - x T1 - x^2 T2 = 0   (times gamma)
    own_s = [beta, beta * x % Q, *(beta * v % Q for v in u_sq), *(beta * v % Q for v in u_inv_sq)]
    own_s += [(-gamma * x) % Q, (-gamma * x * x) % Q]
    own_p = [big_a, big_s, *ls, *rs, big_t1, big_t2]
    g = (beta * w * (t_x - a * b) + gamma * (t_x - squares - delta)) % Q
    h = (-beta * mu + gamma * (tau_x - blinding)) % Q
    return SquaresCheck(
        tuple(own_s), tuple(own_p), u, s,
        (-beta * z) % Q, (-beta * a) % Q, beta * z % Q, beta * zz % Q, (-beta * b) % Q,
        g, h, tuple(c), link_bytes,
    )


def check_equations(items: Sequence[tuple[SquaresCheck, Point]]) -> bool:
    """``sum_k e_k (check_k) == 0`` with fresh secret ``e_k`` (the first 1): each item's data
    term is given as the point ``D_k`` (already ``sum link * C_h`` plus the caller's
    other checks on the same points), so it costs one multiplication here. The vector
    generators' part (``2N`` points, full-size scalars) is one Pippenger multi-scalar
    multiplication over their cached point array; ``G`` and ``H`` use fixed-base tables.
    The generator scalars are accumulated unreduced from each check's factored form
    (:class:`SquaresCheck`) and reduced once."""
    own_k: list[int] = []
    own_p: list[Point] = []
    nn = max(len(ck.u) for ck, _ in items)
    g_acc = [0] * nn
    h_acc = [0] * nn
    g_tot = h_tot = 0
    for i, (ck, data) in enumerate(items):
        e = 1 if i == 0 else random_scalar() or 1
        own_k.extend(v * e % Q for v in ck.own_scalars)
        own_p.extend(ck.own_points)
        own_k.append(e)
        own_p.append(data)
        m = len(ck.u)
        gu, gs, hu, hc, hs = (v * e % Q for v in (ck.g_u, ck.g_s, ck.h_u, ck.h_c, ck.h_s))
        g_acc[:m] = [acc + gu * ui + gs * si for acc, ui, si in zip(g_acc, ck.u, ck.s, strict=False)]
        h_acc[:m] = [acc + hu * ui + hs * si for acc, ui, si in zip(h_acc, ck.u, reversed(ck.s), strict=False)]
        cl = len(ck.link)
        h_acc[:cl] = [acc + hc * ci for acc, ci in zip(h_acc, ck.link, strict=False)]
        g_tot += ck.g * e
        h_tot += ck.h * e
    gens = generator_array(nn)
    own = PointArray.from_points(own_p)
    arr = PointArray(np.concatenate([gens.rows, own.rows]), np.concatenate([gens.live, own.live]))
    # Every scalar is distinct and full size: straight to Pippenger on the limbs.
    vec = arr.msm_limbs(_limbs([k % Q for k in (*g_acc, *h_acc)] + own_k))
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
