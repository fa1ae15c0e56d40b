"""The inner-product argument (Bünz et al. 2018, section 3, protocol 2) and what every
argument built on it shares: the range and tier proofs of this package and the
sum-of-squares proof of :mod:`meterhub.crypto.sumsquares` (docs/architecture.md, "The
inner-product argument").

* the prover's step from ``t(X)`` to the argument's input (:func:`_prove_polynomial`:
  ``T1``, ``T2``, ``x``, ``l(x)``, ``r(x)``, ``t_x``, ``tau_x``, ``mu`` and ``w``);
* the prover (:func:`_ipa_prove`, :func:`_ipa_prove_fixed`) and each round's
  Fiat-Shamir step and folding (:func:`_round_challenge`, :func:`_prover_round`); the
  verifier replays the same step (:func:`_verifier_challenges`);
* the verifier's scalars of section 6.2 (:func:`_verifier_scalars`: ``u^2``, ``u^-2``
  and the ``s`` vector), so that a whole proof is checked in one multi-scalar
  multiplication;
* the encoding after each proof's own header (:class:`ArgumentBody`:
  ``A | S | T1 | T2 | t_x | tau_x | mu | L.. | R.. | a.. | b..``), the vector length
  (:func:`_pad`) and the scalar and point helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..group import G, Point, PointDecodeError, Q, random_scalar
from ..group import scalar_from_bytes as _scalar_from_bytes
from ..sigma import lincomb
from ..transcript import ProofError, Transcript
from ._tables import (
    _WINDOW_OFFSETS,
    _combine_addrs,
    _g_table,
    _gen_bases,
    _h_table,
    _lincomb_fixed,
)

__all__ = [
    "ArgumentBody",
]


def _pad(m: int) -> int:
    """``m`` rounded up to a power of two (the argument halves its vectors each round)."""
    return 1 << (m - 1).bit_length()


def _ip(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(a, b, strict=True)) % Q


def _powers(x: int, n: int) -> list[int]:
    out = [1] * n
    for i in range(1, n):
        out[i] = out[i - 1] * x % Q
    return out


def _prove_polynomial(
    t: Transcript,
    label: bytes,
    l0: Sequence[int],
    l1: Sequence[int],
    r0: Sequence[int],
    r1: Sequence[int],
    tau0: int,
    alpha: int,
    rho: int,
) -> tuple[Point, Point, int, int, int, list[int], list[int], int]:
    """Bünz et al. 2018, section 4.2 from ``t(X)`` on, for ``l(X) = l0 + l1 X`` and
    ``r(X) = r0 + r1 X`` (range, tier and sum-of-squares proofs alike): commit to
    ``t1``, ``t2`` of ``t(X) = <l(X), r(X)>`` as ``T1 = t1 G + tau1 H``, ``T2``; draw
    ``x``; send ``t_x = <l(x), r(x)>``, ``tau_x = tau2 x^2 + tau1 x + tau0`` (``tau0``
    the blinding of ``t0``'s commitment) and ``mu = alpha + rho x`` (``alpha``, ``rho``
    those of ``A``, ``S``); draw ``w`` (the inner-product base ``U = wG``). Transcript
    labels are ``label`` followed by ``T1``, ``T2``, ``x``, ``t_x``, ``tau_x``, ``mu``,
    ``w``. Returns ``T1, T2, t_x, tau_x, mu, l(x), r(x), w``."""
    t1 = (_ip(l0, r1) + _ip(l1, r0)) % Q
    t2 = _ip(l1, r1)
    tau1, tau2 = random_scalar(), random_scalar()
    th, tg = _h_table(), _g_table()
    big_t1 = _lincomb_fixed([(tau1, th), (t1, tg)])
    big_t2 = _lincomb_fixed([(tau2, th), (t2, tg)])
    t.append_point(label + b"T1", big_t1)
    t.append_point(label + b"T2", big_t2)
    x = t.challenge_scalar(label + b"x")
    tau_x = (tau2 * x * x + tau1 * x + tau0) % Q
    mu = (alpha + rho * x) % Q
    lv = [(a + b * x) % Q for a, b in zip(l0, l1, strict=True)]
    rv = [(a + b * x) % Q for a, b in zip(r0, r1, strict=True)]
    t_x = _ip(lv, rv)
    t.append_scalar(label + b"t_x", t_x)
    t.append_scalar(label + b"tau_x", tau_x)
    t.append_scalar(label + b"mu", mu)
    w = t.challenge_scalar(label + b"w")
    return big_t1, big_t2, t_x, tau_x, mu, lv, rv, w


def _round_challenge(t: Transcript, big_l: Point, big_r: Point) -> int:
    """One round's Fiat-Shamir step (section 4.4), the same for prover and verifier:
    absorb ``L`` and ``R``, draw ``u``."""
    t.append_point(b"ipa/L", big_l)
    t.append_point(b"ipa/R", big_r)
    return t.challenge_scalar(b"ipa/u")


def _prover_round(
    t: Transcript,
    ls: list[Point],
    rs: list[Point],
    big_l: Point,
    big_r: Point,
    a_lo: Sequence[int],
    a_hi: Sequence[int],
    b_lo: Sequence[int],
    b_hi: Sequence[int],
) -> tuple[int, int, list[int], list[int]]:
    """The end of one prover round (protocol 2, step 3): send ``L``, ``R`` (kept in
    ``ls``, ``rs`` for the encoding), draw ``u`` and fold the vectors,
    ``a' = u a_lo + u^-1 a_hi``, ``b' = u^-1 b_lo + u b_hi``. Returns ``u, u^-1, a', b'``."""
    ls.append(big_l)
    rs.append(big_r)
    u = _round_challenge(t, big_l, big_r)
    u_inv = pow(u, -1, Q)
    n = len(a_lo)
    a = [(a_lo[i] * u + u_inv * a_hi[i]) % Q for i in range(n)]
    b = [(b_lo[i] * u_inv + u * b_hi[i]) % Q for i in range(n)]
    return u, u_inv, a, b


def _verifier_challenges(t: Transcript, ls: Sequence[Point], rs: Sequence[Point]) -> list[int]:
    """Replay every round's :func:`_round_challenge`: the challenges ``u_1..u_k``."""
    return [_round_challenge(t, big_l, big_r) for big_l, big_r in zip(ls, rs, strict=True)]


