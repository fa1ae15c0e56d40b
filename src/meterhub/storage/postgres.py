"""PostgreSQL plumbing for the utility's store (``--db postgresql://...``), psycopg 3.

The utility store's SQL is written once, in the subset SQLite and PostgreSQL share;
:class:`PgConnection` gives it the ``execute``/``executemany`` face of an
``sqlite3.Connection``, translating the two differences it needs: ``?`` placeholders
become ``%s``, and ``BEGIN IMMEDIATE`` (SQLite: take the write lock at once) becomes
``BEGIN`` plus one transaction-scoped advisory lock, so writers to one store are
serialized exactly as they are on SQLite and every check-then-insert stays atomic.

Guarantees, matching :mod:`meterhub.storage.sqlite` (docs/operations.md, docs/service.md):

* **Creation is atomic.** The schema and its version row are created in one
  transaction (PostgreSQL DDL is transactional): a database either has the whole
  schema and its version or nothing of it.
* **Schema versions are checked.** Table ``meterhub_schema`` names the store and its
  schema version; another version, or tables without that row, are refused with
  :class:`~meterhub.storage.sqlite.StoreError`.
* **A lost connection is noticed, never papered over.** A statement on a broken
  connection raises (the caller retries the delivery; the server rolled the
  transaction back); the next statement outside a transaction reconnects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .sqlite import StoreError

__all__ = ["PgConnection", "is_postgres_url", "open_pg"]

# One advisory lock key per store kind: ASCII "MHUT" (meterhub utility).
_LOCK_KEY = 0x4D485554


def is_postgres_url(db: str) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` connection URL."""
    return db.startswith(("postgresql://", "postgres://"))


def _placeholders(sql: str) -> str:
    # The store's SQL has no literal '?' or '%'; refuse rather than mistranslate.
    if "%" in sql:
        raise ValueError("SQL for PgConnection must not contain '%'")
    return sql.replace("?", "%s")


def pg_schema(sqlite_schema: str) -> str:
    """The PostgreSQL form of a store schema written for SQLite: ``BLOB`` is ``BYTEA``."""
    return re.sub(r"\bBLOB\b", "BYTEA", sqlite_schema)


class PgConnection:
    """An autocommit psycopg connection with the sqlite3 calls the stores use."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL ({_first_line(exc)})") from None

    def _live(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._connect()
        return self._conn

    @property
    def in_transaction(self) -> bool:
        import psycopg.pq

        c = self._conn
        return c is not None and not c.closed and c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        head = sql.strip().upper()
        if head in ("ROLLBACK", "COMMIT") and (self._conn is None or self._conn.closed):
            if head == "COMMIT":
                raise StoreError("the PostgreSQL connection was lost before COMMIT")
            return None  # the server already rolled back the transaction of a lost connection
        conn = self._live()
        if head == "BEGIN IMMEDIATE":
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            return None
        try:
            return conn.execute(_placeholders(sql), tuple(params))
        except Exception:
            if conn.broken:  # the next statement after this transaction reconnects
                conn.close()
            raise

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        conn = self._live()
        with conn.cursor() as cur:
            cur.executemany(_placeholders(sql), [tuple(p) for p in seq])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_pg(
    dsn: str, store: str, schema: str, *, schema_version: int, upgrades: Mapping[int, str] | None = None
) -> PgConnection:
    """Connect, creating the store's schema atomically on first use, and check its version.
    ``upgrades`` as for :func:`meterhub.storage.sqlite.open_db`: DDL from version ``v`` to
    ``v + 1``, run with its version bump in the same transaction as the check."""
    import psycopg

    conn = PgConnection(dsn)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            have = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_name='meterhub_schema' "
                "AND table_schema=current_schema()"
            ).fetchone()
            if have is None:
                tables = conn.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema=current_schema()"
                ).fetchone()[0]
                if tables:
                    raise StoreError("PostgreSQL database holds tables but is not a meterhub store")
                conn.execute("CREATE TABLE meterhub_schema (store TEXT PRIMARY KEY, version INTEGER NOT NULL)")
                for stmt in pg_schema(schema).split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT INTO meterhub_schema VALUES (?,?)", (store, schema_version))
            row = conn.execute("SELECT version FROM meterhub_schema WHERE store=?", (store,)).fetchone()
            while row is not None and upgrades and row[0] in upgrades and row[0] < schema_version:
                for stmt in pg_schema(upgrades[row[0]]).split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("UPDATE meterhub_schema SET version=? WHERE store=?", (row[0] + 1, store))
                row = (row[0] + 1,)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except psycopg.Error as exc:
        conn.close()
        raise StoreError(f"PostgreSQL: {_first_line(exc)}") from None
    except StoreError:
        conn.close()
        raise
    if row is None:
        conn.close()
        raise StoreError(f"PostgreSQL database holds no {store} store")
    if row[0] != schema_version:
        conn.close()
        raise StoreError(f"PostgreSQL {store} store: schema version {row[0]}, this meterhub reads {schema_version}")
    return conn
