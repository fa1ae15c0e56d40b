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

* with at most ``TABLE_GENERATORS`` generators per side (every tier proof up
  to n = 16) all bases have fixed-base tables and the prover never folds a
  generator: each round's ``L`` and ``R`` are table sums over the original
  generators with the challenge products of the verifier's ``s`` vector
  (sections 3.1 and 6.2). Above that it folds them with one multiplication
  per element, keeping the common factor ``u^-1`` (resp. ``u``) aside;
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

Tier proofs (version 2, :data:`TIER_VERSION`) embed the same layout with
version byte 0x02, the inner-product argument stopped at vectors of length
``TIER_FOLD``: ``k = log2(n * m_padded / TIER_FOLD)`` rounds, then
``a_1..a_f | b_1..b_f``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from coincurve import PublicKey

from .group import _CTX, G, H, Point, PointDecodeError, Q, _ffi, _lib, hash_to_point, random_scalar
from .group import scalar_from_bytes as _scalar_from_bytes
from .pedersen import Commitment, Opening
from .sigma import VERSION, SigmaProof, lincomb
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


# ---------------------------------------------------------------------------
# Fixed-base tables (performance): 8-bit windows for H and the first vector
# generators, summed with one libsecp256k1 ``combine`` per linear combination
# ---------------------------------------------------------------------------
#: Generators G_i, H_i with i below this get tables (2 x 32 x 512 KiB = 32 MiB).
TABLE_GENERATORS = 32
#: Table slots in the arena: the vector generators, G, H and a few spare.
_MAX_TABLES = 2 * TABLE_GENERATORS + 6
_ENTRIES = 32 * 256
_TABLES: dict[bytes, Any] = {}
_ARENA: Any = None


def _arena() -> Any:
    """All tables in one array of ``secp256k1_pubkey`` (64 bytes, 8 words each), so
    that a linear combination gathers its entries with one numpy indexing (many
    loads in flight) before the ``combine``: scattered single loads inside
    libsecp256k1 would stall on the memory latency at every entry."""
    global _ARENA
    if _ARENA is None:
        _ARENA = np.zeros((_MAX_TABLES * _ENTRIES, 8), dtype=np.uint64)
    return _ARENA


def _table(p: Point) -> Any:
    """``b * 2^(8j) * P`` for every window ``j < 32`` and digit ``b < 256`` in one
    arena slot (entry ``256 j + b`` of the slot; digit 0 unused): a scalar
    multiplication of ``P`` becomes the sum of at most 32 table points. Built once
    by additions (libsecp256k1 ``combine``), about 10 ms and 512 KiB per point;
    public points only. Returns ``(point, first entry index in the arena)``."""
    key = p.to_bytes()
    tb = _TABLES.get(key)
    if tb is not None:
        return tb
    if p.is_identity:
        raise ValueError("no table for the identity")
    if len(_TABLES) >= _MAX_TABLES:
        raise RuntimeError("fixed-base table arena is full")
    slot = len(_TABLES) * _ENTRIES
    arena = _arena()
    arr = _ffi.cast("secp256k1_pubkey *", arena.ctypes.data + 64 * slot)
    _ffi.memmove(arr + 1, p.public_key.public_key, 64)
    pair = _ffi.new("secp256k1_pubkey *[2]")
    combine = _lib.secp256k1_ec_pubkey_combine
    for j in range(32):
        w = arr + (j << 8)
        pair[1] = w + 1
        for b in range(2, 256):
            pair[0] = w + (b - 1)
            if not combine(_CTX, w + b, pair, 2):  # b * P_j != 0 as b < Q
                raise AssertionError("table entry at infinity")
        if j < 31:
            pair[0] = w + 255
            if not combine(_CTX, arr + ((j + 1) << 8) + 1, pair, 2):
                raise AssertionError("table entry at infinity")
    tb = (p, slot)
    _TABLES[key] = tb
    return tb


def _gen_tables(count: int) -> tuple[list[Any], list[Any]]:
    """Tables of ``G_i``, ``H_i`` for ``i < min(count, TABLE_GENERATORS)``."""
    gv, hv = generators(count)
    k = min(count, TABLE_GENERATORS)
    return [_table(x) for x in gv[:k]], [_table(x) for x in hv[:k]]


