"""The prime-order group secp256k1, wrapped for Pedersen commitments and proofs.

All curve arithmetic is delegated to libsecp256k1 through ``coincurve``; this
module only adds what coincurve refuses to represent and what commitments need:

* the identity point (the point at infinity), which coincurve cannot hold but
  which appears whenever terms cancel (a sum of commitments, ``0*P``);
* zero and out-of-range scalars, reduced mod the group order ``Q`` (a 0 Wh
  reading is common, so ``0*G`` must simply be the identity);
* a canonical, strict encoding (SEC 1 v2.0, section 2.3.3/2.3.4): 33-byte
  compressed points, and 65-byte uncompressed points for storage where the
  decoder's speed matters. The identity is encoded as all-zero bytes of the
  same width so that records keep a fixed size.

Curve parameters are from SEC 2 v2.0, section 2.4.1.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from coincurve import PublicKey

# coincurve's own cffi binding of libsecp256k1, for the batch-decoding hot path.
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _GLOBAL_CONTEXT

from ..errors import MeterhubError

__all__ = [
    "Q",
    "P",
    "Point",
    "G",
    "H",
    "H_DST",
    "PointDecodeError",
    "random_scalar",
    "scalar_to_bytes",
    "scalar_from_bytes",
    "hash_to_point",
    "base_mul",
    "msm",
    "naive_msm",
    "msm_encoded",
    "PointArray",
]

#: Order of the secp256k1 group (SEC 2, 2.4.1, n).
Q = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: Field prime of secp256k1 (SEC 2, 2.4.1, p).
P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F

_CTX = _GLOBAL_CONTEXT.ctx
_IDENTITY_33 = bytes(33)
_IDENTITY_65 = bytes(65)


class PointDecodeError(MeterhubError, ValueError):
    """Raised when bytes do not encode a point of the group."""


class Point:
    """An element of secp256k1, the identity included. Immutable.

    ``_pk`` is a coincurve ``PublicKey`` or ``None`` for the identity.
    """

    __slots__ = ("_pk",)

    def __init__(self, pk: PublicKey | None) -> None:
        self._pk = pk

    # -- construction -------------------------------------------------------
    @classmethod
    def identity(cls) -> Point:
        return _IDENTITY

    @classmethod
    def from_bytes(cls, data: bytes) -> Point:
        """Strictly decode a 33-byte compressed or 65-byte uncompressed point.

        SEC 1 v2.0, 2.3.4. Hybrid encodings (0x06/0x07), other lengths and
        x-coordinates that are not on the curve raise ``PointDecodeError``.
        All-zero bytes of either width decode to the identity.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PointDecodeError("point encoding must be bytes")
        data = bytes(data)
        n = len(data)
        if n == 33:
            if data == _IDENTITY_33:
                return _IDENTITY
            if data[0] not in (2, 3):
                raise PointDecodeError("compressed point must start with 02 or 03")
        elif n == 65:
            if data == _IDENTITY_65:
                return _IDENTITY
            if data[0] != 4:
                raise PointDecodeError("uncompressed point must start with 04")
        else:
            raise PointDecodeError(f"point encoding must be 33 or 65 bytes, got {n}")
        try:
            return cls(PublicKey(data))
        except (ValueError, TypeError) as exc:
            raise PointDecodeError("bytes do not encode a point on secp256k1") from exc

    # -- encoding -----------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Canonical 33-byte compressed encoding (identity: 33 zero bytes)."""
        return _IDENTITY_33 if self._pk is None else self._pk.format(compressed=True)

    def to_bytes_uncompressed(self) -> bytes:
        """65-byte uncompressed encoding (identity: 65 zero bytes); faster to decode."""
        return _IDENTITY_65 if self._pk is None else self._pk.format(compressed=False)

    @property
    def is_identity(self) -> bool:
        return self._pk is None

    @property
    def public_key(self) -> PublicKey:
        """The coincurve key; raises for the identity, which coincurve cannot hold."""
        if self._pk is None:
            raise ValueError("the identity has no coincurve representation")
        return self._pk

    # -- arithmetic ---------------------------------------------------------
    def __add__(self, other: Point) -> Point:
        if not isinstance(other, Point):
            return NotImplemented
        if self._pk is None:
            return other
        if other._pk is None:
            return self
        return _combine([self._pk, other._pk])

    def __neg__(self) -> Point:
        if self._pk is None:
            return self
        enc = bytearray(self._pk.format(compressed=True))
        enc[0] ^= 1  # -P has the same x and the other y parity
        return Point(PublicKey(bytes(enc)))

    def __sub__(self, other: Point) -> Point:
        if not isinstance(other, Point):
            return NotImplemented
        return self + (-other)

    def __mul__(self, k: int) -> Point:
        if not isinstance(k, int):
            return NotImplemented
        k %= Q
        if k == 0 or self._pk is None:
            return _IDENTITY
        pk = _mul_pk(self._pk, k)
        return _IDENTITY if pk is None else Point(pk)

    __rmul__ = __mul__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Point):
            return NotImplemented
        if self._pk is None or other._pk is None:
            return self._pk is None and other._pk is None
        return self._pk.format(compressed=True) == other._pk.format(compressed=True)

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return "Point(identity)" if self._pk is None else f"Point({self.to_bytes().hex()})"


