"""Verification of released figures against meter-signed commitments.

The normative rules, their order and their reject reasons are in
docs/verification.md (V01-V29); this module implements V08 (an uploads file
as one meter's chain: :func:`check_delivery`), V12-V19 for bills and V26-V29
for v3 statements (:func:`verify_banded_bill`).

The utility trusts the meter for measurement and nobody for arithmetic. For a
bill statement over whole local days it checks, in this order, and stops at the
first failure with a precise reason (docs/architecture.md, data flow step 6):

1. the statement names this meter, and the customer's tariff (id, version,
   digest, currency and sub-unit scale: V12), valid on the period's first and
   last day (V13);
2. one signed batch per day, each signature valid under the meter's key, each
   day's interval count right for the local day (92/96/100 at 15 minutes), and
   the batches contiguous: indices follow on, and each batch chains to the
   previous one's head;
3. the commitment records: every index of each batch present once and in
   order, and the hash chain over the commitments reproduces the signed head;
4. the statement covers exactly the signed intervals, with the right standing
   charge and total (V15, V16);
5. the energy charge is at most ``(2^32-1) * sum t_i`` (V17), checked before
6. ``sum t_i*C_i == bill*G + R*H``, one multi-scalar multiplication with the
   points bucketed by price (V19).

Pure: the caller fetches the data (see :mod:`meterhub.utility.store`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..banded import BandedBillStatement, band_counts, band_indices
from ..crypto import ecdsa
from ..crypto.group import G, H, PointDecodeError, Q, msm_encoded
from ..exchange import BillStatement, DayUpload
from ..meter.device import MAX_READING_WH, SignedBatch, chain_head
from ..meter.timebase import day_starts
from ..tariffs import Tariff, TariffError

__all__ = [
    "MeterRegistration",
    "DayCommitments",
    "Verdict",
    "Rejected",
    "check_delivery",
    "check_energy_bound",
    "check_indices",
    "check_money_terms",
    "check_period",
    "verify_bill",
    "verify_banded_bill",
    "period_registers",
]


@dataclass(frozen=True, slots=True)
class MeterRegistration:
    """What the utility knows of a meter: its id, signing key and time base."""

    meter_id: str
    public_key: ecdsa.VerifyingKey
    tz: str
    interval_minutes: int


@dataclass(frozen=True, slots=True)
class DayCommitments:
    """One day's signed batch and its commitments.

    ``indices`` are the record indices as received (``None`` when they come
    from storage that already checked them); ``c33`` the concatenated
    canonical commitments in record order; ``c65`` optionally the same points
    uncompressed, which decode about 5x faster.
    """

    batch: SignedBatch
    c33: bytes
    indices: Sequence[int] | None = None
    c65: bytes | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Rejected(Exception):
    """A check failed; the message is the precise reason."""


def check_indices(day_label: str, first: int, count: int, indices: Sequence[int]) -> None:
    """Every index of a batch present once, in order; names the first fault."""
    expected = first
    seen: set[int] = set()
    for i in indices:
        if i == expected:
            seen.add(i)
            expected += 1
            continue
        if not first <= i < first + count:
            raise Rejected(f"{day_label}: interval {i} does not belong to this batch (foreign)")
        if i in seen:
            raise Rejected(f"{day_label}: interval {i} duplicated")
        if i < expected:
            raise Rejected(f"{day_label}: interval {i} out of order")
        raise Rejected(f"{day_label}: interval {expected} missing")
    if expected != first + count:
        raise Rejected(f"{day_label}: interval {expected} missing")


def check_delivery(
    lines: Sequence[tuple[int, DayUpload]], meter_id: str
) -> list[tuple[int, DayUpload]]:
    """V08, for one uploads file ``(line number, upload)``: every line is for
    ``meter_id``; a verbatim repeat of an earlier line is dropped (idempotent); two
    different lines for one day conflict; the remaining days follow on in order
    (next day, next index, previous head). Raises :class:`Rejected` naming the line."""
    out: list[tuple[int, DayUpload]] = []
    seen: dict[object, tuple[int, DayUpload]] = {}
    for n, up in lines:
        b = up.batch.batch
        if b.meter_id != meter_id:
            raise Rejected(f"line {n}: upload is from meter {b.meter_id!r}, not {meter_id!r}")
        earlier = seen.get(b.day)
        if earlier is not None:
            if earlier[1] == up:
                continue
            raise Rejected(f"line {n}: day {b.day} conflicts with line {earlier[0]}")
        if out:
            pn, prev = out[-1]
            pb = prev.batch.batch
            if b.day.toordinal() != pb.day.toordinal() + 1:
                raise Rejected(f"line {n}: day {b.day} does not follow day {pb.day} of line {pn}")
            if b.first_index != pb.first_index + pb.count or b.prev_head != pb.head:
                raise Rejected(f"line {n}: day {b.day} does not chain to day {pb.day} of line {pn}")
        seen[b.day] = (n, up)
        out.append((n, up))
    return out


def verify_bill(
    statement: BillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Tariff,
) -> Verdict:
    """Check a bill statement; returns a :class:`Verdict` with the first failure."""
    try:
        _verify(statement, meter, days, tariff)
    except Rejected as rej:
        return Verdict(False, str(rej))
    return Verdict(True)


def check_period(
    st: Any, meter: MeterRegistration, days: Sequence[DayCommitments], tariff: Any
) -> list[list[datetime]]:
    """Checks 1 to 4 of the module docstring for any bill statement (v1 or the
    proven v2 of :mod:`meterhub.utility.proof_verifier`) under any tariff kind;
    returns the interval starts of each day. Raises :class:`Rejected`."""
    if st.meter_id != meter.meter_id:
        raise Rejected(f"statement is for meter {st.meter_id!r}, not {meter.meter_id!r}")
    if st.tariff_id != tariff.tariff_id:
        raise Rejected(f"statement uses tariff {st.tariff_id!r}, the customer's is {tariff.tariff_id!r}")
    if st.tariff_version != tariff.version:
        raise Rejected(
            f"tariff version mismatch: statement uses v{st.tariff_version}, "
            f"the customer's tariff is v{tariff.version}"
        )
    if st.tariff_digest != tariff.digest():
        raise Rejected("tariff digest mismatch: statement was computed under other tariff terms")
    if hasattr(st, "currency"):  # bill statements; settlement views carry no money terms
        check_money_terms(st, tariff)
    n_days = (st.period_to - st.period_from).days + 1
    period = [st.period_from + timedelta(days=k) for k in range(n_days)]
    for d in (period[0], period[-1]):
        try:
            tariff.check_valid_on(d)
        except TariffError as exc:
            raise Rejected(str(exc)) from None
    if len(days) != n_days:
        have = {dc.batch.batch.day for dc in days}
        missing = [d for d in period if d not in have]
        if missing:
            raise Rejected(f"no signed batch for day {missing[0]}")
        raise Rejected(f"{len(days)} day batches for a period of {n_days} days")

    day_starts_list: list[list[datetime]] = []
    prev_batch = None
    for day, dc in zip(period, days, strict=True):
        b = dc.batch.batch
        label = f"day {day}"
        if b.day != day:
            raise Rejected(f"{label}: batch is for day {b.day} (days missing or out of order)")
        if b.meter_id != meter.meter_id:
            raise Rejected(f"{label}: batch is from meter {b.meter_id!r} (foreign batch)")
        if b.interval_minutes != meter.interval_minutes:
            raise Rejected(f"{label}: batch uses {b.interval_minutes}-minute intervals")
        if not ecdsa.is_low_s(dc.batch.signature):
            raise Rejected(f"{label}: batch signature is high-S (non-canonical)")
        if not dc.batch.verify(meter.public_key):
            raise Rejected(f"{label}: batch signature does not verify under the meter's key")
        starts = day_starts(day, meter.tz, meter.interval_minutes)
        if b.count != len(starts):
            raise Rejected(f"{label}: batch signs {b.count} intervals, the local day has {len(starts)}")
        if prev_batch is not None:
            if b.first_index != prev_batch.first_index + prev_batch.count:
                raise Rejected(
                    f"{label}: batch starts at interval {b.first_index}, "
                    f"expected {prev_batch.first_index + prev_batch.count}"
                )
            if b.prev_head != prev_batch.head:
                raise Rejected(f"{label}: batch does not chain to the previous day's head")
        if dc.indices is not None:
            check_indices(label, b.first_index, b.count, dc.indices)
        if len(dc.c33) != 33 * b.count:
            raise Rejected(f"{label}: {len(dc.c33) // 33} commitments, the batch signs {b.count}")
        if chain_head(b.prev_head, b.first_index, dc.c33) != b.head:
            raise Rejected(
                f"{label}: commitments do not match the signed chain head "
                "(a commitment altered, swapped or foreign)"
            )
        day_starts_list.append(starts)
        prev_batch = b

    first = days[0].batch.batch.first_index
    total = sum(len(s) for s in day_starts_list)
    if st.first_index != first or st.count != total:
        raise Rejected(
            f"statement covers intervals {st.first_index}..{st.first_index + st.count - 1}, "
            f"the period's batches sign {first}..{first + total - 1}"
        )
    if st.standing_charge != n_days * tariff.standing_charge_per_day:
        raise Rejected(
            f"standing charge {st.standing_charge} is not {n_days} days x "
            f"{tariff.standing_charge_per_day}"
        )
    if st.total != st.energy_charge + st.standing_charge:
        raise Rejected("total is not energy charge plus standing charge")
    if not 0 <= st.energy_charge < Q:
        raise Rejected("energy charge out of range")
    return day_starts_list


def check_money_terms(st: Any, tariff: Any) -> None:
    """V12: a bill statement's ``currency`` and ``subunits_per_unit`` are the signed
    tariff's (they only label the amounts, but a verdict prints them)."""
    if st.currency != tariff.currency:
        raise Rejected(f"statement currency {st.currency!r:.40} is not the tariff's {tariff.currency!r}")
    if st.subunits_per_unit != tariff.subunits_per_unit:
        raise Rejected(
            f"statement subunits_per_unit {st.subunits_per_unit} is not the tariff's "
            f"{tariff.subunits_per_unit}"
        )