#: Entry offset of window ``j`` in a table.
_WINDOW_OFFSETS = np.arange(32, dtype=np.int64) << 8


def _table_addrs(scalars: Sequence[int], bases: Any) -> Any:
    """Arena indices of the table entries whose sum is ``sum k_i T_i`` (``bases``
    the tables' first indices): one entry per non-zero byte of each reduced
    scalar, computed for all scalars at once."""
    if not len(scalars):
        return np.empty(0, dtype=np.int64)
    kb = np.frombuffer(
        b"".join((k % Q).to_bytes(32, "little") for k in scalars), dtype=np.uint8
    ).reshape(len(scalars), 32)
    addrs = kb.astype(np.int64) + _WINDOW_OFFSETS
    addrs += np.asarray(bases, dtype=np.int64).reshape(-1, 1)
    return addrs[kb != 0]


def _combine_addrs(addrs: Any, extra: Sequence[Point] = ()) -> Point:
    """Sum of the arena entries ``addrs`` and the points ``extra``: the entries are
    gathered into one contiguous buffer, then one libsecp256k1 ``combine``; the
    identity if there is nothing to add or if the terms cancel."""
    rows = _arena()[np.asarray(addrs, dtype=np.int64)]
    extra = [p for p in extra if not p.is_identity]
    if extra:
        more = np.frombuffer(
            b"".join(bytes(_ffi.buffer(p.public_key.public_key, 64)) for p in extra), dtype=np.uint64
        ).reshape(-1, 8)
        rows = np.concatenate([rows, more])
    count = len(rows)
    if not count:
        return Point.identity()
    ptrs = np.arange(count, dtype=np.uint64) * np.uint64(64) + np.uint64(rows.ctypes.data)
    out = _ffi.new("secp256k1_pubkey *")
    if not _lib.secp256k1_ec_pubkey_combine(
        _CTX, out, _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(ptrs)), count
    ):
        return Point.identity()
    return Point(PublicKey(out))


def _lincomb_fixed(
    fixed: Sequence[tuple[int, Any]], scalars: Sequence[int] = (), points: Sequence[Point] = ()
) -> Point:
    """``sum k_i T_i + sum s_j P_j`` for tabled points ``T_i`` (at most 32 table
    entries per scalar) and other points (:func:`lincomb`), in one ``combine``."""
    if len(fixed) > 4:
        idx = _table_addrs([k for k, _ in fixed], [tb[1] for _, tb in fixed])
    else:
        lst: list[int] = []
        for k, (_, base) in fixed:
            k %= Q
            if k:
                lst.extend(base + (j << 8 | b) for j, b in enumerate(k.to_bytes(32, "little")) if b)
        idx = np.array(lst, dtype=np.int64)
    return _combine_addrs(idx, [lincomb(scalars, points)] if points else ())


def _h_table() -> Any:
    return _table(H)


def _g_table() -> Any:
    """Table of ``G`` (the value base and, as ``U = wG``, the inner-product base)."""
    return _table(G)


_NEG_SUM_H: dict[int, Point] = {}
_BASES: dict[int, tuple[Any, Any]] = {}


def _gen_bases(count: int) -> tuple[Any, Any]:
    """Table base addresses of ``G_i``, ``H_i`` (``i < count <= TABLE_GENERATORS``) as
    ``uint64`` arrays, for :func:`_table_addrs`; cached."""
    out = _BASES.get(count)
    if out is None:
        gt, ht = _gen_tables(count)
        out = (np.array([tb[1] for tb in gt], dtype=np.int64), np.array([tb[1] for tb in ht], dtype=np.int64))
        _BASES[count] = out
    return out


def _neg_sum_h(count: int) -> Point:
    """``-(H_0 + ... + H_{count-1})``: lets the prover form ``A`` by additions only."""
    out = _NEG_SUM_H.get(count)
    if out is None:
        out = -_lincomb_fixed([], [1] * count, generators(count)[1])
        _NEG_SUM_H[count] = out
    return out


