"""Time-of-use (linear) tariffs: prover and verifier side by side (docs/tariffs.md).

For per-interval prices ``t_i`` (sub-units per Wh) the hub releases
``bill = sum t_i*m_i`` and ``R = sum t_i*r_i mod Q``. By the homomorphism of
Pedersen commitments ``sum t_i*C_i = bill*G + R*H``, which the utility checks
without learning any ``m_i`` (docs/verification.md V17, V19): a v1 statement.
With a metering point and contract the hub adds, per tariff band, the energy
and blinding of the band's intervals: a v3 statement (V26-V29).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import date
from typing import cast

from ...crypto.bulletproofs import value_point
from ...crypto.group import Point, PointDecodeError, Q, msm_encoded
from ...crypto.pedersen import Opening
from ...tariffs import KIND_TIME_OF_USE, Tariff, TariffError
from ..errors import Rejected
from ..formats.statements import AnyBillStatement, BandedBillStatement, BillStatement
from ..formats.units import MAX_READING_WH, OpeningUnits
from ..ids import check_contract_id, check_metering_point
from .bands import band_counts, band_indices, band_sums
from .base import BillCheck, BillJob, check_energy_bound

__all__ = [
    "TIME_OF_USE",
    "TimeOfUse",
    "banded_statement",
    "bill_statement",
    "linear_bill",
    "linear_sums",
    "statement_from_sums",
]


def linear_sums(prices: Iterable[int], units: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """``(sum t_i*m_i, sum t_i*r_i)`` over ``(m, r)`` pairs (e.g. straight from the
    36-byte opening units); the blinding is not reduced. Exact integers."""
    energy = blinding = 0
    for t, (m, r) in zip(prices, units, strict=True):
        energy += t * m
        blinding += t * r
    return energy, blinding


def linear_bill(prices: Sequence[int], openings: Sequence[Opening]) -> tuple[int, int]:
    """``(sum t_i*m_i, sum t_i*r_i mod Q)``. Exact integers; prices must be >= 0."""
    if len(prices) != len(openings):
        raise ValueError(f"{len(prices)} prices for {len(openings)} openings")
    if isinstance(openings, OpeningUnits):  # stored units: sum the integers, build no objects
        bill, blinding = linear_sums(prices, openings.pairs())
        return bill, blinding % Q
    bill = 0
    blinding = 0
    for t, o in zip(prices, openings, strict=True):  # attribute reads: no tuples (bench_billing "sums")
        bill += t * o.m
        blinding += t * o.r
    return bill, blinding % Q


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
    """The v1 statement for already computed ``sum t_i*m_i`` and ``sum t_i*r_i``."""
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
    """The v1 statement for a period of whole local days (``period_to`` inclusive)."""
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


def _period_points(check: BillCheck) -> tuple[bytes, int]:
    """The commitments as one blob and its point width (65-byte points decode faster)."""
    if check.c65 is not None:
        return check.c65, 65
    return check.c33, 33


def _lincomb(check: BillCheck, scalars: list[int]) -> Point:
    """``sum k_i C_i`` over the period's commitments: on the already parsed points
    when the caller shares them, else parsed here; a bad encoding is a rejection."""
    if check.points is not None:
        if len(check.points) != len(scalars):
            raise Rejected(f"a commitment does not decode: expected {len(scalars)} points, got {len(check.points)}")
        if check.group_sums is not None:
            # Prices constant over each group (time-of-use bands on the hour): sum_i t_i C_i
            # = sum_h t_h (sum of the group's C_i), on a quarter of the points.
            g, sums = check.group_sums
            first = scalars[::g]
            # Every group's prices equal its first (list slices compared in C).
            if g > 1 and len(sums) * g == len(scalars) and all(scalars[j::g] == first for j in range(1, g)):
                return sums.msm(first)
        return check.points.msm(scalars)
    blob, width = _period_points(check)
    try:
        return msm_encoded(scalars, blob, width)
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None


def verify_linear(st: BillStatement | BandedBillStatement, check: BillCheck) -> None:
    """V17 then V19: the energy charge is at most ``(2^32-1) * sum t_i``, then
    ``sum t_i*C_i == bill*G + R*H`` as one multi-scalar multiplication."""
    tariff = cast(Tariff, check.tariff)
    try:
        prices = tariff.period_prices(st.period_from, len(check.starts), check.tz, check.interval_minutes)
    except TariffError as exc:
        raise Rejected(str(exc)) from None
    check_energy_bound(st.energy_charge, MAX_READING_WH * sum(prices))
    lhs = _lincomb(check, prices)
    if lhs != value_point(st.energy_charge, st.blinding):
        raise Rejected(
            "sum t_i*C_i != bill*G + R*H: the bill or its blinding does not match the commitments"
        )


def verify_bands(st: BandedBillStatement, check: BillCheck) -> None:
    """V26-V29 for a v3 statement whose v1 part :func:`verify_linear` accepted."""
    tariff = cast(Tariff, check.tariff)
    # V26: the keys the billing system matches on are the ones the utility assigned.
    if check.metering_point is not None and st.metering_point != check.metering_point:
        raise Rejected(f"statement names metering point {st.metering_point}, the meter's is {check.metering_point}")
    if check.contract_id is not None and st.contract_id != check.contract_id:
        raise Rejected(f"statement names contract {st.contract_id!r:.70}, the meter's is {check.contract_id!r}")
    # V27: exactly the bands that occur, with the tariff's names, in range, pricing to the charge.
    n_days = (st.period_to - st.period_from).days + 1
    try:
        bands_of = band_indices(tariff, st.period_from, n_days, check.tz, check.interval_minutes)
    except TariffError as exc:
        raise Rejected(str(exc)) from None
    counts = band_counts(bands_of)
    if [b.band for b in st.bands] != sorted(counts):
        want = ", ".join(tariff.bands[k].name for k in sorted(counts))
        raise Rejected(f"statement bands are not the bands of the period ({want})")
    for b in st.bands:
        if b.name != tariff.bands[b.band].name:
            raise Rejected(f"band {b.band} is {tariff.bands[b.band].name!r}, not {b.name!r:.40}")
        check_energy_bound(b.energy_wh, MAX_READING_WH * counts[b.band], f"band {b.name} energy")
    if sum(tariff.bands[b.band].price * b.energy_wh for b in st.bands) != st.energy_charge:
        raise Rejected("energy charge is not the sum of band energy x band price")
    # V28: sum_{i in b} C_i == E_b*G + R_b*H for every band, checked at once as a random
    # linear combination with 128-bit weights rho_b (a false band passes with prob. 2^-128).
    rho = {b.band: secrets.randbelow((1 << 128) - 1) + 1 for b in st.bands}
    lhs = _lincomb(check, [rho[k] for k in bands_of])
    e = sum(rho[b.band] * b.energy_wh for b in st.bands) % Q
    r = sum(rho[b.band] * b.blinding for b in st.bands) % Q
    if lhs != value_point(e, r):
        raise Rejected("a band's energy or blinding does not match the sum of its commitments")
    # V29: with version-2 batches, the bands add up to the signed register difference.
    regs = check.registers
    if regs is not None and st.energy_wh != regs[1] - regs[0]:
        raise Rejected(
            f"bands sum to {st.energy_wh} Wh, the meter's register went from {regs[0]} "
            f"to {regs[1]} Wh ({regs[1] - regs[0]} Wh)"
        )


class TimeOfUse:
    """The linear kind: v1 statements, or v3 with a metering point and contract."""

    kinds: tuple[str, ...] = (KIND_TIME_OF_USE,)
    statement_types: tuple[type, ...] = (BillStatement, BandedBillStatement)

    def prove(self, job: BillJob) -> AnyBillStatement:
        tariff = cast(Tariff, job.tariff)
        tz, step = job.time_base
        if job.metering_point is not None or job.contract_id is not None:
            if not (job.metering_point and job.contract_id):
                raise ValueError("a per-band (v3) statement needs both the metering point and the contract")
            return banded_statement(
                meter_id=job.meter_id, metering_point=job.metering_point, contract_id=job.contract_id,
                tariff=tariff, period_from=job.period_from, period_to=job.period_to,
                first_index=job.first_index, tz=tz, interval_minutes=step, openings=job.openings,
            )
        prices = tariff.period_prices(job.period_from, job.n_days, tz, step)
        return bill_statement(
            meter_id=job.meter_id, tariff=tariff, period_from=job.period_from, period_to=job.period_to,
            first_index=job.first_index, prices=prices, openings=job.openings,
        )

    def verify(self, statement: AnyBillStatement, check: BillCheck) -> None:
        if not isinstance(statement, BillStatement | BandedBillStatement):
            raise Rejected("a proven (v2) statement for a linear tariff")
        verify_linear(statement, check)
        if isinstance(statement, BandedBillStatement):
            verify_bands(statement, check)


TIME_OF_USE = TimeOfUse()
