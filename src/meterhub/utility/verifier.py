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

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..crypto import ecdsa
from ..crypto.group import PointArray, PointDecodeError, Q
from ..crypto.transcript import ProofError
from ..model.billing import BillCheck, BillingKind, check_energy_bound, check_version
from ..model.billing.time_of_use import TIME_OF_USE
from ..model.errors import Rejected
from ..model.formats.batch import SignedBatch, chain_head
from ..model.formats.statements import AnyBillStatement, BandedBillStatement, BillStatement
from ..model.formats.units import COMMITMENT_SIZE
from ..model.formats.upload import DayUpload
from ..model.timebase import day_starts
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
    "bill_check",
    "check_bill",
    "verify_statement_verdict",
    "verify_banded_bill",
    "period_registers",
    "period_points",
    "period_point_sums",
    "clear_shared_caches",
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


# ---------------------------------------------------------------- shared per customer-month
# The bill, settlement, score and sample checks of one customer-month each verify the
# same 30 daily signatures and use the same 2,880 points. Both caches are keyed by the
# exact bytes checked (the public key, signed message and signature; the concatenated
# encodings), so a hit answers for precisely the input that was checked before, and
# only successes are kept: a cached verdict can never differ from a fresh one.
_SIG_CACHE_SIZE = 4096
_VERIFIED_SIGS: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
_POINTS_CACHE_SIZE = 64  # customers of one batch; ~230 KB each
_POINTS: OrderedDict[tuple[int, tuple[bytes, ...]], PointArray] = OrderedDict()
_SUMS: OrderedDict[tuple[int, int, tuple[bytes, ...]], PointArray] = OrderedDict()
_DAYS: OrderedDict[tuple[Any, ...], tuple[tuple[datetime, ...], ...]] = OrderedDict()
_LOCK = threading.Lock()  # verification may run on threads (Dask workers)


def clear_shared_caches() -> None:
    """Forget every verified signature and parsed period (benchmarks start each run
    cold with this; a service never needs it, the caches are bounded)."""
    with _LOCK:
        _VERIFIED_SIGS.clear()
        _POINTS.clear()
        _SUMS.clear()
        _DAYS.clear()


def _batch_signature_ok(key_bytes: bytes, dc: DayCommitments, meter: MeterRegistration) -> bool:
    """``dc.batch.verify`` (low-S, rule V05), remembering the triples that verified."""
    sb = dc.batch
    k = (key_bytes, sb.batch.signed_message(), sb.signature)
    with _LOCK:
        if k in _VERIFIED_SIGS:
            _VERIFIED_SIGS.move_to_end(k)
            return True
    if not sb.verify(meter.public_key):
        return False
    with _LOCK:
        _VERIFIED_SIGS[k] = None
        if len(_VERIFIED_SIGS) > _SIG_CACHE_SIZE:
            _VERIFIED_SIGS.popitem(last=False)
    return True


def _encodings(days: Sequence[DayCommitments]) -> tuple[int, tuple[bytes, ...]]:
    # bytes(), not the objects given: a bytearray cannot key a cache (bytes(b) of a
    # bytes object is that object, no copy).
    if all(dc.c65 is not None for dc in days):
        return 65, tuple(bytes(dc.c65 or b"") for dc in days)
    return 33, tuple(bytes(dc.c33) for dc in days)


def period_points(days: Sequence[DayCommitments]) -> PointArray:
    """The period's commitments (``c65`` where every day has it, else ``c33``), parsed
    strictly once per customer-month and shared by its checks. Raises
    ``PointDecodeError``; the caller has checked the batches (:func:`check_period`)."""
    key = _encodings(days)
    with _LOCK:
        arr = _POINTS.get(key)
        if arr is not None:
            _POINTS.move_to_end(key)
            return arr
    arr = PointArray.parse(b"".join(key[1]), key[0])
    with _LOCK:
        _POINTS[key] = arr
        if len(_POINTS) > _POINTS_CACHE_SIZE:
            _POINTS.popitem(last=False)
    return arr


def period_point_sums(days: Sequence[DayCommitments], g: int) -> PointArray:
    """Sums of ``g`` consecutive commitments of the period (the hourly ``C_h`` for
    ``g = 4`` at 15 minutes), shared like :func:`period_points`."""
    width, encs = _encodings(days)
    key = (width, g, encs)
    with _LOCK:
        arr = _SUMS.get(key)
        if arr is not None:
            _SUMS.move_to_end(key)
            return arr
    arr = period_points(days).group_sums(g)
    with _LOCK:
        _SUMS[key] = arr
        if len(_SUMS) > _POINTS_CACHE_SIZE:
            _SUMS.popitem(last=False)
    return arr


def _cached_point_sums(days: Sequence[DayCommitments], g: int) -> PointArray | None:
    """:func:`period_point_sums` if they are in the cache already, else ``None``."""
    width, encs = _encodings(days)
    with _LOCK:
        return _SUMS.get((width, g, encs))


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
    """Check a v1 bill statement; returns a :class:`Verdict` with the first failure."""
    if not isinstance(statement, BillStatement):
        return Verdict(False, "expected a v1 bill statement")
    return verify_statement_verdict(statement, meter, days, tariff, engine=TIME_OF_USE)


