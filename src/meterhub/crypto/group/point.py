"""Points and scalars of secp256k1 (SEC 2 v2.0, section 2.4.1): the curve constants, the
:class:`Point` wrapper with its identity and strict SEC 1 v2.0 encodings (sections
2.3.3/2.3.4), the generators ``G`` and ``H`` (:mod:`meterhub.crypto.group`).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from coincurve import PublicKey

# coincurve's own cffi binding of libsecp256k1, for the batch-decoding hot path.
from coincurve._libsecp256k1 import ffi as _ffi
from coincurve._libsecp256k1 import lib as _lib
from coincurve.context import GLOBAL_CONTEXT as _GLOBAL_CONTEXT

from ...errors import MeterhubError

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
        """``k * self`` by ``tweak_mul`` (:func:`_mul_pk`): variable time in ``k``, so for
        public scalars; a secret scalar goes through :meth:`mul_secret`."""
        if not isinstance(k, int):
            return NotImplemented
        k %= Q
        if k == 0 or self._pk is None:
            return _IDENTITY
        pk = _mul_pk(self._pk, k)
        return _IDENTITY if pk is None else Point(pk)

    __rmul__ = __mul__

    def mul_secret(self, k: int) -> Point:
        """``k * self`` in constant time in ``k``, for a secret scalar (a blinding, a nonce).

        ``*`` goes to ``secp256k1_ec_pubkey_tweak_mul``, whose ``secp256k1_eckey_pubkey_tweak_mul``
        (libsecp256k1 ``src/eckey_impl.h``) runs the variable-time Strauss/wNAF ``secp256k1_ecmult``:
        its additions follow the scalar's non-zero digits, so its time depends on the scalar.
        This method runs ``secp256k1_ecdh`` (``src/modules/ecdh/main_impl.h``), which multiplies by
        ``secp256k1_ecmult_const`` (a fixed schedule of doublings and additions whose table entries
        are read by constant-time scans, ``src/ecmult_const_impl.h``), and hands
        the affine product to a hash function; ours (``_ECDH_COPY_XY``) copies ``x || y`` out
        instead of hashing, and the point is parsed back as the SEC 1 v2.0 (2.3.4) uncompressed
        encoding ``04 || x || y``. The products equal ``*``'s bit for bit.

        ``k`` is reduced mod ``Q``; ``0`` (and the identity as ``self``) gives the identity, the
        one branch on the scalar, since coincurve cannot hold the identity. The constant-time
        claim covers libsecp256k1's arithmetic; CPython's reduction and ``to_bytes`` of ``k``
        are not guaranteed constant time (their time follows the number of 30-bit digits).
        """
        if not isinstance(k, int):
            raise TypeError("a scalar is an int")
        k %= Q
        if k == 0 or self._pk is None:
            return _IDENTITY
        buf = _ffi.new("unsigned char[65]")
        buf[0] = 4
        if not _lib.secp256k1_ecdh(_CTX, buf + 1, self._pk.public_key, k.to_bytes(32, "big"), _ECDH_COPY_XY, _ffi.NULL):
            raise AssertionError("secp256k1_ecdh refused a scalar in [1, Q)")
        out = _ffi.new("secp256k1_pubkey *")
        if not _lib.secp256k1_ec_pubkey_parse(_CTX, out, buf, 65):
            raise AssertionError("secp256k1_ecdh returned a point off the curve")
        return Point(PublicKey(out))

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
    """``k*G`` by libsecp256k1's constant-time generator multiplication (``secp256k1_ecmult_gen``
    behind ``secp256k1_ec_pubkey_create``); ``k == 0 mod Q`` returns the identity early, the
    one branch on ``k`` (:func:`meterhub.crypto.pedersen.commit_point` avoids it)."""
    k %= Q
    if k == 0:
        return _IDENTITY
    return Point(PublicKey.from_secret(k.to_bytes(32, "big")))


def _ecdh_copy_xy(output: Any, x32: Any, y32: Any, data: Any) -> int:
    """The ``secp256k1_ecdh_hash_function`` of :meth:`Point.mul_secret`: ``output`` (65 bytes
    there, written from offset 1) receives the product's affine ``x || y`` unhashed."""
    _ffi.memmove(output, x32, 32)
    _ffi.memmove(output + 32, y32, 32)
    return 1


# Made once at import: a cffi callback is an executable trampoline, not one to allocate per call.
_ECDH_COPY_XY = _ffi.callback("secp256k1_ecdh_hash_function", _ecdh_copy_xy)


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


def _mul_pk(pk: PublicKey, k: int) -> PublicKey | None:
    """``k * pk`` by libsecp256k1's ``secp256k1_ec_pubkey_tweak_mul`` called directly (variable
    time in ``k``: public scalars only; a secret one goes through :meth:`Point.mul_secret`):
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
