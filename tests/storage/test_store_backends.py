"""The utility store on SQLite and on PostgreSQL: the same behaviour, checked on both
(docs/service.md, "Storage"); batched ingest (one transaction per delivery)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.crypto import ecdsa
from meterhub.model.formats.upload import DayUpload
from meterhub.storage.sqlite import StoreError
from meterhub.tariffs import dump_tariff, example_signed_tariff
from meterhub.utility.store import UtilityStore


def _open(db: str) -> UtilityStore:
    return UtilityStore(db if db.startswith("postgresql://") else Path(db))


def _registered(db: str, h) -> UtilityStore:
    u = _open(db)
    signed = example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    u.add_tariff(signed, dump_tariff(signed))  # idempotent
    u.register_meter(h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    return u


def _count(u: UtilityStore, table: str) -> int:
    return u.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_ingest_verify_and_coverage(utility_db, history):
    u = _registered(utility_db, history)
    try:
        res = u.ingest_days(history.uploads())
        assert [r.accepted for r in res] == [True] * 3 and not any(r.duplicate for r in res)
        again = u.ingest_days(history.uploads())
        assert all(r.accepted and r.duplicate for r in again)
        assert _count(u, "days") == 3
        assert u.verify_statement(history.statement).ok
        wrong = dataclasses.replace(history.statement, total=history.statement.total + 1)
        assert not u.verify_statement(wrong).ok
        cov = u.coverage(history.meter.meter_id)
        assert len(cov.uploaded) == 3 and cov.unbilled == []
        assert [v[3] for v in u.bill_verdicts()] == [True, False]
    finally:
        u.close()
    u = _open(utility_db)  # reopened: everything is still there, schema version checked
    try:
        assert _count(u, "days") == 3 and len(u.bill_verdicts()) == 2
    finally:
        u.close()


def test_conflicting_redelivery_is_reported(utility_db, history):
    u = _registered(utility_db, history)
    try:
        ups = history.uploads()
        assert u.ingest_day(ups[0]).accepted
        flipped = bytearray(ups[0].records)
        flipped[-1] ^= 1
        res = u.ingest_days([DayUpload(ups[0].batch, bytes(flipped)), ups[1]])
        assert not res[0].accepted and "conflicts with the stored upload" in res[0].reason
        assert res[0].conflict and not res[1].conflict
        assert res[1].accepted
        assert _count(u, "days") == 2 and _count(u, "rejected_uploads") == 1
    finally:
        u.close()


def test_batched_delivery_checks_links_within_the_batch(utility_db, history):
    u = _registered(utility_db, history)
    try:
        ups = history.uploads()
        # A gap is allowed (V09: day 3 leaves day 2's indices free); the late day 2 in
        # the same delivery is then checked against both neighbours in the batch.
        res = u.ingest_days([ups[0], ups[2], ups[1]])
        assert [r.accepted for r in res] == [True, True, True]
        # Another meter key's day 2 for the same meter id never chains in.
        other = make_history(seed=99).uploads()
        res = u.ingest_days([other[1]])
        assert not res[0].accepted and res[0].reason
    finally:
        u.close()


def test_a_failed_delivery_leaves_nothing(utility_db, history):
    """Crash guarantee of batched ingest: an exception before the commit rolls the
    whole delivery back, rejections included."""
    u = _registered(utility_db, history)

    class Boom(Exception):
        pass

    def uploads():
        yield from history.uploads()[:2]
        raise Boom

    try:
        with pytest.raises(Boom):
            u.ingest_days(uploads())
        assert _count(u, "days") == 0
        assert [r.accepted for r in u.ingest_days(history.uploads())] == [True] * 3
    finally:
        u.close()


def test_pending_statements_verified_in_pages(utility_db, history):
    u = _registered(utility_db, history)
    try:
        u.ingest_days(history.uploads())
        u.submit_statement(history.statement)
        u.submit_statement(dataclasses.replace(history.statement, total=history.statement.total + 1))
        assert u.verify_pending(page=1) == (1, 1)
        assert [v[3] for v in u.bill_verdicts()] == [True, False]
    finally:
        u.close()


def test_postgres_schema_version_is_checked(pg_dsn):
    import psycopg

    UtilityStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("UPDATE meterhub_schema SET version=99")
    with pytest.raises(StoreError, match="schema version 99"):
        UtilityStore(pg_dsn)


def test_postgres_refuses_a_foreign_database(pg_dsn):
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE unrelated (x INTEGER)")
    with pytest.raises(StoreError, match="not a meterhub store"):
        UtilityStore(pg_dsn)


def test_quick_check_can_be_left_to_the_opener_that_ran_it(tmp_path):
    """open_db runs SQLite's whole-file quick_check (a corrupt store is refused);
    ``quick_check=False`` (the Dask workers of verify-all, whose driver ran it) skips that
    whole-file read, and SQLite still refuses a malformed page when it is read."""
    import sqlite3

    db = tmp_path / "u.sqlite"
    u = UtilityStore(db)
    with u._tx():
        u.conn.execute("CREATE TABLE filler (k INTEGER PRIMARY KEY, v BLOB)")
        u.conn.executemany("INSERT INTO filler VALUES (?, ?)", [(k, bytes(3000)) for k in range(40)])
    u.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    u.close()
    size = db.stat().st_size
    page = 4096
    with db.open("r+b") as f:  # the filler's last leaf page: garbage
        f.seek(size - page)
        f.write(b"\xa5" * page)
    with pytest.raises(StoreError, match="corrupt|malformed"):
        UtilityStore(db)
    v = UtilityStore(db, quick_check=False)
    try:
        assert v.meter_ids() == []  # the pages it reads are sound
        with pytest.raises(sqlite3.DatabaseError):
            v.conn.execute("SELECT sum(length(v)) FROM filler").fetchone()
    finally:
        v.close()