def _challenge_squares(us: Sequence[int], u_inv: Sequence[int]) -> tuple[list[int], list[int], int]:
    """``u_j^2``, ``u_j^-2`` and ``s_0 = prod_j u_j^-1`` (section 6.2) from the round
    challenges and their inverses."""
    u_sq = [u * u % Q for u in us]
    u_inv_sq = [u * u % Q for u in u_inv]
    all_inv = 1
    for ui in u_inv:
        all_inv = all_inv * ui % Q
    return u_sq, u_inv_sq, all_inv


def _verifier_scalars(us: Sequence[int], count: int) -> tuple[list[int], list[int], list[int]]:
    """``u_j^2``, ``u_j^-2`` and the vector ``s`` of length ``count = 2^k`` (section
    6.2): ``s_i = prod_j u_j^(+-1)`` by the bits of ``i``, built incrementally, so the
    folded generators are ``<s, G>`` and ``<s^-1, H>`` (``s^-1`` is ``s`` reversed).
    The challenges must be non-zero (the callers return "degenerate" otherwise)."""
    k = len(us)
    u_sq, u_inv_sq, all_inv = _challenge_squares(us, [pow(u, -1, Q) for u in us])
    # s_i for i with top bit lg is s_(i - 2^lg) * u_(k-lg)^2: doubling the list once per
    # challenge (one multiplication per element, no per-index bit arithmetic).
    s = [all_inv]
    for lg in range(k):
        if len(s) >= count:
            break
        f = u_sq[k - 1 - lg]
        s += [x * f % Q for x in s[: count - len(s)]]
    return u_sq, u_inv_sq, s


