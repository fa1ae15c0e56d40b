"""Supplier signatures over tariffs, and the strict tariff file reader/writer.

The supplier signs ``TARIFF_SIGNING_CONTEXT || canonical_json(tariff.to_dict())``
with ECDSA P-256/SHA-256; the signature block names the key by its id, the
SHA-256 (hex) of the SEC 1 uncompressed public point. What is signed is the
canonical encoding of the *parsed* tariff, so the file itself may be
pretty-printed without breaking the signature.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from meterhub.crypto import ecdsa
from meterhub.model import strictjson
from meterhub.model.demo_keys import SUPPLIER, demo_signing_key
from meterhub.tariffs.fields import TariffError, _check_object, _q
from meterhub.tariffs.model import Tariff
from meterhub.tariffs.nonlinear import NonLinearTariff, tariff_from_dict

__all__ = [
    "SIGNATURE_ALGORITHM",
    "TARIFF_SIGNING_CONTEXT",
    "SignedTariff",
    "demo_supplier_key",
    "dump_tariff",
    "example_signed_tariff",
    "key_id",
    "load_tariff",
    "sign_tariff",
    "signing_message",
    "verify_tariff",
]

# Domain separation for supplier signatures over tariffs.
TARIFF_SIGNING_CONTEXT = b"meterhub/v1/tariff\x00"
SIGNATURE_ALGORITHM = "ecdsa-p256-sha256"
# Tariff files are small; refuse anything larger before parsing it.
MAX_FILE_BYTES = 1 << 20
EXAMPLE_FILE = "tariff-de-tou-2027.json"

_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_HEX128_RE = re.compile(r"[0-9a-f]{128}")
_FILE_FIELDS = {"tariff", "signature"}
_SIG_FIELDS = {"algorithm", "key_id", "value"}


@dataclass(frozen=True)
class SignedTariff:
    """A tariff (any supported kind) with its supplier signature (64-byte ``r || s``); not yet verified."""

    tariff: Tariff | NonLinearTariff
    key_id: str
    signature: bytes


def _verifying_key(key: Any) -> ecdsa.VerifyingKey:
    """Accept a P-256 public key object, a private key, or SEC 1 point bytes."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = key.public_key()
    if isinstance(key, (bytes, bytearray, memoryview)):
        try:
            key = ecdsa.load_verifying_key(bytes(key))
        except ValueError:
            raise TariffError("supplier public key is not a valid P-256 point") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise TariffError("supplier key must be an ECDSA P-256 public key")
    return key


def key_id(key: Any) -> str:
    """Hex SHA-256 of the SEC 1 uncompressed public point (65 bytes)."""
    return hashlib.sha256(ecdsa.public_bytes(_verifying_key(key))).hexdigest()


def signing_message(tariff: Tariff | NonLinearTariff) -> bytes:
    """The exact bytes the supplier signs."""
    return TARIFF_SIGNING_CONTEXT + tariff.canonical_bytes()


