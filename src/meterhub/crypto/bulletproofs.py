"""Aggregated Bulletproofs range proofs over secp256k1.

Bünz, Bootle, Boneh, Poelstra, Wuille and Maxwell, "Bulletproofs: Short Proofs
for Confidential Transactions and More", IEEE S&P 2018:

* section 4.1 (range proof) and 4.3 (aggregation of ``m`` values): the prover
  commits to the bits ``a_L`` and ``a_R = a_L - 1`` (``A``) and to blinding
  vectors (``S``), proves ``t(x) = <l(x), r(x)>`` with ``T1, T2``, and hands
  ``l, r`` to the inner-product argument;
* section 3 (protocol 2, the inner-product argument, log-size);
* section 6.2: the verifier checks everything with one multi-scalar
  multiplication, the t-check and the inner-product check combined with a
  fresh random weight.

Conventions follow the reference implementation of the dalek project
(``r(X)`` uses ``z^(2+j) 2^n`` for value ``j``; the ``L`` terms carry ``u^2``).
Two implementation choices for this stack (libsecp256k1 through coincurve,
where one scalar multiplication dominates every other cost):

* the prover folds the vector generators with one multiplication per element,
  keeping the common factor ``u^-1`` (resp. ``u``) as a scalar on the side;
* the value base is ``G`` and the blinding base ``H`` of the Pedersen
  commitments, so readings ``C_i`` are proved directly; the vector generators
  come from :func:`meterhub.crypto.group.hash_to_point` over public labels.

``m`` is padded to a power of two with the identity commitment (value 0,
blinding 0), which the verifier pads identically. ``n`` is a power of two up
to 64.

Byte encoding (big-endian)::

    version 0x01 | tag 0x20 | n (1) | m (4, unpadded)
    | A | S | T1 | T2            (4 x 33, compressed points)
    | t_x | tau_x | mu          (3 x 32, scalars < Q)
    | L_1..L_k | R_1..R_k        (2k x 33, k = log2(n * m_padded))
    | a | b                     (2 x 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .group import G, H, Point, PointDecodeError, Q, hash_to_point, random_scalar
from .group import scalar_from_bytes as _scalar_from_bytes
from .pedersen import Commitment, Opening
from .sigma import VERSION, lincomb
from .transcript import ProofContext, ProofError, Transcript

__all__ = [
    "TAG_BULLETPROOF",
    "TAG_BULLETPROOF_BOUNDED",
    "MAX_VALUES",
    "generators",
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

_G_VEC: list[Point] = []
_H_VEC: list[Point] = []


def generators(count: int) -> tuple[list[Point], list[Point]]:
    """The first ``count`` vector generators ``G_i`` and ``H_i`` (hash-to-curve,
    so nobody knows a relation between them, ``G`` and ``H``); cached."""
    while len(_G_VEC) < count:
        i = len(_G_VEC).to_bytes(4, "big")
        _G_VEC.append(hash_to_point(b"meterhub/v1/bulletproofs/G/" + i)[0])
        _H_VEC.append(hash_to_point(b"meterhub/v1/bulletproofs/H/" + i)[0])
    return _G_VEC[:count], _H_VEC[:count]


def _pad(m: int) -> int:
    return 1 << (m - 1).bit_length()


def bulletproof_size(n: int, m: int = 1) -> int:
    """Encoded size in bytes of an aggregated proof of ``m`` values of ``n`` bits
    (a bounded proof of ``m`` readings aggregates ``2m`` values)."""
    return _size_for(n * _pad(m))


def _size_for(nm: int) -> int:
    k = nm.bit_length() - 1
    return 7 + 4 * 33 + 3 * 32 + 2 * k * 33 + 2 * 32


def _ip(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(a, b, strict=True)) % Q


def _powers(x: int, n: int) -> list[int]:
    out = [1] * n
    for i in range(1, n):
        out[i] = out[i - 1] * x % Q
    return out


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
    t: Transcript, values: Sequence[int], blindings: Sequence[int], n: int, tag: int, m: int
) -> bytes:
    mp = len(values)
    nm = n * mp
    gv, hv = generators(nm)
    a_l = [(v >> i) & 1 for v in values for i in range(n)]
    a_r = [(b - 1) % Q for b in a_l]
    alpha = random_scalar()
    # Bits and bits-minus-one are 0/1/-1: bucketing turns A into additions.
    big_a = lincomb([alpha, *a_l, *a_r], [H, *gv, *hv])
    s_l = [random_scalar() for _ in range(nm)]
    s_r = [random_scalar() for _ in range(nm)]
    rho = random_scalar()
    big_s = lincomb([rho, *s_l, *s_r], [H, *gv, *hv])
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
    t1 = (_ip(l0, r1) + _ip(l1, r0)) % Q
    t2 = _ip(l1, r1)
    tau1, tau2 = random_scalar(), random_scalar()
    big_t1 = lincomb([t1, tau1], [G, H])
    big_t2 = lincomb([t2, tau2], [G, H])
    t.append_point(b"bp/T1", big_t1)
    t.append_point(b"bp/T2", big_t2)
    x = t.challenge_scalar(b"bp/x")
    tau_x = (tau2 * x * x + tau1 * x + sum(zz * zj[j] * g for j, g in enumerate(blindings))) % Q
    mu = (alpha + rho * x) % Q
    lv = [(a + b * x) % Q for a, b in zip(l0, l1, strict=True)]
    rv = [(a + b * x) % Q for a, b in zip(r0, r1, strict=True)]
    t_x = _ip(lv, rv)
    t.append_scalar(b"bp/t_x", t_x)
    t.append_scalar(b"bp/tau_x", tau_x)
    t.append_scalar(b"bp/mu", mu)
    w = t.challenge_scalar(b"bp/w")
    y_inv = pow(y, -1, Q)
    ls, rs, a, b = _ipa_prove(t, w, gv, hv, _powers(y_inv, nm), lv, rv)
    head = bytes([VERSION, tag, n]) + m.to_bytes(4, "big")
    body = [big_a, big_s, big_t1, big_t2]
    scal = [t_x, tau_x, mu]
    return (
        head
        + b"".join(p.to_bytes() for p in body)
        + b"".join(k.to_bytes(32, "big") for k in scal)
        + b"".join(p.to_bytes() for p in ls)
        + b"".join(p.to_bytes() for p in rs)
        + a.to_bytes(32, "big")
        + b.to_bytes(32, "big")
    )


def _ipa_prove(
    t: Transcript,
    w: int,
    gv: Sequence[Point],
    hv: Sequence[Point],
    h_factors: Sequence[int],
    a: list[int],
    b: list[int],
) -> tuple[list[Point], list[Point], int, int]:
    """Inner-product argument (Bünz et al. 2018, section 3, protocol 2) for
    ``P = <a, G> + <b, H'> + <a, b> U`` with ``H'_i = h_factors[i] H_i`` and ``U = wG``.

    The generators are kept as ``(factor_i, point_i)`` with the actual
    generator ``factor_i * point_i``, so folding costs one multiplication per
    element: ``G' = u^-1 G_lo + u G_hi = u^-1 (G_lo + u^2 G_hi)``.
    """
    gf = [1] * len(gv)
    hf = list(h_factors)
    gp = list(gv)
    hp = list(hv)
    ls: list[Point] = []
    rs: list[Point] = []
    n = len(a)
    while n > 1:
        n //= 2
        a_lo, a_hi = a[:n], a[n:]
        b_lo, b_hi = b[:n], b[n:]
        # The inner-product base is U = wG: its terms go on G (fixed-base multiplication).
        c_l = _ip(a_lo, b_hi) * w % Q
        c_r = _ip(a_hi, b_lo) * w % Q
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
        ls.append(big_l)
        rs.append(big_r)
        t.append_point(b"ipa/L", big_l)
        t.append_point(b"ipa/R", big_r)
        u = t.challenge_scalar(b"ipa/u")
        u_inv = pow(u, -1, Q)
        a = [(a_lo[i] * u + u_inv * a_hi[i]) % Q for i in range(n)]
        b = [(b_lo[i] * u_inv + u * b_hi[i]) % Q for i in range(n)]
        # G'_i = u^-1 gf_lo G_lo + u gf_hi G_hi = (u^-1 gf_lo) (G_lo + (u^2 gf_hi / gf_lo) G_hi)
        if n == 1:
            break  # the last folded generators are never used
        new_gp, new_gf, new_hp, new_hf = [], [], [], []
        for i in range(n):
            lo_inv = pow(gf[i], -1, Q)
            new_gp.append(gp[i] + gp[n + i] * (u * u % Q * gf[n + i] % Q * lo_inv % Q))
            new_gf.append(u_inv * gf[i] % Q)
            hlo_inv = pow(hf[i], -1, Q)
            new_hp.append(hp[i] + hp[n + i] * (u_inv * u_inv % Q * hf[n + i] % Q * hlo_inv % Q))
            new_hf.append(u * hf[i] % Q)
        gp, gf, hp, hf = new_gp, new_gf, new_hp, new_hf
    return ls, rs, a[0], b[0]


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


def _verify(t: Transcript, vs: Sequence[Point], n: int, m: int, proof: bytes, tag: int) -> bool:
    terms = _terms(t, vs, n, m, proof, tag)
    if terms is None:
        return False
    gv, hv = generators(len(terms.g_vec))
    return lincomb(
        [*terms.own_scalars, terms.g, terms.h, *terms.g_vec, *terms.h_vec],
        [*terms.own_points, G, H, *gv, *hv],
    ).is_identity


def _terms(
    t: Transcript, vs: Sequence[Point], n: int, m: int, proof: bytes, tag: int
) -> _Terms | None:
    """Decode strictly, replay the transcript and return the weighted terms of the
    single-multiplication check, or ``None`` if a challenge is degenerate."""
    if not isinstance(proof, bytes | bytearray | memoryview):
        raise ProofError("proof must be bytes")
    proof = bytes(proof)
    mp = len(vs)
    nm = n * mp
    k = nm.bit_length() - 1
    expected = _size_for(nm)
    if len(proof) != expected:
        raise ProofError(f"bulletproof must be {expected} bytes, got {len(proof)}")
    if proof[0] != VERSION:
        raise ProofError(f"unsupported proof version {proof[0]}")
    if proof[1] != tag:
        raise ProofError(f"wrong proof type tag {proof[1]:#04x}, expected {tag:#04x}")
    if proof[2] != n or int.from_bytes(proof[3:7], "big") != m:
        raise ProofError("bulletproof is for another bit length or number of values")
    pos = 7
    big_a, big_s, big_t1, big_t2 = (_read_point(proof, pos + 33 * i) for i in range(4))
    pos += 4 * 33
    t_x, tau_x, mu = (_read_scalar(proof, pos + 32 * i) for i in range(3))
    pos += 3 * 32
    ls = [_read_point(proof, pos + 33 * i) for i in range(k)]
    pos += 33 * k
    rs = [_read_point(proof, pos + 33 * i) for i in range(k)]
    pos += 33 * k
    a = _read_scalar(proof, pos)
    b = _read_scalar(proof, pos + 32)

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
    us = []
    for big_l, big_r in zip(ls, rs, strict=True):
        t.append_point(b"ipa/L", big_l)
        t.append_point(b"ipa/R", big_r)
        us.append(t.challenge_scalar(b"ipa/u"))
    if 0 in us or y == 0:
        return None  # probability 2^-256; keeps inversions defined
    u_inv = [pow(u, -1, Q) for u in us]
    u_sq = [u * u % Q for u in us]
    u_inv_sq = [u * u % Q for u in u_inv]
    # s_i = prod_j u_j^{+-1} (section 6.2), built incrementally.
    s = [1] * nm
    all_inv = 1
    for ui in u_inv:
        all_inv = all_inv * ui % Q
    s[0] = all_inv
    for i in range(1, nm):
        lg = i.bit_length() - 1
        s[i] = s[i - (1 << lg)] * u_sq[k - 1 - lg] % Q
    y_inv = pow(y, -1, Q)
    y_inv_pow = _powers(y_inv, nm)
    zz = z * z % Q
    zj = _powers(z, mp)
    two = [1 << i for i in range(n)]
    c = random_scalar() or 1  # fresh batching weight: the prover cannot predict it
    g_sc = [(-z - a * si) % Q for si in s]
    h_sc = [
        (z + y_inv_pow[i] * (zz * zj[i // n] % Q * two[i % n] - b * s[nm - 1 - i])) % Q
        for i in range(nm)
    ]
    base_g = (w * (t_x - a * b) + c * (_delta(n, mp, y, z) - t_x)) % Q
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
    own_scalars: list[int] = []
    own_points: list[Point] = []
    g_acc: list[int] = []
    h_acc: list[int] = []
    g_total = 0
    h_total = 0
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
        terms = _terms(t, vs, n, m, item.proof, tag)
        if terms is None:
            return False
        e = random_scalar() or 1
        own_scalars.extend(k * e % Q for k in terms.own_scalars)
        own_points.extend(terms.own_points)
        if len(terms.g_vec) > len(g_acc):
            g_acc.extend([0] * (len(terms.g_vec) - len(g_acc)))
            h_acc.extend([0] * (len(terms.h_vec) - len(h_acc)))
        for i, k in enumerate(terms.g_vec):
            g_acc[i] += k * e
        for i, k in enumerate(terms.h_vec):
            h_acc[i] += k * e
        g_total += terms.g * e
        h_total += terms.h * e
    gv, hv = generators(len(g_acc))
    return lincomb(
        [*own_scalars, g_total % Q, h_total % Q, *(k % Q for k in g_acc), *(k % Q for k in h_acc)],
        [*own_points, G, H, *gv, *hv],
    ).is_identity
