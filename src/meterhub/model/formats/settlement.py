"""The settlement statement (docs/formats.md, "Settlement statement").

The settlement applet (:mod:`meterhub.applets.settlement`) releases, for a period of
whole local days, the energy ``E = sum m_i`` and the index value ``V = sum
index_i*m_i`` with their blindings; the settlement service
(:mod:`meterhub.utility.settlement`) checks them. Both use this one class: the
applet's :meth:`SettlementStatement.to_json` is the bytes the service's
:meth:`SettlementStatement.from_json` reads (canonical JSON: sorted keys, no
spaces; strict on input, rule V03).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from ...crypto.group import Q
from .. import strictjson
from ..errors import FormatError

__all__ = ["SETTLEMENT_FORMAT", "SettlementStatement"]

SETTLEMENT_FORMAT = "meterhub-settlement/1"


@dataclass(frozen=True)
class SettlementStatement:
    """The settlement applet's output (docs/formats.md, "Settlement statement")."""

    meter_id: str
    period_from: date
    period_to: date
    first_index: int
    count: int
    index_id: str
    index_version: int
    index_digest: bytes
    applet_aid: str
    code_hash: str
    energy_wh: int
    energy_blinding: int
    value: int
    value_blinding: int

    @classmethod
    def from_json(cls, raw: bytes | str) -> SettlementStatement:
        """Strict parse; raises :class:`FormatError` (a ``ValueError``) with the field at fault."""
        d = strictjson.loads(raw, "settlement statement")  # V03
        fields = {
            "format", "meter_id", "period_from", "period_to", "first_index", "count", "index_id",
            "index_version", "index_digest", "applet_aid", "code_hash", "energy_wh", "energy_blinding",
            "value", "value_blinding",
        }
        if not isinstance(d, dict) or set(d) != fields:
            raise FormatError("settlement statement: wrong set of fields")
        if d["format"] != SETTLEMENT_FORMAT:
            raise FormatError(f"settlement statement: unsupported format {d['format']!r:.40}")
        for f in ("first_index", "count", "index_version", "energy_wh", "value"):
            if not isinstance(d[f], int) or isinstance(d[f], bool):
                raise FormatError(f"settlement statement: {f} must be an integer")
        for f in ("meter_id", "index_id", "applet_aid", "code_hash", "index_digest", "energy_blinding",
                  "value_blinding", "period_from", "period_to"):
            if not isinstance(d[f], str):
                raise FormatError(f"settlement statement: {f} must be a string")
        digest = strictjson.hex_bytes(d["index_digest"], "settlement statement index_digest", 32)
        rb_e = int.from_bytes(strictjson.hex_bytes(d["energy_blinding"], "settlement statement energy_blinding", 32), "big")
        rb_v = int.from_bytes(strictjson.hex_bytes(d["value_blinding"], "settlement statement value_blinding", 32), "big")
        pf = strictjson.iso_date(d["period_from"], "settlement statement period_from")
        pt = strictjson.iso_date(d["period_to"], "settlement statement period_to")
        if len(digest) != 32 or not (0 <= rb_e < Q and 0 <= rb_v < Q):
            raise FormatError("settlement statement: digest or blinding out of range")
        if len(d["energy_blinding"]) != 64 or len(d["value_blinding"]) != 64:
            raise FormatError("settlement statement: blindings must be 64 hex digits")
        return cls(
            d["meter_id"], pf, pt, d["first_index"], d["count"], d["index_id"], d["index_version"], digest,
            d["applet_aid"], d["code_hash"], d["energy_wh"], rb_e, d["value"], rb_v,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": SETTLEMENT_FORMAT,
                "meter_id": self.meter_id,
                "period_from": self.period_from.isoformat(),
                "period_to": self.period_to.isoformat(),
                "first_index": self.first_index,
                "count": self.count,
                "index_id": self.index_id,
                "index_version": self.index_version,
                "index_digest": self.index_digest.hex(),
                "applet_aid": self.applet_aid,
                "code_hash": self.code_hash,
                "energy_wh": self.energy_wh,
                "energy_blinding": f"{self.energy_blinding:064x}",
                "value": self.value,
                "value_blinding": f"{self.value_blinding:064x}",
            },
            sort_keys=True,
            separators=(",", ":"),
        )
