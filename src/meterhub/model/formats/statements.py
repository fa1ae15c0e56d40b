"""Bill statements, versions 1 to 3, and the v2 proof bundle (docs/formats.md,
"Bill statement", "Bill statement v2", "Bill statement v3").

One class per version, used by the hub and the billing applet that produce a
statement and by the utility, the service and the CLI that read it:

* v1 :class:`BillStatement` (linear tariffs): the bill and its blinding sum;
* v2 :class:`ProvenBillStatement` (non-linear tariffs): v1 plus ``tariff_kind``
  and ``proof``, a :class:`ProofBundle`;
* v3 :class:`BandedBillStatement` (linear tariffs): v1 plus the metering point,
  the contract and per-band energy :class:`BandEnergy`.

Every version derives from :class:`BillFields` (the v1 fields, defined once) and
shares their JSON fields :data:`STATEMENT_FIELDS`, their encoding
(:func:`statement_common_dict`) and decoding (:func:`decode_statement_common`);
:func:`statement_from_json` dispatches on ``format``. The JSON is canonical (sorted keys, no spaces) and strict on input
(:mod:`meterhub.model.strictjson`, rule V03); any defect is a one-line
:class:`~meterhub.model.errors.FormatError` (or
:class:`~meterhub.crypto.transcript.ProofError` for the bundle).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from ...crypto.group import Q
from ...crypto.transcript import ProofContext, ProofError
from ...tariffs.nonlinear import KIND_INCLINING_BLOCK, KIND_POLYNOMIAL, KIND_TIERED
from .. import strictjson
from ..errors import FormatError
from ..ids import check_contract_id, check_metering_point
from .contexts import bill_context

__all__ = [
    "BUNDLE_VERSION",
    "KIND_CODES",
    "MAX_BAND_ENTRIES",
    "STATEMENT_FIELDS",
    "STATEMENT_FORMAT",
    "STATEMENT_V2_FORMAT",
    "STATEMENT_V3_FORMAT",
    "AnyBillStatement",
    "BandEnergy",
    "BillFields",
    "BandedBillStatement",
    "BillStatement",
    "ProofBundle",
    "ProvenBillStatement",
    "check_fields",
    "decode_statement_common",
    "load_json",
    "statement_common_dict",
    "statement_from_json",
]

STATEMENT_V2_FORMAT = "meterhub/bill-statement/v2"
BUNDLE_VERSION = 0x01
KIND_CODES = {KIND_TIERED: 0x01, KIND_INCLINING_BLOCK: 0x02, KIND_POLYNOMIAL: 0x03}
_FLAG_RANGE = 0x01
_MAX_PROOF = 1 << 16  # longest single proof in a bundle (u16 length prefix)


# ---------------------------------------------------------------------------
# v1 and the fields every version shares
# ---------------------------------------------------------------------------
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
class BillFields:
    """The fields every bill statement version carries, in JSON :data:`STATEMENT_FIELDS`
    (docs/formats.md, "Bill statement"). Each version is a subclass that adds its own
    fields after these (keyword construction, so the order is free; the JSON keys are
    sorted, so it never reaches the bytes).

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


@dataclass(frozen=True, slots=True)
class BillStatement(BillFields):
    """What the hub releases for one billing period (docs/formats.md, "Bill statement"):
    exactly the :class:`BillFields`."""

    def to_dict(self) -> dict[str, object]:
        return statement_common_dict(self, STATEMENT_FORMAT)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> BillStatement:
        o = check_fields(o, STATEMENT_FIELDS, "bill statement")
        if o["format"] != STATEMENT_FORMAT:
            raise FormatError(f"unknown bill statement format {o['format']!r}")
        return cls(**_common_values(o))

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
        if not isinstance(v, typ) or (typ is int and (isinstance(v, bool) or (isinstance(v, int) and v < 0))):
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


def _common_values(o: dict[str, Any]) -> dict[str, Any]:
    """The :class:`BillFields` of a checked JSON object, by name (decoded, range-checked)."""
    pf, pt, digest, blinding = decode_statement_common(o)
    return {
        "meter_id": o["meter_id"],
        "period_from": pf,
        "period_to": pt,
        "first_index": o["first_index"],
        "count": o["count"],
        "tariff_id": o["tariff_id"],
        "tariff_version": o["tariff_version"],
        "tariff_digest": digest,
        "currency": o["currency"],
        "subunits_per_unit": o["subunits_per_unit"],
        "energy_charge": o["energy_charge"],
        "standing_charge": o["standing_charge"],
        "total": o["total"],
        "blinding": blinding,
    }


def statement_common_dict(st: BillFields, fmt: str) -> dict[str, object]:
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