def _pad(m: int) -> int:
    return 1 << (m - 1).bit_length()


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
    return 7 + 4 * 33 + 3 * 32 + 2 * k * 33 + 2 * 32 * fold


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
    gt, ht = _gen_tables(nm)
    s_l = [random_scalar() for _ in range(nm)]
    s_r = [random_scalar() for _ in range(nm)]
    rho = random_scalar()
    fixed = nm <= TABLE_GENERATORS
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
    t1 = (_ip(l0, r1) + _ip(l1, r0)) % Q
    t2 = _ip(l1, r1)
    tau1, tau2 = random_scalar(), random_scalar()
    tg = _g_table()
    big_t1 = _lincomb_fixed([(tau1, th), (t1, tg)])
    big_t2 = _lincomb_fixed([(tau2, th), (t2, tg)])
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
    fold = min(fold, nm)
    if fixed:
        ls, rs, a, b = _ipa_prove_fixed(t, w, _powers(y_inv, nm), lv, rv, fold)
    else:
        ls, rs, a, b = _ipa_prove(t, w, gv, hv, _powers(y_inv, nm), lv, rv, (gt, ht), fold)
    head = bytes([version, tag, n]) + m.to_bytes(4, "big")
    body = [big_a, big_s, big_t1, big_t2]
    scal = [t_x, tau_x, mu]
    return (
        head
        + b"".join(p.to_bytes() for p in body)
        + b"".join(k.to_bytes(32, "big") for k in scal)
        + b"".join(p.to_bytes() for p in ls)
        + b"".join(p.to_bytes() for p in rs)
        + b"".join(k.to_bytes(32, "big") for k in a)
        + b"".join(k.to_bytes(32, "big") for k in b)
    )


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
        ls.append(big_l)
        rs.append(big_r)
        t.append_point(b"ipa/L", big_l)
        t.append_point(b"ipa/R", big_r)
        u = t.challenge_scalar(b"ipa/u")
        u_inv = pow(u, -1, Q)
        a = [(a_lo[i] * u + u_inv * a_hi[i]) % Q for i in range(n)]
        b = [(b_lo[i] * u_inv + u * b_hi[i]) % Q for i in range(n)]
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
        ls.append(big_l)
        rs.append(big_r)
        t.append_point(b"ipa/L", big_l)
        t.append_point(b"ipa/R", big_r)
        u = t.challenge_scalar(b"ipa/u")
        u_inv = pow(u, -1, Q)
        a = [(a_lo[i] * u + u_inv * a_hi[i]) % Q for i in range(n)]
        b = [(b_lo[i] * u_inv + u * b_hi[i]) % Q for i in range(n)]
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
    pos = 7
    big_a, big_s, big_t1, big_t2 = (_read_point(proof, pos + 33 * i) for i in range(4))
    pos += 4 * 33
    t_x, tau_x, mu = (_read_scalar(proof, pos + 32 * i) for i in range(3))
    pos += 3 * 32
    ls = [_read_point(proof, pos + 33 * i) for i in range(k)]
    pos += 33 * k
    rs = [_read_point(proof, pos + 33 * i) for i in range(k)]
    pos += 33 * k
    a_vec = [_read_scalar(proof, pos + 32 * i) for i in range(fold)]
    pos += 32 * fold
    b_vec = [_read_scalar(proof, pos + 32 * i) for i in range(fold)]

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
    # s_q = prod_j u_j^{+-1} (section 6.2), built incrementally over the folded bits.
    nq = nm // fold
    s = [1] * nq
    all_inv = 1
    for ui in u_inv:
        all_inv = all_inv * ui % Q
    s[0] = all_inv
    for i in range(1, nq):
        lg = i.bit_length() - 1
        s[i] = s[i - (1 << lg)] * u_sq[k - 1 - lg] % Q
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
    own = [_lincomb_fixed([(s, th)], [v], [G]) for v, s in ((d1, s1), (d2, s2), (price, s3))]
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
    gt, ht = _gen_tables(len(g_acc))
    kt = len(gt)
    return _lincomb_fixed(
        [(h_total, _h_table()), (g_total, _g_table()), *zip(g_acc, gt, strict=False), *zip(h_acc, ht, strict=False)],
        [*own_scalars, *g_acc[kt:], *h_acc[kt:]],
        [*own_points, *gv[kt:], *hv[kt:]],
    ).is_identity
