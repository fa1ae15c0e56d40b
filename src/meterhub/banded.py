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

