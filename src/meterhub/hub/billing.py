"""Time-of-use billing from openings (docs/architecture.md, data flow step 4).

For a billing period with per-interval prices ``t_i`` (sub-units per Wh) the
hub releases ``bill = sum t_i*m_i`` and ``R = sum t_i*r_i mod Q``. By the
homomorphism of Pedersen commitments, ``sum t_i*C_i = bill*G + R*H``, which
the utility checks without learning any ``m_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ..banded import BandedBillStatement, band_indices, band_sums
from ..crypto.group import Q
from ..crypto.pedersen import Opening
from ..exchange import BillStatement
from ..model.ids import check_contract_id, check_metering_point
from ..tariffs import Tariff

__all__ = ["linear_bill", "bill_statement", "statement_from_sums", "banded_statement"]


def linear_bill(prices: Sequence[int], openings: Sequence[Opening]) -> tuple[int, int]:
    """``(sum t_i*m_i, sum t_i*r_i mod Q)``. Exact integers; prices must be >= 0."""
    if len(prices) != len(openings):
        raise ValueError(f"{len(prices)} prices for {len(openings)} openings")
    bill = 0
    blinding = 0
    for t, o in zip(prices, openings, strict=True):
        bill += t * o.m
        blinding += t * o.r
    return bill, blinding % Q


def bill_statement(
    *,
    meter_id: str,
    tariff: Tariff,
    period_from: date,
    period_to: date,
    first_index: int,
    prices: Sequence[int],
    openings: Sequence[Opening],
) -> BillStatement:
    """Assemble the statement for a period of whole local days (``period_to`` inclusive)."""
    energy, blinding = linear_bill(prices, openings)
    return statement_from_sums(
        meter_id=meter_id,
        tariff=tariff,
        period_from=period_from,
        period_to=period_to,
        first_index=first_index,
        count=len(openings),
        energy_charge=energy,
        blinding=blinding,
    )


def statement_from_sums(
    *,
    meter_id: str,
    tariff: Tariff,
    period_from: date,
    period_to: date,
    first_index: int,
    count: int,
    energy_charge: int,
    blinding: int,
) -> BillStatement:
    """The statement for already computed ``sum t_i*m_i`` and ``sum t_i*r_i mod Q``."""
    days = (period_to - period_from).days + 1
    standing = days * tariff.standing_charge_per_day
    return BillStatement(
        meter_id=meter_id,
        period_from=period_from,
        period_to=period_to,
        first_index=first_index,
        count=count,
        tariff_id=tariff.tariff_id,
        tariff_version=tariff.version,
        tariff_digest=tariff.digest(),
        currency=tariff.currency,
        subunits_per_unit=tariff.subunits_per_unit,
        energy_charge=energy_charge,
        standing_charge=standing,
        total=energy_charge + standing,
        blinding=blinding % Q,
    )


def banded_statement(
    *,
    meter_id: str,
    metering_point: str,
    contract_id: str,
    tariff: Tariff,
    period_from: date,
    period_to: date,
    first_index: int,
    tz: str,
    interval_minutes: int,
    openings: Sequence[Opening],
) -> BandedBillStatement:
    """The v3 statement (docs/formats.md, "Bill statement v3"): the v1 bill plus the
    energy and blinding of every tariff band in the period, the metering point and the
    contract. Releases one functional per band on top of the bill (docs/privacy.md)."""
    n_days = (period_to - period_from).days + 1
    prices = tariff.period_prices(period_from, n_days, tz, interval_minutes)
    bands_of = band_indices(tariff, period_from, n_days, tz, interval_minutes)
    v1 = bill_statement(
        meter_id=meter_id,
        tariff=tariff,
        period_from=period_from,
        period_to=period_to,
        first_index=first_index,
        prices=prices,
        openings=openings,
    )
    return BandedBillStatement(
        meter_id=meter_id,
        metering_point=check_metering_point(metering_point),
        contract_id=check_contract_id(contract_id),
        period_from=period_from,
        period_to=period_to,
        first_index=first_index,
        count=v1.count,
        tariff_id=v1.tariff_id,
        tariff_version=v1.tariff_version,
        tariff_digest=v1.tariff_digest,
        currency=v1.currency,
        subunits_per_unit=v1.subunits_per_unit,
        energy_charge=v1.energy_charge,
        standing_charge=v1.standing_charge,
        total=v1.total,
        blinding=v1.blinding,
        bands=band_sums(tariff, bands_of, openings),
    )
