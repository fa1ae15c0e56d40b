"""Exchange formats between the parties (docs/formats.md).

* **Commitment records** (meter → utility): ``(i, C_i)`` as 41-byte units,
  u64 big-endian index then the 33-byte compressed commitment, with the day's
  signed batch.
* **Sealed openings** (meter → hub, the home link): ``(m_i, r_i)`` as 36-byte
  units (u32 Wh, 32-byte blinding) sealed with AES-128-GCM under the
  meter-hub key; the associated data names the meter, day and index range.
* **Bill statements** (hub → utility): JSON with the bill and its blinding sum.

Pure encoders and strict decoders; files are handled by the CLI.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .crypto.group import Q
from .crypto.pedersen import Opening
from .meter.device import BatchError, DailyBatch, SignedBatch
from .model import strictjson
from .model.errors import FormatError

__all__ = [
    "FormatError",
    "RECORD_SIZE",
    "encode_records",
    "decode_records",
    "DayUpload",
    "seal_openings",
    "open_sealed_openings",
    "SealedDay",
    "BillStatement",
    "load_json",
    "check_fields",
    "decode_statement_common",
    "statement_common_dict",
]

RECORD_SIZE = 41
OPENING_SIZE = 36
_HOME_LINK_AAD = b"meterhub/v1/home-link\x00"


def encode_records(first_index: int, commitments33: bytes) -> bytes:
    """``(i, C_i)`` records for a contiguous run of 33-byte commitments."""
    n, rem = divmod(len(commitments33), 33)
    if rem:
        raise FormatError("commitment blob length is not a multiple of 33")
    return b"".join(
        (first_index + k).to_bytes(8, "big") + commitments33[33 * k : 33 * k + 33] for k in range(n)
    )


def decode_records(data: bytes) -> tuple[list[int], bytes]:
    """Split records into their indices and the concatenated 33-byte commitments.

    Only the framing is checked here; whether the points are valid and the
    indices contiguous is the verifier's business, so that it can say which
    interval is at fault.
    """
    n, rem = divmod(len(data), RECORD_SIZE)
    if rem:
        raise FormatError(f"commitment records must be {RECORD_SIZE}-byte units")
    indices = [int.from_bytes(data[RECORD_SIZE * k : RECORD_SIZE * k + 8], "big") for k in range(n)]
    blob = b"".join(data[RECORD_SIZE * k + 8 : RECORD_SIZE * (k + 1)] for k in range(n))
    return indices, blob


@dataclass(frozen=True, slots=True)
class DayUpload:
    """One line of a meter's utility file: a signed batch and its commitment records."""

    batch: SignedBatch
    records: bytes

    def to_json(self) -> str:
        return json.dumps(
            {
                "batch": self.batch.batch.to_bytes().hex(),
                "signature": self.batch.signature.hex(),
                "records": self.records.hex(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> DayUpload:
        try:
            obj = strictjson.loads(line, "day upload")
            if not isinstance(obj, dict) or set(obj) != {"batch", "signature", "records"}:
                raise FormatError("day upload needs exactly batch, signature and records")
            batch = DailyBatch.from_bytes(strictjson.hex_bytes(obj["batch"], "batch"))
            sig = strictjson.hex_bytes(obj["signature"], "signature")
            records = strictjson.hex_bytes(obj["records"], "records")
        except (ValueError, TypeError, AttributeError) as exc:
            if isinstance(exc, FormatError | BatchError):
                raise FormatError(str(exc)) from None
            raise FormatError(f"malformed day upload: {exc}") from None
        if len(sig) != 64:
            raise FormatError("batch signature must be 64 bytes")
        if len(records) % RECORD_SIZE:
            raise FormatError(f"commitment records must be {RECORD_SIZE}-byte units")
        return cls(SignedBatch(batch, sig), records)


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
    plain = b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings)
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
    out = []
    for k in range(sealed.count):
        unit = plain[OPENING_SIZE * k : OPENING_SIZE * (k + 1)]
        r = int.from_bytes(unit[4:], "big")
        if r >= Q:
            raise FormatError("blinding factor out of range")
        out.append(Opening(int.from_bytes(unit[:4], "big"), r))
    return out


def new_home_link_key() -> bytes:
    """A fresh 16-byte AES-128 key for the meter-hub link."""
    return secrets.token_bytes(16)


#: The v1 statement's fields; later versions (hub.proving v2, banded v3) add theirs to these.
STATEMENT_FIELDS: dict[str, type] = {
    "format": str,
    "meter_id": str,
    "period_from": str,
    "period_to": str,
    "first_index": int,
    "count": int,
    "tariff_id": str,
    "tariff_version": int,
    "tariff_digest": str,
    "currency": str,
    "subunits_per_unit": int,
    "energy_charge": int,
    "standing_charge": int,
    "total": int,
    "blinding": str,
}
STATEMENT_FORMAT = "meterhub/bill-statement/v1"


@dataclass(frozen=True, slots=True)
class BillStatement:
    """What the hub releases for one billing period (docs/formats.md, "Bill statement").

    ``energy_charge = sum t_i*m_i`` and ``blinding = sum t_i*r_i mod Q``;
    ``total = energy_charge + standing_charge``. All amounts in sub-units.
    """

    meter_id: str
    period_from: date
    period_to: date  # inclusive
    first_index: int
    count: int
    tariff_id: str
    tariff_version: int
    tariff_digest: bytes
    currency: str
    subunits_per_unit: int
    energy_charge: int
    standing_charge: int
    total: int
    blinding: int

    def to_dict(self) -> dict[str, object]:
        return statement_common_dict(self, STATEMENT_FORMAT)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> BillStatement:
        o = check_fields(o, STATEMENT_FIELDS, "bill statement")
        if o["format"] != STATEMENT_FORMAT:
            raise FormatError(f"unknown bill statement format {o['format']!r}")
        pf, pt, digest, blinding = decode_statement_common(o)
        return cls(
            o["meter_id"],
            pf,
            pt,
            o["first_index"],
            o["count"],
            o["tariff_id"],
            o["tariff_version"],
            digest,
            o["currency"],
            o["subunits_per_unit"],
            o["energy_charge"],
            o["standing_charge"],
            o["total"],
            blinding,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> BillStatement:
        return cls.from_dict(load_json(text, "bill statement"))


def load_json(text: str | bytes, what: str) -> object:
    """The strict reader of :mod:`meterhub.model.strictjson` (rule V03): a one-line
    :class:`FormatError` for anything but strict JSON."""
    return strictjson.loads(text, what)


def check_fields(o: object, schema: dict[str, type], what: str) -> dict:
    """A JSON object with exactly ``schema``'s fields, each of its type (bools are not
    ints, and ints are non-negative); a one-line :class:`FormatError` otherwise."""
    if not isinstance(o, dict):
        raise FormatError(f"{what} must be a JSON object")
    if set(o) != set(schema):
        missing = sorted(set(schema) - set(o))
        extra = sorted(set(o) - set(schema))
        raise FormatError(f"{what} fields wrong (missing {missing}, unknown {extra})")
    for name, typ in schema.items():
        v = o[name]
        if not isinstance(v, typ) or (typ is int and (isinstance(v, bool) or v < 0)):
            kind = "a non-negative int" if typ is int else typ.__name__
            raise FormatError(f"{what} field {name} must be {kind}")
    return o


def decode_statement_common(o: dict) -> tuple[date, date, bytes, int]:
    """The period, tariff digest and blinding shared by every bill statement version."""
    blinding = strictjson.hex_bytes(o["blinding"], "bill statement blinding")
    digest = strictjson.hex_bytes(o["tariff_digest"], "bill statement tariff_digest")
    pf = strictjson.iso_date(o["period_from"], "bill statement period_from")
    pt = strictjson.iso_date(o["period_to"], "bill statement period_to")
    if len(blinding) != 32 or int.from_bytes(blinding, "big") >= Q:
        raise FormatError("bill statement blinding must be a 32-byte scalar below the group order")
    if len(digest) != 32:
        raise FormatError("tariff digest must be 32 bytes")
    if pt < pf:
        raise FormatError("bill period ends before it starts")
    if o["tariff_version"] >= 1 << 64 or o["first_index"] >= 1 << 64 or o["count"] >= 1 << 32:
        raise FormatError("bill statement index, count or version out of range")
    return pf, pt, digest, int.from_bytes(blinding, "big")


def statement_common_dict(st: Any, fmt: str) -> dict[str, object]:
    """The JSON fields every bill statement version shares (docs/formats.md)."""
    return {
        "format": fmt,
        "meter_id": st.meter_id,
        "period_from": st.period_from.isoformat(),
        "period_to": st.period_to.isoformat(),
        "first_index": st.first_index,
        "count": st.count,
        "tariff_id": st.tariff_id,
        "tariff_version": st.tariff_version,
        "tariff_digest": st.tariff_digest.hex(),
        "currency": st.currency,
        "subunits_per_unit": st.subunits_per_unit,
        "energy_charge": st.energy_charge,
        "standing_charge": st.standing_charge,
        "total": st.total,
        "blinding": st.blinding.to_bytes(32, "big").hex(),
    }
