"""Consents: the one sanctioned way fine-grained readings leave the hub (docs/privacy.md).

A consent is signed by the customer's key and names the recipient, the purpose, the
resolution (minutes per exported value), the period of readings (whole local days,
inclusive) and the last day it may be used (``expires``: the hub refuses once it holds
readings of that day or later, the card's only clock). A revocation, also signed by
the customer, stops further exports of that consent at once.

Wire formats (canonical JSON, sorted keys, no whitespace), each signed over a DST and the
canonical object, like the release policy::

    {"consent": {"format": "meterhub-consent/1", "consent_id", "recipient", "purpose",
                 "resolution_minutes", "period_from", "period_to", "expires"},
     "signature": {"algorithm": "ecdsa-p256-sha256", "key_id", "value"}}
    {"revocation": {"format": "meterhub-consent-revocation/1", "consent_id"},
     "signature": {...}}
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from ..crypto import ecdsa
from .model import RECIPIENTS, PolicyError

__all__ = [
    "CONSENT_FORMAT",
    "REVOCATION_FORMAT",
    "Consent",
    "SignedConsent",
    "dump_consent",
    "dump_revocation",
    "load_consent",
    "load_revocation",
    "sign_consent",
    "sign_revocation",
    "verify_consent",
    "verify_revocation",
]

CONSENT_FORMAT = "meterhub-consent/1"
REVOCATION_FORMAT = "meterhub-consent-revocation/1"
DST_CONSENT = b"meterhub/v1/consent\x00"
DST_REVOCATION = b"meterhub/v1/consent-revocation\x00"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # used with fullmatch: "$" also matches before a final "\n"
_MAX = 2048


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def _key_id(key: Any) -> str:
    point = key if isinstance(key, bytes) else ecdsa.public_bytes(key)
    return hashlib.sha256(point).hexdigest()


@dataclass(frozen=True)
class Consent:
    consent_id: str
    recipient: str
    purpose: str
    resolution_minutes: int
    period_from: date
    period_to: date
    expires: date

    def __post_init__(self) -> None:
        if not isinstance(self.consent_id, str) or not _ID.fullmatch(self.consent_id):
            raise PolicyError("consent_id: 1-64 characters A-Z a-z 0-9 _ . -")
        if self.recipient not in RECIPIENTS:
            raise PolicyError(f"recipient: one of {', '.join(RECIPIENTS)}")
        if not isinstance(self.purpose, str) or not 1 <= len(self.purpose) <= 200 or not self.purpose.isprintable():
            raise PolicyError("purpose: 1-200 printable characters")
        r = self.resolution_minutes
        if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= 1440 or 1440 % r:
            raise PolicyError("resolution_minutes: a divisor of a day's 1440 minutes")
        if self.period_to < self.period_from or self.expires <= self.period_from:
            raise PolicyError("period ends before it starts, or the consent expires before it")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("period_from", "period_to", "expires"):
            d[k] = d[k].isoformat()
        return {"format": CONSENT_FORMAT, **d}

    def canonical_bytes(self) -> bytes:
        return _canonical(self.to_dict())

    def digest(self) -> bytes:
        return hashlib.sha256(b"meterhub/v1/consent-digest\x00" + self.canonical_bytes()).digest()

    @classmethod
    def from_dict(cls, d: Any) -> Consent:
        fields = {"format", "consent_id", "recipient", "purpose", "resolution_minutes", "period_from", "period_to", "expires"}
        if not isinstance(d, dict) or set(d) != fields or d["format"] != CONSENT_FORMAT:
            raise PolicyError(f"consent: expected the fields of {CONSENT_FORMAT}")
        try:
            days = {k: date.fromisoformat(d[k]) for k in ("period_from", "period_to", "expires")}
        except (TypeError, ValueError):
            raise PolicyError("consent: dates are YYYY-MM-DD") from None
        return cls(d["consent_id"], d["recipient"], d["purpose"], d["resolution_minutes"], **days)


@dataclass(frozen=True)
class SignedConsent:
    consent: Consent
    key_id: str
    signature: bytes


def sign_consent(consent: Consent, customer_key: ecdsa.SigningKey) -> SignedConsent:
    return SignedConsent(consent, _key_id(customer_key), ecdsa.sign(customer_key, DST_CONSENT + consent.canonical_bytes()))


def _sig(sig: dict[str, Any] | None) -> dict[str, Any]:
    return {"algorithm": "ecdsa-p256-sha256", **(sig or {})}


def dump_consent(signed: SignedConsent) -> bytes:
    return _canonical({"consent": signed.consent.to_dict(),
                       "signature": _sig({"key_id": signed.key_id, "value": signed.signature.hex()})})


def _load(raw: bytes | str, top: str) -> tuple[Any, str, bytes]:
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > _MAX:
        raise PolicyError(f"{top} too large")
    try:
        d = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise PolicyError(f"{top} is not JSON") from None
    if not isinstance(d, dict) or set(d) != {top, "signature"}:
        raise PolicyError(f"expected {{{top}, signature}}")
    sig = d["signature"]
    if not isinstance(sig, dict) or set(sig) != {"algorithm", "key_id", "value"} or sig["algorithm"] != "ecdsa-p256-sha256":
        raise PolicyError("signature: expected {algorithm: ecdsa-p256-sha256, key_id, value}")
    try:
        value = bytes.fromhex(sig["value"]) if isinstance(sig["value"], str) else b""
    except ValueError:
        value = b""
    if len(value) != 64 or not isinstance(sig["key_id"], str):
        raise PolicyError("signature: value must be 128 hex digits")
    return d[top], sig["key_id"], value


def load_consent(raw: bytes | str) -> SignedConsent:
    body, kid, sig = _load(raw, "consent")
    return SignedConsent(Consent.from_dict(body), kid, sig)


def verify_consent(signed: SignedConsent, customer_key: ecdsa.VerifyingKey | bytes) -> Consent:
    vk = ecdsa.load_verifying_key(customer_key) if isinstance(customer_key, bytes) else customer_key
    if signed.key_id != _key_id(vk) or not ecdsa.verify(vk, DST_CONSENT + signed.consent.canonical_bytes(), signed.signature):
        raise PolicyError("the consent is not signed by the customer's key")
    return signed.consent


def sign_revocation(consent_id: str, customer_key: ecdsa.SigningKey) -> bytes:
    body = {"format": REVOCATION_FORMAT, "consent_id": consent_id}
    sig = ecdsa.sign(customer_key, DST_REVOCATION + _canonical(body))
    return dump_revocation(body, _key_id(customer_key), sig)


def dump_revocation(body: dict[str, Any], key_id: str, signature: bytes) -> bytes:
    return _canonical({"revocation": body, "signature": _sig({"key_id": key_id, "value": signature.hex()})})


def load_revocation(raw: bytes | str) -> tuple[str, str, bytes]:
    """``(consent id, key id, signature)`` of a revocation file (no trust yet)."""
    body, kid, sig = _load(raw, "revocation")
    if not isinstance(body, dict) or set(body) != {"format", "consent_id"} or body["format"] != REVOCATION_FORMAT:
        raise PolicyError(f"revocation: expected the fields of {REVOCATION_FORMAT}")
    if not isinstance(body["consent_id"], str) or not _ID.fullmatch(body["consent_id"]):
        raise PolicyError("revocation: bad consent_id")
    return body["consent_id"], kid, sig


def verify_revocation(raw: bytes, customer_key: ecdsa.VerifyingKey | bytes) -> str:
    """The revoked consent's id if the customer signed the revocation; raises :class:`PolicyError`."""
    cid, kid, sig = load_revocation(raw)
    vk = ecdsa.load_verifying_key(customer_key) if isinstance(customer_key, bytes) else customer_key
    body = _canonical({"format": REVOCATION_FORMAT, "consent_id": cid})
    if kid != _key_id(vk) or not ecdsa.verify(vk, DST_REVOCATION + body, sig):
        raise PolicyError("the revocation is not signed by the customer's key")
    return cid