# ---------------------------------------------------------------------------
# v3: per-band energy
# ---------------------------------------------------------------------------
STATEMENT_V3_FORMAT = "meterhub/bill-statement/v3"
#: At most this many band entries (a tariff has at most 64 bands, tariffs.md).
MAX_BAND_ENTRIES = 64

_V3_FIELDS: dict[str, type] = {
    **STATEMENT_FIELDS,
    "metering_point": str,
    "contract_id": str,
    "bands": list,
}
_BAND_FIELDS = {"band": int, "name": str, "energy_wh": int, "blinding": str}


@dataclass(frozen=True, slots=True)
class BandEnergy:
    """One band's energy and the blinding that opens the sum of its commitments."""

    band: int  # position in the tariff's ``bands`` list (names may repeat across seasons)
    name: str
    energy_wh: int
    blinding: int

    def to_dict(self) -> dict[str, object]:
        return {
            "band": self.band,
            "name": self.name,
            "energy_wh": self.energy_wh,
            "blinding": self.blinding.to_bytes(32, "big").hex(),
        }


@dataclass(frozen=True, slots=True)
class BandedBillStatement(BillFields):
    """The v3 statement (module docstring): the :class:`BillFields` (amounts as v1) and
    the metering point, the contract and the bands (energies in Wh)."""

    metering_point: str
    contract_id: str
    bands: tuple[BandEnergy, ...]

    @property
    def energy_wh(self) -> int:
        """The period's energy, the sum of the bands."""
        return sum(b.energy_wh for b in self.bands)

    def to_dict(self) -> dict[str, object]:
        d = statement_common_dict(self, STATEMENT_V3_FORMAT)
        d["metering_point"] = self.metering_point
        d["contract_id"] = self.contract_id
        d["bands"] = [b.to_dict() for b in self.bands]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> BandedBillStatement:
        o = check_fields(o, _V3_FIELDS, "bill statement")
        if o["format"] != STATEMENT_V3_FORMAT:
            raise FormatError(f"unknown bill statement format {o['format']!r}")
        common = _common_values(o)
        mp = check_metering_point(o["metering_point"])
        contract = check_contract_id(o["contract_id"])
        raw = o["bands"]
        if not 0 < len(raw) <= MAX_BAND_ENTRIES:
            raise FormatError(f"bill statement bands: 1 to {MAX_BAND_ENTRIES} entries")
        bands = []
        for k, b in enumerate(raw):
            b = check_fields(b, _BAND_FIELDS, f"bill statement bands[{k}]")
            r = strictjson.hex_bytes(b["blinding"], f"bill statement bands[{k}].blinding")
            if len(r) != 32 or int.from_bytes(r, "big") >= Q:
                raise FormatError(f"bill statement bands[{k}].blinding must be a 32-byte scalar below Q")
            if b["energy_wh"] >= 1 << 64:
                raise FormatError(f"bill statement bands[{k}].energy_wh out of range")
            bands.append(BandEnergy(b["band"], b["name"], b["energy_wh"], int.from_bytes(r, "big")))
        idx = [b.band for b in bands]
        if idx != sorted(set(idx)):
            raise FormatError("bill statement bands must be in ascending band order, each once")
        return cls(**common, metering_point=mp, contract_id=contract, bands=tuple(bands))

    @classmethod
    def from_json(cls, text: str | bytes) -> BandedBillStatement:
        return cls.from_dict(strictjson.loads(text, "bill statement"))


