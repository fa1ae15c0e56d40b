"""Multi-scalar multiplication over :class:`~meterhub.crypto.group.point.Point` values and
over concatenated SEC 1 encodings, and batch decompression (:mod:`meterhub.crypto.group`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from coincurve import PublicKey

# coincurve's own cffi binding of libsecp256k1, for the batch-decoding hot path.
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib

from .arrays import (
    _COST_CALL,
    _COST_MUL,
    PointArray,
    _best_plan,
    _best_window,
    _limbs,
    _pippenger_rows,
)
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


def naive_msm(scalars: Sequence[int], points: Sequence[Point]) -> Point:
    """Reference ``sum k_i*P_i`` by one scalar multiplication per term."""
    if len(scalars) != len(points):
        raise ValueError("scalars and points differ in length")
    return _combine([t._pk for t in (p * k for k, p in zip(scalars, points, strict=True)) if t._pk is not None])

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


def msm_fixed_plan(scalars: Sequence[int], points: PointArray, bits: int = 256) -> Point:
    """``sum k_i P_i`` for a prover's secret scalars (docs/privacy.md, "Timing: what a
    recipient learns from how long the hub takes"): Pippenger's bucket method over every
    point of ``points``, with the window and digit form chosen from ``len(points)`` and the
    public bound ``bits`` alone (:func:`~meterhub.crypto.group.arrays._best_plan`). Unlike
    :func:`msm` nothing looks at the scalars' values to choose the work: no bucketing of
    equal scalars, no direct method for few distinct ones, no zero scalar dropped, no
    window from the largest scalar's length.

    Inside a window the bucket method still adds only points with a non-zero digit and
    combines only non-empty buckets, so the caller hands in masked scalars, uniform mod
    ``Q`` and independent of the secret (``m + s_L`` in
    :func:`meterhub.crypto.sumsquares.prove`), which makes those counts independent of
    the secret as well. Every point must be a live (non-identity) public point; scalars
    are reduced mod ``Q`` and must be below ``2^bits``."""
    n = len(points)
    if len(scalars) != n:
        raise ValueError("scalars and points differ in length")
    if not 0 < bits <= 256:
        raise ValueError("bits must be in 1..256")
    if not n:
        return _IDENTITY
    if not points.live.all():
        raise ValueError("a fixed plan needs every point live (public generators)")
    red = [k % Q for k in scalars]
    if bits < 256 and any(k >> bits for k in red):
        raise ValueError(f"a scalar is not below 2^{bits}")
    return _pippenger_rows(_limbs(red), points.rows, bits, _best_plan(n, bits)[:2])


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
