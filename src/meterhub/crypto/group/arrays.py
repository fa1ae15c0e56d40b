"""Point arrays and Pippenger's bucket method over them (:mod:`meterhub.crypto.group`;
docs/proofs.md, "Pippenger's bucket method from point additions").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from coincurve import PublicKey

# coincurve's own cffi binding of libsecp256k1, for the batch-decoding hot path.
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib

from .point import (
    _CTX,
    _IDENTITY,
    _IDENTITY_33,
    _IDENTITY_65,
    Point,
    PointDecodeError,
    Q,
    _combine,
    _mul_pk,
)

# ---------------------------------------------------------------------------
# Point arrays and Pippenger's bucket method over them
# ---------------------------------------------------------------------------
#: Measured costs on this stack (microseconds): one ``combine`` call (its final field
#: inversion and the cffi call), one point added inside a ``combine``, one
#: ``tweak_mul`` with its call, one point negated (``secp256k1_ec_pubkey_negate`` and
#: its call). They only steer the choice of method and window.
_COST_CALL = 3.4
_COST_ADD = 0.38
_COST_MUL = 42.0
_COST_NEG = 0.5


def _window_cost(n: int, bits: int, c: int, signed: bool = True) -> float:
    """Estimated cost of :func:`_pippenger_rows` with ``c``-bit windows: per window
    ``n`` additions into the buckets (``2^(c-1)`` with signed digits, ``2^c - 1``
    without), one ``combine`` per bucket, and one ``combine`` per bit position
    (Horner's doubling plus the buckets with that bit set); with signed digits, once,
    the negated points."""
    if signed:
        windows, nb, fixed = -(-(bits + 1) // c), 1 << (c - 1), n * _COST_NEG
    else:
        windows, nb, fixed = -(-bits // c), (1 << c) - 1, 0.0
    return fixed + windows * (n * _COST_ADD + nb * _COST_CALL + c * (_COST_CALL + (nb // 2 + 2) * _COST_ADD))


def _best_plan(n: int, bits: int) -> tuple[int, bool, float]:
    """The cheapest window and digit form for :func:`_pippenger_rows` (cost model above)."""
    return min(
        ((c, signed, _window_cost(n, bits, c, signed)) for c in range(2, 14) for signed in (True, False)),
        key=lambda t: t[2],
    )


def _direct_cost(distinct: int, bits: int) -> float:
    """Estimated cost of :meth:`PointArray._direct` beyond the additions: one ``combine``
    per distinct scalar, then a multiplication each or the ladder (:func:`_ladder`)."""
    ladder = bits * (_COST_CALL + (2 + distinct / 2) * _COST_ADD)
    return distinct * _COST_CALL + min(distinct * _COST_MUL, ladder)


def _best_window(n: int, bits: int) -> tuple[int, float]:
    """The cheapest window of :func:`_best_plan` and its estimated cost."""
    c, _, cost = _best_plan(n, bits)
    return c, cost


class PointArray:
    """Points in one contiguous array of libsecp256k1 ``secp256k1_pubkey`` structures
    (``rows``: numpy ``uint64`` of shape ``(n, 8)``) with a mask of the non-identity
    entries: parsed once, then summed by groups, multiplied (:meth:`msm`) and encoded
    without a Python object per point. The rows are only ever written by libsecp256k1
    (parse, combine) or copied from its own structures."""

    __slots__ = ("rows", "live")

    def __init__(self, rows: np.ndarray, live: np.ndarray) -> None:
        self.rows = rows
        self.live = live

    def __len__(self) -> int:
        return len(self.rows)

    def _ptr(self, i: int = 0) -> Any:
        return _ffi.cast("secp256k1_pubkey *", self.rows.ctypes.data + 64 * i)

    @classmethod
    def parse(cls, blob: bytes, width: int = 65) -> PointArray:
        """Strictly decode concatenated encodings of ``width`` 33 or 65 bytes (as
        :meth:`Point.from_bytes`; all-zero entries are the identity). Raises
        ``PointDecodeError`` naming the first bad point."""
        if width not in (33, 65):
            raise ValueError("width must be 33 or 65")
        n, rem = divmod(len(blob), width)
        if rem:
            raise PointDecodeError(f"{len(blob)} bytes are not points of {width} bytes")
        rows = np.zeros((n, 8), dtype=np.uint64)
        live = np.ones(n, dtype=bool)
        if not n:
            return cls(rows, live)
        # Prefix bytes checked in numpy; the identity (all zero) is allowed, any other bad
        # prefix is reported at its position unless a point before it fails to parse.
        prefix = np.frombuffer(blob, dtype=np.uint8)[::width]
        ok = (prefix == 4) if width == 65 else ((prefix == 2) | (prefix == 3))
        zero = _IDENTITY_65 if width == 65 else _IDENTITY_33
        stop, bad_at = n, -1
        for k in np.flatnonzero(~ok).tolist():
            if blob[width * k : width * k + width] == zero:
                live[k] = False
            else:
                stop, bad_at = k, k
                break
        arr = _ffi.cast("secp256k1_pubkey *", rows.ctypes.data)
        buf = _ffi.from_buffer(blob)
        parse = _lib.secp256k1_ec_pubkey_parse
        ctx = _CTX
        for k in np.flatnonzero(ok[:stop]).tolist():
            if not parse(ctx, arr + k, buf + width * k, width):
                raise PointDecodeError(f"point {k}: not on secp256k1")
        if bad_at >= 0:
            raise PointDecodeError(f"point {bad_at}: bad prefix byte {blob[width * bad_at]:02x}")
        return cls(rows, live)

    @classmethod
    def from_points(cls, points: Sequence[Point]) -> PointArray:
        """Copy the libsecp256k1 structures of ``points`` into one array."""
        n = len(points)
        rows = np.zeros((n, 8), dtype=np.uint64)
        live = np.zeros(n, dtype=bool)
        arr = _ffi.cast("secp256k1_pubkey *", rows.ctypes.data)
        for k, p in enumerate(points):
            if p._pk is not None:
                _ffi.memmove(arr + k, p._pk.public_key, 64)
                live[k] = True
        return cls(rows, live)

    def point(self, i: int) -> Point:
        if not self.live[i]:
            return _IDENTITY
        out = _ffi.new("secp256k1_pubkey *")
        _ffi.memmove(out, self._ptr(i), 64)
        return Point(PublicKey(out))

    def points(self) -> list[Point]:
        return [self.point(i) for i in range(len(self))]

    def group_sums(self, g: int) -> PointArray:
        """Sums of ``g`` consecutive points (one ``combine`` per group over pointers
        into this array): the hourly commitments from the meter's 15-minute ones."""
        n = len(self)
        if g < 1 or n % g:
            raise ValueError(f"{n} points are not groups of {g}")
        m = n // g
        rows = np.zeros((m, 8), dtype=np.uint64)
        live = np.zeros(m, dtype=bool)
        addrs = np.arange(n, dtype=np.uint64) * np.uint64(64) + np.uint64(self.rows.ctypes.data)
        if not self.live.all():
            addrs = addrs[self.live]
        counts = self.live.reshape(m, g).sum(axis=1).tolist()
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        out = _ffi.cast("secp256k1_pubkey *", rows.ctypes.data)
        combine = _lib.secp256k1_ec_pubkey_combine
        ctx = _CTX
        if self.live.all():  # the usual case: every group has g points
            for j in range(m):
                if combine(ctx, out + j, ptrs + g * j, g):  # 0: the group sums to the identity
                    live[j] = True
            return PointArray(rows, live)
        pos = 0
        for j, cnt in enumerate(counts):
            if cnt and combine(ctx, out + j, ptrs + pos, cnt):
                live[j] = True
            pos += cnt
        return PointArray(rows, live)

    def total(self) -> Point:
        """The sum of all points (one ``combine``)."""
        return self.msm_ones(np.ones(len(self), dtype=bool))

    def msm_ones(self, select: np.ndarray) -> Point:
        """The sum of the points where ``select`` is true."""
        addrs = (np.arange(len(self), dtype=np.uint64) * np.uint64(64) + np.uint64(self.rows.ctypes.data))
        addrs = addrs[select & self.live]
        if not len(addrs):
            return _IDENTITY
        out = _ffi.new("secp256k1_pubkey *")
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        if not _lib.secp256k1_ec_pubkey_combine(_CTX, out, ptrs, len(addrs)):
            return _IDENTITY
        return Point(PublicKey(out))

    def to_bytes(self) -> bytes:
        """Concatenated 33-byte compressed encodings (identity: 33 zero bytes), as
        :meth:`Point.to_bytes` for each point."""
        n = len(self)
        out = bytearray(33 * n)
        dst = _ffi.from_buffer(out)
        outlen = _ffi.new("size_t *")
        serialize, flag = _lib.secp256k1_ec_pubkey_serialize, _lib.SECP256K1_EC_COMPRESSED
        arr = self._ptr()
        live = self.live.tolist()
        for k in range(n):
            if live[k]:
                outlen[0] = 33
                serialize(_CTX, dst + 33 * k, outlen, arr + k, flag)
        return bytes(out)

    def msm(self, scalars: Sequence[int]) -> Point:
        """``sum k_i P_i``. Few distinct scalars (tariff prices): one ``combine`` per
        distinct scalar and one multiplication of each sum; many (random weights, a
        price index): the bucket method over windows (:func:`_pippenger_rows`),
        whichever the cost model says is cheaper. Zero scalars and identity points
        contribute nothing. Scalars below ``2^63`` are handled in numpy throughout."""
        n = len(self)
        if len(scalars) != n:
            raise ValueError("scalars and points differ in length")
        if not n:
            return _IDENTITY
        if min(scalars) >= 0 and max(scalars) < 1 << 63:
            ks = np.fromiter(scalars, dtype=np.int64, count=n)
            ks[~self.live] = 0
            nz = np.flatnonzero(ks)
            if not len(nz):
                return _IDENTITY
            uniq, inverse = np.unique(ks[nz], return_inverse=True)
            bits = int(uniq[-1]).bit_length()
            if _direct_cost(len(uniq), bits) <= _best_window(len(nz), bits)[1]:
                order = np.argsort(inverse, kind="stable")
                bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1)).tolist()
                return self._direct(uniq.tolist(), nz[order], bounds)
            limbs = np.zeros((len(nz), 4), dtype=np.uint64)
            limbs[:, 0] = ks[nz].astype(np.uint64)
            rows = self.rows if len(nz) == n else self.rows[nz]
            return _pippenger_rows(limbs, rows, bits)
        red = [k % Q for k in scalars]
        live = self.live.tolist()
        positions: dict[int, list[int]] = {}
        for i, k in enumerate(red):
            if k and live[i]:
                lst = positions.get(k)
                if lst is None:
                    positions[k] = [i]
                else:
                    lst.append(i)
        if not positions:
            return _IDENTITY
        bits = max(positions).bit_length()
        used = sum(len(v) for v in positions.values())
        if _direct_cost(len(positions), bits) <= _best_window(used, bits)[1]:
            idx: list[int] = []
            bounds = [0]
            for v in positions.values():
                idx.extend(v)
                bounds.append(len(idx))
            return self._direct(list(positions), np.asarray(idx, dtype=np.int64), bounds)
        keep = [i for i, k in enumerate(red) if k and live[i]]
        rows = self.rows if len(keep) == n else self.rows[np.asarray(keep, dtype=np.int64)]
        return _pippenger_rows(_limbs([red[i] for i in keep]), rows, bits)

    def msm_limbs(self, limbs: np.ndarray) -> Point:
        """``sum k_i P_i`` for non-negative integer scalars ``k_i < 2^256`` given as four
        little-endian 64-bit limbs each (``uint64``, shape ``(n, 4)``; a scalar at or above
        ``Q`` still multiplies as the integer it is). The caller's scalars stay in numpy
        (no Python integer per point): Pippenger's bucket method over the live points
        with non-zero scalars, as :meth:`msm` for many distinct scalars."""
        n = len(self)
        if limbs.shape != (n, 4) or limbs.dtype != np.uint64:
            raise ValueError("limbs must be uint64 of shape (points, 4)")
        keep = self.live & limbs.any(axis=1)
        if not keep.any():
            return _IDENTITY
        if not keep.all():
            limbs = limbs[keep]
            rows = self.rows[keep]
        else:
            rows = self.rows
        bits = 0
        for j in range(3, -1, -1):
            top = int(limbs[:, j].max())
            if top:
                bits = 64 * j + top.bit_length()
                break
        return _pippenger_rows(np.ascontiguousarray(limbs), np.ascontiguousarray(rows), bits)

    def _direct(self, values: list[int], idx: np.ndarray, bounds: list[int]) -> Point:
        """``sum_j values[j] * (sum of the points idx[bounds[j]:bounds[j+1]])``: one
        ``combine`` per distinct scalar, then one multiplication each or, for short
        scalars (tariff prices of a few bits), a double-and-add ladder over the sums
        (:func:`_ladder`), whichever the cost model says is cheaper."""
        addrs = idx.astype(np.uint64) * np.uint64(64) + np.uint64(self.rows.ctypes.data)
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        combine = _lib.secp256k1_ec_pubkey_combine
        sums: list[tuple[int, Any]] = []
        for j, k in enumerate(values):
            out = _ffi.new("secp256k1_pubkey *")
            if combine(_CTX, out, ptrs + bounds[j], bounds[j + 1] - bounds[j]):
                sums.append((k % Q, out))
        sums = [(k, out) for k, out in sums if k]
        if not sums:
            return _IDENTITY
        bits = max(k for k, _ in sums).bit_length()
        if bits * (_COST_CALL + (2 + len(sums) / 2) * _COST_ADD) < len(sums) * _COST_MUL:  # see _direct_cost
            return _ladder(sums)
        terms = [m for k, out in sums if (m := _mul_pk(PublicKey(out), k)) is not None]
        return _combine(terms)


