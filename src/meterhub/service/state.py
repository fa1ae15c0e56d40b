"""State of one service process (:class:`Service`: the store, the keys, the output
limits) and the per-key output limits (docs/service.md, "Limits")."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..storage.sqlite import StoreError
from ..utility.deliveries import Deliveries, TrustAnchors
from ..utility.store import UtilityStore
from .keys import ApiKeys, KeyError_

log = logging.getLogger("meterhub.service")

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: ~120 days of 15-minute uploads per delivery
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for a whole body: 1 MiB at 35 KB/s


@dataclass(frozen=True)
class OutputLimits:
    """Per-key limits on output deliveries (docs/service.md, "Limits"): an authenticated
    key must not be able to fill the ``outputs`` history with distinct rejected outputs
    (each is recorded: the verdict history is append-only) nor keep the verifiers busy.

    ``rate``/``burst``: output deliveries per second per key, a token bucket (per service
    process). ``max_rejected``: rejected outputs recorded for one key within ``window``
    seconds (counted in the database, so across restarts and processes); at the cap the
    key's output deliveries are refused before verification until the oldest counted
    rejection leaves the window. Both answer 429 with ``Retry-After``."""

    rate: float = 50.0
    burst: int = 500
    max_rejected: int = 1000
    window: int = 86400


class _KeyBuckets:
    """Token buckets per party name (:class:`OutputLimits` ``rate``/``burst``); the
    parties are the keys file's, so the table is bounded by it."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # party -> (tokens, at)
        self.lock = threading.Lock()

    def take(self, party: str) -> float:
        """0 if a delivery may go now (a token taken), else the seconds until one may."""
        with self.lock:
            now = self.clock()
            tokens, at = self.buckets.get(party, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self.buckets[party] = (tokens - 1.0, now)
                return 0.0
            self.buckets[party] = (tokens, now)
            return (1.0 - tokens) / self.rate



def _db_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError, StoreError)


class Service:
    """State of one service process: the store (one connection, one writer at a time), the keys."""

    def __init__(
        self,
        db: str,
        keys: ApiKeys,
        supplier_key: bytes | None,
        max_body: int,
        trust: TrustAnchors | None = None,
        limits: OutputLimits | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.db, self.keys, self.supplier_key, self.max_body = db, keys, supplier_key, max_body
        self.limits = limits or OutputLimits()
        self.clock = clock or time.time  # wall clock: the rejection window is compared with `at`
        self.output_buckets = _KeyBuckets(self.limits.rate, self.limits.burst, time.monotonic)
        self.trust = trust or TrustAnchors()
        self.body_timeout = DEFAULT_BODY_TIMEOUT
        self.lock = threading.Lock()
        self._store: UtilityStore | None = None
        self._deliveries: Deliveries | None = None
        self.db_errors = _db_errors()
        self.keys_path: Path | None = None
        self.keys_mtime: tuple[int, int, int] | None = None
        self.keys_lock = threading.Lock()  # not the store lock: never wait for a DB call here

    def reload_keys(self) -> None:
        """Re-read the keys file when its modification time changed (keys enrolled or
        revoked while the service runs); a malformed new file keeps the old keys and is logged."""
        if self.keys_path is None:
            return
        try:
            st = self.keys_path.stat()  # the inode too: atomic_write replaces the file
            mtime: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            mtime = None
        if mtime == self.keys_mtime:
            return
        with self.keys_lock:
            try:
                self.keys = ApiKeys.load(self.keys_path)
            except KeyError_ as exc:
                log.error("keys file not reloaded: %s", exc)
            self.keys_mtime = mtime

    def store(self) -> UtilityStore:
        if self._store is None:
            self._store = UtilityStore(self.db)
        return self._store

    def deliveries(self) -> Deliveries:
        if self._deliveries is None or self._deliveries.store is not self.store():
            self._deliveries = Deliveries(self.store(), self.trust)
        return self._deliveries

    def drop_store(self) -> None:
        """After a database error: reconnect on the next request (state re-read from the DB)."""
        self._deliveries = None
        if self._store is not None:
            try:
                self._store.close()
            except self.db_errors as exc:
                log.info("closing a failed store connection: %s", exc)
            self._store = None

    def close(self) -> None:
        with self.lock:
            self.drop_store()