def sign_tariff(tariff: Tariff | NonLinearTariff, key: ecdsa.SigningKey) -> SignedTariff:
    """Sign ``tariff`` with the supplier's P-256 private key."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise TariffError("signing key must be an ECDSA P-256 private key")
    return SignedTariff(tariff, key_id(key), ecdsa.sign(key, signing_message(tariff)))


def verify_tariff(
    signed: SignedTariff, supplier_public_key: Any, *, on: Any = None
) -> Tariff | NonLinearTariff:
    """Return the tariff if the supplier signed it; optionally check it is valid ``on`` a date.

    Raises :class:`TariffError` if the signature names another key, does not
    verify, or (with ``on``) the tariff is expired / not yet valid.
    """
    if not isinstance(signed, SignedTariff):
        raise TariffError(f"expected a SignedTariff, got {type(signed).__name__}")
    pub = _verifying_key(supplier_public_key)
    expected = key_id(pub)
    if signed.key_id != expected:
        shown = _q(signed.key_id[:16] if isinstance(signed.key_id, str) else signed.key_id)
        raise TariffError(
            f"tariff signed by key {shown}..., not by the given supplier key {expected[:16]}..."
        )
    sig = signed.signature
    if isinstance(sig, (bytes, bytearray)) and not ecdsa.is_low_s(bytes(sig)):
        # docs/verification.md V05: signers emit low-S only; the other half is refused.
        raise TariffError("tariff signature does not verify: high-S (non-canonical) signature refused")
    if not isinstance(sig, (bytes, bytearray)) or not ecdsa.verify(
        pub, signing_message(signed.tariff), bytes(sig)
    ):
        raise TariffError(
            f"tariff signature does not verify (tariff {signed.tariff.tariff_id} "
            f"v{signed.tariff.version})"
        )
    if on is not None:
        signed.tariff.check_valid_on(on)
    return signed.tariff


# ------------------------------------------------------------------ file format


def _parse_json(data: bytes) -> Any:
    """The shared strict reader (docs/verification.md, V03), with tariff-worded errors."""
    try:
        return strictjson.loads(data, "tariff file", max_bytes=MAX_FILE_BYTES)
    except strictjson.StrictJSONError as e:
        msg = str(e)
        if "too large" in msg or "not UTF-8" in msg:
            raise TariffError(msg) from None
        raise TariffError("malformed JSON: " + msg.removeprefix("tariff file").lstrip(": ")) from None


def _read(path_or_bytes: Any) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    if isinstance(path_or_bytes, (str, os.PathLike)):
        try:
            with open(path_or_bytes, "rb") as f:
                return f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise TariffError(
                f"cannot read tariff file {_q(str(path_or_bytes))}: {e.strerror}"
            ) from None
    raise TariffError(f"expected a path or bytes, got {type(path_or_bytes).__name__}")


def load_tariff(path_or_bytes: Any) -> SignedTariff:
    """Strictly parse a tariff file (a path, or its bytes). Does not verify the signature."""
    doc = _parse_json(_read(path_or_bytes))
    _check_object("tariff file", doc, _FILE_FIELDS, _FILE_FIELDS)
    sig = doc["signature"]
    _check_object("signature", sig, _SIG_FIELDS, _SIG_FIELDS)
    if sig["algorithm"] != SIGNATURE_ALGORITHM:
        raise TariffError(
            f"signature.algorithm: unsupported {_q(sig['algorithm'])} "
            f"(expected {SIGNATURE_ALGORITHM!r})"
        )
    kid = sig["key_id"]
    if not (isinstance(kid, str) and _HEX64_RE.fullmatch(kid)):
        raise TariffError("signature.key_id: expected 64 lowercase hex digits")
    value = sig["value"]
    if not (isinstance(value, str) and _HEX128_RE.fullmatch(value)):
        raise TariffError("signature.value: expected 128 lowercase hex digits (r || s)")
    tariff = tariff_from_dict(doc["tariff"])
    return SignedTariff(tariff, kid, bytes.fromhex(value))


def dump_tariff(signed: SignedTariff) -> bytes:
    """Serialise a signed tariff as a readable JSON file (UTF-8, trailing newline)."""
    if not isinstance(signed, SignedTariff):
        raise TariffError(f"expected a SignedTariff, got {type(signed).__name__}")
    if not _HEX64_RE.fullmatch(signed.key_id) or len(signed.signature) != 64:
        raise TariffError("signed tariff has a malformed key id or signature")
    doc = {
        "tariff": signed.tariff.to_dict(),
        "signature": {
            "algorithm": SIGNATURE_ALGORITHM,
            "key_id": signed.key_id,
            "value": bytes(signed.signature).hex(),
        },
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# -------------------------------------------------------------------- examples


def demo_supplier_key() -> ecdsa.SigningKey:
    """A fixed, PUBLICLY KNOWN demo supplier key that signs the shipped example tariff.

    Derived from a hash of a public string, so it is reproducible and secret to
    nobody: use it for demos and tests only, never to sign a real tariff.
    """
    return demo_signing_key(SUPPLIER)


def example_signed_tariff() -> SignedTariff:
    """The shipped example file ``meterhub/data/tariff-de-tou-2027.json`` (signed by the demo key)."""
    data = resources.files("meterhub").joinpath("data", EXAMPLE_FILE).read_bytes()
    return load_tariff(data)