def check_energy_bound(energy: int, bound: int, what: str = "energy charge") -> None:
    """V17: a released figure lies in ``[0, bound]``, the largest value honest readings
    (each at most :data:`MAX_READING_WH`) can give, before any group equation is
    checked, so that ``figure + Q`` (the same point) is refused."""
    if not 0 <= energy <= bound:
        raise Rejected(f"{what} {energy} out of range (at most {bound} for this period)")


def _verify(
    st: BillStatement, meter: MeterRegistration, days: Sequence[DayCommitments], tariff: Tariff
) -> None:
    starts = check_period(st, meter, days, tariff)
    try:
        prices = tariff.period_prices(st.period_from, len(starts), meter.tz, meter.interval_minutes)
    except TariffError as exc:
        raise Rejected(str(exc)) from None

    check_energy_bound(st.energy_charge, MAX_READING_WH * sum(prices))
    use65 = all(dc.c65 is not None for dc in days)
    blob = b"".join((dc.c65 if use65 else dc.c33) or b"" for dc in days)
    # sum t_i*C_i - bill*G - R*H must be the identity.
    try:
        lhs = msm_encoded(prices, blob, 65 if use65 else 33)
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None
    rhs = G * st.energy_charge + H * st.blinding
    if lhs != rhs:
        raise Rejected(
            "sum t_i*C_i != bill*G + R*H: the bill or its blinding does not match the commitments"
        )