def _body_size(rounds: int, fold: int) -> int:
    """Encoded size of an :class:`ArgumentBody` with ``rounds`` rounds, stopped at ``fold``."""
    return 4 * 33 + 3 * 32 + 2 * rounds * 33 + 2 * 32 * fold


@dataclass(frozen=True)
class ArgumentBody:
    """What a range, tier or sum-of-squares proof sends after its own header
    (big-endian; section 4.2 and protocol 2)::

        A | S | T1 | T2          (4 x 33, compressed points)
        | t_x | tau_x | mu       (3 x 32, scalars < Q)
        | L_1..L_k | R_1..R_k    (2k x 33, one pair per round)
        | a_1..a_f | b_1..b_f    (2f x 32, the vectors where the rounds stopped)
    """

    big_a: Point
    big_s: Point
    big_t1: Point
    big_t2: Point
    t_x: int
    tau_x: int
    mu: int
    ls: Sequence[Point]
    rs: Sequence[Point]
    a: Sequence[int]
    b: Sequence[int]

    def to_bytes(self) -> bytes:
        return (
            b"".join(p.to_bytes() for p in (self.big_a, self.big_s, self.big_t1, self.big_t2))
            + b"".join(k.to_bytes(32, "big") for k in (self.t_x, self.tau_x, self.mu))
            + b"".join(p.to_bytes() for p in self.ls)
            + b"".join(p.to_bytes() for p in self.rs)
            + b"".join(k.to_bytes(32, "big") for k in self.a)
            + b"".join(k.to_bytes(32, "big") for k in self.b)
        )

    @classmethod
    def read(cls, data: bytes, pos: int, rounds: int, fold: int) -> ArgumentBody:
        """Strictly decode the body at ``pos`` (the caller has checked the length):
        every point on the curve, every scalar below ``Q``, else :class:`ProofError`."""
        big_a, big_s, big_t1, big_t2 = (_read_point(data, pos + 33 * i) for i in range(4))
        pos += 4 * 33
        t_x, tau_x, mu = (_read_scalar(data, pos + 32 * i) for i in range(3))
        pos += 3 * 32
        ls = [_read_point(data, pos + 33 * i) for i in range(rounds)]
        pos += 33 * rounds
        rs = [_read_point(data, pos + 33 * i) for i in range(rounds)]
        pos += 33 * rounds
        a = [_read_scalar(data, pos + 32 * i) for i in range(fold)]
        pos += 32 * fold
        b = [_read_scalar(data, pos + 32 * i) for i in range(fold)]
        return cls(big_a, big_s, big_t1, big_t2, t_x, tau_x, mu, ls, rs, a, b)


