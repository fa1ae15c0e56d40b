"""Persistent memory of the card: a file-backed key-value store with Java Card
transaction semantics (Java Card 3.0.5 Runtime Environment Specification ch. 7).

* Storage is SQLite (stdlib ``sqlite3``) in WAL mode with ``synchronous=FULL``,
  one row per (namespace, key), values as bytes. Each applet context owns one
  namespace (its AID); the runtime owns the empty namespace.
* Outside a transaction every ``put``/``delete`` is its own SQLite transaction,
  so a single update is atomic (JCRE §7.2 "Atomicity").
* Inside ``begin()``..``commit()`` (JCRE §7.3-§7.5) writes go to an in-memory
  journal and reads see it; ``commit`` applies the journal as one SQLite
  transaction, so after a power loss the store holds either every update or
  none (JCRE §7.6 "Tear or reset transaction failure"). ``abort`` drops the
  journal.
* ``fault_hook`` is called at every write point (each buffered write, each
  physical row write, just before and just after the SQLite COMMIT). Tests make
  it raise :class:`PowerLoss` to tear the card at that exact point; the store
  then drops its connection without committing, as the power would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

__all__ = ["PersistentStore", "PowerLoss", "TransactionException", "FaultHook"]

FaultHook = Callable[[str, int], None]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    " ns BLOB NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,"
    " PRIMARY KEY (ns, k)) WITHOUT ROWID"
)

_DELETED = object()  # journal marker for a pending delete


class PowerLoss(BaseException):  # noqa: N818 - models a physical event, not an error
    """Simulated tear (power loss). A ``BaseException`` so that applet code
    catching ``Exception`` cannot swallow it, just as code cannot catch a
    power cut."""


class TransactionException(Exception):  # noqa: N818 - Java Card name
    """Misuse of the transaction API (JC 3.0.5 API ``TransactionException``:
    IN_PROGRESS, NOT_IN_PROGRESS)."""

    IN_PROGRESS = 1
    NOT_IN_PROGRESS = 2

    def __init__(self, reason: int) -> None:
        self.reason = reason
        super().__init__({1: "IN_PROGRESS", 2: "NOT_IN_PROGRESS"}.get(reason, str(reason)))


class PersistentStore:
    """SQLite-backed persistent memory with one level of atomic transaction."""

    SCHEMA_VERSION = 1

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = ":memory:" if path is None else str(path)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        # PRAGMA user_version records the layout; another version is refused, not misread.
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, self.SCHEMA_VERSION):
            self._conn.close()
            raise sqlite3.DatabaseError(
                f"{self.path}: card store schema version {version}, this meterhub reads {self.SCHEMA_VERSION}"
            )
        self._conn.execute(_SCHEMA)
        if version == 0:
            self._conn.execute(f"PRAGMA user_version={self.SCHEMA_VERSION}")
        self._journal: dict[tuple[bytes, bytes], object] | None = None
        self.fault_hook: FaultHook | None = None
        self.write_points = 0

    # --- fault injection -------------------------------------------------------
    def _point(self, what: str) -> None:
        self.write_points += 1
        if self.fault_hook is not None:
            try:
                self.fault_hook(what, self.write_points)
            except PowerLoss:
                self._tear()  # the power is gone: nothing more reaches the file
                raise

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PowerLoss("store is torn; reopen it as after a restart")
        return self._conn

    def _tear(self) -> None:
        """Drop the connection without COMMIT; SQLite discards the open transaction."""
        conn, self._conn = self._conn, None
        self._journal = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the file; an open transaction is lost (as on power off)."""
        self._tear()

    @property
    def closed(self) -> bool:
        return self._conn is None

    # --- reads -------------------------------------------------------------------
    def get(self, ns: bytes, key: bytes) -> bytes | None:
        """Current value (journal first when a transaction is open)."""
        if self._journal is not None and (ns, key) in self._journal:
            v = self._journal[(ns, key)]
            return None if v is _DELETED else v  # type: ignore[return-value]
        row = self._db().execute("SELECT v FROM kv WHERE ns=? AND k=?", (ns, key)).fetchone()
        return None if row is None else bytes(row[0])

    def keys(self, ns: bytes) -> list[bytes]:
        """Keys present in ``ns`` (journal applied), sorted."""
        ks = {bytes(r[0]) for r in self._db().execute("SELECT k FROM kv WHERE ns=?", (ns,))}
        if self._journal is not None:
            for (jns, k), v in self._journal.items():
                if jns == ns:
                    (ks.discard if v is _DELETED else ks.add)(k)
        return sorted(ks)

    def namespaces(self) -> list[bytes]:
        """Namespaces with at least one committed row."""
        return [bytes(r[0]) for r in self._db().execute("SELECT DISTINCT ns FROM kv")]

    # --- writes ------------------------------------------------------------------
    def put(self, ns: bytes, key: bytes, value: bytes) -> None:
        """Store ``value``; atomic on its own, or journaled inside a transaction."""
        self._write(bytes(ns), bytes(key), bytes(value))

    def delete(self, ns: bytes, key: bytes) -> None:
        """Remove a key (no error if absent)."""
        self._write(bytes(ns), bytes(key), _DELETED)

    def delete_namespace(self, ns: bytes) -> None:
        """Remove every key of ``ns`` (applet deletion); one atomic step."""
        if self._journal is not None:
            for k in self.keys(ns):
                self._journal[(ns, k)] = _DELETED
            return
        self._apply({(ns, k): _DELETED for k in self.keys(ns)})

    def _write(self, ns: bytes, key: bytes, value: object) -> None:
        self._db()
        if self._journal is not None:
            self._point("journal")
            self._journal[(ns, key)] = value
            return
        self._apply({(ns, key): value})

    def _apply(self, updates: dict[tuple[bytes, bytes], object]) -> None:
        """Apply ``updates`` as one SQLite transaction."""
        db = self._db()
        if not updates:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            for (ns, k), v in updates.items():
                self._point("row")
                if v is _DELETED:
                    db.execute("DELETE FROM kv WHERE ns=? AND k=?", (ns, k))
                else:
                    db.execute("INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", (ns, k, v))
            self._point("pre-commit")
            db.execute("COMMIT")
        except PowerLoss:
            raise  # _point already tore the connection
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._point("post-commit")

    # --- transactions (JCRE ch. 7) ----------------------------------------------
    @property
    def in_transaction(self) -> bool:
        return self._journal is not None

    def begin(self) -> None:
        """``JCSystem.beginTransaction`` (JCRE §7.3); no nesting (§7.4)."""
        self._db()
        if self._journal is not None:
            raise TransactionException(TransactionException.IN_PROGRESS)
        self._journal = {}

    def commit(self) -> None:
        """``JCSystem.commitTransaction``: all journaled writes in one SQLite transaction."""
        if self._journal is None:
            raise TransactionException(TransactionException.NOT_IN_PROGRESS)
        journal, self._journal = self._journal, None
        if journal:
            self._apply(journal)

    def abort(self) -> None:
        """``JCSystem.abortTransaction`` (JCRE §7.5): drop the journal."""
        if self._journal is None:
            raise TransactionException(TransactionException.NOT_IN_PROGRESS)
        self._journal = None
