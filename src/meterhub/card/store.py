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
* **At rest** every value of a file-backed store is sealed with AES-256-GCM under the
  card's storage key, with the slot ``(namespace, key)`` as associated data, so a copy
  of the database shows no readings, key sets or statements, and a value altered or
  moved to another slot is refused on read (:class:`StorageIntegrityError`, which the
  card answers ``6F00``). The storage key stands for the secure element's protected
  memory: in this emulation it is the file ``<store>.sk`` (32 random bytes, created
  0600 with the store, never copied into the database); in hardware it would be a key
  in the chip's protected non-volatile memory (or derived from a PUF) that no command
  exports. Namespaces and key names (AIDs, day dates) remain visible. A store created
  before this (rows present, no key file) keeps working unsealed.
* **One commit per APDU**: the card wraps each command in :meth:`begin_batch` ..
  :meth:`end_batch`; every write of the command (single updates and committed
  transactions alike) goes into one SQLite transaction, committed (and synced) once
  when the response is ready. A tear anywhere inside the command leaves the store as it
  was before the command: a state the card also reaches by a tear just before it, so
  each update is still all-or-nothing (JCRE §7.2) and every transaction too (§7.6),
  at one synced commit per APDU instead of one per write.
* ``fault_hook`` is called at every write point (each buffered write, each
  physical row write, just before and just after the SQLite COMMIT). Tests make
  it raise :class:`PowerLoss` to tear the card at that exact point; the store
  then drops its connection without committing, as the power would.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import EXIT_USAGE, MeterhubError

__all__ = ["PersistentStore", "PowerLoss", "StorageIntegrityError", "TransactionException", "FaultHook"]

FaultHook = Callable[[str, int], None]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    " ns BLOB NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,"
    " PRIMARY KEY (ns, k)) WITHOUT ROWID"
)

_DELETED = object()  # journal marker for a pending delete
_SEALED = b"\x01"  # version byte of a sealed value
_AAD = b"meterhub/v1/card-store\x00"


#: The storage key of a file-backed store lives beside it under its name plus this suffix.
STORAGE_KEY_SUFFIX = ".sk"


class StorageIntegrityError(MeterhubError):
    """A sealed value that does not open under the storage key (altered, moved or foreign); exit 2."""

    exit_code = EXIT_USAGE
    what = "card store"


class PowerLoss(BaseException):  # noqa: N818 - models a physical event, not an error
    """Simulated tear (power loss). A ``BaseException`` so that applet code
    catching ``Exception`` cannot swallow it, just as code cannot catch a
    power cut."""


class TransactionException(MeterhubError):  # noqa: N818 - Java Card name
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
    #: Batch each APDU's writes into one commit (module docstring); ``False`` gives one
    #: commit per write, the baseline of benchmarks/bench_demo.py.
    apdu_batching = True

    def __init__(self, path: str | Path | None = None, *, storage_key: bytes | None = None) -> None:
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
        self._aead: AESGCM | None = None
        if path is not None:
            key = storage_key if storage_key is not None else self._storage_key(Path(path))
            if key is not None:
                self._aead = AESGCM(key)
        if version == 0:
            self._conn.execute(f"PRAGMA user_version={self.SCHEMA_VERSION}")
        self._journal: dict[tuple[bytes, bytes], object] | None = None
        self.fault_hook: FaultHook | None = None
        self.write_points = 0
        self._batch_depth = 0

    def _storage_key(self, path: Path) -> bytes | None:
        """The storage key of a file-backed store (module docstring): read ``<store>.sk``,
        or create it for a new store; ``None`` for a store that predates sealing."""
        kp = Path(str(path) + STORAGE_KEY_SUFFIX)
        try:
            key = kp.read_bytes()
        except FileNotFoundError:
            assert self._conn is not None
            if self._conn.execute("SELECT 1 FROM kv LIMIT 1").fetchone() is not None:
                return None  # rows written unsealed before the key existed
            key = secrets.token_bytes(32)
            try:
                fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self._storage_key(path)  # another process created it first
            with os.fdopen(fd, "wb") as f:
                f.write(key)
                f.flush()
                os.fsync(f.fileno())
            return key
        if len(key) != 32:
            raise StorageIntegrityError(f"{kp}: not a 32-byte storage key")
        return key

    @staticmethod
    def _aad(ns: bytes, key: bytes) -> bytes:
        return _AAD + len(ns).to_bytes(2, "big") + ns + key

    def _seal(self, ns: bytes, key: bytes, value: bytes) -> bytes:
        if self._aead is None:
            return value
        nonce = secrets.token_bytes(12)
        return _SEALED + nonce + self._aead.encrypt(nonce, value, self._aad(ns, key))

    def _open(self, ns: bytes, key: bytes, stored: bytes) -> bytes:
        if self._aead is None:
            return stored
        if stored[:1] != _SEALED or len(stored) < 29:
            raise StorageIntegrityError("unsealed or truncated value in a sealed store")
        try:
            return self._aead.decrypt(stored[1:13], stored[13:], self._aad(ns, key))
        except InvalidTag:
            raise StorageIntegrityError(f"value at {ns.hex()}/{key!r:.40} fails authentication") from None

    @property
    def sealed(self) -> bool:
        """Are values sealed at rest (a file-backed store with a storage key)?"""
        return self._aead is not None

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
        return None if row is None else self._open(ns, key, bytes(row[0]))

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
        """Apply ``updates`` as one SQLite transaction, or, inside a batch, add them to
        the batch's transaction (committed by :meth:`end_batch`)."""
        db = self._db()
        if not updates:
            return
        batched = self._batch_depth > 0
        try:
            if not (batched and db.in_transaction):
                db.execute("BEGIN IMMEDIATE")
            for (ns, k), v in updates.items():
                self._point("row")
                if v is _DELETED:
                    db.execute("DELETE FROM kv WHERE ns=? AND k=?", (ns, k))
                else:
                    sealed = self._seal(ns, k, v)  # type: ignore[arg-type]
                    db.execute("INSERT OR REPLACE INTO kv (ns, k, v) VALUES (?, ?, ?)", (ns, k, sealed))
            if batched:
                return
            self._point("pre-commit")
            db.execute("COMMIT")
        except PowerLoss:
            raise  # _point already tore the connection
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._point("post-commit")

    # --- one commit per APDU ---------------------------------------------------------
    def begin_batch(self) -> None:
        """Start collecting writes into one SQLite transaction (the card calls it when a
        command arrives; nested calls join the outer batch)."""
        if self.apdu_batching:
            self._batch_depth += 1

    def end_batch(self) -> None:
        """Commit what the batch wrote (one synced SQLite COMMIT, with the ``pre-commit``
        and ``post-commit`` fault points); nothing to do if it wrote nothing or the
        store was torn meanwhile."""
        if not self.apdu_batching:
            return
        if self._batch_depth <= 0:
            raise TransactionException(TransactionException.NOT_IN_PROGRESS)
        self._batch_depth -= 1
        db = self._conn
        if self._batch_depth or db is None or not db.in_transaction:
            return
        self._point("pre-commit")
        try:
            db.execute("COMMIT")
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
