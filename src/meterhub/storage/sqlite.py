"""SQLite plumbing shared by the parties' stores, and the data directory's lock.

Each party keeps its own database file under the data directory
(``meter.sqlite``, ``hub.sqlite``, ``utility.sqlite``, ``settlement.sqlite``),
opened in WAL mode with ``synchronous=FULL`` so that a committed transaction
survives a crash or a killed process, and a half-done one leaves nothing behind
(SQLite's atomic commit, https://www.sqlite.org/atomiccommit.html).

Guarantees (docs/operations.md):

* **Creation is atomic.** A new store is built under a temporary name (schema and
  ``PRAGMA user_version`` in one transaction), synced and renamed into place, so a
  store file that exists always has its schema and version.
* **Lost stores are noticed.** Every store created in a directory is listed in that
  directory's manifest (:data:`MANIFEST`). Opening a listed store that is missing is
  an error, never a silent re-creation; so is a file that is empty, not SQLite,
  another schema version, or fails SQLite's ``quick_check``.
* **One process per data directory.** :func:`data_dir_lock` takes an exclusive
  ``flock`` on :data:`LOCK_FILE`; a second process is refused with one line.
* **Secret columns are sealed at rest** (docs/privacy.md "Secrets and readings at rest"):
  :class:`SealedColumns` encrypts a column's value with AES-256-GCM (NIST SP 800-38D)
  under the store's storage key, the associated data naming the store, table, column and
  the row's key, so a value moved to another row or column does not open. The storage
  key is :func:`storage_key`, a 32-byte file ``<store>.sk`` created 0600 before the store.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import EXIT_USAGE, MeterhubError

__all__ = [
    "LOCK_FILE",
    "MANIFEST",
    "SealedColumns",
    "StoreError",
    "atomic_write",
    "data_dir_lock",
    "expect_store",
    "open_db",
    "storage_key",
    "transaction",
    "write_secret",
]

MANIFEST = "meterhub-stores.json"
LOCK_FILE = "meterhub.lock"
_MANIFEST_FORMAT = "meterhub/stores/v1"


class StoreError(MeterhubError, RuntimeError):
    """A database that cannot be opened or does not hold what it should (exit 2)."""

    exit_code = EXIT_USAGE


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the
    new one: a synced temporary file renamed over ``path``, then the directory synced."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write {path} ({exc.strerror})") from None


def discard_built_file(tmp: str | Path, sidecars: Iterable[str] = ()) -> None:
    """Remove what a build under ``tmp`` killed half-way left: the file, its SQLite
    journals and its ``sidecars`` (suffixes of files kept beside it under its name)."""
    for suffix in ("", "-wal", "-shm", "-journal", *sidecars):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def install_built_file(tmp: str | Path, path: str | Path, sidecars: Iterable[str] = ()) -> None:
    """Move a closed store built under ``tmp`` into place at ``path``: the file synced,
    then its ``sidecars`` (e.g. a card's storage key, :data:`meterhub.card.store.STORAGE_KEY_SUFFIX`)
    renamed, then the store itself, then the directory synced. The sidecars move first,
    so a store in place always finds them; a crash in between leaves no store at
    ``path`` and the next run builds it again."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    for suffix in sidecars:
        if Path(f"{tmp}{suffix}").exists():
            os.replace(f"{tmp}{suffix}", f"{path}{suffix}")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# -- manifest -------------------------------------------------------------------------
def _manifest(d: Path) -> dict[str, int]:
    """The stores created in directory ``d``: file name -> schema version."""
    p = d / MANIFEST
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        doc = json.loads(raw)
        if doc.get("format") != _MANIFEST_FORMAT:
            raise ValueError("unknown format")
        stores = doc["stores"]
        if not isinstance(stores, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in stores.items()
        ):
            raise ValueError("bad store list")
    except (ValueError, KeyError, AttributeError):
        raise StoreError(f"{p} is corrupt; the data directory cannot be trusted") from None
    return stores


_manifest_lock = threading.Lock()  # threads of one process; processes hold data_dir_lock


def _register(path: Path, schema_version: int) -> None:
    with _manifest_lock:
        stores = _manifest(path.parent)
        if stores.get(path.name) == schema_version:
            return
        stores[path.name] = schema_version
        doc = {"format": _MANIFEST_FORMAT, "stores": dict(sorted(stores.items()))}
        atomic_write(path.parent / MANIFEST, (json.dumps(doc, indent=2) + "\n").encode())


def expect_store(path: str | Path) -> bool:
    """True if ``path`` was created as a store (it is listed in its directory's manifest)."""
    path = Path(path)
    return path.name in _manifest(path.parent)


# -- opening ----------------------------------------------------------------------------
def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _create(path: Path, schema: str, schema_version: int) -> None:
    """Build the store under a temporary name and rename it into place (atomic)."""
    tmp = path.with_name(f".{path.name}.new")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)  # a creation killed half-way
    conn = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # one file to rename
        with transaction(conn):
            for stmt in schema.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version={int(schema_version)}")
    finally:
        conn.close()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def open_db(
    path: str | Path,
    schema: str,
    *,
    schema_version: int,
    create: bool = True,
    upgrades: Mapping[int, str] | None = None,
    quick_check: bool = True,
) -> sqlite3.Connection:
    """Open a store, creating it (atomically) if it never existed and ``create`` is set.

    ``PRAGMA user_version`` records the schema version. ``upgrades`` maps an older
    version ``v`` to the DDL that takes a store from ``v`` to ``v + 1`` (new tables
    only); each step runs in one transaction with its version bump, so a store is
    at one version or the next, never in between. Refused with
    :class:`StoreError`: a store listed in the manifest but missing, a file that is
    empty or not SQLite, another schema version, or one failing ``quick_check``.

    ``quick_check`` reads every page of the file (its cost grows with the store, not
    with the work: about as long as reading the file). ``quick_check=False`` skips it
    for an opener whose every result is checked on its own (``utility verify-all``,
    :func:`meterhub.service.scaleout._open`); SQLite still refuses any page it reads
    that is malformed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot create the directory ({exc.strerror})") from None
    if not path.exists():
        if expect_store(path):
            raise StoreError(
                f"{path}: store missing (this data directory had one; restore it or use a new data directory)"
            )
        if not create:
            raise StoreError(f"{path}: no store here")
        try:
            _create(path, schema, schema_version)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot create the store ({exc})") from None
    elif path.stat().st_size == 0:
        raise StoreError(f"{path}: store is empty (truncated?); restore it or use a new data directory")
    conn = None
    try:
        conn = _connect(path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        check = "ok"
        if version == schema_version and quick_check:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        raise StoreError(f"{path}: not a usable SQLite database ({exc})") from None
    try:
        while upgrades and version in upgrades and version < schema_version:
            with transaction(conn):
                for stmt in upgrades[version].split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(f"PRAGMA user_version={int(version) + 1}")
            version += 1
            if version == schema_version and quick_check:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path}: cannot upgrade the store from schema version {version} ({exc})") from None
    if version != schema_version:
        conn.close()
        if version == 0:
            raise StoreError(f"{path}: not a meterhub store (no schema version)")
        raise StoreError(f"{path}: schema version {version}, this meterhub reads {schema_version}")
    if check != "ok":
        conn.close()
        raise StoreError(f"{path}: store is corrupt ({check})")
    _register(path, schema_version)
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


# -- the data directory's lock ------------------------------------------------------------
@contextmanager
def data_dir_lock(data_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``data_dir/meterhub.lock`` for the block.

    The lock dies with the process (the kernel releases it), so a killed run never
    leaves a stale lock behind. A second process gets :class:`StoreError` at once.
    """
    d = Path(data_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{d}: cannot use the data directory ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise StoreError(f"{d} is in use by another meterhub process{who}; try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- secrets at rest ---------------------------------------------------------------------------
def write_secret(path: str | Path, data: bytes) -> None:
    """Write a key file readable by its owner only (0600), whole or not at all: a synced
    temporary file created 0600 and renamed over ``path``, then the directory synced."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a write killed half-way
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot write {path} ({exc.strerror})") from None


# -- sealed columns -----------------------------------------------------------------------
_SEALED_V1 = b"\x01"  # version byte of a sealed column value
_COLUMN_AAD = b"meterhub/v1/sealed-column\x00"


def storage_key(db_path: str | Path) -> bytes:
    """The storage key of the store at ``db_path``: the file ``<store>.sk``.

    Created (32 random bytes, 0600) for a store that does not exist yet, before the store
    itself, so a store on disk always has its key; a store whose key file is missing or
    damaged is refused, never re-keyed (its sealed values could not be read)."""
    db_path = Path(db_path)
    kp = Path(f"{db_path}.sk")
    try:
        key = kp.read_bytes()
    except FileNotFoundError:
        if db_path.exists() or expect_store(db_path):
            raise StoreError(f"{kp}: storage key missing; {db_path.name} cannot be read without it") from None
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{db_path.parent}: cannot create the directory ({exc.strerror})") from None
        key = secrets.token_bytes(32)
        write_secret(kp, key)
        return key
    except OSError as exc:
        raise StoreError(f"{kp}: cannot read the storage key ({exc.strerror})") from None
    if len(key) != 32:
        raise StoreError(f"{kp}: not a 32-byte storage key")
    return key


class SealedColumns:
    """AES-256-GCM sealing of a store's secret columns (module docstring).

    A sealed value is ``01 || nonce (12) || ciphertext || tag (16)``; the associated data
    is ``"meterhub/v1/sealed-column\0" || store \0 table \0 column \0 row key``, so a
    value copied into another row, column, table or store fails authentication."""

    def __init__(self, key: bytes, store: str) -> None:
        self._aead = AESGCM(key)
        self._store = store.encode()

    def _aad(self, table: str, column: str, row: str) -> bytes:
        return b"\x00".join((_COLUMN_AAD + self._store, table.encode(), column.encode(), row.encode()))

    def seal(self, table: str, column: str, row: str, value: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return _SEALED_V1 + nonce + self._aead.encrypt(nonce, value, self._aad(table, column, row))

    def open(self, table: str, column: str, row: str, stored: bytes) -> bytes:
        """The plaintext; :class:`StoreError` for a value that is altered, moved or unsealed."""
        stored = bytes(stored)
        if stored[:1] != _SEALED_V1 or len(stored) < 29:
            raise StoreError(f"{table}.{column} of {row}: not a sealed value; the store cannot be trusted")
        try:
            return self._aead.decrypt(stored[1:13], stored[13:], self._aad(table, column, row))
        except InvalidTag:
            raise StoreError(
                f"{table}.{column} of {row}: fails authentication (altered, moved or another key)"
            ) from None
