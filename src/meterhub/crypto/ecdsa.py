"""ECDSA P-256 with SHA-256 (FIPS 186-5), as DLMS security suite 1 uses it.

Thin recipes over ``cryptography``: key generation, PEM/raw encodings,
fixed-width ``r || s`` signatures (64 bytes, as in DLMS and SML) and a
verification that returns a bool instead of raising.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "SigningKey",
    "VerifyingKey",
    "N",
    "derive_signing_key",
    "generate_signing_key",
    "is_low_s",
    "load_signing_key",
    "load_verifying_key",
    "public_bytes",
    "sign",
    "verify",
]

SigningKey = ec.EllipticCurvePrivateKey
VerifyingKey = ec.EllipticCurvePublicKey

_CURVE = ec.SECP256R1()
_ALG = ec.ECDSA(hashes.SHA256())


def generate_signing_key() -> SigningKey:
    return ec.generate_private_key(_CURVE)


def signing_key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_signing_key(pem: bytes) -> SigningKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("expected an ECDSA P-256 private key")
    return key


def public_bytes(key: SigningKey | VerifyingKey) -> bytes:
    """SEC 1 uncompressed public point, 65 bytes."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def load_verifying_key(data: bytes) -> VerifyingKey:
    """Decode a SEC 1 P-256 public point (33 or 65 bytes); raises ValueError."""
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, bytes(data))


# The P-256 group order (FIPS 186-5 / SEC 2 v2.0, 2.4.2).
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def sign(key: SigningKey, message: bytes) -> bytes:
    """Sign and return the 64-byte ``r || s`` form, always low-S (``s <= N/2``).

    ``(r, N - s)`` verifies as well as ``(r, s)``; emitting only the low half makes
    every signature canonical, so verifiers can refuse the other one
    (docs/verification.md, rule V05)."""
    r, s = decode_dss_signature(key.sign(message, _ALG))
    if s > N // 2:
        s = N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def is_low_s(signature: bytes) -> bool:
    """True if a 64-byte ``r || s`` signature has ``s <= N/2`` (the canonical half)."""
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") <= N // 2


def verify(key: VerifyingKey, message: bytes, signature: bytes, *, low_s: bool = False) -> bool:
    """Verify a 64-byte ``r || s`` signature; False on any malformation, and with
    ``low_s`` also for a high-S signature (rule V05)."""
    if len(signature) != 64 or (low_s and not is_low_s(signature)):
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, _ALG)
    except (InvalidSignature, ValueError):
        return False
    return True


def derive_signing_key(seed: bytes) -> SigningKey:
    """The P-256 key ``d = int(seed) mod (N - 1) + 1`` (so ``1 <= d < N``) from a
    32-byte seed. For reproducible demo keys from public strings only
    (:mod:`meterhub.model.demo_keys`); real keys come from :func:`generate_signing_key`."""
    if len(seed) != 32:
        raise ValueError("a key seed is 32 bytes")
    return ec.derive_private_key(int.from_bytes(seed, "big") % (N - 1) + 1, _CURVE)