_IDENTITY = Point(None)


def _combine(keys: list[PublicKey]) -> Point:
    """Sum of coincurve keys; libsecp256k1 refuses only when the sum is the identity."""
    if not keys:
        return _IDENTITY
    if len(keys) == 1:
        return Point(keys[0])
    try:
        return Point(PublicKey.combine_keys(keys))
    except ValueError:
        return _IDENTITY


def random_scalar() -> int:
    """A uniformly random scalar in [0, Q) from the OS CSPRNG."""
    return secrets.randbelow(Q)


def scalar_to_bytes(k: int) -> bytes:
    """32-byte big-endian encoding of a scalar reduced mod Q."""
    return (k % Q).to_bytes(32, "big")


def scalar_from_bytes(data: bytes) -> int:
    """Strictly decode a 32-byte big-endian scalar; values >= Q are rejected."""
    if len(data) != 32:
        raise ValueError(f"scalar encoding must be 32 bytes, got {len(data)}")
    k = int.from_bytes(data, "big")
    if k >= Q:
        raise ValueError("scalar encoding is not reduced mod the group order")
    return k


def base_mul(k: int) -> Point:
    """``k*G`` using libsecp256k1's constant-time generator multiplication."""
    k %= Q
    if k == 0:
        return _IDENTITY
    return Point(PublicKey.from_secret(k.to_bytes(32, "big")))


#: Domain-separation string for the second Pedersen generator.
H_DST = b"meterhub/v1/secp256k1/pedersen-H/try-and-increment-sha256"


def hash_to_point(dst: bytes) -> tuple[Point, int]:
    """Try-and-increment hash to secp256k1 with domain separation.

    For counter = 0, 1, 2, ... compute ``x = SHA-256(len(dst) || dst || counter)``
    (``len`` one byte, counter 4 bytes big-endian) and accept the first ``x < P``
    for which ``x^3 + 7`` is a square mod P, taking the even ``y`` (prefix 02).
    Nobody knows the discrete log of the result to any other generator, since
    it is the output of a hash. Returns the point and the counter used.
    Not constant time; only ever applied to public strings.
    """
    if not 0 < len(dst) < 256:
        raise ValueError("domain-separation string must be 1..255 bytes")
    for counter in range(1 << 16):
        x = hashlib.sha256(bytes([len(dst)]) + dst + counter.to_bytes(4, "big")).digest()
        if int.from_bytes(x, "big") >= P:
            continue
        try:
            return Point(PublicKey(b"\x02" + x)), counter
        except ValueError:
            continue
    raise RuntimeError("hash_to_point found no point")  # probability ~2^-65536


#: The standard generator of secp256k1.
G = Point(
    PublicKey(bytes.fromhex("0279BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798"))
)
#: Second Pedersen generator, ``hash_to_point(H_DST)``.
H = hash_to_point(H_DST)[0]


def naive_msm(scalars: Sequence[int], points: Sequence[Point]) -> Point:
    """Reference ``sum k_i*P_i`` by one scalar multiplication per term."""
    if len(scalars) != len(points):
        raise ValueError("scalars and points differ in length")
    return _combine([t._pk for t in (p * k for k, p in zip(scalars, points, strict=True)) if t._pk is not None])


def _mul_pk(pk: PublicKey, k: int) -> PublicKey | None:
    """``k * pk`` by libsecp256k1's ``secp256k1_ec_pubkey_tweak_mul`` called directly:
    coincurve's ``multiply`` re-validates the scalar (already reduced here), which cost
    as much again as the multiplication's own Python overhead on the MSM hot path."""
    k %= Q
    if k == 0:
        return None
    if k == 1:
        return pk
    out = _ffi.new("secp256k1_pubkey *", pk.public_key[0])
    if not _lib.secp256k1_ec_pubkey_tweak_mul(_CTX, out, k.to_bytes(32, "big")):
        raise AssertionError("tweak_mul refused a scalar in [2, Q)")
    return PublicKey(out)