def period_registers(days: Sequence[DayCommitments]) -> tuple[int, int] | None:
    """V29: the meter-signed register at the period's start and end, from version-2
    batches; ``None`` when a day of the period has a version-1 batch (no registers).
    Raises :class:`Rejected` when one day's start is not the previous day's end."""
    if not days or any(dc.batch.batch.register_start_wh is None for dc in days):
        return None
    prev_end: int | None = None
    for dc in days:
        b = dc.batch.batch
        if prev_end is not None and b.register_start_wh != prev_end:
            raise Rejected(
                f"day {b.day}: register starts at {b.register_start_wh} Wh, "
                f"the previous day ended at {prev_end} Wh"
            )
        prev_end = b.register_end_wh
    start = days[0].batch.batch.register_start_wh
    end = days[-1].batch.batch.register_end_wh
    assert start is not None and end is not None  # every batch is version 2 (checked above)
    return start, end


def verify_banded_bill(
    statement: BandedBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Tariff,
    *,
    metering_point: str | None = None,
    contract_id: str | None = None,
) -> Verdict:
    """A v3 statement (docs/verification.md V26-V29): everything :func:`verify_bill`
    checks, then the identifiers against the utility's own assignment (when given),
    the bands, their commitments and the meter-signed registers."""
    try:
        _verify(statement, meter, days, tariff)  # type: ignore[arg-type]  # v1 fields, duck-typed
        _verify_bands(statement, meter, days, tariff, metering_point, contract_id)
    except Rejected as rej:
        return Verdict(False, str(rej))
    return Verdict(True)


def _verify_bands(
    st: BandedBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Tariff,
    metering_point: str | None,
    contract_id: str | None,
) -> None:
    # V26: the keys the billing system matches on are the ones the utility assigned.
    if metering_point is not None and st.metering_point != metering_point:
        raise Rejected(f"statement names metering point {st.metering_point}, the meter's is {metering_point}")
    if contract_id is not None and st.contract_id != contract_id:
        raise Rejected(f"statement names contract {st.contract_id!r:.70}, the meter's is {contract_id!r}")
    # V27: exactly the bands that occur, with the tariff's names, in range, pricing to the charge.
    n_days = (st.period_to - st.period_from).days + 1
    try:
        bands_of = band_indices(tariff, st.period_from, n_days, meter.tz, meter.interval_minutes)
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
    use65 = all(dc.c65 is not None for dc in days)
    blob = b"".join((dc.c65 if use65 else dc.c33) or b"" for dc in days)
    try:
        lhs = msm_encoded([rho[k] for k in bands_of], blob, 65 if use65 else 33)
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None
    e = sum(rho[b.band] * b.energy_wh for b in st.bands) % Q
    r = sum(rho[b.band] * b.blinding for b in st.bands) % Q
    if lhs != G * e + H * r:
        raise Rejected("a band's energy or blinding does not match the sum of its commitments")
    # V29: with version-2 batches, the bands add up to the signed register difference.
    regs = period_registers(days)
    if regs is not None and st.energy_wh != regs[1] - regs[0]:
        raise Rejected(
            f"bands sum to {st.energy_wh} Wh, the meter's register went from {regs[0]} "
            f"to {regs[1]} Wh ({regs[1] - regs[0]} Wh)"
        )
