"""Bill parts: what the card releases for a billing period with missing days
(docs/formats.md, "Bill parts"), one v3 statement per held run of days plus the
missing runs, which the utility fills with substitute values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from .. import strictjson
from ..errors import FormatError
from .statements import BandedBillStatement, check_fields

__all__ = ["BILL_PARTS_FORMAT", "MAX_PARTS", "BillParts", "statements_of"]

BILL_PARTS_FORMAT = "meterhub/bill-parts/v1"
#: Parts or missing runs in one release (a cell has at most 31 days of 62 runs; the
#: card's gap record holds 16 runs).
MAX_PARTS = 64
_PARTS_FIELDS = {"format": str, "period_from": str, "period_to": str, "parts": list, "missing": list,
                 "corrects": int}


@dataclass(frozen=True, slots=True)
class BillParts:
    """What the card releases for a billing period with missing days (docs/formats.md,
    "Bill parts"): one v3 statement per run of days the card holds, and the runs of
    missing days, which the utility fills with substitute values
    (:mod:`meterhub.utility.substitute`). ``corrects`` is ``0`` for a first release (entry
    0 of a release log is always the policy), or the release-log sequence number of the
    release it corrects: a correction carries
    statements for the late days only, and ``missing`` lists the days still missing."""

    period_from: date
    period_to: date
    parts: tuple[BandedBillStatement, ...]
    missing: tuple[tuple[date, date], ...]
    corrects: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "format": BILL_PARTS_FORMAT,
            "period_from": self.period_from.isoformat(),
            "period_to": self.period_to.isoformat(),
            "parts": [p.to_dict() for p in self.parts],
            "missing": [{"period_from": a.isoformat(), "period_to": b.isoformat()} for a, b in self.missing],
            "corrects": self.corrects,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, o: object) -> BillParts:
        o = check_fields(o, _PARTS_FIELDS, "bill parts")
        if o["format"] != BILL_PARTS_FORMAT:
            raise FormatError(f"unknown bill parts format {o['format']!r}")
        pf, pt = _day(o["period_from"], "period_from"), _day(o["period_to"], "period_to")
        if pt < pf:
            raise FormatError("bill parts: period ends before it starts")
        if len(o["parts"]) > MAX_PARTS or len(o["missing"]) > MAX_PARTS:
            raise FormatError(f"bill parts: at most {MAX_PARTS} parts and {MAX_PARTS} missing runs")
        parts = tuple(BandedBillStatement.from_dict(p) for p in o["parts"])
        missing = []
        for k, m in enumerate(o["missing"]):
            m = check_fields(m, {"period_from": str, "period_to": str}, f"bill parts missing[{k}]")
            missing.append((_day(m["period_from"], "missing"), _day(m["period_to"], "missing")))
        runs = sorted([(p.period_from, p.period_to) for p in parts] + missing)
        for (_, a1), (b0, _) in zip(runs, runs[1:], strict=False):
            if a1 >= b0:
                raise FormatError("bill parts: parts and missing runs overlap")
        if any(a < pf or b > pt or b < a for a, b in runs):
            raise FormatError("bill parts: a part or missing run outside the period")
        if o["corrects"] == 0 and sum((b - a).days + 1 for a, b in runs) != (pt - pf).days + 1:
            raise FormatError("bill parts: parts and missing runs must cover the period")
        return cls(pf, pt, parts, tuple(missing), o["corrects"])

    @classmethod
    def from_json(cls, text: str | bytes) -> BillParts:
        return cls.from_dict(strictjson.loads(text, "bill parts"))


def _day(v: str, what: str) -> date:
    try:
        if len(v) == 10:
            return date.fromisoformat(v)
    except ValueError:
        pass
    raise FormatError(f"bill parts {what}: a date YYYY-MM-DD")


def statements_of(text: str | bytes) -> list[BandedBillStatement]:
    """The v3 statements of a released document: a v3 statement, or the parts of a bill
    parts document (a first release or a correction); raises :class:`FormatError`."""
    o = strictjson.loads(text, "bill statement")
    if isinstance(o, dict) and o.get("format") == BILL_PARTS_FORMAT:
        return list(BillParts.from_dict(o).parts)
    return [BandedBillStatement.from_dict(o)]