def msm(scalars: Iterable[int], points: Iterable[Point], *, grouping_limit: int | None = None) -> Point:
    """Multi-scalar multiplication ``sum k_i*P_i``.

    Two strategies, both built only on libsecp256k1's point addition
    (``combine_keys``) and scalar multiplication:

    * points are bucketed by scalar and each bucket is summed with one
      ``combine_keys`` call (a time-of-use tariff has a handful of prices, so
      2,880 points collapse to a few sums);
    * then either each sum is multiplied once (~40 us per multiplication here), or
      Pippenger's bucket method over windows (:func:`_pippenger_rows`, additions
      only), whichever the cost model (:func:`_best_window`) says is cheaper; a
      ``grouping_limit`` forces the first up to that many distinct scalars (tests).

    Zero scalars and identity points contribute nothing.
    """
    buckets: dict[int, list[PublicKey]] = {}
    for k, p in zip(scalars, points, strict=True):
        k %= Q
        if k == 0 or p._pk is None:
            continue
        bucket = buckets.get(k)
        if bucket is None:
            buckets[k] = [p._pk]
        else:
            bucket.append(p._pk)
    return _sum_buckets(buckets, grouping_limit)


def _sum_buckets(buckets: dict[int, list[PublicKey]], grouping_limit: int | None = None) -> Point:
    """``sum k*(sum of bucket k)``: one combine per bucket, then one multiplication per
    distinct scalar or Pippenger over the bucket sums (module cost model)."""
    sums: list[tuple[int, PublicKey]] = []
    for k, pks in buckets.items():
        s = _combine(pks)
        if s._pk is not None:
            sums.append((k, s._pk))
    if not sums:
        return _IDENTITY
    if grouping_limit is None:
        bits = max(k for k, _ in sums).bit_length()
        many = len(sums) * (_COST_MUL + _COST_CALL) > _best_window(len(sums), bits)[1]
    else:
        many = len(sums) > grouping_limit
    if many:
        arr = PointArray.from_points([Point(pk) for _, pk in sums])
        return _pippenger_rows(_limbs([k for k, _ in sums]), arr.rows, max(k for k, _ in sums).bit_length())
    terms = [m for k, pk in sums if (m := _mul_pk(pk, k)) is not None]
    return _combine(terms)


def msm_encoded(scalars: Sequence[int], blob: bytes, width: int = 65) -> Point:
    """``sum k_i*P_i`` where the ``P_i`` are concatenated encodings in ``blob``.

    The verifier's hot path: points are parsed strictly (as
    :meth:`Point.from_bytes`) by ``secp256k1_ec_pubkey_parse`` straight into one
    array, bucketed by scalar, and each bucket is summed by one
    ``secp256k1_ec_pubkey_combine`` call over pointers into that array, so no
    per-point Python object is made. ``width`` is 33 (compressed) or 65
    (uncompressed; about 5x faster to parse). Raises ``PointDecodeError``
    naming the position of the first bad encoding.
    """
    if width not in (33, 65):
        raise ValueError("width must be 33 or 65")
    n, rem = divmod(len(blob), width)
    if rem or n != len(scalars):
        raise PointDecodeError(f"expected {len(scalars)} points of {width} bytes")
    zero = _IDENTITY_65 if width == 65 else _IDENTITY_33
    ok_prefix = (False, False, True, True, False) if width == 33 else (False, False, False, False, True)
    arr = _ffi.new("secp256k1_pubkey[]", max(n, 1))
    buf = _ffi.from_buffer(blob)
    parse = _lib.secp256k1_ec_pubkey_parse
    ctx = _CTX
    positions: dict[int, list[int]] = {}
    for k in range(n):
        off = width * k
        prefix = blob[off]
        if prefix > 4 or not ok_prefix[prefix]:
            if blob[off : off + width] == zero:
                continue
            raise PointDecodeError(f"point {k}: bad prefix byte {prefix:02x}")
        if not parse(ctx, arr + k, buf + off, width):
            raise PointDecodeError(f"point {k}: not on secp256k1")
        sk = scalars[k] % Q
        if sk:
            lst = positions.get(sk)
            if lst is None:
                positions[sk] = [k]
            else:
                lst.append(k)
    buckets: dict[int, list[PublicKey]] = {}
    combine = _lib.secp256k1_ec_pubkey_combine
    for sk, ks in positions.items():
        ptrs = _ffi.new("secp256k1_pubkey *[]", [arr + k for k in ks])
        out = _ffi.new("secp256k1_pubkey *")
        if combine(ctx, out, ptrs, len(ks)):  # 0 means the bucket sums to the identity
            buckets[sk] = [PublicKey(out)]
    return _sum_buckets(buckets)


