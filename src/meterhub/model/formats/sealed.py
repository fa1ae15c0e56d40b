"""Sealed openings: the meter's readings for its hub (docs/formats.md, "Sealed openings").

A day's openings ``(m_i, r_i)`` as 36-byte units (:mod:`meterhub.model.formats.units`)
sealed with AES-128-GCM (NIST SP 800-38D) under the 16-byte meter-hub key with a
12-byte random nonce; the associated data names the meter, day and index range, so
a sealed day cannot be replayed as another meter's, day's or range's. The meter
seals (:func:`seal_openings`), the hub and its readings applet open
(:func:`open_sealed_openings`); the JSON line is :class:`SealedDay`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...crypto.pedersen import Opening
from .. import strictjson
from ..errors import FormatError
from .units import OPENING_SIZE, decode_openings, encode_openings

__all__ = ["HOME_LINK_AAD", "SealedDay", "new_home_link_key", "open_sealed_openings", "seal_openings"]

HOME_LINK_AAD = b"meterhub/v1/home-link\x00"
_HOME_LINK_AAD = HOME_LINK_AAD


def _aad(meter_id: str, day: date, first_index: int, count: int) -> bytes:
    mid = meter_id.encode()
    return (
        _HOME_LINK_AAD
        + bytes([len(mid)])
        + mid
        + day.isoformat().encode()
        + first_index.to_bytes(8, "big")
        + count.to_bytes(4, "big")
    )


@dataclass(frozen=True, slots=True)
class SealedDay:
    """A day's openings sealed for the hub (AES-128-GCM, 12-byte random nonce)."""

    meter_id: str
    day: date
    first_index: int
    count: int
    nonce: bytes
    ciphertext: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "meter_id": self.meter_id,
                "day": self.day.isoformat(),
                "first_index": self.first_index,
                "count": self.count,
                "nonce": self.nonce.hex(),
                "ciphertext": self.ciphertext.hex(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> SealedDay:
        try:
            o = strictjson.loads(line, "sealed day")
            keys = {"meter_id", "day", "first_index", "count", "nonce", "ciphertext"}
            if not isinstance(o, dict) or set(o) != keys:
                raise FormatError("sealed day needs exactly " + ", ".join(sorted(keys)))
            if not isinstance(o["first_index"], int) or not isinstance(o["count"], int):
                raise FormatError("first_index and count must be integers")
            return cls(
                str(o["meter_id"]),
                strictjson.iso_date(o["day"], "sealed day day"),
                o["first_index"],
                o["count"],
                strictjson.hex_bytes(o["nonce"], "nonce"),
                strictjson.hex_bytes(o["ciphertext"], "ciphertext"),
            )
        except FormatError:
            raise
        except (ValueError, TypeError) as exc:
            raise FormatError(f"malformed sealed day: {exc}") from None


def seal_openings(
    key: bytes, meter_id: str, day: date, first_index: int, openings: Sequence[Opening]
) -> SealedDay:
    """Seal a day's openings for the hub under the 16-byte home-link key."""
    plain = encode_openings(openings)
    nonce = secrets.token_bytes(12)
    ct = AESGCM(key).encrypt(nonce, plain, _aad(meter_id, day, first_index, len(openings)))
    return SealedDay(meter_id, day, first_index, len(openings), nonce, ct)


def open_sealed_openings(key: bytes, sealed: SealedDay) -> list[Opening]:
    """Authenticate and decrypt; raises FormatError if the tag or layout is wrong."""
    if len(sealed.nonce) != 12:
        raise FormatError("home-link nonce must be 12 bytes")
    try:
        plain = AESGCM(key).decrypt(
            sealed.nonce,
            sealed.ciphertext,
            _aad(sealed.meter_id, sealed.day, sealed.first_index, sealed.count),
        )
    except InvalidTag:
        raise FormatError("home-link message fails authentication (wrong key or tampered)") from None
    if len(plain) != OPENING_SIZE * sealed.count:
        raise FormatError("home-link message holds the wrong number of openings")
    return decode_openings(plain, sealed.count)


def new_home_link_key() -> bytes:
    """A fresh 16-byte AES-128 key for the meter-hub link."""
    return secrets.token_bytes(16)
