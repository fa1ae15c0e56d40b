"""DLMS security suite 0: AES-128-GCM, general-glo-ciphering and HLS-GMAC.

Green Book 1000-2 Ed. 9 §9.2.7 (cryptographic protection): suite 0 is
AES-GCM-128 with a 12-byte IV ``system_title (8) || invocation_counter (4)``,
a 12-byte tag, and AAD ``SC || AK`` for authenticated encryption (SC 0x30).
HLS mechanism 5 (§9.2.7.4, HLS-GMAC) answers a challenge with
``SC(0x10) || IC || GMAC(SC || AK || challenge)``.

Two envelopes carry a ciphered APDU (Green Book §9.5): general-glo-ciphering
(tag 219, with the sender's system title in the APDU) and the service-specific
glo-ciphering APDUs (glo-get-request [200] and friends, glo-initiateRequest [33]),
``tag || length || SC || IC || ciphertext``, whose system title is the one
exchanged in the AARQ/AARE (calling/responding-AP-title).

The cipher itself is ``dlms_cosem.security`` (which uses ``cryptography``'s
AES-GCM); we never implement a primitive. We do encode the general-glo-ciphering
APDU ourselves: ``GeneralGlobalCipher.to_bytes`` writes its content length as
one byte, so any APDU above 255 bytes fails (and 128..255 is mis-encoded).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass, field

from dlms_cosem import security as _sec
from dlms_cosem.exceptions import DecryptionError

from ...errors import MeterhubError
from .axdr import AxdrError, decode_length, encode_length

__all__ = [
    "SecurityError",
    "DecipherError",
    "InvocationCounterError",
    "Suite0Keys",
    "SC_AUTH_ENC",
    "SC_AUTH_ONLY",
    "GENERAL_GLO_CIPHERING",
    "encode_general_glo_cipher",
    "decode_general_glo_cipher",
    "GLO_TAGS",
    "PLAIN_TAGS",
    "encode_glo_cipher",
    "decode_glo_cipher",
    "encrypt",
    "decrypt",
    "hls_gmac_response",
    "verify_hls_gmac",
    "InvocationCounter",
    "ReplayGuard",
    "new_challenge",
]

GENERAL_GLO_CIPHERING = 0xDB  # Green Book §9.5, general-glo-ciphering [219]
SC_AUTH_ENC = 0x30  # security control: suite 0, authenticated + encrypted
SC_AUTH_ONLY = 0x10  # suite 0, authenticated only (HLS-GMAC)
TAG_LEN = 12


class SecurityError(MeterhubError):
    """A protected APDU that cannot be accepted."""


class DecipherError(SecurityError):
    """Wrong key, tampered text or tag, unsupported security control, bad framing."""


class InvocationCounterError(SecurityError):
    """Invocation counter not above the last accepted one (a replay)."""

    def __init__(self, received: int, expected_at_least: int) -> None:
        super().__init__(f"invocation counter {received} < {expected_at_least}")
        self.received = received
        self.expected_at_least = expected_at_least


@dataclass(frozen=True)
class Suite0Keys:
    """Global unicast encryption key (EK) and authentication key (AK), 16 bytes each."""

    encryption_key: bytes
    authentication_key: bytes

    def __post_init__(self) -> None:
        if len(self.encryption_key) != 16 or len(self.authentication_key) != 16:
            raise ValueError("suite 0 keys are 16 bytes")

    @classmethod
    def generate(cls) -> Suite0Keys:
        return cls(secrets.token_bytes(16), secrets.token_bytes(16))


def _sc(byte: int) -> _sec.SecurityControlField:
    return _sec.SecurityControlField.from_bytes(bytes([byte]))


def encrypt(keys: Suite0Keys, system_title: bytes, ic: int, plain: bytes) -> bytes:
    """AES-GCM-128 authenticated encryption (SC 0x30); returns ciphertext || 12-byte tag."""
    sealed: bytes = _sec.encrypt(# dlms_cosem ships no type information
        _sc(SC_AUTH_ENC), system_title, ic, keys.encryption_key, plain, keys.authentication_key
    )
    return sealed


def decrypt(keys: Suite0Keys, system_title: bytes, ic: int, sc: int, data: bytes) -> bytes:
    """Inverse of :func:`encrypt`; raises :class:`DecipherError` on any failure."""
    if sc != SC_AUTH_ENC:
        # Our policy (Security setup, Blue Book §4.4.7): every APDU authenticated and encrypted.
        raise DecipherError(f"security control {sc:#04x} not accepted")
    if len(system_title) != 8 or len(data) < TAG_LEN:
        raise DecipherError("bad system title or ciphertext too short")
    try:
        return bytes(
            _sec.decrypt(
                _sc(sc), system_title, ic, keys.encryption_key, data, keys.authentication_key
            )
        )
    except DecryptionError:
        raise DecipherError("GCM tag check failed") from None


def encode_general_glo_cipher(system_title: bytes, sc: int, ic: int, ciphertext: bytes) -> bytes:
    """general-glo-ciphering APDU (Green Book §9.5):
    ``[219] system-title OCTET STRING, ciphered-content OCTET STRING (SC || IC || text)``,
    with A-XDR lengths in the long form above 127 (the dlms_cosem encoder bug)."""
    content = bytes([sc]) + ic.to_bytes(4, "big") + ciphertext
    return (
        bytes([GENERAL_GLO_CIPHERING])
        + encode_length(len(system_title))
        + system_title
        + encode_length(len(content))
        + content
    )


def decode_general_glo_cipher(apdu: bytes) -> tuple[bytes, int, int, bytes]:
    """Return ``(system_title, security_control, invocation_counter, ciphertext)``."""
    if not apdu or apdu[0] != GENERAL_GLO_CIPHERING:
        raise DecipherError("not a general-glo-ciphering APDU")
    try:
        n, pos = decode_length(apdu, 1)
        title = apdu[pos : pos + n]
        pos += n
        m, pos = decode_length(apdu, pos)
    except AxdrError as exc:
        raise DecipherError(str(exc)) from None
    if len(title) != 8 or m < 5 or pos + m != len(apdu):
        raise DecipherError("general-glo-ciphering lengths do not add up")
    return bytes(title), apdu[pos], int.from_bytes(apdu[pos + 1 : pos + 5], "big"), apdu[pos + 5 :]


#: Plain xDLMS tag -> its service-specific glo-ciphering tag (Green Book §9.5, XDLMS-APDU).
GLO_TAGS: dict[int, int] = {
    0x01: 0x21,  # initiateRequest -> glo-initiateRequest [33]
    0x08: 0x28,  # initiateResponse -> glo-initiateResponse [40]
    0x0E: 0x2E,  # confirmedServiceError -> glo-confirmedServiceError [46]
    0xC0: 0xC8,  # get-request -> glo-get-request [200]
    0xC1: 0xC9,  # set-request -> glo-set-request [201]
    0xC2: 0xCA,  # event-notification-request -> glo-event-notification-request [202]
    0xC3: 0xCB,  # action-request -> glo-action-request [203]
    0xC4: 0xCC,  # get-response -> glo-get-response [204]
    0xC5: 0xCD,  # set-response -> glo-set-response [205]
    0xC7: 0xCF,  # action-response -> glo-action-response [207]
}
#: glo-ciphering tag -> the plain tag it must carry.
PLAIN_TAGS: dict[int, int] = {g: p for p, g in GLO_TAGS.items()}


def encode_glo_cipher(tag: int, sc: int, ic: int, ciphertext: bytes) -> bytes:
    """Service-specific glo-ciphering: ``tag || length || SC || IC || ciphertext``
    (Green Book §9.5, ``glo-*`` choices: an OCTET STRING with A-XDR length)."""
    if tag not in PLAIN_TAGS:
        raise ValueError(f"{tag:#04x} is not a glo-ciphering tag")
    content = bytes([sc]) + ic.to_bytes(4, "big") + ciphertext
    return bytes([tag]) + encode_length(len(content)) + content


def decode_glo_cipher(apdu: bytes) -> tuple[int, int, int, bytes]:
    """Return ``(glo tag, security_control, invocation_counter, ciphertext)``."""
    if not apdu or apdu[0] not in PLAIN_TAGS:
        raise DecipherError("not a service-specific glo-ciphering APDU")
    try:
        n, pos = decode_length(apdu, 1)
    except AxdrError as exc:
        raise DecipherError(str(exc)) from None
    if n < 5 or pos + n != len(apdu):
        raise DecipherError("glo-ciphering length does not add up")
    return apdu[0], apdu[pos], int.from_bytes(apdu[pos + 1 : pos + 5], "big"), bytes(apdu[pos + 5 :])


def _gmac(keys: Suite0Keys, system_title: bytes, ic: int, challenge: bytes) -> bytes:
    return bytes(
        _sec.gmac(
            _sc(SC_AUTH_ONLY),
            system_title,
            ic,
            keys.encryption_key,
            keys.authentication_key,
            challenge,
        )
    )


def hls_gmac_response(keys: Suite0Keys, system_title: bytes, ic: int, challenge: bytes) -> bytes:
    """``f(challenge) = SC || IC || GMAC`` (Green Book §9.2.7.4, mechanism_id 5)."""
    return bytes([SC_AUTH_ONLY]) + ic.to_bytes(4, "big") + _gmac(keys, system_title, ic, challenge)


def verify_hls_gmac(
    keys: Suite0Keys, peer_system_title: bytes, challenge: bytes, response: bytes
) -> bool:
    """Check the peer's ``f(challenge)`` in constant time."""
    if len(response) != 1 + 4 + TAG_LEN or response[0] != SC_AUTH_ONLY or len(peer_system_title) != 8:
        return False
    ic = int.from_bytes(response[1:5], "big")
    return hmac.compare_digest(response[5:], _gmac(keys, peer_system_title, ic, challenge))