def _ladder(terms: Sequence[tuple[int, Any]]) -> Point:
    """``sum k_j P_j`` for a few ``(k_j, secp256k1_pubkey *)`` with short non-negative
    ``k_j``: double-and-add over the bits of all scalars at once, most significant first,
    one ``combine`` per bit of ``[acc, acc, P_j for every j with that bit set]`` (a point
    listed twice is doubled, as in :func:`_pippenger_rows`); no multiplication."""
    bits = max(k for k, _ in terms).bit_length()
    acc = _ffi.new("secp256k1_pubkey[2]")
    cur, have_acc = 0, False
    combine = _lib.secp256k1_ec_pubkey_combine
    for j in range(bits - 1, -1, -1):
        lst = [p for k, p in terms if k >> j & 1]
        if have_acc:
            lst = [acc + cur, acc + cur, *lst]
        if not lst:
            continue
        ptrs = _ffi.new("secp256k1_pubkey *[]", lst)
        have_acc = bool(combine(_CTX, acc + (1 - cur), ptrs, len(lst)))  # 0: the identity
        cur = 1 - cur
    if not have_acc:
        return _IDENTITY
    out = _ffi.new("secp256k1_pubkey *")
    _ffi.memmove(out, acc + cur, 64)
    return Point(PublicKey(out))