def uncompress_many(blob: bytes) -> bytes:
    """The 65-byte uncompressed encodings of consecutive 33-byte compressed points
    (strictly parsed as :meth:`Point.from_bytes`; the all-zero identity stays all-zero).

    Equal to ``b"".join(Point.from_bytes(c).to_bytes_uncompressed() for c in ...)``
    (SEC 1 v2.0, 2.3.3-2.3.4), with one parse and one serialize call per point into
    preallocated buffers and no Python object per point: the utility's ingest path.
    Raises ``PointDecodeError`` naming the first bad point."""
    n, rem = divmod(len(blob), 33)
    if rem:
        raise PointDecodeError(f"{len(blob)} bytes are not 33-byte points")
    pk = _ffi.new("secp256k1_pubkey *")
    src = _ffi.from_buffer(blob)
    out = bytearray(65 * n)
    dst = _ffi.from_buffer(out)
    outlen = _ffi.new("size_t *")
    parse, serialize, flag = _lib.secp256k1_ec_pubkey_parse, _lib.secp256k1_ec_pubkey_serialize, _lib.SECP256K1_EC_UNCOMPRESSED
    for k in range(n):
        off = 33 * k
        prefix = blob[off]
        if prefix not in (2, 3):
            if blob[off : off + 33] != _IDENTITY_33:
                raise PointDecodeError(f"point {k}: bad prefix byte {prefix:02x}")
            continue  # the identity: 65 zero bytes, already there
        if not parse(_CTX, pk, src + off, 33):
            raise PointDecodeError(f"point {k}: not on secp256k1")
        outlen[0] = 65
        serialize(_CTX, dst + 65 * k, outlen, pk, flag)
    return bytes(out)


# ---------------------------------------------------------------------------
# Point arrays and Pippenger's bucket method over them
# ---------------------------------------------------------------------------
#: Measured costs on this stack (microseconds): one ``combine`` call (its final field
#: inversion and the cffi call), one point added inside a ``combine``, one
#: ``tweak_mul`` with its call. They only steer the choice of method and window.
_COST_CALL = 3.7
_COST_ADD = 0.38
_COST_MUL = 42.0


