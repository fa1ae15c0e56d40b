"""Erase one customer's data from the utility's stores (GDPR Art. 17; docs/personal-data.md).

``meterhub utility purge --meter ID`` deletes, for meter ``ID``, the
registration, the signed day batches and commitments, refused uploads, bill
statements and verdicts (``utility.sqlite``), the settlement customer record,
released statements and coin tosses (``settlement.sqlite``) and the period
bills (``invoices.sqlite``). Each store is purged in one transaction with
``PRAGMA secure_delete`` on (SQLite overwrites the deleted content) and its
write-ahead log truncated afterwards, so the data does not linger in free pages
or the WAL. The stores are independent: a purge interrupted between two stores
is completed by running it again (idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..storage.sqlite import transaction

__all__ = ["purge_meter", "PURGED_TABLES"]

#: store file -> tables keyed by ``meter_id`` that are purged.
PURGED_TABLES: dict[str, tuple[str, ...]] = {
    "utility.sqlite": ("days", "rejected_uploads", "bills", "meters"),
    "settlement.sqlite": ("statements", "coin_toss", "customers"),
    "invoices.sqlite": ("period_bills",),
}


def _opener(name: str) -> Callable[[Path], Any]:
    """The store's own class, which checks its schema version and integrity."""
    if name == "utility.sqlite":
        from .store import UtilityStore

        return UtilityStore
    if name == "settlement.sqlite":
        from .settlement import SettlementStore

        return lambda p: SettlementStore(p, create=False)
    from .invoices import InvoiceStore

    return InvoiceStore


def _purge_store(store: Any, tables: tuple[str, ...], meter_id: str) -> int:
    conn = store.conn
    conn.execute("PRAGMA secure_delete=ON")
    n = 0
    with transaction(conn):
        for t in tables:  # fixed table names from PURGED_TABLES
            n += conn.execute(f"DELETE FROM {t} WHERE meter_id=?", (meter_id,)).rowcount
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return n


def purge_meter(data_dir: str | Path, meter_id: str) -> dict[str, int]:
    """Rows deleted per store file (stores that do not exist are skipped)."""
    out: dict[str, int] = {}
    for name, tables in PURGED_TABLES.items():
        path = Path(data_dir) / name
        if not path.exists():
            continue
        store = _opener(name)(path)
        try:
            out[name] = _purge_store(store, tables, meter_id)
        finally:
            store.close()
    return out