def _limbs(scalars: Sequence[int]) -> np.ndarray:
    """Reduced scalars as four little-endian 64-bit limbs each, shape ``(n, 4)``."""
    raw = b"".join(k.to_bytes(32, "little") for k in scalars)
    return np.frombuffer(raw, dtype="<u8").reshape(len(scalars), 4).astype(np.uint64)


def _window_digits(limbs: np.ndarray, w: int, c: int) -> np.ndarray:
    """Digit ``w`` (bits ``c w .. c w + c - 1``) of every scalar."""
    word, sh = divmod(w * c, 64)
    if word > 3:
        return np.zeros(len(limbs), dtype=np.intp)
    d = limbs[:, word] >> np.uint64(sh)
    if sh + c > 64 and word < 3:
        d = d | (limbs[:, word + 1] << np.uint64(64 - sh))
    return (d & np.uint64((1 << c) - 1)).astype(np.intp)


def _digits(limbs: np.ndarray, bits: int, c: int, signed: bool) -> np.ndarray:
    """Base-``2^c`` digits of every scalar, shape ``(windows, n)``, least significant
    window first, ``k = sum_w d_w 2^(c w)``. Unsigned: ``d`` in ``[0, 2^c)``. Signed: ``d``
    in ``(-2^(c-1), 2^(c-1)]`` (a digit above ``2^(c-1)`` becomes ``d - 2^c`` and carries
    one into the next window; one extra bit of windows takes the last carry)."""
    windows = -(-(bits + 1) // c) if signed else -(-bits // c)
    n = len(limbs)
    # All windows at once: the scalars' bits (little-endian), grouped by c.
    raw = np.ascontiguousarray(limbs, dtype="<u8").view(np.uint8).reshape(n, 32)
    bitmat = np.unpackbits(raw, axis=1, bitorder="little")
    need = windows * c
    if need > 256:
        bitmat = np.concatenate([bitmat, np.zeros((n, need - 256), dtype=np.uint8)], axis=1)
    weights = (1 << np.arange(c, dtype=np.int64))
    out = (bitmat[:, :need].reshape(n, windows, c).astype(np.int64) @ weights).T.copy()
    if signed:
        half, full = 1 << (c - 1), 1 << c
        carry = np.zeros(n, dtype=np.int64)
        for w in range(windows):
            d = out[w] + carry
            carry = (d > half).astype(np.int64)
            out[w] = d - carry * full
    return out


def _pippenger_rows(limbs: np.ndarray, rows: np.ndarray, bits: int, plan: tuple[int, bool] | None = None) -> Point:
    """``sum k_i P_i`` over non-identity ``rows`` with non-negative scalars below
    ``2^bits`` given as limbs (:func:`_limbs`): Pippenger's bucket method (Bernstein et
    al., "Faster batch forgery identification", 2012, section 4) with signed digits
    where the cost model says they pay (section 4 there: a negative digit adds ``-P`` to
    the bucket of its magnitude, so ``c``-bit windows need ``2^(c-1)`` buckets rather than
    ``2^c - 1``, for one negation per point) and the window ``c`` the cost model picks.

    The digits of all windows are formed at once (numpy) and, with signed digits, the
    points negated once (``secp256k1_ec_pubkey_negate``). Per window (most significant first): the points
    are sorted by digit magnitude, each bucket ``B_v`` is one ``combine`` over a slice of
    one pointer array (pointing at ``P_i`` or ``-P_i`` by the digit's sign); then
    ``sum_v v B_v`` enters the accumulator bit by bit with Horner's rule over all bit
    positions, ``acc = 2 acc + sum of the B_v with bit j of v set``, one ``combine`` each
    (``acc`` listed twice: libsecp256k1 adds a point to itself by doubling). No
    multiplication at all: every step is point additions inside libsecp256k1."""
    n = len(rows)
    if not n or bits <= 0:
        return _IDENTITY
    c, signed = _best_plan(n, bits)[:2] if plan is None else plan  # ``plan``: tests force every window
    nb = 1 << (c - 1) if signed else (1 << c) - 1
    digits = _digits(limbs, bits, c, signed)
    windows = len(digits)
    ctx = _CTX
    combine = _lib.secp256k1_ec_pubkey_combine
    base = np.uint64(rows.ctypes.data)
    pos_addr = np.arange(n, dtype=np.uint64) * np.uint64(64) + base
    if (digits < 0).any():
        neg = rows.copy()
        neg_p = _ffi.cast("secp256k1_pubkey *", neg.ctypes.data)
        negate = _lib.secp256k1_ec_pubkey_negate
        for k in range(n):
            negate(ctx, neg_p + k)
        neg_addr = np.arange(n, dtype=np.uint64) * np.uint64(64) + np.uint64(neg.ctypes.data)
    else:
        neg_addr = pos_addr
    mags = np.abs(digits).astype(np.int16)  # below 2^13: numpy's stable sort is a radix sort here
    orders = np.argsort(mags, axis=1, kind="stable")
    counts = np.zeros((windows, nb + 1), dtype=np.int64)
    for w in range(windows):
        counts[w] = np.bincount(mags[w], minlength=nb + 1)
    starts = np.zeros((windows, nb + 2), dtype=np.int64)
    np.cumsum(counts, axis=1, out=starts[:, 1:])
    sorted_digits = np.take_along_axis(digits, orders, axis=1)
    addrs = np.ascontiguousarray(np.where(sorted_digits > 0, pos_addr[orders], neg_addr[orders]))
    starts_l = starts.tolist()
    nonempty = [[v for v, k in enumerate(row) if k] for row in counts[:, 1:].tolist()]

    bucket = np.zeros((nb + 1, 8), dtype=np.uint64)
    bptr = _ffi.cast("secp256k1_pubkey *", bucket.ctypes.data)
    bbase = int(bucket.ctypes.data)
    accs = np.zeros((2, 8), dtype=np.uint64)
    abase = int(accs.ctypes.data)
    acc_p = [_ffi.cast("secp256k1_pubkey *", abase + 64 * i) for i in range(2)]
    # Per bit j and accumulator slot: [acc, acc, B_v for every v with bit j set].
    vals = np.arange(1, nb + 1, dtype=np.int64)
    with_bit = [vals[(vals >> j) & 1 == 1] for j in range(c)]
    full_lists = [
        [np.concatenate([np.array([abase + 64 * a, abase + 64 * a], dtype=np.uint64),
                         (with_bit[j] * 64 + bbase).astype(np.uint64)]) for a in range(2)]
        for j in range(c)
    ]
    full_ptrs = [[_ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(arr)) for arr in pair] for pair in full_lists]
    bucket_p = [bptr + v for v in range(nb + 1)]
    all_ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
    keep: list[Any] = []  # pointer arrays built for a window must outlive its calls
    have_acc = False
    cur = 0
    for w in range(windows - 1, -1, -1):
        ptrs = all_ptrs + n * w
        st = starts_l[w]
        alive = [False] * (nb + 1)
        for v in nonempty[w]:
            v += 1
            if combine(ctx, bucket_p[v], ptrs + st[v], st[v + 1] - st[v]):  # 0: the bucket sums to the identity
                alive[v] = True
        all_alive = all(alive[1:])
        alive_np = None if all_alive else np.array(alive, dtype=bool)
        for j in range(c - 1, -1, -1):
            if alive_np is None:
                arr = full_lists[j][cur]
                plist = full_ptrs[j][cur]
            else:
                sel = with_bit[j][alive_np[with_bit[j]]]
                arr = np.concatenate([np.array([abase + 64 * cur] * 2, dtype=np.uint64),
                                      (sel * 64 + bbase).astype(np.uint64)])
                keep.append(arr)
                plist = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(arr))
            if have_acc:
                have_acc = bool(combine(ctx, acc_p[1 - cur], plist, len(arr)))
                cur = 1 - cur
            elif len(arr) > 2:
                have_acc = bool(combine(ctx, acc_p[cur], plist + 2, len(arr) - 2))
        keep.clear()
    if not have_acc:
        return _IDENTITY
    out = _ffi.new("secp256k1_pubkey *")
    _ffi.memmove(out, acc_p[cur], 64)
    return Point(PublicKey(out))
