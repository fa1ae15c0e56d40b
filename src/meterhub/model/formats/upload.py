"""The meter's utility file line (docs/formats.md, "Day upload"), and the old home
of the exchange formats.

The formats themselves live in :mod:`meterhub.model.formats` (commitment records
and opening units in :mod:`~meterhub.model.formats.units`, sealed openings in
:mod:`~meterhub.model.formats.sealed`, bill statements in
:mod:`~meterhub.model.formats.statements`); they are re-exported here so that
existing imports keep working. :class:`DayUpload` stays here because it wraps the
meter's :class:`~meterhub.meter.device.SignedBatch`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .model import strictjson
from .model.errors import FormatError
from .model.formats.batch import BatchError, DailyBatch, SignedBatch
from .model.formats.sealed import SealedDay, new_home_link_key, open_sealed_openings, seal_openings
from .model.formats.statements import (
    STATEMENT_FIELDS,
    STATEMENT_FORMAT,
    BillStatement,
    check_fields,
    decode_statement_common,
    load_json,
    statement_common_dict,
)
from .model.formats.units import OPENING_SIZE, RECORD_SIZE, decode_records, encode_records

__all__ = [
    "FormatError",
    "OPENING_SIZE",
    "RECORD_SIZE",
    "STATEMENT_FIELDS",
    "STATEMENT_FORMAT",
    "encode_records",
    "decode_records",
    "DayUpload",
    "seal_openings",
    "open_sealed_openings",
    "new_home_link_key",
    "SealedDay",
    "BillStatement",
    "load_json",
    "check_fields",
    "decode_statement_common",
    "statement_common_dict",
]


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