def new_challenge(length: int = 16) -> bytes:
    """Server-to-client challenge (8..64 bytes, Green Book §9.2.7.4)."""
    return secrets.token_bytes(length)


@dataclass
class InvocationCounter:
    """Our own sending counter. Shared by every association that uses the same key and
    system title, so an IV is never used twice (Green Book §9.2.7.2.4.2)."""

    value: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next(self) -> int:
        with self._lock:
            if self.value > 0xFFFFFFFF:
                raise SecurityError("invocation counter exhausted: the key must be renewed")
            v = self.value
            self.value += 1
            return v


@dataclass
class ReplayGuard:
    """Last accepted invocation counter per peer system title; accepts only larger ones."""

    last: dict[bytes, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, system_title: bytes, ic: int) -> None:
        """Raise :class:`InvocationCounterError` unless ``ic`` is above the last seen."""
        with self._lock:
            floor = self.last.get(system_title, -1) + 1
            if ic < floor:
                raise InvocationCounterError(ic, floor)

    def accept(self, system_title: bytes, ic: int) -> None:
        """Record ``ic`` after the APDU authenticated (never before, or a forged
        APDU could push the counter forward and lock the real client out)."""
        with self._lock:
            if ic > self.last.get(system_title, -1):
                self.last[system_title] = ic
