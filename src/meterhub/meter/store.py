"""The meter's own persistent state: keys, chain position and an outbox.

A day is recorded in one SQLite transaction that advances the chain and puts
the day's utility upload and sealed openings in the outbox, so a killed run
either has the whole day or none of it; delivery from the outbox is
idempotent on the receiving side.

At rest the meter's secrets (its ECDSA signing key and the home-link key) are sealed
with AES-256-GCM under the store's storage key (:class:`meterhub.storage.sqlite.SealedColumns`,
key file ``meter.sqlite.sk``, 0600), bound to their column and meter id. The outbox
holds what leaves the meter anyway: uploads (commitments, public to the utility) and
the sealed openings (already encrypted under the home-link key).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..crypto import ecdsa
from ..model.formats.sealed import SealedDay, seal_openings
from ..model.formats.units import encode_records
from ..model.formats.upload import DayUpload
from ..storage.sqlite import SealedColumns, open_db, storage_key, transaction
from .device import Meter

__all__ = ["MeterStore", "MeterInfo"]

_SCHEMA = """
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    signing_key BLOB NOT NULL,
    home_link_key BLOB NOT NULL,
    tz TEXT NOT NULL,
    interval_minutes INTEGER NOT NULL,
    next_index INTEGER NOT NULL,
    head BLOB NOT NULL,
    last_day TEXT
);
CREATE TABLE outbox (
    meter_id TEXT NOT NULL REFERENCES meters(meter_id),
    day TEXT NOT NULL,
    upload TEXT NOT NULL,
    sealed TEXT NOT NULL,
    PRIMARY KEY (meter_id, day)
)
"""


@dataclass(frozen=True, slots=True)
class MeterInfo:
    meter_id: str
    public_key: bytes
    home_link_key: bytes
    tz: str
    interval_minutes: int
    last_day: date | None


class MeterStore:
    SCHEMA_VERSION = 2  # 2: signing and home-link keys sealed at rest

    def __init__(self, path: str | Path) -> None:
        self._seal = SealedColumns(storage_key(path), "meter")
        self.conn: sqlite3.Connection = open_db(path, _SCHEMA, schema_version=self.SCHEMA_VERSION)

    def close(self) -> None:
        self.conn.close()

    def provision(self, meter_id: str, tz: str, interval_minutes: int, home_link_key: bytes) -> None:
        """Create a meter with a fresh signing key unless it exists (then nothing changes)."""
        key = ecdsa.generate_signing_key()
        m = Meter(meter_id, key, interval_minutes, tz)
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR IGNORE INTO meters VALUES (?,?,?,?,?,?,?,?)",
                (
                    meter_id,
                    self._seal.seal("meters", "signing_key", meter_id, ecdsa.signing_key_pem(key)),
                    self._seal.seal("meters", "home_link_key", meter_id, home_link_key),
                    tz,
                    interval_minutes,
                    0,
                    m.head,
                    None,
                ),
            )

    def load(self, meter_id: str) -> Meter:
        row = self.conn.execute(
            "SELECT signing_key, tz, interval_minutes, next_index, head, last_day FROM meters "
            "WHERE meter_id=?",
            (meter_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"meter {meter_id} is not provisioned")
        return Meter(
            meter_id,
            ecdsa.load_signing_key(self._seal.open("meters", "signing_key", meter_id, row[0])),
            row[2],
            row[1],
            row[3],
            bytes(row[4]),
            date.fromisoformat(row[5]) if row[5] else None,
            self._register(meter_id, row[3]),
        )

    def _register(self, meter_id: str, next_index: int) -> int | None:
        """The energy register where the last recorded day ended (its signed version-2
        batch in the outbox); 0 for a meter that has recorded nothing yet (a new meter's
        register starts at zero and it signs version-2 batches); ``None`` for a meter
        whose days were recorded with version-1 batches (it keeps signing version 1)."""
        last = self.conn.execute(
            "SELECT upload FROM outbox WHERE meter_id=? ORDER BY day DESC LIMIT 1", (meter_id,)
        ).fetchone()
        if last is None:
            return 0 if next_index == 0 else None
        return DayUpload.from_json(last[0]).batch.batch.register_end_wh

    def info(self, meter_id: str) -> MeterInfo:
        row = self.conn.execute(
            "SELECT signing_key, home_link_key, tz, interval_minutes, last_day FROM meters "
            "WHERE meter_id=?",
            (meter_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"meter {meter_id} is not provisioned")
        pub = ecdsa.public_bytes(ecdsa.load_signing_key(self._seal.open("meters", "signing_key", meter_id, row[0])))
        hlk = self._seal.open("meters", "home_link_key", meter_id, row[1])
        return MeterInfo(meter_id, pub, hlk, row[2], row[3], date.fromisoformat(row[4]) if row[4] else None)

    def record_day(self, meter: Meter, day: date, readings_wh: Sequence[int]) -> tuple[DayUpload, SealedDay]:
        """Commit, chain and sign a day; persist the new chain state and the outbox atomically."""
        info = self.info(meter.meter_id)
        rec = meter.record_day(day, readings_wh)
        b = rec.batch.batch
        upload = DayUpload(rec.batch, encode_records(b.first_index, rec.commitments))
        sealed = seal_openings(info.home_link_key, meter.meter_id, day, b.first_index, rec.openings)
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE meters SET next_index=?, head=?, last_day=? WHERE meter_id=?",
                (meter.next_index, meter.head, day.isoformat(), meter.meter_id),
            )
            self.conn.execute(
                "INSERT INTO outbox VALUES (?,?,?,?)",
                (meter.meter_id, day.isoformat(), upload.to_json(), sealed.to_json()),
            )
        return upload, sealed

    def outbox(self, meter_id: str) -> Iterator[tuple[DayUpload, SealedDay]]:
        for up, se in self.conn.execute(
            "SELECT upload, sealed FROM outbox WHERE meter_id=? ORDER BY day", (meter_id,)
        ):
            yield DayUpload.from_json(up), SealedDay.from_json(se)

    def meter_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT meter_id FROM meters ORDER BY meter_id")]
