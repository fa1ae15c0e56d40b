"""The hub's store of openings received over the home link.

Openings never leave the hub; only digested results (bill statements) do.
Each day's sealed message is authenticated with the meter-hub key before it is
stored, and re-delivery of the same day is idempotent.

At rest the secret columns (home-link keys, the openings, the statements) are sealed
with AES-256-GCM under the store's storage key (:class:`meterhub.storage.SealedColumns`,
key file ``hub.sqlite.sk``, 0600), bound to their table, column and row, so a copy of
``hub.sqlite`` shows no key and no reading, and swapped rows are refused on read
(docs/privacy.md "Secrets and readings at rest"). Meter ids, days and index ranges stay
visible: they say which days the hub holds, not what was consumed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from ..crypto.pedersen import Opening
from ..errors import MeterhubError
from ..model.errors import FormatError
from ..model.formats.sealed import SealedDay, open_sealed_openings
from ..model.formats.units import OPENING_SIZE, iter_opening_units
from ..storage import SealedColumns, StoreError, open_db, storage_key, transaction

__all__ = ["HubStore", "HubError"]

_SCHEMA = """
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    home_link_key BLOB NOT NULL,
    tz TEXT NOT NULL,
    interval_minutes INTEGER NOT NULL
);
CREATE TABLE openings (
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    day TEXT NOT NULL,
    first_index INTEGER NOT NULL,
    count INTEGER NOT NULL,
    blob BLOB NOT NULL,
    PRIMARY KEY (meter_id, day)
);
CREATE TABLE statements (
    meter_id TEXT NOT NULL,
    period_from TEXT NOT NULL,
    period_to TEXT NOT NULL,
    statement BLOB NOT NULL,
    PRIMARY KEY (meter_id, period_from, period_to)
)
"""


class HubError(MeterhubError, ValueError):
    """Data the hub refuses or cannot find; the message says which."""


class HubStore:
    SCHEMA_VERSION = 2  # 2: secret columns sealed at rest

    def __init__(self, path: str | Path) -> None:
        self._seal = SealedColumns(storage_key(path), "hub")
        self.conn: sqlite3.Connection = open_db(path, _SCHEMA, schema_version=self.SCHEMA_VERSION)

    def close(self) -> None:
        self.conn.close()

    def pair_meter(self, meter_id: str, home_link_key: bytes, tz: str, interval_minutes: int) -> None:
        if len(home_link_key) != 16:
            raise HubError("home-link key must be 16 bytes (AES-128)")
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT home_link_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
            ).fetchone()
            if row is not None:
                stored = self._seal.open("meters", "home_link_key", meter_id, row[0])
                if (stored, row[1], row[2]) != (home_link_key, tz, interval_minutes):
                    raise HubError(f"meter {meter_id} is already paired with another home-link key or time base")
                return
            sealed = self._seal.seal("meters", "home_link_key", meter_id, home_link_key)
            self.conn.execute("INSERT INTO meters VALUES (?,?,?,?)", (meter_id, sealed, tz, interval_minutes))

    def meter(self, meter_id: str) -> tuple[bytes, str, int]:
        row = self.conn.execute(
            "SELECT home_link_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
        ).fetchone()
        if row is None:
            raise HubError(f"meter {meter_id} is not paired with this hub")
        return self._seal.open("meters", "home_link_key", meter_id, row[0]), row[1], row[2]

    def receive(self, sealed: SealedDay) -> bool:
        """Authenticate and store a day's openings. Returns False for a duplicate."""
        key, _, _ = self.meter(sealed.meter_id)
        try:
            openings = open_sealed_openings(key, sealed)
        except FormatError as exc:
            raise HubError(f"day {sealed.day}: {exc}") from None
        return self.store_openings(sealed.meter_id, sealed.day, sealed.first_index, openings)

    def store_openings(self, meter_id: str, day: date, first_index: int, openings: Sequence[Opening]) -> bool:
        """Store a day's authenticated openings; False if the day is already there."""
        blob = b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings)
        sealed = self._seal.seal("openings", "blob", _day_row(meter_id, day.isoformat(), first_index, len(openings)), blob)
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO openings VALUES (?,?,?,?,?)",
                (meter_id, day.isoformat(), first_index, len(openings), sealed),
            )
            return cur.rowcount == 1

    def openings(self, meter_id: str, first: date, last: date) -> tuple[int, list[Opening]]:
        """The openings of whole local days ``first..last``; refuses gaps."""
        rows = self.conn.execute(
            "SELECT day, first_index, count, blob FROM openings WHERE meter_id=? AND day BETWEEN ? AND ? "
            "ORDER BY day",
            (meter_id, first.isoformat(), last.isoformat()),
        ).fetchall()
        expected = first
        out: list[Opening] = []
        first_index = None
        next_index = None
        for day_s, fi, count, blob in rows:
            day = date.fromisoformat(day_s)
            if day != expected:
                raise HubError(f"no readings for day {expected} from meter {meter_id}")
            if next_index is not None and fi != next_index:
                raise HubError(f"day {day}: readings do not follow on from the previous day")
            if first_index is None:
                first_index = fi
            blob = self._seal.open("openings", "blob", _day_row(meter_id, day_s, fi, count), blob)
            if len(blob) != OPENING_SIZE * count:
                raise StoreError(f"openings of {meter_id} on {day_s}: {len(blob)} bytes for {count} readings")
            out.extend(Opening(m, r) for m, r in iter_opening_units(blob))
            next_index = fi + count
            expected = day + timedelta(days=1)
        if expected != last + timedelta(days=1) or first_index is None:
            raise HubError(f"no readings for day {expected} from meter {meter_id}")
        return first_index, out

    def save_statement(self, meter_id: str, first: date, last: date, statement_json: str) -> None:
        row = f"{meter_id}/{first.isoformat()}/{last.isoformat()}"
        sealed = self._seal.seal("statements", "statement", row, statement_json.encode())
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO statements VALUES (?,?,?,?)",
                (meter_id, first.isoformat(), last.isoformat(), sealed),
            )

    def statement(self, meter_id: str, first: date, last: date) -> str | None:
        """The statement saved for this meter and period, or ``None``."""
        r = self.conn.execute(
            "SELECT statement FROM statements WHERE meter_id=? AND period_from=? AND period_to=?",
            (meter_id, first.isoformat(), last.isoformat()),
        ).fetchone()
        if r is None:
            return None
        row = f"{meter_id}/{first.isoformat()}/{last.isoformat()}"
        return self._seal.open("statements", "statement", row, r[0]).decode()


def _day_row(meter_id: str, day: str, first_index: int, count: int) -> str:
    """The associated-data row key of a day's openings: the row's visible fields, so
    neither the blob nor the index range can be swapped between rows."""
    return f"{meter_id}/{day}/{first_index}/{count}"
