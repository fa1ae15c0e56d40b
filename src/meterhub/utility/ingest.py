"""Ingest of day uploads (docs/verification.md V09, V10): the checks of one upload, the
links to the stored days around it, and one batched delivery's writes
(:meth:`~meterhub.utility.store.UtilityStore.ingest_days` runs them in its transaction)."""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from ..crypto import ecdsa
from ..model.errors import FormatError
from ..model.formats.batch import DailyBatch, chain_genesis, chain_head
from ..model.formats.units import decode_records, encode_records
from ..model.formats.upload import DayUpload
from ..model.timebase import intervals_per_day
from .schema import _now
from .verifier import MeterRegistration, Rejected, check_indices

if TYPE_CHECKING:
    from .store import UtilityStore


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: bool
    reason: str = ""
    duplicate: bool = False
    conflict: bool = False  # refused because it differs from the stored day (V09)


def _register_follows(prev: DailyBatch, b: DailyBatch) -> str:
    """V09: once a meter signs its register (batch version 2) it keeps signing it, and
    each day's register starts where the previous day's ended."""
    if prev.register_end_wh is None:
        return ""
    if b.register_start_wh is None:
        return f"batch version 1 after a version-2 batch (the register of {prev.day} is dropped)"
    if b.register_start_wh != prev.register_end_wh:
        return f"register starts at {b.register_start_wh} Wh, day {prev.day} ended at {prev.register_end_wh} Wh"
    return ""


#: The longest gap between stored days (in days) whose intervals ingest counts.
MAX_GAP_DAYS = 3660


def _across_gap(before: DailyBatch, after: DailyBatch, reg: MeterRegistration) -> str:
    """V09 item 8 for two stored days with missing days between them: ``after`` starts
    where the missing days' intervals (by the meter's time base) end, and its register
    (version 2) does not run backwards. Empty when it fits."""
    n_missing = after.day.toordinal() - before.day.toordinal() - 1
    if n_missing > MAX_GAP_DAYS:
        return f"a gap of {n_missing} days after day {before.day} (at most {MAX_GAP_DAYS})"
    gap = sum(
        intervals_per_day(date.fromordinal(before.day.toordinal() + 1 + k), reg.tz, reg.interval_minutes)
        for k in range(n_missing)
    )
    expected = before.first_index + before.count + gap
    if after.first_index != expected:
        return (
            f"batch of day {after.day} starts at interval {after.first_index}; after day {before.day} "
            f"and {n_missing} missing days it must start at {expected}"
        )
    if before.register_end_wh is not None:
        if after.register_start_wh is None:
            return f"batch version 1 after a version-2 batch (the register of {before.day} is dropped)"
        if after.register_start_wh < before.register_end_wh:
            return (
                f"register of day {after.day} starts at {after.register_start_wh} Wh, below the "
                f"{before.register_end_wh} Wh day {before.day} ended at"
            )
    return ""


class _MeterDays:
    """One meter's days as a delivery's checks see them: every stored day in the
    delivery's span, the nearest stored day on either side of it, and the days the
    delivery accepted so far. Rows are ``(batch, signature, c33)`` as stored (``c33``
    empty for the two outside neighbours, which are never compared byte for byte)."""

    __slots__ = ("ordinals", "rows", "parsed")

    def __init__(self, conn: Any, meter_id: str, lo: date, hi: date) -> None:
        self.rows: dict[int, tuple[bytes, bytes, bytes]] = {}
        self.parsed: dict[int, DailyBatch] = {}
        for day, batch, sig, c33 in conn.execute(
            "SELECT day, batch, signature, c33 FROM days WHERE meter_id=? AND day BETWEEN ? AND ?",
            (meter_id, lo.isoformat(), hi.isoformat()),
        ):
            self.rows[date.fromisoformat(day).toordinal()] = (bytes(batch), bytes(sig), bytes(c33))
        for sql, bound in (
            ("SELECT day, batch FROM days WHERE meter_id=? AND day<? ORDER BY day DESC LIMIT 1", lo),
            ("SELECT day, batch FROM days WHERE meter_id=? AND day>? ORDER BY day LIMIT 1", hi),
        ):
            row = conn.execute(sql, (meter_id, bound.isoformat())).fetchone()
            if row is not None:
                self.rows[date.fromisoformat(row[0]).toordinal()] = (bytes(row[1]), b"", b"")
        self.ordinals = sorted(self.rows)

    def batch(self, ordinal: int) -> DailyBatch:
        b = self.parsed.get(ordinal)
        if b is None:
            b = self.parsed[ordinal] = DailyBatch.from_bytes(self.rows[ordinal][0])
        return b

    def neighbours(self, ordinal: int) -> tuple[DailyBatch | None, DailyBatch | None]:
        """The nearest known day before ``ordinal`` and after it (None if none)."""
        k = bisect_left(self.ordinals, ordinal)
        before = self.batch(self.ordinals[k - 1]) if k else None
        after = self.batch(self.ordinals[k]) if k < len(self.ordinals) else None
        return before, after

    def add(self, ordinal: int, row: tuple[bytes, bytes, bytes], batch: DailyBatch) -> None:
        insort(self.ordinals, ordinal)
        self.rows[ordinal] = row
        self.parsed[ordinal] = batch


