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
    "sum_groups",
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


def msm(scalars: Iterable[int], points: Iterable[Point], *, grouping_limit: int = 2000) -> Point:
    """Multi-scalar multiplication ``sum k_i*P_i``.

    Two strategies, both built only on libsecp256k1's point addition
    (``combine_keys``) and scalar multiplication:

    * points are bucketed by scalar and each bucket is summed with one
      ``combine_keys`` call (a time-of-use tariff has a handful of prices, so
      2,880 points collapse to a few sums);
    * up to ``grouping_limit`` distinct scalars, each sum is multiplied once
      (~35 us per multiplication here);
    * beyond that, Pippenger's bucket method (Bernstein et al., "Faster batch
      forgery identification", 2012, section 4) with byte-wide windows (see
      :func:`_pippenger`), which costs ~260 multiplications plus 32 passes over
      the points and so only pays off for a few thousand distinct scalars.

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


def _sum_buckets(buckets: dict[int, list[PublicKey]], grouping_limit: int = 2000) -> Point:
    """``sum k*(sum of bucket k)``: one combine per bucket, then few multiplications
    or, past ``grouping_limit`` distinct scalars, Pippenger over the bucket sums."""
    sums: list[tuple[int, PublicKey]] = []
    for k, pks in buckets.items():
        s = _combine(pks)
        if s._pk is not None:
            sums.append((k, s._pk))
    # Pippenger pays off only for many distinct scalars: each of its 32 windows
    # costs ~8 multiplications plus a pass over the points, against one
    # multiplication (~35 us) per distinct scalar for the direct sum.
    if len(sums) > grouping_limit:
        return _pippenger(sums)
    terms = [m for k, pk in sums if (m := _mul_pk(pk, k)) is not None]
    return _combine(terms)


def _pippenger(items: list[tuple[int, PublicKey]]) -> Point:
    """Pippenger's bucket method with byte-wide windows (c = 8).

    For each byte position, from the most significant: points go to the
    bucket of their scalar's byte (one ``combine_keys`` per bucket), and the
    window sum ``sum_d d*B_d`` is formed bit by bit as
    ``sum_j 2^j * (sum of B_d with bit j of d set)``: eight ``combine_keys``
    calls and eight multiplications instead of the usual 2^c sequential
    additions, which cost a Python call each here. Horner's rule joins the
    windows (``acc = 256*acc + window``).
    """
    encoded = [(k.to_bytes(32, "big"), pk) for k, pk in items]
    acc: PublicKey | None = None
    shift = (256).to_bytes(32, "big")
    for byte in range(32):
        buckets: list[list[PublicKey] | None] = [None] * 256
        for kb, pk in encoded:
            d = kb[byte]
            if d:
                lst = buckets[d]
                if lst is None:
                    buckets[d] = [pk]
                else:
                    lst.append(pk)
        sums: list[tuple[int, PublicKey]] = []
        for d in range(1, 256):
            lst = buckets[d]
            if lst is not None:
                bs = _combine(lst)
                if bs._pk is not None:
                    sums.append((d, bs._pk))
        terms: list[PublicKey] = []
        if acc is not None:
            terms.append(acc.multiply(shift))
        for j in range(8):
            sel = [pk for d, pk in sums if d >> j & 1]
            if sel:
                t = _combine(sel)
                if t._pk is not None:
                    terms.append(t._pk if j == 0 else t._pk.multiply((1 << j).to_bytes(32, "big")))
        acc = _combine(terms)._pk
    return _IDENTITY if acc is None else Point(acc)


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


def sum_groups(blob: bytes, width: int, g: int) -> list[Point]:
    """Sums of ``g`` consecutive points of ``blob`` (encodings of ``width`` 33 or 65
    bytes, strictly parsed as :meth:`Point.from_bytes`): the hourly commitments from the
    meter's 15-minute ones. One ``secp256k1_ec_pubkey_combine`` per group over the parsed
    array, no Python object per point; raises ``PointDecodeError``."""
    if width not in (33, 65) or g < 1:
        raise ValueError("width must be 33 or 65 and g positive")
    n, rem = divmod(len(blob), width)
    if rem or n % g:
        raise PointDecodeError(f"{len(blob)} bytes are not groups of {g} points of {width} bytes")
    zero = _IDENTITY_65 if width == 65 else _IDENTITY_33
    arr = _ffi.new("secp256k1_pubkey[]", max(n, 1))
    buf = _ffi.from_buffer(blob)
    parse = _lib.secp256k1_ec_pubkey_parse
    live: list[bool] = []
    for k in range(n):
        off = width * k
        prefix = blob[off]
        if (width == 33 and prefix not in (2, 3)) or (width == 65 and prefix != 4):
            if blob[off : off + width] != zero:
                raise PointDecodeError(f"point {k}: bad prefix byte {prefix:02x}")
            live.append(False)
            continue
        if not parse(_CTX, arr + k, buf + off, width):
            raise PointDecodeError(f"point {k}: not on secp256k1")
        live.append(True)
    combine = _lib.secp256k1_ec_pubkey_combine
    ptrs = _ffi.new("secp256k1_pubkey *[]", max(g, 1))
    out: list[Point] = []
    for start in range(0, n, g):
        cnt = 0
        for k in range(start, start + g):
            if live[k]:
                ptrs[cnt] = arr + k
                cnt += 1
        res = _ffi.new("secp256k1_pubkey *")
        if cnt and combine(_CTX, res, ptrs, cnt):  # 0: the group sums to the identity
            out.append(Point(PublicKey(res)))
        else:
            out.append(_IDENTITY)
    return out


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
