"""The meter's utility file line (docs/formats.md, "Day upload"): one signed daily batch
and its commitment records, :class:`DayUpload`.

The batch is :class:`~meterhub.model.formats.batch.SignedBatch`, the records are
41-byte commitment records (:mod:`meterhub.model.formats.units`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import strictjson
from ..errors import FormatError
from .batch import BatchError, DailyBatch, SignedBatch
from .units import RECORD_SIZE

__all__ = ["DayUpload"]


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
