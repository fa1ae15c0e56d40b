"""The utility's database: registered meters, tariffs, verified day batches, bill verdicts.

Ingestion checks each day upload before storing it (signature, record indices,
chain, links to the stored days before and after it; docs/verification.md V09,
V10) and records a rejection otherwise, so the store only ever holds data the
meter signed; a re-delivery that differs from the stored day is a conflict,
never ignored. Bills are re-verified from storage in full (signatures included);
verdicts are appended to a history that is never rewritten, a bill overlapping
a verified one is refused (V21), and :meth:`UtilityStore.coverage` reports the
uploaded, billed and unbilled days of a meter (V22).
Commitments are kept twice per day: the canonical 33-byte form the chain hashes
(stored at ingest, as signed) and the 65-byte uncompressed form, which libsecp256k1
parses about 5x faster (``c65``; empty until the day is first read, when
:meth:`UtilityStore.day_commitments` makes it once and stores it).

Layout: :mod:`.schema` (tables and upgrades), :mod:`.ingest` (the checks and writes of
a delivery of day uploads); this module is the store itself (meters and tariffs,
verification and the verdict history, coverage) and re-exports the names callers
import from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..crypto import ecdsa
from ..crypto.group import PointDecodeError, uncompress_many
from ..model.display import shown
from ..model.errors import FormatError
from ..model.formats.batch import DailyBatch, SignedBatch
from ..model.formats.statements import AnyBillStatement, statement_from_json
from ..model.formats.upload import DayUpload
from ..storage.postgres import is_postgres_url, open_pg
from ..storage.sqlite import open_db, transaction
from ..tariffs import SignedTariff, Tariff, load_tariff
from ..tariffs.nonlinear import NonLinearTariff
from .ingest import MAX_GAP_DAYS as MAX_GAP_DAYS  # re-exported, as before the split
from .ingest import IngestResult, _Delivery
from .schema import _PG_SCHEMA, _PG_SCHEMA_V3, _SCHEMA, _SCHEMA_V3, _SCHEMA_V4, _now
from .schema import _PG_SCHEMA_V2 as _PG_SCHEMA_V2  # re-exported, as before the split
from .verifier import (
    DayCommitments,
    MeterRegistration,
    Verdict,
    verify_statement_verdict,
)

__all__ = ["Coverage", "UtilityStore", "IngestResult", "day_ranges"]


@dataclass(frozen=True, slots=True)
class Coverage:
    """Days of one meter: with stored uploads, covered by a verified bill, and unbilled."""

    meter_id: str
    uploaded: list[date]
    billed: list[date]
    unbilled: list[date]


def day_ranges(days: list[date]) -> str:
    """``2027-03-15..2027-03-20, 2027-03-22`` for a sorted list of days ('none' if empty)."""
    if not days:
        return "none"
    out, start, prev = [], days[0], days[0]
    for d in [*days[1:], None]:
        if d is not None and d.toordinal() == prev.toordinal() + 1:
            prev = d
            continue
        out.append(str(start) if start == prev else f"{start}..{prev}")
        if d is not None:
            start = prev = d
    return ", ".join(out)




class UtilityStore:
    """The utility's store: SQLite (``utility.sqlite`` under the data directory, the
    default) or PostgreSQL when ``path`` is a ``postgresql://`` URL (docs/service.md).

    ``quick_check=False``: open a SQLite store without SQLite's whole-file
    ``quick_check`` (:func:`meterhub.storage.sqlite.open_db`), for ``utility verify-all``
    (:func:`meterhub.service.scaleout._open` says why)."""

    SCHEMA_VERSION = 4  # 2: bills is an append-only history; 3: refs and outputs (service); 4: outputs_by_party

    def __init__(self, path: str | Path, *, quick_check: bool = True) -> None:
        self.url = str(path)
        self.postgres = isinstance(path, str) and is_postgres_url(path)
        self.conn: Any
        if self.postgres:
            self.path = None
            self.conn = open_pg(
                self.url, "utility", _PG_SCHEMA, schema_version=self.SCHEMA_VERSION,
                upgrades={2: _PG_SCHEMA_V3, 3: _SCHEMA_V4},
            )
        else:
            self.path = Path(path)
            self.conn = open_db(
                self.path,
                _SCHEMA + ";" + _SCHEMA_V3 + ";" + _SCHEMA_V4,
                schema_version=self.SCHEMA_VERSION,
                upgrades={2: _SCHEMA_V3, 3: _SCHEMA_V4},
                quick_check=quick_check,
            )
        self._tariffs: dict[tuple[str, int], Tariff | NonLinearTariff] = {}
        self._registrations: dict[str, MeterRegistration] = {}
        self._prefetched: _Prefetched | None = None  # a partition's rows, while it is verified
        self._in_tx = False

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """A write transaction, or nothing if one is already open (a batched delivery)."""
        if self._in_tx:
            yield
            return
        with transaction(self.conn):
            self._in_tx = True
            try:
                yield
            finally:
                self._in_tx = False

    def close(self) -> None:
        self.conn.close()

    # -- registration ------------------------------------------------------
    def register_meter(
        self,
        meter_id: str,
        public_key: bytes,
        tz: str,
        interval_minutes: int,
        *,
        tariff: SignedTariff | None = None,
        supplier: str | None = None,
    ) -> None:
        """Register (or re-register identically) a meter and its customer's tariff."""
        ecdsa.load_verifying_key(public_key)  # refuse a key that does not decode
        with self._tx():
            row = self.conn.execute(
                "SELECT public_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
            ).fetchone()
            if row is not None and bytes(row[0]) != public_key:
                raise ValueError(f"meter {shown(meter_id)} is already registered with another key")
            if row is not None and (row[1], row[2]) != (tz, interval_minutes):
                raise ValueError(
                    f"meter {shown(meter_id)} is already registered with time base {row[1]}, "
                    f"{row[2]} minutes"
                )
            tid = tariff.tariff.tariff_id if tariff else None
            tver = tariff.tariff.version if tariff else None
            self.conn.execute(
                "INSERT INTO meters VALUES (?,?,?,?,?,?,?) ON CONFLICT(meter_id) DO UPDATE SET "
                "tariff_id=excluded.tariff_id, tariff_version=excluded.tariff_version, "
                "supplier=excluded.supplier",
                (meter_id, public_key, tz, interval_minutes, tid, tver, supplier),
            )
        self._registrations.pop(meter_id, None)

    def add_tariff(self, signed: SignedTariff, raw: bytes) -> None:
        """Store a tariff whose signature the caller has verified."""
        t = signed.tariff
        with self._tx():
            self.conn.execute(
                "INSERT INTO tariffs VALUES (?,?,?) ON CONFLICT DO NOTHING", (t.tariff_id, t.version, raw)
            )

    def tariff(self, tariff_id: str, version: int) -> Tariff | NonLinearTariff:
        key = (tariff_id, version)
        if key not in self._tariffs:
            row = self.conn.execute(
                "SELECT signed FROM tariffs WHERE tariff_id=? AND version=?", key
            ).fetchone()
            if row is None:
                raise KeyError(f"tariff {tariff_id} v{version} is not stored")
            self._tariffs[key] = load_tariff(bytes(row[0])).tariff
        return self._tariffs[key]

    def registration(self, meter_id: str) -> MeterRegistration:
        reg = self._registrations.get(meter_id)
        if reg is None:
            row = self.conn.execute(
                "SELECT public_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"meter {meter_id} is not registered")
            reg = MeterRegistration(meter_id, ecdsa.load_verifying_key(bytes(row[0])), row[1], row[2])
            self._registrations[meter_id] = reg
        return reg

    def customer_tariff(self, meter_id: str) -> Tariff | NonLinearTariff:
        pre = self._prefetched
        row: Any
        if pre is not None and meter_id in pre.tariffs:
            row = pre.tariffs[meter_id]
        else:
            row = self.conn.execute(
                "SELECT tariff_id, tariff_version FROM meters WHERE meter_id=?", (meter_id,)
            ).fetchone()
        if row is None or row[0] is None:
            raise KeyError(f"meter {meter_id} has no tariff on record")
        return self.tariff(row[0], row[1])

    def meter_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT meter_id FROM meters ORDER BY meter_id")]

    # -- ingestion ---------------------------------------------------------
    def ingest_days(self, uploads: Iterable[DayUpload]) -> list[IngestResult]:
        """Check and store a delivery of day uploads in ONE transaction (batched ingest).

        Each upload gets the checks of V09 (docs/verification.md), in order, against the
        stored days and the ones accepted before it in this delivery; a refused day is
        recorded as a rejection and does not stop the others. The stored neighbours are
        read once per meter of the delivery (three queries), the accepted days and the
        rejections written with one statement each at the end, all before the commit: a
        crash or a lost connection before it leaves nothing of the delivery (it is
        re-delivered whole; identical days are then duplicates, never stored twice).

        Only the signed wire form is stored (the 33-byte commitments the chain head and
        the signature cover); the 65-byte form the verifiers parse faster is made when a
        day is first read (:meth:`day_commitments`), so V09 step 9 (every commitment
        decodes as a point) is checked there: a day whose commitment does not decode
        fails every verification over it, naming the point."""
        with self._tx():
            items = list(uploads)
            delivery = _Delivery(self, items)
            results = [delivery.ingest(u) for u in items]
            delivery.write()
        return results

    def ingest_day(self, upload: DayUpload) -> IngestResult:
        """Check and store one day upload (a delivery of one); idempotent for an
        identical re-delivery."""
        return self.ingest_days([upload])[0]

    # -- verification ------------------------------------------------------
    def day_commitments(self, meter_id: str, first: date, last: date) -> list[DayCommitments]:
        """The stored days of ``meter_id`` from ``first`` to ``last``, in order.

        A day ingested as its signed 33-byte wire form is expanded here on its first
        read: its commitments are decoded (V09 step 9) into the 65-byte form the
        verifiers parse about 5x faster, in one pass over the period, and written back
        in one short transaction, so each day is decompressed once in its life, as
        before, but off the ingest path. A day whose commitment does not decode is left
        as it is and handed over without the 65-byte form: the verifiers parse the
        33-byte form strictly and reject, naming the point."""
        pre = self._prefetched
        lo, hi = first.isoformat(), last.isoformat()
        if pre is not None and meter_id in pre.meters and pre.first <= lo and hi <= pre.last:
            rows = [r for r in pre.days.get(meter_id, ()) if lo <= r[4] <= hi]
        else:
            rows = self.conn.execute(
                "SELECT batch, signature, c33, c65, day FROM days WHERE meter_id=? AND day BETWEEN ? AND ? "
                "ORDER BY day",
                (meter_id, lo, hi),
            ).fetchall()
        out: list[DayCommitments] = []
        expanded: list[tuple[bytes, str, str]] = []
        for batch, sig, c33b, c65b, day in rows:
            c33 = bytes(c33b)
            c65: bytes | None = bytes(c65b)
            if not c65:
                try:
                    c65 = uncompress_many(c33)
                except PointDecodeError:
                    c65 = None
                else:
                    expanded.append((c65, meter_id, day))
            out.append(DayCommitments(SignedBatch(DailyBatch.from_bytes(bytes(batch)), bytes(sig)), c33, None, c65))
        if expanded:
            with self._tx():  # the 65-byte form is derived data: written once, never replaced
                self.conn.executemany(
                    "UPDATE days SET c65=? WHERE meter_id=? AND day=? AND length(c65)=0", expanded
                )
        return out

    def verify_statement(
        self,
        statement: AnyBillStatement,
        *,
        record: bool = True,
        metering_point: str | None = None,
        contract_id: str | None = None,
        tariff_key: tuple[str, int] | None = None,
    ) -> Verdict:
        """Verify a statement against stored data and record the verdict.

        Every version goes to :func:`meterhub.utility.verifier.verify_statement_verdict`:
        the period's checks, then the customer's tariff kind's own verifier in the
        billing engine (:mod:`meterhub.model.billing`); a v3 statement's metering point
        and contract are checked against ``metering_point`` and ``contract_id`` when
        given (V26). ``tariff_key`` ``(id, version)`` names a
        stored tariff to verify under instead of the customer's current one (the
        tariff of a contract segment, :mod:`meterhub.utility.contracts`). A statement
        whose format does not suit the customer's tariff kind is rejected."""
        try:
            reg = self.registration(statement.meter_id)
            if tariff_key is None:
                tariff = self.customer_tariff(statement.meter_id)
            else:  # the contract segment's tariff (a tariff change mid-period), as stored
                tariff = self.tariff(*tariff_key)
        except KeyError as exc:
            verdict = Verdict(False, str(exc).strip("'\""))
        else:
            days = self.day_commitments(statement.meter_id, statement.period_from, statement.period_to)
            verdict = verify_statement_verdict(
                statement, reg, days, tariff, metering_point=metering_point, contract_id=contract_id
            )
            if verdict.ok:
                verdict = self._check_overlap(statement)
        if record:
            with self._tx():
                self.conn.execute(
                    "INSERT INTO bills VALUES (?,?,?,?,?,?,?)",
                    (
                        statement.meter_id,
                        statement.period_from.isoformat(),
                        statement.period_to.isoformat(),
                        statement.to_json(),
                        int(verdict.ok),
                        verdict.reason,
                        _now(),
                    ),
                )
        return verdict

    def _check_overlap(self, st: AnyBillStatement) -> Verdict:
        """V21: a statement whose period overlaps a verified one of the same meter is
        refused unless it is that very statement (a byte-identical re-delivery)."""
        text = st.to_json()
        lo, hi = st.period_from.isoformat(), st.period_to.isoformat()
        pre = self._prefetched
        if pre is not None and st.meter_id in pre.meters:
            rows = [r for r in pre.verified.get(st.meter_id, ()) if r[0] <= hi and r[1] >= lo]
        else:
            rows = self.conn.execute(
                "SELECT period_from, period_to, statement FROM bills WHERE meter_id=? AND verified=1 "
                "AND period_from<=? AND period_to>=? ORDER BY period_from",
                (st.meter_id, hi, lo),
            ).fetchall()
        for pf, pt, other in rows:
            if other != text:
                return Verdict(False, f"overlaps verified bill {pf}..{pt}")
        return Verdict(True)

    def submit_statement(self, statement: AnyBillStatement) -> None:
        """Queue a statement for verification (a new history row; nothing is replaced)."""
        with self._tx():
            self.conn.execute(
                "INSERT INTO bills (meter_id, period_from, period_to, statement) "
                "VALUES (?,?,?,?)",
                (
                    statement.meter_id,
                    statement.period_from.isoformat(),
                    statement.period_to.isoformat(),
                    statement.to_json(),
                ),
            )

    def verify_pending(self, *, page: int = 200) -> tuple[int, int]:
        """Verify every pending statement, streaming them from the database.

        Works page by page (the pending statements of ``page`` meters and their days at
        a time, read in bulk by :meth:`pending_verdicts_many`) and commits each page's
        verdicts, so memory stays flat however many bills there are, and an interrupted
        run continues where it stopped. Returns ``(verified, rejected)`` counts.
        """
        ok = bad = 0
        for ids in self.pending_meters(page):
            verdicts = self.pending_verdicts_many(ids)
            ok += sum(v[0] for v in verdicts)
            bad += sum(1 - v[0] for v in verdicts)
            self.record_verdicts(verdicts)
        return ok, bad

    def pending_meters(self, page: int) -> Iterator[list[str]]:
        """The meters with pending statements, in pages of ``page`` ids in order."""
        last = ""
        while True:
            rows = self.conn.execute(
                "SELECT DISTINCT meter_id FROM bills WHERE verified IS NULL AND meter_id > ? "
                "ORDER BY meter_id LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            ids = [r[0] for r in rows]
            last = ids[-1]
            yield ids

    def _verify_rows(self, rows: Iterable[tuple[int, str]]) -> list[tuple[int, str, str, int]]:
        """Verdicts ``(verified, reason, checked_at, rowid)`` of pending ``(rowid, statement)``
        rows, in order: each statement as :meth:`verify_statement` (which sees the committed
        verdicts), then V21 against the ones verified earlier among these rows."""
        verdicts: list[tuple[int, str, str, int]] = []
        verified_here: dict[str, list[tuple[str, str, str]]] = {}  # meter -> (from, to, text)
        for rowid, text in rows:
            try:
                st = statement_from_json(text)
            except FormatError as exc:
                verdicts.append((0, str(exc), _now(), rowid))
                continue
            v = self.verify_statement(st, record=False)
            if v.ok:
                v = _pending_overlap(st, verified_here.get(st.meter_id, []))
            if v.ok:
                verified_here.setdefault(st.meter_id, []).append(
                    (st.period_from.isoformat(), st.period_to.isoformat(), st.to_json())
                )
            verdicts.append((int(v.ok), v.reason, _now(), rowid))
        return verdicts

    def pending_verdicts(self, meter_id: str) -> list[tuple[int, str, str, int]]:
        """Verify one meter's pending statements without writing any verdict.

        Same checks as :meth:`verify_pending`, overlap (V21) included: every statement
        of a meter is verified in one place, so the overlap check sees all of them.
        Returns ``(verified, reason, checked_at, rowid)`` rows for :meth:`record_verdicts`."""
        return self.pending_verdicts_many([meter_id])

    def pending_verdicts_many(self, meter_ids: Sequence[str]) -> list[tuple[int, str, str, int]]:
        """:meth:`pending_verdicts` of a partition of meters (scale-out:
        :mod:`meterhub.service.scaleout` runs this on Dask workers), their pending
        statements read with one query over the partition's range of ids. The meters'
        registrations are dropped from the cache afterwards: a partition's meters are not
        seen again by this worker, so its memory stays flat over a million meters."""
        if not meter_ids:
            return []
        wanted = set(meter_ids)
        rows = [
            r
            for r in self.conn.execute(
                "SELECT rowid, meter_id, statement, period_from, period_to FROM bills WHERE verified IS NULL "
                "AND meter_id BETWEEN ? AND ? ORDER BY meter_id, rowid",
                (min(wanted), max(wanted)),
            ).fetchall()
            if r[1] in wanted
        ]
        verdicts: list[tuple[int, str, str, int]] = []
        ids = sorted({r[1] for r in rows})
        for k in range(0, len(ids), self.PREFETCH_METERS):
            chunk = set(ids[k : k + self.PREFETCH_METERS])
            mine = [r for r in rows if r[1] in chunk]
            self._prefetch(chunk, min(r[3] for r in mine), max(r[4] for r in mine))
            try:
                verdicts.extend(self._verify_rows((r[0], r[2]) for r in mine))
            finally:
                self._prefetched = None
                for m in chunk:
                    self._registrations.pop(m, None)
        return verdicts

    #: Meters whose rows :meth:`pending_verdicts_many` reads at once (a month of days is
    #: about 0.3 MB per meter).
    PREFETCH_METERS = 50

    def _prefetch(self, meters: set[str], first: str, last: str) -> None:
        """Read the rows the verification of ``meters``' statements needs, three queries
        for all of them instead of four per statement (a round trip each on PostgreSQL):
        registrations and tariffs, the days from ``first`` to ``last``, verified bills."""
        lo, hi = min(meters), max(meters)
        pre = _Prefetched(frozenset(meters), first, last, {}, {}, {})
        for m, pk, tz, minutes, tid, tver in self.conn.execute(
            "SELECT meter_id, public_key, tz, interval_minutes, tariff_id, tariff_version FROM meters "
            "WHERE meter_id BETWEEN ? AND ?",
            (lo, hi),
        ):
            if m in meters:
                self._registrations[m] = MeterRegistration(m, ecdsa.load_verifying_key(bytes(pk)), tz, minutes)
                pre.tariffs[m] = (tid, tver)
        for m, batch, sig, c33, c65, day in self.conn.execute(
            "SELECT meter_id, batch, signature, c33, c65, day FROM days WHERE meter_id BETWEEN ? AND ? "
            "AND day BETWEEN ? AND ? ORDER BY meter_id, day",
            (lo, hi, first, last),
        ):
            if m in meters:
                pre.days.setdefault(m, []).append((batch, sig, c33, c65, day))
        for m, pf, pt, text in self.conn.execute(
            "SELECT meter_id, period_from, period_to, statement FROM bills WHERE verified=1 "
            "AND meter_id BETWEEN ? AND ? ORDER BY meter_id, period_from",
            (lo, hi),
        ):
            if m in meters:
                pre.verified.setdefault(m, []).append((pf, pt, text))
        self._prefetched = pre

    def record_verdicts(self, verdicts: list[tuple[int, str, str, int]]) -> None:
        """Write verdicts of :meth:`pending_verdicts` in one transaction; a verdict is set
        once (a row that is no longer pending keeps its first verdict)."""
        with self._tx():
            self.conn.executemany(
                "UPDATE bills SET verified=?, reason=?, checked_at=? WHERE rowid=? AND verified IS NULL",
                verdicts,
            )

    def iter_statements(self) -> Iterator[AnyBillStatement]:
        """Stream stored statements (v1 or v2) one at a time (constant memory)."""
        cur = self.conn.execute("SELECT statement FROM bills ORDER BY meter_id, period_from, rowid")
        for (text,) in cur:
            yield statement_from_json(text)

    def bill_verdicts(self) -> list[tuple[str, str, str, bool | None, str]]:
        """Every verdict ever recorded, oldest first per period:
        ``(meter, from, to, verified, reason)``; ``verified`` is None while pending."""
        return [
            (r[0], r[1], r[2], None if r[3] is None else bool(r[3]), r[4])
            for r in self.conn.execute(
                "SELECT meter_id, period_from, period_to, verified, reason FROM bills "
                "ORDER BY meter_id, period_from, rowid"
            )
        ]

    def coverage(self, meter_id: str) -> Coverage:
        """V22: which days of a meter have stored uploads, which of them a verified bill
        covers, and which uploaded days no verified bill covers (unbilled)."""
        uploaded = [
            date.fromisoformat(r[0])
            for r in self.conn.execute("SELECT day FROM days WHERE meter_id=? ORDER BY day", (meter_id,))
        ]
        billed: set[date] = set()
        for pf, pt in self.conn.execute(
            "SELECT DISTINCT period_from, period_to FROM bills WHERE meter_id=? AND verified=1", (meter_id,)
        ):
            d, last = date.fromisoformat(pf), date.fromisoformat(pt)
            while d <= last:
                billed.add(d)
                d = date.fromordinal(d.toordinal() + 1)
        return Coverage(meter_id, uploaded, sorted(billed), [d for d in uploaded if d not in billed])


@dataclass(slots=True)
class _Prefetched:
    """Rows of a partition's meters read in bulk (:meth:`UtilityStore._prefetch`): days
    ``(batch, signature, c33, c65, day)`` from ``first`` to ``last``, verified bills
    ``(from, to, statement)`` and ``(tariff_id, version)`` per meter."""

    meters: frozenset[str]
    first: str
    last: str
    days: dict[str, list[tuple[Any, Any, Any, Any, str]]]
    verified: dict[str, list[tuple[str, str, str]]]
    tariffs: dict[str, tuple[str | None, int | None]]


def _pending_overlap(st: AnyBillStatement, verified: list[tuple[str, str, str]]) -> Verdict:
    """V21 against statements of the same meter verified earlier in the same run and not
    committed yet: ``(period_from, period_to, text)`` each."""
    text = st.to_json()
    lo, hi = st.period_from.isoformat(), st.period_to.isoformat()
    for pf, pt, other in verified:
        if pf <= hi and pt >= lo and other != text:
            return Verdict(False, f"overlaps verified bill {pf}..{pt}")
    return Verdict(True)

