"""Re-verify the demand-response releases stored in a data directory (``meterhub utility
dr``, the utility dashboard; docs/demand-response.md), and :class:`DRStore`
(``dr.sqlite``), where the grid operator keeps its events, the opt responses and the
releases it received.

Each release is verified again against the stored event (under the VTN key the
customers pinned) and the meters' signed commitments in ``utility.sqlite``; the
reductions and payments per feeder are recomputed from the verified releases only.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from ...crypto import ecdsa
from ...dr.event import DREvent, EventError
from ...dr.release import DRRelease
from ...model.aids import DR_APP_AID
from ...model.demo_keys import demo_vtn_key
from ..demand_response import VerifiedReduction, settle_event, verify_event
from ..settlement import expected_code_hash
from ..verifier import Rejected

__all__ = ["DR_CLASS", "DRStore", "verify_stored"]

#: The demand-response applet's class, whose code hash every release carries.
DR_CLASS = "meterhub.applets.demand_response/1"


class DRStore:
    """``dr.sqlite``: events, opt responses, releases, feeders."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)
        self.conn.executescript(
            "CREATE TABLE IF NOT EXISTS events(event_id TEXT PRIMARY KEY, record BLOB NOT NULL);"
            "CREATE TABLE IF NOT EXISTS opts(meter_id TEXT, event_id TEXT, opt TEXT, PRIMARY KEY(meter_id, event_id));"
            "CREATE TABLE IF NOT EXISTS releases(meter_id TEXT, event_id TEXT, raw BLOB NOT NULL,"
            " PRIMARY KEY(meter_id, event_id));"
            "CREATE TABLE IF NOT EXISTS feeders(meter_id TEXT PRIMARY KEY, feeder TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
        )

    def planned(self) -> bool:
        """The plan was stored completely (the ``meta`` row is written in its transaction)."""
        return self.conn.execute("SELECT 1 FROM meta WHERE name = 'planned'").fetchone() is not None

    def close(self) -> None:
        self.conn.close()

    def events(self) -> list[DREvent]:
        return [DREvent.from_bytes(r[0]) for r in self.conn.execute("SELECT record FROM events ORDER BY event_id")]

    def opts(self) -> dict[tuple[str, str], str]:
        return {(m, e): o for m, e, o in self.conn.execute("SELECT meter_id, event_id, opt FROM opts")}

    def feeders(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT meter_id, feeder FROM feeders").fetchall())

    def releases(self) -> list[tuple[str, str, bytes]]:
        return [(m, e, bytes(r)) for m, e, r in self.conn.execute("SELECT meter_id, event_id, raw FROM releases")]

    def save_plan(self, events: list[DREvent], opts: dict[tuple[str, str], str], feeders: dict[str, str]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO events VALUES(?,?)", [(e.event_id, e.to_bytes()) for e in events])
            self.conn.executemany("INSERT OR REPLACE INTO opts VALUES(?,?,?)", [(m, e, o) for (m, e), o in opts.items()])
            self.conn.executemany("INSERT OR REPLACE INTO feeders VALUES(?,?)", list(feeders.items()))
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES('planned', '1')")

    def save_release(self, meter_id: str, event_id: str, raw: bytes) -> None:
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO releases VALUES(?,?,?)", (meter_id, event_id, raw))


def verify_stored(data_dir: Path, collect: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Re-verify every stored DR release; (output lines, rejections). ``collect`` (the
    utility dashboard) receives ``events`` (the stored events) and ``reductions``:
    (event, feeder, verified Wh, paid EUR, customers), ``per_customer``: (event, meter, Wh)."""
    from ..store import UtilityStore

    if not (data_dir / "dr.sqlite").exists() or not (data_dir / "utility.sqlite").exists():
        raise FileNotFoundError(f"no demand-response results in {data_dir} (run `meterhub demo` first)")
    store, utility = DRStore(data_dir / "dr.sqlite"), UtilityStore(data_dir / "utility.sqlite")
    try:
        events = {e.event_id: e for e in store.events()}
        feeders = store.feeders()
        code_hash = bytes.fromhex(expected_code_hash(DR_CLASS))
        key = ecdsa.public_bytes(demo_vtn_key())  # the VTN key every customer pinned
        ok: dict[str, list[VerifiedReduction]] = {e: [] for e in events}
        rejected: list[str] = []
        batches: dict[str, list[tuple[DRRelease, Any, Any]]] = {}
        for mid, eid, raw in store.releases():
            try:
                ev = events[eid]
                if not ev.verify(key):
                    raise Rejected("the stored event's VTN signature does not verify")
                rel = DRRelease.from_bytes(raw)
                if rel.meter_id != mid:
                    raise Rejected(f"stored under meter {mid!r} but made for {rel.meter_id!r}")
                days = (min(ev.baseline_days), ev.start.date() + timedelta(days=1))
                batches.setdefault(eid, []).append((rel, utility.registration(mid), {
                    dc.batch.batch.day: dc for dc in utility.day_commitments(mid, *days)}))
            except (KeyError, EventError, Rejected, ValueError) as exc:
                rejected.append(f"{mid} {eid}: {exc}")
        for eid, items in batches.items():  # one batch of range proofs per event
            for (rel, _, _), v in zip(items, verify_event(items, events[eid], code_hash=code_hash,
                                                            app_aid=DR_APP_AID), strict=True):
                if isinstance(v, Rejected):
                    rejected.append(f"{rel.meter_id} {eid}: {v}")
                else:
                    ok[eid].append(v)
        lines = [f"{'event':<22} {'feeder':<10} {'verified kWh':>12} {'paid EUR':>9}"]
        for eid in sorted(ok):
            st = settle_event(eid, ok[eid], feeders)
            for f, w in sorted(st.per_feeder_wh.items()):
                paid = sum(v.payment for v in ok[eid] if feeders.get(v.meter_id) == f) / 1e8
                lines.append(f"{eid:<22} {f:<10} {w / 1000:>12.2f} {paid:>9.2f}")
                if collect is not None:
                    n = sum(1 for v in ok[eid] if feeders.get(v.meter_id) == f)
                    collect.setdefault("reductions", []).append((eid, f, w, paid, n))
        lines.append(f"{sum(len(v) for v in ok.values())} releases verified, {len(rejected)} rejected")
        if collect is not None:
            collect["events"] = [events[e] for e in sorted(events)]
            collect["per_customer"] = [(e, v.meter_id, float(v.reduction)) for e in sorted(ok) for v in ok[e]]
        return lines, rejected
    finally:
        store.close()
        utility.close()
