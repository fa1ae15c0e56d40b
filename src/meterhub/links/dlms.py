"""The meter-hub DLMS link's shared parts: key schedule, system titles, and
invocation counters that survive restarts.

Both ends of the home link (``meterhub.meter.serve`` and
``meterhub.hub.homelink``) use these; they sit here so that neither party's
package imports the other's. The counters live in a ``dlms_counters`` table
of the owning party's SQLite file (created on first use).
"""

from __future__ import annotations

import hashlib
import sqlite3

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..protocols.dlms.security import InvocationCounter, ReplayGuard, SecurityError, Suite0Keys
from ..storage.sqlite import transaction

__all__ = [
    "HOME_LINK_KDF_INFO",
    "home_link_suite0_keys",
    "meter_system_title",
    "hub_system_title",
    "StoredInvocationCounter",
    "StoredReplayGuard",
]

#: HKDF ``info`` of the home-link key schedule (docs/dlms.md, "Home link").
HOME_LINK_KDF_INFO = b"meterhub/v1/home-link/dlms-suite0"
_TITLE_DST = b"meterhub/v1/system-title/"


# ----------------------------------------------------------------- key schedule


def home_link_suite0_keys(home_link_key: bytes) -> Suite0Keys:
    """Suite-0 keys of the home link from the 16-byte meter-hub key.

    ``EK || AK = HKDF-SHA256(IKM = home-link key, salt = none, info =
    "meterhub/v1/home-link/dlms-suite0", L = 32)`` (RFC 5869). Both keys are
    derived (rather than using the home-link key itself as EK) so that the DLMS
    link, whose GCM IVs are ``system title || invocation counter`` (Green Book
    §9.2.7.2.4.2), never shares a key with the sealed-openings files, whose
    nonces are random (docs/formats.md).
    """
    if len(home_link_key) != 16:
        raise ValueError("home-link key must be 16 bytes")
    okm = HKDF(hashes.SHA256(), 32, None, HOME_LINK_KDF_INFO).derive(home_link_key)
    return Suite0Keys(okm[:16], okm[16:])


def _title(prefix: bytes, role: bytes, meter_id: str) -> bytes:
    # Green Book §4.3.4: 8 octets, a 3-letter manufacturer id then 5 octets of serial.
    return prefix + hashlib.sha256(_TITLE_DST + role + b"\x00" + meter_id.encode()).digest()[:5]


def meter_system_title(meter_id: str) -> bytes:
    """The meter's system title: ``"MHB"`` + 5 octets of SHA-256 over its id."""
    return _title(b"MHB", b"meter", meter_id)


def hub_system_title(meter_id: str) -> bytes:
    """The system title the hub uses towards ``meter_id``: ``"MHH"`` + 5 octets."""
    return _title(b"MHH", b"hub", meter_id)


# ------------------------------------------------------- persistent counters

_COUNTER_TABLE = """
CREATE TABLE IF NOT EXISTS dlms_counters (
    owner TEXT NOT NULL,
    system_title BLOB NOT NULL,
    role TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (owner, system_title, role)
)"""


def _ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute(_COUNTER_TABLE)


def _put(conn: sqlite3.Connection, owner: str, title: bytes, role: str, value: int) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO dlms_counters VALUES (?,?,?,?)", (owner, title, role, value)
        )


class StoredInvocationCounter(InvocationCounter):
    """Our sending invocation counter, persisted by reservation.

    Before a counter value is used, a block of ``block`` values above it is
    recorded in SQLite; after a restart (or a kill) counting resumes at the
    recorded mark, so no IV ``system title || IC`` is ever used twice under one
    key (Green Book §9.2.7.2.4.2), at the cost of skipping unused values.
    """

    def __init__(self, conn: sqlite3.Connection, owner: str, title: bytes, block: int = 1024) -> None:
        _ensure_table(conn)
        row = conn.execute(
            "SELECT value FROM dlms_counters WHERE owner=? AND system_title=? AND role='send'",
            (owner, title),
        ).fetchone()
        super().__init__(value=int(row[0]) if row else 1)
        self._conn, self._owner, self._title, self._block = conn, owner, title, block
        self._reserved = self.value

    def next(self) -> int:
        with self._lock:
            if self.value > 0xFFFFFFFF:
                raise SecurityError("invocation counter exhausted: the key must be renewed")
            if self.value >= self._reserved:
                self._reserved = min(self.value + self._block, 0x100000000)
                _put(self._conn, self._owner, self._title, "send", self._reserved)
            v = self.value
            self.value += 1
            return v


class StoredReplayGuard(ReplayGuard):
    """The peers' last accepted invocation counters, loaded from and saved to SQLite.

    ``autosave`` writes every accepted counter at once (a network server); otherwise
    the owner calls :meth:`save` at points of its choosing (once a day in the demo).
    """

    def __init__(self, conn: sqlite3.Connection, owner: str, *, autosave: bool = False) -> None:
        _ensure_table(conn)
        last = {
            bytes(t): int(v)
            for t, v in conn.execute(
                "SELECT system_title, value FROM dlms_counters WHERE owner=? AND role='recv'", (owner,)
            )
        }
        super().__init__(last=last)
        self._conn, self._owner, self._autosave = conn, owner, autosave
        self._saved = dict(last)

    def accept(self, system_title: bytes, ic: int) -> None:
        super().accept(system_title, ic)
        if self._autosave:
            self.save()

    def save(self) -> None:
        with self._lock:
            changed = {t: v for t, v in self.last.items() if self._saved.get(t) != v}
        for t, v in changed.items():
            _put(self._conn, self._owner, t, "recv", v)
            self._saved[t] = v