def _ipa_prove_fixed(
    t: Transcript, w: int, h_factors: Sequence[int], a: list[int], b: list[int], fold: int = 1
) -> tuple[list[Point], list[Point], list[int], list[int]]:
    """The inner-product argument of :func:`_ipa_prove` without folding a single
    generator (Bünz et al. 2018, section 3, protocol 2; the folded generators
    written out as in section 6.2).

    After rounds with challenges ``u_1..u_k`` the folded generator ``G'_i`` is
    ``sum_j s_j G_j`` over the original ``G_j`` with ``j = i mod len`` (``len``
    the current length) and ``s_j`` the product of ``u^-1`` or ``u`` by the
    bits of ``j`` (the verifier's ``s`` vector); likewise ``H'_i`` with the
    inverse exponents and the factors ``y^-j``. So each round's ``L`` and ``R``
    are linear combinations of the original, tabled generators and ``G``: one
    ``combine`` each over table entries, and no scalar multiplication at all.
    The coefficients ``gc``, ``hc`` are updated by one modular product per
    generator and round. Needs ``len(a) <= TABLE_GENERATORS``. The rounds stop
    when the vectors have length ``fold``; they are returned in the clear."""
    nm = len(a)
    gb, hb = _gen_bases(nm)
    tg = _g_table()
    bases = np.concatenate([gb, hb, np.array([tg[1]], dtype=np.int64)])
    index = np.arange(nm)
    gc = [1] * nm
    hc = list(h_factors)
    ls: list[Point] = []
    rs: list[Point] = []
    length = nm
    while length > fold:
        n = length >> 1
        mask = length - 1
        a_lo, a_hi = a[:n], a[n:]
        b_lo, b_hi = b[:n], b[n:]
        c_l = _ip(a_lo, b_hi) * w % Q
        c_r = _ip(a_hi, b_lo) * w % Q
        # Original G_j sits in the high half iff bit n of j is set; it pairs with
        # a[(j mod len) xor n] (L: a_lo with G_hi, R: a_hi with G_lo), H_j with b likewise.
        ks = [a[(j & mask) ^ n] * gc[j] for j in range(nm)]
        ks += [b[(j & mask) ^ n] * hc[j] for j in range(nm)]
        hi = (index & n) != 0
        kb = np.frombuffer(
            b"".join((k % Q).to_bytes(32, "little") for k in (*ks, c_l, c_r)), dtype=np.uint8
        ).reshape(2 * nm + 2, 32)
        addrs = kb.astype(np.int64) + _WINDOW_OFFSETS
        addrs[: 2 * nm] += bases[: 2 * nm].reshape(-1, 1)
        addrs[2 * nm :] += bases[2 * nm]
        nz = kb != 0
        in_l = np.concatenate([hi, ~hi, [True, False]])
        big_l = _combine_addrs(addrs[nz & in_l[:, None]])
        big_r = _combine_addrs(addrs[nz & ~in_l[:, None]])
        u, u_inv, a, b = _prover_round(t, ls, rs, big_l, big_r, a_lo, a_hi, b_lo, b_hi)
        if n == fold:
            break
        # G' = u^-1 G_lo + u G_hi, H' = u H_lo + u^-1 H_hi.
        gc = [gc[j] * (u if j & n else u_inv) % Q for j in range(nm)]
        hc = [hc[j] * (u_inv if j & n else u) % Q for j in range(nm)]
        length = n
    return ls, rs, a, b


def _ipa_prove(
    t: Transcript,
    w: int,
    gv: Sequence[Point],
    hv: Sequence[Point],
    h_factors: Sequence[int],
    a: list[int],
    b: list[int],
    tables: tuple[Sequence[Any], Sequence[Any]] = ((), ()),
    fold: int = 1,
) -> tuple[list[Point], list[Point], list[int], list[int]]:
    """Inner-product argument (Bünz et al. 2018, section 3, protocol 2) for
    ``P = <a, G> + <b, H'> + <a, b> U`` with ``H'_i = h_factors[i] H_i`` and ``U = wG``.

    The generators are kept as ``(factor_i, point_i)`` with the actual
    generator ``factor_i * point_i``, so folding costs one multiplication per
    element: ``G' = u^-1 G_lo + u G_hi = u^-1 (G_lo + u^2 G_hi)``. In the first
    round the generators are the original ones, so with ``tables`` (fixed-base
    tables of all of them) ``L``, ``R`` and the folding use table sums instead.
    """
    gt, ht = tables
    tabled = len(gt) == len(gv) and len(ht) == len(hv)
    gf = [1] * len(gv)
    hf = list(h_factors)
    # Inverses of the factors, tracked alongside (no modular inversion per element).
    gf_inv = [1] * len(gv)
    hf_inv = _batch_inverse(hf)
    gp = list(gv)
    hp = list(hv)
    ls: list[Point] = []
    rs: list[Point] = []
    n = len(a)
    while n > fold:
        n //= 2
        a_lo, a_hi = a[:n], a[n:]
        b_lo, b_hi = b[:n], b[n:]
        # The inner-product base is U = wG: its terms go on G (fixed-base multiplication).
        c_l = _ip(a_lo, b_hi) * w % Q
        c_r = _ip(a_hi, b_lo) * w % Q
        if tabled:
            big_l = _lincomb_fixed(
                [*((a_lo[i], gt[n + i]) for i in range(n)), *((b_hi[i] * hf[i], ht[i]) for i in range(n))],
                [c_l],
                [G],
            )
            big_r = _lincomb_fixed(
                [*((a_hi[i], gt[i]) for i in range(n)), *((b_lo[i] * hf[n + i], ht[n + i]) for i in range(n))],
                [c_r],
                [G],
            )
        else:
            big_l, big_r = _ipa_lr(n, a_lo, a_hi, b_lo, b_hi, gf, hf, gp, hp, c_l, c_r)
        u, u_inv, a, b = _prover_round(t, ls, rs, big_l, big_r, a_lo, a_hi, b_lo, b_hi)
        # G'_i = u^-1 gf_lo G_lo + u gf_hi G_hi = (u^-1 gf_lo) (G_lo + (u^2 gf_hi / gf_lo) G_hi)
        if n == fold:
            break  # the last folded generators are never used
        new_gp, new_gf, new_hp, new_hf = [], [], [], []
        new_gf_inv, new_hf_inv = [], []
        u_sq, u_inv_sq = u * u % Q, u_inv * u_inv % Q
        for i in range(n):
            kg = u_sq * gf[n + i] % Q * gf_inv[i] % Q
            kh = u_inv_sq * hf[n + i] % Q * hf_inv[i] % Q
            new_gf_inv.append(u * gf_inv[i] % Q)
            new_hf_inv.append(u_inv * hf_inv[i] % Q)
            if tabled:
                new_gp.append(_lincomb_fixed([(kg, gt[n + i])], [1], [gp[i]]))
                new_hp.append(_lincomb_fixed([(kh, ht[n + i])], [1], [hp[i]]))
            else:
                new_gp.append(gp[i] + gp[n + i] * kg)
                new_hp.append(hp[i] + hp[n + i] * kh)
            new_gf.append(u_inv * gf[i] % Q)
            new_hf.append(u * hf[i] % Q)
        gp, gf, hp, hf = new_gp, new_gf, new_hp, new_hf
        gf_inv, hf_inv = new_gf_inv, new_hf_inv
        tabled = False
    return ls, rs, a, b


