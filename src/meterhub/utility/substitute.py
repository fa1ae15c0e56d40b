"""Substitute values for missing days, and period bills that combine them with proof.

A meter outage or a lost link leaves days without a verified statement. The
period's bill must not wait: it is made of the verified v3 statements
(:mod:`meterhub.model.formats.statements`, each checked by V12-V19 and V26-V29) plus, for every
run of days no statement covers, a substitute value ("Ersatzwert") computed by
one of two methods in use in the German market (VDE-AR-N 4400 metering code,
substitute-value formation; BDEW/MaBiS "Ersatzwertbildung"):

``register-interpolation``
    The meter signs its cumulative register at every day boundary (batch
    version 2). When the utility holds the register at the gap's start (the
    stored day before it ended there, or the gap's first day is stored) and at
    its end, the gap's energy is exactly their difference; linear interpolation
    of the register in time spreads it evenly over the gap's intervals, so band
    ``b`` gets ``total * n_b / n`` (largest-remainder rounding to whole Wh, ties
    to the lower band position, so the bands add up to the total exactly).
``band-average`` (comparable intervals)
    Without registers on both sides, each band's intervals in the gap get the
    mean energy per interval of that band over the verified statements of the
    same bill (a band the verified part lacks: the mean over all its
    intervals), rounded half up per band.

The estimate is marked as such, with its inputs, and priced with the band
prices; when the missing days arrive later, a statement for exactly those days
replaces it (a correction; :mod:`meterhub.utility.invoices` keeps the history).
Pure: the caller fetches stored batches and verifies statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ..model.billing.bands import band_counts, band_indices
from ..model.formats.batch import DailyBatch
from ..model.formats.statements import BandedBillStatement
from ..tariffs import Tariff

__all__ = [
    "GapEstimate",
    "PeriodBill",
    "interpolate_gap",
    "band_average_gap",
    "uncovered_days",
    "PERIOD_BILL_FORMAT",
]

PERIOD_BILL_FORMAT = "meterhub/period-bill/v1"
METHOD_INTERPOLATION = "register-interpolation"
METHOD_BAND_AVERAGE = "band-average"


@dataclass(frozen=True, slots=True)
class GapEstimate:
    """Substitute values for the days ``first_day..last_day`` (inclusive)."""

    first_day: date
    last_day: date
    count: int  # intervals of the gap, by the meter's time base
    method: str
    inputs: dict[str, Any]
    bands: tuple[tuple[int, str, int], ...]  # (band position, name, Wh)
    energy_charge: int  # sum_b price_b * Wh_b, sub-units

    @property
    def energy_wh(self) -> int:
        return sum(b[2] for b in self.bands)

    def to_dict(self) -> dict[str, Any]:
        return {
            "period_from": self.first_day.isoformat(),
            "period_to": self.last_day.isoformat(),
            "count": self.count,
            "method": self.method,
            "inputs": self.inputs,
            "bands": [{"band": b, "name": n, "energy_wh": e} for b, n, e in self.bands],
            "energy_wh": self.energy_wh,
            "energy_charge": self.energy_charge,
        }


def _gap_bands(tariff: Tariff, first_day: date, last_day: date, tz: str, interval: int) -> list[int]:
    return band_indices(tariff, first_day, (last_day - first_day).days + 1, tz, interval)


def _largest_remainder(total: int, weights: dict[int, int]) -> dict[int, int]:
    """Split ``total`` Wh over bands in proportion to ``weights`` in whole Wh that add up
    to ``total``: floors first, then one Wh each to the largest remainders (ties: lower band)."""
    n = sum(weights.values())
    parts = {b: total * w // n for b, w in weights.items()}
    rest = total - sum(parts.values())
    order = sorted(weights, key=lambda b: (-(total * weights[b] % n), b))
    for b in order[:rest]:
        parts[b] += 1
    return parts


def interpolate_gap(
    tariff: Tariff,
    tz: str,
    interval_minutes: int,
    first_day: date,
    last_day: date,
    register_start: tuple[date, int],
    register_end: tuple[date, int],
) -> GapEstimate:
    """``register-interpolation`` (module docstring). ``register_start`` is ``(day the
    reading was signed on, Wh at the gap's start)``, ``register_end`` likewise for its end."""
    total = register_end[1] - register_start[1]
    if total < 0:
        raise ValueError("the register runs backwards over the gap")
    bands_of = _gap_bands(tariff, first_day, last_day, tz, interval_minutes)
    counts = band_counts(bands_of)
    parts = _largest_remainder(total, counts)
    bands = tuple((b, tariff.bands[b].name, parts[b]) for b in sorted(parts))
    return GapEstimate(
        first_day, last_day, len(bands_of), METHOD_INTERPOLATION,
        {
            "register_start_wh": register_start[1], "register_start_signed_on": register_start[0].isoformat(),
            "register_end_wh": register_end[1], "register_end_signed_on": register_end[0].isoformat(),
        },
        bands, sum(tariff.bands[b].price * e for b, _, e in bands),
    )


def band_average_gap(
    tariff: Tariff,
    tz: str,
    interval_minutes: int,
    first_day: date,
    last_day: date,
    verified: Sequence[BandedBillStatement],
) -> GapEstimate:
    """``band-average`` (module docstring) from the verified statements of the bill."""
    if not verified:
        raise ValueError("no verified statement to estimate from")
    wh: dict[int, int] = {}
    n: dict[int, int] = {}
    for st in verified:
        c = band_counts(_gap_bands(tariff, st.period_from, st.period_to, tz, interval_minutes))
        for be in st.bands:
            wh[be.band] = wh.get(be.band, 0) + be.energy_wh
            n[be.band] = n.get(be.band, 0) + c[be.band]
    all_wh, all_n = sum(wh.values()), sum(n.values())
    bands_of = _gap_bands(tariff, first_day, last_day, tz, interval_minutes)
    counts = band_counts(bands_of)
    bands = []
    for b in sorted(counts):
        num, den = (wh[b], n[b]) if b in n else (all_wh, all_n)
        bands.append((b, tariff.bands[b].name, (2 * counts[b] * num + den) // (2 * den)))
    return GapEstimate(
        first_day, last_day, len(bands_of), METHOD_BAND_AVERAGE,
        {
            "verified_periods": [f"{st.period_from}..{st.period_to}" for st in verified],
            "verified_wh_per_band": {str(b): wh[b] for b in sorted(wh)},
            "verified_intervals_per_band": {str(b): n[b] for b in sorted(n)},
        },
        tuple(bands), sum(tariff.bands[b].price * e for b, _, e in bands),
    )


def uncovered_days(
    period_from: date, period_to: date, statements: Sequence[BandedBillStatement]
) -> list[tuple[date, date]]:
    """The runs of days of the period that no statement covers; refuses statements that
    overlap each other or leave the period."""
    covered: set[date] = set()
    for st in statements:
        if st.period_from < period_from or st.period_to > period_to:
            raise ValueError(f"statement {st.period_from}..{st.period_to} leaves the period")
        d = st.period_from
        while d <= st.period_to:
            if d in covered:
                raise ValueError(f"statements overlap on {d}")
            covered.add(d)
            d += timedelta(days=1)
    runs: list[tuple[date, date]] = []
    d = period_from
    while d <= period_to:
        if d not in covered:
            start = d
            while d + timedelta(days=1) <= period_to and d + timedelta(days=1) not in covered:
                d += timedelta(days=1)
            runs.append((start, d))
        d += timedelta(days=1)
    return runs


def register_at_gap(
    first_day: date, last_day: date, stored: dict[date, DailyBatch]
) -> tuple[tuple[date, int] | None, tuple[date, int] | None]:
    """The meter-signed register at the gap's start and end, from the stored batches of
    the gap's first day or the day before, and of its last day or the day after."""
    start = end = None
    before, first = stored.get(first_day - timedelta(days=1)), stored.get(first_day)
    if first is not None and first.register_start_wh is not None:
        start = (first.day, first.register_start_wh)
    elif before is not None and before.register_end_wh is not None:
        start = (before.day, before.register_end_wh)
    last, after = stored.get(last_day), stored.get(last_day + timedelta(days=1))
    if last is not None and last.register_end_wh is not None:
        end = (last.day, last.register_end_wh)
    elif after is not None and after.register_start_wh is not None:
        end = (after.day, after.register_start_wh)
    return start, end


@dataclass(frozen=True, slots=True)
class PeriodBill:
    """The bill of one contract period: verified statements plus substitute values."""

    meter_id: str
    metering_point: str
    contract_id: str
    period_from: date
    period_to: date
    tariff_id: str
    tariff_version: int
    currency: str
    subunits_per_unit: int
    standing_charge: int
    verified: tuple[BandedBillStatement, ...]
    estimates: tuple[GapEstimate, ...]
    registers: tuple[int, int] | None = None
    #: ``(band position, name, price)`` of the tariff's bands (prices for the band lines).
    band_prices: tuple[tuple[int, str, int], ...] = field(default=())

    def band_lines(self) -> list[dict[str, Any]]:
        """Per band position: name, Wh (verified + estimated), of which estimated, price
        (sub-units per Wh) and amount (sub-units); ascending by position."""
        price = {b: (n, p) for b, n, p in self.band_prices}
        wh: dict[int, int] = {}
        est: dict[int, int] = {}
        for s in self.verified:
            for be in s.bands:
                wh[be.band] = wh.get(be.band, 0) + be.energy_wh
        for e in self.estimates:
            for b, _, x in e.bands:
                wh[b] = wh.get(b, 0) + x
                est[b] = est.get(b, 0) + x
        return [
            {"band": b, "name": price[b][0], "energy_wh": wh[b], "estimated_wh": est.get(b, 0),
             "price": price[b][1], "amount": price[b][1] * wh[b]}
            for b in sorted(wh)
        ]

    @property
    def status(self) -> str:
        return "estimated" if self.estimates else "verified"

    @property
    def energy_charge(self) -> int:
        return sum(s.energy_charge for s in self.verified) + sum(e.energy_charge for e in self.estimates)

    @property
    def total(self) -> int:
        return self.energy_charge + self.standing_charge

    def band_wh(self) -> dict[str, int]:
        """kWh per band name (verified and estimated together), in Wh."""
        out: dict[str, int] = {}
        for s in self.verified:
            for b in s.bands:
                out[b.name] = out.get(b.name, 0) + b.energy_wh
        for e in self.estimates:
            for _, name, wh in e.bands:
                out[name] = out.get(name, 0) + wh
        return out

    @property
    def energy_wh(self) -> int:
        return sum(self.band_wh().values())

    @property
    def estimated_wh(self) -> int:
        return sum(e.energy_wh for e in self.estimates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PERIOD_BILL_FORMAT,
            "meter_id": self.meter_id,
            "metering_point": self.metering_point,
            "contract_id": self.contract_id,
            "period_from": self.period_from.isoformat(),
            "period_to": self.period_to.isoformat(),
            "tariff_id": self.tariff_id,
            "tariff_version": self.tariff_version,
            "currency": self.currency,
            "subunits_per_unit": self.subunits_per_unit,
            "status": self.status,
            "energy_wh": self.energy_wh,
            "estimated_wh": self.estimated_wh,
            "bands_wh": self.band_wh(),
            "bands": self.band_lines(),
            "energy_charge": self.energy_charge,
            "standing_charge": self.standing_charge,
            "total": self.total,
            "register_start_wh": None if self.registers is None else self.registers[0],
            "register_end_wh": None if self.registers is None else self.registers[1],
            "verified_parts": [
                {"period_from": s.period_from.isoformat(), "period_to": s.period_to.isoformat(),
                 "energy_wh": s.energy_wh, "energy_charge": s.energy_charge}
                for s in self.verified
            ],
            "estimated_parts": [e.to_dict() for e in self.estimates],
        }