def _window_cost(n: int, bits: int, c: int) -> float:
    """Estimated cost of :func:`_pippenger_rows` with ``c``-bit windows."""
    windows = -(-bits // c)
    return windows * (n * _COST_ADD + ((1 << c) + 2 * c) * _COST_CALL + c * (1 << (c - 1)) * _COST_ADD)


def _best_window(n: int, bits: int) -> tuple[int, float]:
    return min(((c, _window_cost(n, bits, c)) for c in range(1, 13)), key=lambda t: t[1])


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
        zero = _IDENTITY_65 if width == 65 else _IDENTITY_33
        ok_prefix = (False, False, True, True, False) if width == 33 else (False, False, False, False, True)
        arr = _ffi.cast("secp256k1_pubkey *", rows.ctypes.data)
        buf = _ffi.from_buffer(blob)
        parse = _lib.secp256k1_ec_pubkey_parse
        ctx = _CTX
        for k in range(n):
            off = width * k
            prefix = blob[off]
            if prefix > 4 or not ok_prefix[prefix]:
                if blob[off : off + width] == zero:
                    live[k] = False
                    continue
                raise PointDecodeError(f"point {k}: bad prefix byte {prefix:02x}")
            if not parse(ctx, arr + k, buf + off, width):
                raise PointDecodeError(f"point {k}: not on secp256k1")
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
        pos = 0
        for j, cnt in enumerate(counts):
            if cnt and combine(ctx, out + j, ptrs + pos, cnt):  # 0: the group sums to the identity
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
            if len(uniq) * (_COST_MUL + _COST_CALL) <= _best_window(len(nz), bits)[1]:
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
        if len(positions) * (_COST_MUL + _COST_CALL) <= _best_window(used, bits)[1]:
            idx: list[int] = []
            bounds = [0]
            for v in positions.values():
                idx.extend(v)
                bounds.append(len(idx))
            return self._direct(list(positions), np.asarray(idx, dtype=np.int64), bounds)
        keep = [i for i, k in enumerate(red) if k and live[i]]
        rows = self.rows if len(keep) == n else self.rows[np.asarray(keep, dtype=np.int64)]
        return _pippenger_rows(_limbs([red[i] for i in keep]), rows, bits)

    def _direct(self, values: list[int], idx: np.ndarray, bounds: list[int]) -> Point:
        """``sum_j values[j] * (sum of the points idx[bounds[j]:bounds[j+1]])``: one
        ``combine`` per distinct scalar, then one multiplication each."""
        addrs = idx.astype(np.uint64) * np.uint64(64) + np.uint64(self.rows.ctypes.data)
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        combine = _lib.secp256k1_ec_pubkey_combine
        terms: list[PublicKey] = []
        for j, k in enumerate(values):
            out = _ffi.new("secp256k1_pubkey *")
            if combine(_CTX, out, ptrs + bounds[j], bounds[j + 1] - bounds[j]):
                m = _mul_pk(PublicKey(out), k)
                if m is not None:
                    terms.append(m)
        return _combine(terms)


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


def _pippenger_rows(limbs: np.ndarray, rows: np.ndarray, bits: int) -> Point:
    """``sum k_i P_i`` over non-identity ``rows`` with reduced non-zero scalars below
    ``2^bits`` given as limbs (:func:`_limbs`): Pippenger's bucket method (Bernstein et al., "Faster batch forgery
    identification", 2012, section 4) with the window ``c`` the cost model picks.

    Per window (most significant first): the points are sorted by their digit
    (numpy), each digit's bucket ``B_d`` is summed by one ``combine`` over a slice of
    one pointer array; ``sum_d d B_d`` is formed bit by bit, ``T_j = sum of B_d with
    bit j of d set``; and Horner's rule over all bit positions,
    ``acc = 2 acc + T_j``, is one three-pointer ``combine`` each (libsecp256k1 adds a
    point to itself by doubling). No multiplication at all: every step is point
    additions inside libsecp256k1."""
    n = len(rows)
    c, _ = _best_window(n, bits)
    windows = -(-bits // c)
    nb = 1 << c
    base = np.uint64(rows.ctypes.data)
    bucket = np.zeros((nb, 8), dtype=np.uint64)
    bptr = _ffi.cast("secp256k1_pubkey *", bucket.ctypes.data)
    bbase = np.uint64(bucket.ctypes.data)
    accs = np.zeros((2, 8), dtype=np.uint64)
    acc_p = [_ffi.cast("secp256k1_pubkey *", accs.ctypes.data + 64 * i) for i in range(2)]
    tsum = _ffi.new("secp256k1_pubkey *")
    trio = _ffi.new("secp256k1_pubkey *[3]")
    combine = _lib.secp256k1_ec_pubkey_combine
    ctx = _CTX
    have_acc = False
    cur = 0
    dvals = np.arange(nb, dtype=np.int64)
    bit_sets = [((dvals >> j) & 1).astype(bool) for j in range(c)]
    for w in range(windows - 1, -1, -1):
        d = _window_digits(limbs, w, c)
        order = np.argsort(d, kind="stable")
        counts = np.bincount(d, minlength=nb)
        starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
        addrs = order.astype(np.uint64) * np.uint64(64) + base
        ptrs = _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(addrs))
        alive = np.zeros(nb, dtype=bool)
        for v in np.flatnonzero(counts[1:]).tolist():
            v += 1
            if combine(ctx, bptr + v, ptrs + starts[v], starts[v + 1] - starts[v]):
                alive[v] = True
        for j in range(c - 1, -1, -1):
            sel = np.flatnonzero(alive & bit_sets[j])
            t_live = False
            if len(sel):
                taddr = sel.astype(np.uint64) * np.uint64(64) + bbase
                t_live = bool(combine(ctx, tsum, _ffi.cast("secp256k1_pubkey **", _ffi.from_buffer(taddr)), len(sel)))
            if have_acc:
                trio[0] = trio[1] = acc_p[cur]
                cnt = 2
                if t_live:
                    trio[2] = tsum
                    cnt = 3
                have_acc = bool(combine(ctx, acc_p[1 - cur], trio, cnt))
                cur = 1 - cur
            elif t_live:
                _ffi.memmove(acc_p[cur], tsum, 64)
                have_acc = True
    if not have_acc:
        return _IDENTITY
    out = _ffi.new("secp256k1_pubkey *")
    _ffi.memmove(out, acc_p[cur], 64)
    return Point(PublicKey(out))