class _Delivery:
    """The checks and the writes of one batched delivery (:meth:`UtilityStore.ingest_days`)."""

    def __init__(self, store: UtilityStore, uploads: list[DayUpload]) -> None:
        self.store = store
        span: dict[str, tuple[date, date]] = {}
        for u in uploads:
            b = u.batch.batch
            lo_hi = span.get(b.meter_id)
            span[b.meter_id] = (b.day, b.day) if lo_hi is None else (min(lo_hi[0], b.day), max(lo_hi[1], b.day))
        self.span = span
        self.meters: dict[str, _MeterDays] = {}
        self.inserts: list[tuple[str, str, int, int, bytes, bytes, bytes, bytes]] = []
        self.rejections: list[tuple[str, str | None, str, str]] = []

    def _reject(self, b: DailyBatch, reason: str, *, conflict: bool = False) -> IngestResult:
        self.rejections.append((b.meter_id, b.day.isoformat(), reason, _now()))
        return IngestResult(False, reason, conflict=conflict)

    def ingest(self, upload: DayUpload) -> IngestResult:
        b = upload.batch.batch
        try:
            reg = self.store.registration(b.meter_id)
        except KeyError as exc:
            return self._reject(b, str(exc).strip("'\""))
        view = self.meters.get(b.meter_id)
        if view is None:
            view = self.meters[b.meter_id] = _MeterDays(self.store.conn, b.meter_id, *self.span[b.meter_id])
        ordinal = b.day.toordinal()
        batch_bytes = b.to_bytes()
        row = view.rows.get(ordinal)
        if row is not None:
            # V09: only a byte-identical re-delivery is idempotent; any other is a conflict.
            differs = _differs(row, view.batch(ordinal), batch_bytes, upload)
            if not differs:
                return IngestResult(True, duplicate=True)
            return self._reject(b, f"day {b.day}: conflicts with the stored upload ({differs} differ)", conflict=True)
        reason, c33 = _check_upload(reg, upload)
        if not reason:
            reason = _check_links(reg, b, view, ordinal)
        if reason:
            return self._reject(b, reason)
        view.add(ordinal, (batch_bytes, upload.batch.signature, c33), b)
        # c65 stays empty until the day is first read (day_commitments expands it).
        self.inserts.append(
            (b.meter_id, b.day.isoformat(), b.first_index, b.count, batch_bytes, upload.batch.signature, c33, b"")
        )
        return IngestResult(True)

    def write(self) -> None:
        """The delivery's rows, one statement per table (inside the delivery's transaction)."""
        conn = self.store.conn
        if self.inserts:
            conn.executemany("INSERT INTO days VALUES (?,?,?,?,?,?,?,?)", self.inserts)
        if self.rejections:
            conn.executemany("INSERT INTO rejected_uploads VALUES (?,?,?,?)", self.rejections)


def _differs(row: tuple[bytes, bytes, bytes], stored: DailyBatch, batch_bytes: bytes, upload: DayUpload) -> str:
    """Which parts of a re-delivered day differ from the stored one ('' if none)."""
    parts = []
    if row[0] != batch_bytes:
        parts.append("batch")
    if row[1] != upload.batch.signature:
        parts.append("signature")
    if upload.records != encode_records(stored.first_index, row[2]):
        parts.append("records")
    return ", ".join(parts)


def _check_upload(reg: MeterRegistration, upload: DayUpload) -> tuple[str, bytes]:
    """V09 steps 3-7: the reason to refuse the upload ('' if none) and its 33-byte
    commitments (the signed wire form, stored as they are)."""
    b = upload.batch.batch
    label = f"day {b.day}"
    if b.interval_minutes != reg.interval_minutes:
        return f"{label}: batch uses {b.interval_minutes}-minute intervals", b""
    if not ecdsa.is_low_s(upload.batch.signature):
        return f"{label}: batch signature is high-S (non-canonical)", b""
    if not upload.batch.verify(reg.public_key):
        return f"{label}: batch signature does not verify under the meter's key", b""
    if b.count != intervals_per_day(b.day, reg.tz, reg.interval_minutes):
        return f"{label}: batch signs {b.count} intervals, the local day has another count", b""
    try:
        indices, c33 = decode_records(upload.records)
        if indices != list(range(b.first_index, b.first_index + b.count)):
            check_indices(label, b.first_index, b.count, indices)  # names the fault
    except FormatError as exc:
        return f"{label}: {exc}", b""
    except Rejected as exc:
        return str(exc), b""
    if chain_head(b.prev_head, b.first_index, c33) != b.head:
        return f"{label}: commitments do not match the signed chain head", b""
    return "", c33


def _check_links(reg: MeterRegistration, b: DailyBatch, view: _MeterDays, ordinal: int) -> str:
    """V09 step 8 and V10: the links to the nearest known days on either side."""
    label = f"day {b.day}"
    pb, nb = view.neighbours(ordinal)
    if pb is None:
        if not view.ordinals and b.first_index == 0 and b.prev_head != chain_genesis(b.meter_id):
            return f"{label}: first batch does not start the meter's chain"
    elif pb.day.toordinal() + 1 != ordinal:
        # A gap (days not delivered yet, V09 item 8): the indices must leave exactly
        # the missing days' intervals free; the chain link is checked when they come.
        reason = _across_gap(pb, b, reg)
        if reason:
            return f"{label}: {reason}"
    else:
        if b.first_index != pb.first_index + pb.count or b.prev_head != pb.head:
            return f"{label}: batch does not follow on from day {pb.day}"
        reason = _register_follows(pb, b)
        if reason:
            return f"{label}: {reason}"
    if nb is not None:  # V08: a day stored before its successor must lead into it
        if ordinal + 1 != nb.day.toordinal():
            reason = _across_gap(b, nb, reg)
            if reason:
                return f"{label}: stored day {nb.day}: {reason}"
        elif nb.first_index != b.first_index + b.count or nb.prev_head != b.head:
            return f"{label}: stored day {nb.day} does not follow on from it"
        else:
            reason = _register_follows(b, nb)
            if reason:
                return f"{label}: stored day {nb.day}: {reason}"
    return ""
