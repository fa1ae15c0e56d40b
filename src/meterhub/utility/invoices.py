"""Period bills from verified statements and substitute values, and their history.

:func:`make_period_bill` verifies each v3 statement of a contract period against
the utility's stored commitments (recording every verdict, V21), estimates the
days no statement covers (:mod:`meterhub.utility.substitute`) and returns the
:class:`~meterhub.utility.substitute.PeriodBill`. :class:`InvoiceStore`
(``invoices.sqlite``) keeps every version of a period's bill, append-only: an
estimate, then the correction that supersedes it once the missing days'
statement has verified, with the difference in Wh and sub-units.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import MeterhubError
from ..model.formats.statements import BandedBillStatement
from ..storage.sqlite import open_db, transaction
from ..tariffs import Tariff
from .contracts import Segment
from .store import UtilityStore
from .substitute import (
    PeriodBill,
    band_average_gap,
    interpolate_gap,
    register_at_gap,
    uncovered_days,
)

__all__ = ["BillRefused", "make_period_bill", "bill_segments", "InvoiceStore", "Correction"]


class BillRefused(MeterhubError, ValueError):
    """A period bill cannot be made: a statement did not verify, or nothing to estimate from."""


def make_period_bill(
    store: UtilityStore,
    statements: Sequence[BandedBillStatement],
    *,
    meter_id: str,
    metering_point: str,
    contract_id: str,
    period_from: date,
    period_to: date,
    tariff_key: tuple[str, int] | None = None,
) -> PeriodBill:
    """Verify ``statements`` (each must pass V12-V19, V26-V29 for this metering point
    and contract, under the stored tariff ``tariff_key`` or else the customer's) and
    estimate the uncovered days. Raises :class:`BillRefused`."""
    if period_to < period_from:
        raise BillRefused("period ends before it starts")
    reg = store.registration(meter_id)
    tariff = store.customer_tariff(meter_id) if tariff_key is None else store.tariff(*tariff_key)
    if not isinstance(tariff, Tariff):  # substitute values and per-band energy are time-of-use notions
        raise BillRefused(f"period bills need a time-of-use tariff, not a {tariff.kind} one")
    sts = sorted(statements, key=lambda s: s.period_from)
    for st in sts:
        if st.meter_id != meter_id:
            raise BillRefused(f"statement {st.period_from}..{st.period_to} is for meter {st.meter_id!r}")
        v = store.verify_statement(
            st, metering_point=metering_point, contract_id=contract_id, tariff_key=tariff_key
        )
        if not v.ok:
            raise BillRefused(f"statement {st.period_from}..{st.period_to} REJECTED: {v.reason}")
    try:
        gaps = uncovered_days(period_from, period_to, sts)
    except ValueError as exc:
        raise BillRefused(str(exc)) from None
    stored = {
        dc.batch.batch.day: dc.batch.batch
        for dc in store.day_commitments(meter_id, period_from - timedelta(days=1), period_to + timedelta(days=1))
    }
    estimates = []
    for g0, g1 in gaps:
        start, end = register_at_gap(g0, g1, stored)
        try:
            if start is not None and end is not None:
                est = interpolate_gap(tariff, reg.tz, reg.interval_minutes, g0, g1, start, end)
            else:
                est = band_average_gap(tariff, reg.tz, reg.interval_minutes, g0, g1, sts)
        except ValueError as exc:
            raise BillRefused(f"days {g0}..{g1}: no substitute value ({exc})") from None
        estimates.append(est)
    # The meter-signed register at the period's start and end, when stored (V29).
    r0, r1 = register_at_gap(period_from, period_to, stored)
    regs = None if r0 is None or r1 is None else (r0[1], r1[1])
    days = (period_to - period_from).days + 1
    return PeriodBill(
        meter_id, metering_point, contract_id, period_from, period_to, tariff.tariff_id, tariff.version,
        tariff.currency, tariff.subunits_per_unit, days * tariff.standing_charge_per_day,
        tuple(sts), tuple(estimates), regs,
        tuple((k, b.name, b.price) for k, b in enumerate(tariff.bands)),
    )


def bill_segments(
    store: UtilityStore,
    segments: Sequence[Segment],
    statements: Sequence[BandedBillStatement],
    *,
    meter_id: str,
) -> list[PeriodBill]:
    """One period bill per contract segment (:func:`meterhub.utility.contracts.split_period`),
    each from the statements inside it, under its contract and tariff; a statement that
    crosses a segment boundary is refused (the hub bills each segment separately)."""
    bills = []
    used: set[int] = set()
    for seg in segments:
        mine = [
            (k, st) for k, st in enumerate(statements)
            if st.period_from <= seg.period_to and st.period_to >= seg.period_from
        ]
        for k, st in mine:
            if st.period_from < seg.period_from or st.period_to > seg.period_to:
                raise BillRefused(
                    f"statement {st.period_from}..{st.period_to} crosses the segment "
                    f"{seg.period_from}..{seg.period_to} of contract {seg.contract.contract_id}"
                )
            used.add(k)
        bills.append(make_period_bill(
            store, [st for _, st in mine], meter_id=meter_id, metering_point=seg.contract.metering_point,
            contract_id=seg.contract.contract_id, period_from=seg.period_from, period_to=seg.period_to,
            tariff_key=(seg.tariff_id, seg.tariff_version),
        ))
    if len(used) != len(statements):
        raise BillRefused("a statement lies outside every contract segment")
    return bills


@dataclass(frozen=True, slots=True)
class Correction:
    """How a later version of a period's bill differs from the one it supersedes."""

    meter_id: str
    period_from: date
    period_to: date
    old_status: str
    new_status: str
    energy_wh: int  # new - old
    total: int  # new - old, sub-units
    bands_wh: dict[str, int]


_SCHEMA = """
CREATE TABLE period_bills (  -- append-only: every version of a period's bill
    meter_id TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,  -- 'estimated' or 'verified'
    bill TEXT NOT NULL,    -- PeriodBill.to_dict(), canonical JSON
    created_at TEXT NOT NULL,
    PRIMARY KEY (meter_id, contract_id, period_from, period_to, version)
)
"""


class InvoiceStore:
    """``invoices.sqlite``: the history of period bills (estimate, correction)."""

    SCHEMA_VERSION = 1

    def __init__(self, path: str | Path) -> None:
        self.conn: sqlite3.Connection = open_db(path, _SCHEMA, schema_version=self.SCHEMA_VERSION)

    def close(self) -> None:
        self.conn.close()

    def record(self, bill: PeriodBill) -> tuple[int, Correction | None]:
        """Append ``bill`` as the next version of its period; an identical re-record is
        idempotent (returns the stored version); an estimate after a verified version is
        refused (:class:`BillRefused`). Returns the version and, when it
        supersedes an earlier one, the difference."""
        text = json.dumps(bill.to_dict(), sort_keys=True, separators=(",", ":"))
        key = (bill.meter_id, bill.contract_id, bill.period_from.isoformat(), bill.period_to.isoformat())
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT version, bill FROM period_bills WHERE meter_id=? AND contract_id=? AND period_from=? "
                "AND period_to=? ORDER BY version DESC LIMIT 1",
                key,
            ).fetchone()
            if row is not None and row[1] == text:
                return row[0], None
            if row is not None and json.loads(row[1])["status"] == "verified" and bill.status != "verified":
                raise BillRefused(
                    f"v{row[0]} of this period is verified; an estimate does not supersede it"
                )
            version = 1 if row is None else row[0] + 1
            self.conn.execute(
                "INSERT INTO period_bills VALUES (?,?,?,?,?,?,?,?)",
                (*key, version, bill.status, text, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        return version, None if row is None else _difference(json.loads(row[1]), bill.to_dict())

    def history(self, meter_id: str | None = None) -> list[dict[str, Any]]:
        """Every stored version, oldest first per period."""
        sql = "SELECT version, bill, created_at FROM period_bills"
        args: tuple = ()
        if meter_id is not None:
            sql += " WHERE meter_id=?"
            args = (meter_id,)
        sql += " ORDER BY meter_id, period_from, contract_id, version"
        return [{"version": v, "created_at": c, **json.loads(b)} for v, b, c in self.conn.execute(sql, args)]

    def purge(self, meter_id: str) -> int:
        """Delete every bill of a meter (GDPR erasure); returns the rows removed."""
        with transaction(self.conn):
            return self.conn.execute("DELETE FROM period_bills WHERE meter_id=?", (meter_id,)).rowcount


def _difference(old: dict[str, Any], new: dict[str, Any]) -> Correction:
    names = sorted(set(old["bands_wh"]) | set(new["bands_wh"]))
    return Correction(
        new["meter_id"], date.fromisoformat(new["period_from"]), date.fromisoformat(new["period_to"]),
        old["status"], new["status"], new["energy_wh"] - old["energy_wh"], new["total"] - old["total"],
        {n: new["bands_wh"].get(n, 0) - old["bands_wh"].get(n, 0) for n in names},
    )
