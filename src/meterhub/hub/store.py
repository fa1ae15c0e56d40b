"""The hub's store of openings received over the home link.

Openings never leave the hub; only digested results (bill statements) do.
Each day's sealed message is authenticated with the meter-hub key before it is
stored, and re-delivery of the same day is idempotent.

At rest the secret columns (home-link keys, the openings, the statements) are sealed by
the **meter's hub card**: its storage vault (:mod:`meterhub.card.vault`) encrypts each
record with AES-256-GCM under a record key that never leaves the card, the record's
identity (store, table, column and the row's visible key) as associated data. The host
holds no key: a :class:`RecordVault` (the card's :class:`~meterhub.hub.secure_element.VaultClient`)
is attached per meter (:meth:`HubStore.attach`), and every read or write of that
meter's secret columns goes through it. One ``hub.sqlite`` serves many hub cards; each
meter's row names the key id of the card that seals its records, and another card is
refused with one line. A copy of ``hub.sqlite`` without the cards shows no key and no
reading; swapped or altered records are refused on read (docs/privacy.md "Secrets and
readings at rest"). Meter ids, days and index ranges stay visible: they say which days
the hub holds, not what was consumed.

Schema 2 (records sealed under the host key file ``hub.sqlite.sk``) is refused with a
one-line pointer to :func:`migrate_host_key_store` (``meterhub hub migrate-store``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Protocol

from ..crypto.pedersen import Opening
from ..errors import MeterhubError
from ..model.errors import FormatError
from ..model.formats.sealed import SealedDay, open_sealed_openings
from ..model.formats.units import OPENING_SIZE, iter_opening_units
from ..storage.sqlite import (
    SealedColumns,
    StoreError,
    expect_store,
    open_db,
    storage_key,
    transaction,
)

__all__ = ["HubStore", "HubError", "RecordVault", "migrate_host_key_store"]

_SCHEMA = """
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    home_link_key BLOB NOT NULL,
    tz TEXT NOT NULL,
    interval_minutes INTEGER NOT NULL,
    vault_key_id BLOB NOT NULL
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


class RecordVault(Protocol):
    """Seals and opens records under a key the caller never holds (the meter's hub card:
    :class:`meterhub.hub.secure_element.VaultClient`); ``identity`` is the associated data."""

    def key_id(self) -> bytes: ...

    def seal(self, identity: bytes, plaintext: bytes) -> bytes: ...

    def open(self, identity: bytes, sealed: bytes) -> bytes: ...


def _identity(table: str, column: str, row: str) -> bytes:
    """A record's identity (the vault's associated data): store, table, column, row key."""
    return b"\x00".join((b"hub", table.encode(), column.encode(), row.encode()))


class HubStore:
    SCHEMA_VERSION = 3  # 2: sealed under a host key file; 3: sealed by the meter's hub card

    def __init__(self, path: str | Path, vaults: Mapping[str, RecordVault] | None = None) -> None:
        path = Path(path)
        _refuse_host_key_store(path)
        self.path = path
        self.conn: sqlite3.Connection = open_db(path, _SCHEMA, schema_version=self.SCHEMA_VERSION)
        Path(f"{path}.sk").unlink(missing_ok=True)  # left by a migration killed after its rename
        self._vaults: dict[str, RecordVault] = dict(vaults or {})
        self._checked: dict[str, RecordVault] = {}

    def close(self) -> None:
        self.conn.close()

    # -- the cards that seal each meter's records ----------------------------------------
    def attach(self, meter_id: str, vault: RecordVault) -> None:
        """Seal and open ``meter_id``'s records with ``vault`` (its hub card) from now on."""
        self._vaults[meter_id] = vault
        self._checked.pop(meter_id, None)

    def detach(self, meter_id: str) -> None:
        self._vaults.pop(meter_id, None)
        self._checked.pop(meter_id, None)

    @contextmanager
    def attached(self, meter_id: str, vault: RecordVault) -> Iterator[HubStore]:
        """:meth:`attach` for the block (the card is closed after it)."""
        self.attach(meter_id, vault)
        try:
            yield self
        finally:
            self.detach(meter_id)

    def _vault(self, meter_id: str, stored_key_id: bytes | None) -> RecordVault:
        vault = self._vaults.get(meter_id)
        if vault is None:
            raise HubError(f"meter {meter_id}: its records are sealed by its hub card, and no card is attached")
        if stored_key_id is not None and self._checked.get(meter_id) is not vault:
            if vault.key_id() != bytes(stored_key_id):
                raise HubError(
                    f"meter {meter_id}: its records are sealed by the card with key id {bytes(stored_key_id).hex()}, "
                    f"the attached card has {vault.key_id().hex()}"
                )
            self._checked[meter_id] = vault
        return vault

    def _key_id(self, meter_id: str) -> bytes:
        row = self.conn.execute("SELECT vault_key_id FROM meters WHERE meter_id=?", (meter_id,)).fetchone()
        if row is None:
            raise HubError(f"meter {meter_id} is not paired with this hub")
        return bytes(row[0])

    def _seal(self, meter_id: str, table: str, column: str, row: str, value: bytes) -> bytes:
        return self._vault(meter_id, self._key_id(meter_id)).seal(_identity(table, column, row), value)

    def _open(self, meter_id: str, table: str, column: str, row: str, stored: bytes) -> bytes:
        try:
            return self._vault(meter_id, self._key_id(meter_id)).open(_identity(table, column, row), bytes(stored))
        except HubError as exc:
            if "fails authentication" in str(exc):
                raise StoreError(f"{table}.{column} of {row}: fails authentication (altered, moved or another card)") from None
            raise

    def pair_meter(self, meter_id: str, home_link_key: bytes, tz: str, interval_minutes: int) -> None:
        if len(home_link_key) != 16:
            raise HubError("home-link key must be 16 bytes (AES-128)")
        row = self.conn.execute(
            "SELECT home_link_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
        ).fetchone()
        if row is not None:
            stored = self._open(meter_id, "meters", "home_link_key", meter_id, row[0])
            if (stored, row[1], row[2]) != (home_link_key, tz, interval_minutes):
                raise HubError(f"meter {meter_id} is already paired with another home-link key or time base")
            return
        vault = self._vault(meter_id, None)
        sealed = vault.seal(_identity("meters", "home_link_key", meter_id), home_link_key)
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO meters VALUES (?,?,?,?,?)",
                (meter_id, sealed, tz, interval_minutes, vault.key_id()),
            )
        self.pair_meter(meter_id, home_link_key, tz, interval_minutes)  # a concurrent pairing: same or refused

    def meter(self, meter_id: str) -> tuple[bytes, str, int]:
        row = self.conn.execute(
            "SELECT home_link_key, tz, interval_minutes FROM meters WHERE meter_id=?", (meter_id,)
        ).fetchone()
        if row is None:
            raise HubError(f"meter {meter_id} is not paired with this hub")
        return self._open(meter_id, "meters", "home_link_key", meter_id, row[0]), row[1], row[2]

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
        sealed = self._seal(meter_id, "openings", "blob", _day_row(meter_id, day.isoformat(), first_index, len(openings)), blob)
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
            blob = self._open(meter_id, "openings", "blob", _day_row(meter_id, day_s, fi, count), blob)
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
        sealed = self._seal(meter_id, "statements", "statement", row, statement_json.encode())
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
        return self._open(meter_id, "statements", "statement", row, r[0]).decode()


