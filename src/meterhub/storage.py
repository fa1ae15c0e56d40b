"""SQLite plumbing shared by the parties' stores.

Each party keeps its own database file under the data directory
(``meter.sqlite``, ``hub.sqlite``, ``utility.sqlite``), opened in WAL mode with
``synchronous=FULL`` so that a committed transaction survives a crash or a
killed process, and a half-done one leaves nothing behind (SQLite's atomic
commit, https://www.sqlite.org/atomiccommit.html).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["open_db", "transaction", "StoreError"]


class StoreError(RuntimeError):
    """A database that cannot be opened or does not hold what it should."""


def open_db(path: str | Path, schema: str, *, schema_version: int) -> sqlite3.Connection:
    """Open (creating if needed) a database and apply ``schema`` once.

    ``PRAGMA user_version`` records the schema version; a file written by a
    newer meterhub is refused rather than misread.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot create the directory ({exc.strerror})") from None
    conn = None
    try:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"{path}: not a usable SQLite database ({exc})") from None
    if version == 0:
        with transaction(conn):
            for stmt in schema.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={int(schema_version)}")
    elif version != schema_version:
        conn.close()
        raise StoreError(f"{path}: schema version {version}, this meterhub reads {schema_version}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