# ---------------------------------------------------------------------------
# The proof bundle (binary, strict)
# ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProofBundle:
    """The proofs of one bill::

        version 0x01 | kind (1) | flags (1, bit 0: reading ranges) | count (4)
        | tiered: count x (u16 length | tier proof)
          inclining-block: u16 length | tier proof over the block table
          polynomial: u32 length | squares proof
        | if flag 0: days (2) | per day: u32 length | bounded Bulletproof
    """

    kind: str
    count: int
    proofs: tuple[bytes, ...]
    ranges: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        flags = _FLAG_RANGE if self.ranges else 0
        out = [bytes([BUNDLE_VERSION, KIND_CODES[self.kind], flags]), self.count.to_bytes(4, "big")]
        width = 4 if self.kind == KIND_POLYNOMIAL else 2
        for p in self.proofs:
            out.append(len(p).to_bytes(width, "big") + p)
        if self.ranges:
            out.append(len(self.ranges).to_bytes(2, "big"))
            out.extend(len(p).to_bytes(4, "big") + p for p in self.ranges)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProofBundle:
        """Strict decoding; any defect raises a one-line :class:`ProofError`."""
        if not isinstance(data, bytes | bytearray):
            raise ProofError("proof bundle must be bytes")
        data = bytes(data)
        if len(data) < 7:
            raise ProofError("proof bundle too short")
        if data[0] != BUNDLE_VERSION:
            raise ProofError(f"unsupported proof bundle version {data[0]}")
        kind = next((k for k, v in KIND_CODES.items() if v == data[1]), None)
        if kind is None:
            raise ProofError(f"unknown tariff kind code {data[1]:#04x}")
        if data[2] & ~_FLAG_RANGE:
            raise ProofError(f"unknown proof bundle flags {data[2]:#04x}")
        count = int.from_bytes(data[3:7], "big")
        if count == 0:
            raise ProofError("proof bundle covers no readings")
        pos = 7

        def take(width: int) -> bytes:
            nonlocal pos
            if len(data) < pos + width:
                raise ProofError("proof bundle truncated")
            n = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if len(data) < pos + n or n == 0:
                raise ProofError("proof bundle truncated or holds an empty proof")
            out = data[pos : pos + n]
            pos += n
            return out

        if kind == KIND_TIERED:
            if count > len(data):
                raise ProofError("proof bundle truncated")
            proofs = tuple(take(2) for _ in range(count))
        elif kind == KIND_INCLINING_BLOCK:
            proofs = (take(2),)
        else:
            proofs = (take(4),)
        ranges: tuple[bytes, ...] = ()
        if data[2] & _FLAG_RANGE:
            if len(data) < pos + 2:
                raise ProofError("proof bundle truncated")
            days = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            if days == 0:
                raise ProofError("proof bundle flags reading ranges but holds none")
            ranges = tuple(take(4) for _ in range(days))
        if pos != len(data):
            raise ProofError(f"{len(data) - pos} trailing bytes after the proof bundle")
        return cls(kind, count, proofs, ranges)


# ---------------------------------------------------------------------------
# The v2 statement (JSON)
# ---------------------------------------------------------------------------
_V2_FIELDS: dict[str, type] = {**STATEMENT_FIELDS, "tariff_kind": str, "proof": str}


@dataclass(frozen=True, slots=True)
class ProvenBillStatement(BillFields):
    """A bill statement with proofs (docs/formats.md, "Bill statement v2").

    The :class:`BillFields` of the v1 :class:`BillStatement`, plus
    ``tariff_kind`` and ``proof`` (a :class:`ProofBundle`). ``blinding`` opens
    the committed energy charge (its meaning per kind: :mod:`meterhub.model.billing`).
    """

    tariff_kind: str
    proof: bytes

    def context(self) -> ProofContext:
        return bill_context(
            self.meter_id, self.period_from, self.period_to, self.tariff_id, self.tariff_version,
            self.tariff_kind, self.tariff_digest, self.first_index, self.count,
        )

    def to_dict(self) -> dict[str, object]:
        d = statement_common_dict(self, STATEMENT_V2_FORMAT)
        d["tariff_kind"] = self.tariff_kind
        d["proof"] = base64.b64encode(self.proof).decode("ascii")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> ProvenBillStatement:
        """Strict parse; a one-line :class:`FormatError` on any defect."""
        o = check_fields(o, _V2_FIELDS, "bill statement v2")
        if o["format"] != STATEMENT_V2_FORMAT:
            raise FormatError(f"unknown bill statement format {o['format']!r}")
        if o["tariff_kind"] not in KIND_CODES:
            raise FormatError(f"unknown tariff kind {o['tariff_kind']!r}")
        common = _common_values(o)
        try:
            proof = base64.b64decode(o["proof"], validate=True)
        except (ValueError, binascii.Error) as exc:
            raise FormatError(f"malformed bill statement: {exc}") from None
        return cls(**common, tariff_kind=o["tariff_kind"], proof=proof)

    @classmethod
    def from_json(cls, text: str | bytes) -> ProvenBillStatement:
        return cls.from_dict(load_json(text, "bill statement"))


AnyBillStatement = BillStatement | ProvenBillStatement | BandedBillStatement


def statement_from_json(
    text: str | bytes,
) -> AnyBillStatement:
    """Parse a bill statement of any format, dispatching on its ``format`` field:
    v1 (linear, :class:`BillStatement`), v2 (proven,
    :class:`ProvenBillStatement`) or v3 (per-band energy,
    :class:`BandedBillStatement`). Strict; a one-line ``FormatError`` on any defect."""
    o = load_json(text, "bill statement")
    if isinstance(o, dict) and o.get("format") == STATEMENT_V2_FORMAT:
        return ProvenBillStatement.from_dict(o)
    if isinstance(o, dict) and o.get("format") == STATEMENT_V3_FORMAT:
        return BandedBillStatement.from_dict(o)
    return BillStatement.from_dict(o)