def _day_row(meter_id: str, day: str, first_index: int, count: int) -> str:
    """The associated-data row key of a day's openings: the row's visible fields, so
    neither the blob nor the index range can be swapped between rows."""
    return f"{meter_id}/{day}/{first_index}/{count}"


# -- schema 2: sealed under a host key file -------------------------------------------
_V2_HINT = "meterhub hub migrate-store --data-dir"


def _stored_version(path: Path) -> int | None:
    """``PRAGMA user_version`` of an existing store file, read-only; ``None`` if there is
    none or it cannot be read (``open_db`` then says why)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def _refuse_host_key_store(path: Path) -> None:
    if _stored_version(path) == 2:
        raise StoreError(
            f"{path}: readings sealed under the host key file {path.name}.sk (schema 2); "
            f"move them under the hub cards' keys with `{_V2_HINT} {path.parent}`"
        )


def migrate_host_key_store(path: str | Path, vault_for: Callable[[str], RecordVault]) -> int:
    """Move a schema-2 ``hub.sqlite`` (records sealed under ``hub.sqlite.sk``) to schema 3:
    every meter's records opened with the host key and sealed again by ``vault_for(meter)``
    (its hub card). Returns the number of meters moved; 0 for a store already on schema 3.

    Crash-safe: the new store is built beside the old one and renamed over it in one
    step (the old WAL checkpointed and removed first), and only then is the host key
    file deleted; a run killed anywhere leaves the old store (run it again) or the new
    one (whose open removes a leftover key file)."""
    path = Path(path)
    if _stored_version(path) != 2:
        if not path.exists() and not expect_store(path):
            raise StoreError(f"{path}: no store here")
        return 0
    seal = SealedColumns(storage_key(path), "hub")
    old = sqlite3.connect(str(path), isolation_level=None)
    try:
        meters = old.execute("SELECT meter_id, home_link_key, tz, interval_minutes FROM meters").fetchall()
        days = old.execute("SELECT meter_id, day, first_index, count, blob FROM openings").fetchall()
        statements = old.execute("SELECT meter_id, period_from, period_to, statement FROM statements").fetchall()
        extra = old.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='table' AND name NOT IN ('meters','openings','statements')"
        ).fetchall()
        extra_rows = {name: old.execute(f'SELECT * FROM "{name}"').fetchall() for name, _ in extra}
        old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        old.close()
    vaults = {m[0]: vault_for(m[0]) for m in meters}
    tmp = path.with_name(f".{path.name}.migrate")
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    new = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        with transaction(new):
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    new.execute(stmt)
            for _, sql in extra:
                new.execute(sql)
            for mid, key, tz, minutes in meters:
                v = vaults[mid]
                plain = seal.open("meters", "home_link_key", mid, key)
                new.execute("INSERT INTO meters VALUES (?,?,?,?,?)",
                            (mid, v.seal(_identity("meters", "home_link_key", mid), plain), tz, minutes, v.key_id()))
            for mid, day, fi, count, blob in days:
                row = _day_row(mid, day, fi, count)
                plain = seal.open("openings", "blob", row, blob)
                new.execute("INSERT INTO openings VALUES (?,?,?,?,?)",
                            (mid, day, fi, count, vaults[mid].seal(_identity("openings", "blob", row), plain)))
            for mid, a, b, st in statements:
                row = f"{mid}/{a}/{b}"
                plain = seal.open("statements", "statement", row, st)
                new.execute("INSERT INTO statements VALUES (?,?,?,?)",
                            (mid, a, b, vaults[mid].seal(_identity("statements", "statement", row), plain)))
            for name, rows in extra_rows.items():
                for r in rows:
                    new.execute(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(r))})', r)
            new.execute(f"PRAGMA user_version={HubStore.SCHEMA_VERSION}")
    finally:
        new.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)  # checkpointed above: nothing in them
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    HubStore(path, vaults).close()  # registers schema 3 and removes the host key file
    return len(meters)