def _checked_days(period: list[date], meter: MeterRegistration, days: Sequence[DayCommitments]) -> list[list[datetime]]:
    """Check 4 of the module docstring, day by day (batch day, meter, interval, low-S
    signature, interval count, chain to the previous day, indices, commitments against
    the signed head); returns the interval starts of each day. Raises :class:`Rejected`.

    The bill, settlement, score and sample checks of one customer-month run this on the
    same days: a success is remembered under the exact inputs (the meter's key bytes,
    id, time zone and interval, the period's first day and the days themselves, compared
    by value: every field read below), as the signature cache, so a repeat answers for
    precisely the input checked before; failures are never stored."""
    key_bytes = ecdsa.public_bytes(meter.public_key)
    key: tuple[Any, ...] | None = (
        key_bytes, meter.meter_id, meter.tz, meter.interval_minutes, period[0],
        tuple((dc.batch, dc.c33, None if dc.indices is None else tuple(dc.indices)) for dc in days),
    )
    try:
        hash(key)
    except TypeError:  # an unhashable field (a bytearray): no caching
        key = None
    if key is not None:
        with _LOCK:
            hit = _DAYS.get(key)
            if hit is not None:
                _DAYS.move_to_end(key)
                return [list(x) for x in hit]
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
        if not _batch_signature_ok(key_bytes, dc, meter):
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
        if len(dc.c33) != COMMITMENT_SIZE * b.count:
            raise Rejected(f"{label}: {len(dc.c33) // COMMITMENT_SIZE} commitments, the batch signs {b.count}")
        if chain_head(b.prev_head, b.first_index, dc.c33) != b.head:
            raise Rejected(
                f"{label}: commitments do not match the signed chain head "
                "(a commitment altered, swapped or foreign)"
            )
        day_starts_list.append(starts)
        prev_batch = b
    if key is not None:
        with _LOCK:
            _DAYS[key] = tuple(tuple(x) for x in day_starts_list)
            if len(_DAYS) > _POINTS_CACHE_SIZE:
                _DAYS.popitem(last=False)
    return day_starts_list


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

    day_starts_list = _checked_days(period, meter, days)

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


def bill_check(
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Any,
    starts: list[list[datetime]],
    *,
    require_reading_range: bool = False,
    metering_point: str | None = None,
    contract_id: str | None = None,
) -> BillCheck:
    """What the billing engine's verifier needs once :func:`check_period` passed."""
    use65 = all(dc.c65 is not None for dc in days)
    g = 60 // meter.interval_minutes if 60 % meter.interval_minutes == 0 else 1
    sums: tuple[int, PointArray] | None = None
    try:
        points: PointArray | None = period_points(days)
        # The hourly sums only where another check of the customer-month formed them
        # already: forming them costs more than they save the bill alone.
        hourly = _cached_point_sums(days, g) if g > 1 else None
        if hourly is not None and points is not None and len(hourly) * g == len(points):
            sums = (g, hourly)
    except PointDecodeError:
        points = None  # the kind's verifier parses again and reports the bad point
    return BillCheck(
        tariff=tariff,
        tz=meter.tz,
        interval_minutes=meter.interval_minutes,
        starts=starts,
        c33=b"".join(dc.c33 for dc in days),
        c65=b"".join(dc.c65 or b"" for dc in days) if use65 else None,
        require_reading_range=require_reading_range,
        registers=period_registers(days),
        metering_point=metering_point,
        contract_id=contract_id,
        points=points,
        group_sums=sums,
    )


def check_bill(
    st: AnyBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Any,
    *,
    require_reading_range: bool = False,
    metering_point: str | None = None,
    contract_id: str | None = None,
    engine: BillingKind | None = None,
) -> None:
    """Every check of any bill statement under any tariff kind: the statement's version
    against the tariff's kind, the period (:func:`check_period`), then the tariff kind's
    own checks through the billing engine (:mod:`meterhub.model.billing`). ``engine``
    forces one kind's verifier (``verify_bill`` uses the time-of-use one whatever the
    tariff, so that a non-linear tariff fails on its prices). Raises :class:`Rejected`."""
    if engine is None:
        engine = check_version(st, tariff)
    starts = check_period(st, meter, days, tariff)
    check = bill_check(
        meter, days, tariff, starts, require_reading_range=require_reading_range,
        metering_point=metering_point, contract_id=contract_id,
    )
    engine.verify(st, check)


def verify_statement_verdict(
    st: AnyBillStatement,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    tariff: Any,
    *,
    require_reading_range: bool = False,
    metering_point: str | None = None,
    contract_id: str | None = None,
    engine: BillingKind | None = None,
) -> Verdict:
    """:func:`check_bill` as a :class:`Verdict` (the first failure's reason); never
    raises for a malformed statement, proof or tariff (they are rejections)."""
    try:
        check_bill(
            st, meter, days, tariff, require_reading_range=require_reading_range,
            metering_point=metering_point, contract_id=contract_id, engine=engine,
        )
    except Rejected as rej:
        return Verdict(False, str(rej))
    except ProofError as exc:
        return Verdict(False, f"malformed proof: {exc}")
    except TariffError as exc:
        return Verdict(False, str(exc))
    return Verdict(True)


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
    the bands, their commitments and the meter-signed registers
    (:func:`meterhub.model.billing.time_of_use.verify_bands`)."""
    if not isinstance(statement, BandedBillStatement):
        return Verdict(False, "expected a v3 bill statement")
    return verify_statement_verdict(
        statement, meter, days, tariff, metering_point=metering_point, contract_id=contract_id,
        engine=TIME_OF_USE,
    )
