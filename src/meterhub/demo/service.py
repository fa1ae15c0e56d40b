"""The demo's outputs through the utility's HTTP service (``meterhub demo --server URL``).

After the demo has run its settlement, forecasting, fraud and demand-response sections
(each verifying locally from its stores), every output it collected is delivered to
the service with the reference data it is checked against, by the party the hub
released it to (docs/service.md, "Outputs"): the suppliers deliver settlement
statements, the grid operator profile scores, samples, DR releases and feeder days
and, first, the price index, the load profiles, its coin tosses, the DR event records
and the aggregation groups. The service verifies each on receipt; every verdict must
be "verified", as the local ones are, or the demo stops (:class:`RemoteError`).

The service must trust the demo's publicly known keys: ``utility serve --trust demo``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..service.push import PushError
from ..service.remote import RemoteError, RemoteUtility

__all__ = ["OutputsDelivered", "deliver_outputs"]


@dataclass
class OutputsDelivered:
    references: int = 0
    verified: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"references": self.references, "verified": dict(sorted(self.verified.items()))}


def deliver_outputs(remote: RemoteUtility, data_dir: Path) -> OutputsDelivered:
    """Deliver the stored outputs of a finished demo run in ``data_dir``."""
    from ..model.formats.aggregation import GroupDefinition
    from ..tariffs.price_index import KIND_LOAD_PROFILE, KIND_PRICE_INDEX
    from ..utility.deliveries import coin_toss_json
    from ..utility.reverify.dr import DRStore
    from ..utility.reverify.fraud import FraudStore
    from ..utility.settlement import SettlementStore

    out = OutputsDelivered()
    grid = remote.grid

    def ref(kind: str, body: bytes) -> None:
        try:
            grid.push_reference(kind, body)
        except PushError as exc:
            raise RemoteError(f"{remote.server}: {kind}: {exc}") from None
        out.references += 1

    def output(kind: str, what: str, body: bytes, supplier: str | None = None) -> None:
        client = grid if supplier is None else remote.supplier(supplier)
        try:
            v = client.push_output(kind, body)
        except PushError as exc:
            raise RemoteError(f"{remote.server}: {kind} of {what}: {exc}") from None
        if not v["verified"]:
            raise RemoteError(f"{remote.server}: {kind} of {what} rejected: {v['reason']}")
        out.verified[kind] = out.verified.get(kind, 0) + 1

    store = SettlementStore(data_dir / "settlement.sqlite", create=False)
    try:
        for kind in (KIND_PRICE_INDEX, KIND_LOAD_PROFILE):
            for raw in store.series(kind):
                ref(kind, raw)
        customers = store.customers()
        for mid, _pf, _pt, body in store.statements("settlement"):
            output("settlement", mid, body, supplier=customers[mid][0])
        for mid, _pf, _pt, body in store.statements("scores"):
            output("scores", mid, body)
        for mid, pf, pt, body in store.statements("samples"):
            coin = store.coin(mid, pf, pt)
            if coin is None or not coin[3]:
                raise RemoteError(f"{mid}: samples without a completed coin toss in the demo's store")
            ref("coin-toss", coin_toss_json(mid, pf, pt, coin[0], coin[2], coin[1], coin[3]))
            output("samples", mid, body)
    finally:
        store.close()
    if (data_dir / "dr.sqlite").exists():
        dr = DRStore(data_dir / "dr.sqlite")
        try:
            for ev in dr.events():
                ref("dr-event", ev.to_bytes())
            for mid, eid, raw in dr.releases():
                output("dr-release", f"{mid} {eid}", raw)
        finally:
            dr.close()
    if (data_dir / "fraud.sqlite").exists():
        fs = FraudStore(data_dir / "fraud.sqlite")
        try:
            groups = {gid: GroupDefinition.from_bytes(bytes(body)) for gid, body in fs.rows("groups")}
            for g in groups.values():
                ref("aggregation-group", g.to_bytes())
            got: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}
            for gid, day, mid, kind, body in fs.rows("releases"):
                got.setdefault((gid, day), {}).setdefault(kind, {})[mid] = bytes(body)
            for (gid, day), kinds in sorted(got.items()):
                rel, rec = kinds.get("release", {}), kinds.get("recovery", {})
                if rel and set(rel) != groups[gid].meter_ids and not rec:
                    continue  # the hubs refused the recovery: no sum that day (as `utility fraud`)
                body = json.dumps({"group_id": gid, "day": day, "releases": [b.hex() for _, b in sorted(rel.items())],
                                   "recoveries": [b.hex() for _, b in sorted(rec.items())]}).encode()
                output("feeder-day", f"{gid} {day}", body)
        finally:
            fs.close()
    return out