def _batch_inverse(xs: Sequence[int]) -> list[int]:
    """Inverses mod ``Q`` of non-zero ``xs`` with one modular inversion (Montgomery's trick)."""
    prefix = [1] * (len(xs) + 1)
    for i, x in enumerate(xs):
        prefix[i + 1] = prefix[i] * x % Q
    inv = pow(prefix[-1], -1, Q)
    out = [0] * len(xs)
    for i in range(len(xs) - 1, -1, -1):
        out[i] = inv * prefix[i] % Q
        inv = inv * xs[i] % Q
    return out


def _ipa_lr(
    n: int,
    a_lo: Sequence[int],
    a_hi: Sequence[int],
    b_lo: Sequence[int],
    b_hi: Sequence[int],
    gf: Sequence[int],
    hf: Sequence[int],
    gp: Sequence[Point],
    hp: Sequence[Point],
    c_l: int,
    c_r: int,
) -> tuple[Point, Point]:
    """``L`` and ``R`` of one round over folded generators ``factor * point``."""
    big_l = lincomb(
        [
            *(a_lo[i] * gf[n + i] % Q for i in range(n)),
            *(b_hi[i] * hf[i] % Q for i in range(n)),
            c_l,
        ],
        [*gp[n:], *hp[:n], G],
    )
    big_r = lincomb(
        [
            *(a_hi[i] * gf[i] % Q for i in range(n)),
            *(b_lo[i] * hf[n + i] % Q for i in range(n)),
            c_r,
        ],
        [*gp[:n], *hp[n:], G],
    )
    return big_l, big_r


def _read_point(data: bytes, pos: int) -> Point:
    try:
        return Point.from_bytes(data[pos : pos + 33])
    except PointDecodeError as exc:
        raise ProofError("proof contains an invalid point encoding") from exc


def _read_scalar(data: bytes, pos: int) -> int:
    try:
        return _scalar_from_bytes(data[pos : pos + 32])
    except ValueError as exc:
        raise ProofError("proof scalar is not reduced mod the group order") from exc
