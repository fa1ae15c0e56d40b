"""Vector generators and fixed-base tables for the Bulletproofs prover and verifier.

The generators ``G_i``, ``H_i`` come from :func:`meterhub.crypto.group.hash_to_point`
over public labels. The tables (8-bit windows for ``G``, ``H`` and the first
``TABLE_GENERATORS`` vector generators, in one arena of ``secp256k1_pubkey``) turn each
linear combination into one libsecp256k1 ``combine``: a performance choice, see
the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib

from ..group import G, H, Point, PointArray, Q, hash_to_point
from ..group.point import _CTX
from ..sigma import lincomb

__all__ = [
    "generator_array",
    "generators",
]

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


#: The generator tables for a size are built on its this-many-th use in the process:
#: 64 tables cost about 2 s of CPU, which pays off over many range proofs (a verifier
#: service) but not for the two a demo run makes; before that the prover and the
#: verifier take the table-free path (Pippenger, :class:`~meterhub.crypto.group.PointArray`).
TABLE_AFTER_USES = 16
_USES: dict[int, int] = {}


def _gen_tables_when_worth(count: int) -> tuple[list[Any], list[Any]]:
    """:func:`_gen_tables` once the tables exist or ``count`` was asked for
    :data:`TABLE_AFTER_USES` times; ``([], [])`` (no tables) before that."""
    k = min(count, TABLE_GENERATORS)
    gv, hv = generators(k)
    if all(x.to_bytes() in _TABLES for x in (*gv, *hv)):
        return _gen_tables(count)
    _USES[k] = _USES.get(k, 0) + 1
    if _USES[k] >= TABLE_AFTER_USES:
        return _gen_tables(count)
    return [], []


_GEN_ARRAYS: dict[int, PointArray] = {}


def generator_array(count: int) -> PointArray:
    """``G_0..G_{count-1}, H_0..H_{count-1}`` in one :class:`PointArray` (cached per size),
    for multi-scalar multiplications over the vector generators without tables."""
    arr = _GEN_ARRAYS.get(count)
    if arr is None:
        gv, hv = generators(count)
        arr = PointArray.from_points([*gv, *hv])
        _GEN_ARRAYS[count] = arr
    return arr


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


# ---------------------------------------------------------------------------
# Verifier-side Pedersen checks on the G and H tables (public values only: the
# entries are chosen by the scalars' bytes, which a secret must never steer)
# ---------------------------------------------------------------------------
def value_point(m: int, r: int) -> Point:
    """``m G + r H`` for public ``m``, ``r`` (a statement's figure and its published
    blinding): one ``combine`` over at most 64 table entries instead of two
    multiplications. Not for secrets: which entries are read depends on the scalars."""
    return _lincomb_fixed([(m, _g_table()), (r, _h_table())])


def openings_hold(values: Sequence[int], blindings: Sequence[int], points: PointArray) -> bool:
    """``C_j == m_j G + r_j H`` for every ``j``, each checked exactly (no random
    combination): per ``j`` one ``combine`` of the table entries of ``m_j G`` and ``r_j H``
    with ``-C_j``, which libsecp256k1 reports as the point at infinity exactly when the
    opening holds. Public openings only (as :func:`value_point`)."""
    n = len(points)
    if len(values) != n or len(blindings) != n:
        raise ValueError("one value and one blinding per point are needed")
    if not n:
        return True
    gb, hb = _g_table()[1], _h_table()[1]
    kb = np.frombuffer(
        b"".join((m % Q).to_bytes(32, "little") + (r % Q).to_bytes(32, "little")
                 for m, r in zip(values, blindings, strict=True)),
        dtype=np.uint8,
    ).reshape(n, 64)
    idx = kb.astype(np.int64) + np.concatenate([_WINDOW_OFFSETS + gb, _WINDOW_OFFSETS + hb])
    used = np.concatenate([kb != 0, points.live.reshape(n, 1)], axis=1)  # (n, 65): entries, then -C_j
    neg = points.rows.copy()
    neg_p = _ffi.cast("secp256k1_pubkey *", neg.ctypes.data)
    negate, ctx = _lib.secp256k1_ec_pubkey_negate, _CTX
    for j in np.flatnonzero(points.live).tolist():
        negate(ctx, neg_p + j)
    entries = _arena()[idx[used[:, :64]]]
    rows = np.concatenate([entries, neg])
    # Row numbers in the order of the pointer list: each j's entries, then its -C_j.
    slot = np.full((n, 65), -1, dtype=np.int64)
    slot[:, :64][used[:, :64]] = np.arange(len(entries))
    slot[:, 64] = len(entries) + np.arange(n)
    order = slot[used]
    ptrs = order.astype(np.uint64) * np.uint64(64) + np.uint64(rows.ctypes.data)
    plist = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(ptrs))
    counts = used.sum(axis=1).tolist()
    out = _ffi.new("secp256k1_pubkey *")
    combine = _lib.secp256k1_ec_pubkey_combine
    pos = 0
    for cnt in counts:
        # 1: the sum is a point, not the identity, so this opening fails.
        if cnt and combine(ctx, out, plist + pos, cnt):
            return False
        pos += cnt
    return True
