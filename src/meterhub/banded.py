"""Bill statement v3: verified energy per tariff band, metering point and contract.

A v3 statement is a v1 statement (docs/formats.md, "Bill statement") plus

* ``metering_point`` (a German MaLo-ID or MeLo-ID, :mod:`meterhub.model.ids`) and
  ``contract_id``, the keys a billing system matches a bill on;
* ``bands``: for every band of the tariff that occurs in the period, the energy
  ``E_b = sum_{i in b} m_i`` (Wh) and its blinding ``R_b = sum_{i in b} r_i mod Q``,
  so that ``sum_{i in b} C_i == E_b*G + R_b*H`` (what a time-of-use meter shows as
  its 1.8.1, 1.8.2, ... registers).

The utility checks the bands against the commitments and, when the meter signs
its cumulative register in the daily batches (batch version 2), that
``sum_b E_b`` equals the register at the period's end minus the register at its
start (docs/verification.md V26-V29).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from .crypto.group import Q
from .crypto.pedersen import Opening
from .exchange import STATEMENT_FIELDS, check_fields, decode_statement_common, statement_common_dict
from .model import strictjson
from .model.errors import FormatError
from .model.ids import check_contract_id, check_metering_point
from .tariffs import Tariff

__all__ = [
    "BILL_PARTS_FORMAT",
    "BillParts",
    "statements_of",
    "thin_bands",
    "STATEMENT_V3_FORMAT",
    "BandEnergy",
    "BandedBillStatement",
    "band_indices",
    "band_counts",
    "band_sums",
]

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
class BandedBillStatement:
    """The v3 statement (module docstring); amounts as v1, energies in Wh."""

    meter_id: str
    metering_point: str
    contract_id: str
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
        pf, pt, digest, blinding = decode_statement_common(o)
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
        return cls(
            o["meter_id"], mp, contract, pf, pt, o["first_index"], o["count"], o["tariff_id"],
            o["tariff_version"], digest, o["currency"], o["subunits_per_unit"],
            o["energy_charge"], o["standing_charge"], o["total"], blinding, tuple(bands),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> BandedBillStatement:
        return cls.from_dict(strictjson.loads(text, "bill statement"))


@functools.lru_cache(maxsize=16)
def _band_tariff(tariff: Tariff) -> Tariff:
    """The tariff with each band's price replaced by its position, so that the
    tariff's own interval lookup (DST, holidays, finer and coarser meter grids)
    yields band positions. A coarser meter interval must lie in one band."""
    bands = tuple(dataclasses.replace(b, price=k) for k, b in enumerate(tariff.bands))
    return dataclasses.replace(tariff, bands=bands)


def band_indices(
    tariff: Tariff, first_day: date, n_days: int, tz: str, interval_minutes: int
) -> list[int]:
    """The band position of each metering interval of ``n_days`` local days from
    ``first_day``, in index order (raises :class:`meterhub.tariffs.TariffError`)."""
    return _band_tariff(tariff).period_prices(first_day, n_days, tz, interval_minutes)


def band_sums(tariff: Tariff, bands_of: Sequence[int], openings: Sequence[Opening]) -> tuple[BandEnergy, ...]:
    """``(E_b, R_b)`` for each band that occurs, ascending by band position."""
    if len(bands_of) != len(openings):
        raise ValueError(f"{len(bands_of)} band positions for {len(openings)} openings")
    energy: dict[int, int] = {}
    blind: dict[int, int] = {}
    for b, o in zip(bands_of, openings, strict=True):
        energy[b] = energy.get(b, 0) + o.m
        blind[b] = blind.get(b, 0) + o.r
    return tuple(
        BandEnergy(b, tariff.bands[b].name, energy[b], blind[b] % Q) for b in sorted(energy)
    )


def thin_bands(tariff: Tariff, first_day: date, n_days: int, tz: str, interval_minutes: int) -> list[str]:
    """Names of the bands that occur on fewer days of the period than its smaller
    calendar class (weekdays or weekend days, whichever is smaller and present).

    A band released alone must be as coarse as a real time-of-use register: the
    supplier signs the tariff, so holidays it lists or a season it starts on a chosen
    day would otherwise make a band of one half hour of one chosen day
    (docs/privacy.md, "Per-band energy and registers"). Raises
    :class:`meterhub.tariffs.TariffError` like :func:`band_indices`."""
    days = [date.fromordinal(first_day.toordinal() + k) for k in range(n_days)]
    classes = [c for c in (sum(d.weekday() < 5 for d in days), sum(d.weekday() >= 5 for d in days)) if c]
    floor = min(classes)
    seen: dict[int, int] = {}
    for d in days:
        for b in set(band_indices(tariff, d, 1, tz, interval_minutes)):
            seen[b] = seen.get(b, 0) + 1
    return [tariff.bands[b].name for b in sorted(seen) if seen[b] < floor]


def band_counts(bands_of: Sequence[int]) -> dict[int, int]:
    """How many intervals each band position has (for the range check, V27)."""
    out: dict[int, int] = {}
    for b in bands_of:
        out[b] = out.get(b, 0) + 1
    return out



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
