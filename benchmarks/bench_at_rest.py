"""What sealing the hub host's store at rest costs (docs/privacy.md "Secrets and readings
at rest"), against the same store without sealing, in the same run.

One meter, one month (30 days of 96 15-minute openings, 36 bytes each):

* **write**: store the month's 30 days (one SQLite transaction per day, WAL,
  ``synchronous=FULL``), after deleting the previous run's rows;
* **read**: the month's openings as ``hub bill`` reads them (``HubStore.openings``).

A (sealed): :class:`meterhub.hub.store.HubStore` as shipped, each day's blob sealed with
AES-256-GCM bound to its row. B (baseline): the same class and schema with the sealing
replaced by the identity, i.e. the store as it was before (plain blobs). Variants
alternate A, B, A, B; medians of ``--runs`` runs (>= 5).

Run: .venv/bin/python benchmarks/bench_at_rest.py [--runs N]   (default 7)
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from datetime import date, timedelta
from pathlib import Path

from _bench import alternate, header, row
from meterhub.crypto.pedersen import Opening
from meterhub.hub.store import HubStore


class _Plain:
    """Baseline: no sealing (the identity), same call shape as SealedColumns."""

    def seal(self, table: str, column: str, row: str, value: bytes) -> bytes:
        return value

    def open(self, table: str, column: str, row: str, stored: bytes) -> bytes:
        return bytes(stored)


def _month() -> list[tuple[date, int, list[Opening]]]:
    start = date(2027, 4, 1)
    out = []
    for d in range(30):
        ops = [Opening(secrets.randbelow(2000), secrets.randbits(252)) for _ in range(96)]
        out.append((start + timedelta(days=d), 96 * d, ops))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per variant (default: 7, at least 5)")
    args = ap.parse_args()
    header(f"hub host store sealed at rest: one month (30 days x 96 openings), {args.runs} runs A/B alternating")
    month = _month()
    first, last = month[0][0], month[-1][0]
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for name in ("sealed", "plain"):
            hub = HubStore(Path(tmp) / f"{name}.sqlite")
            if name == "plain":
                hub._seal = _Plain()  # type: ignore[assignment]  # the baseline
            hub.pair_meter("M1", bytes(16), "Europe/Berlin", 15)
            stores[name] = hub

        def write(hub: HubStore) -> None:
            hub.conn.execute("DELETE FROM openings")
            for day, fi, ops in month:
                hub.store_openings("M1", day, fi, ops)

        def read(hub: HubStore) -> None:
            hub.openings("M1", first, last)

        w = alternate({n: (lambda h=h: write(h)) for n, h in stores.items()}, runs=args.runs)
        r = alternate({n: (lambda h=h: read(h)) for n, h in stores.items()}, runs=args.runs, number=5)
        for hub in stores.values():
            hub.close()
    for what, t in (("write the month", w), ("read the month", r)):
        a, b = t["sealed"], t["plain"]
        row(f"{what}, sealed (A)", f"{a.median * 1e3:.2f} ms", f"{a.cpu_ms()}, {a.note}")
        row(f"{what}, unsealed baseline (B)", f"{b.median * 1e3:.2f} ms", f"{b.cpu_ms()}, {b.note}")
        row(f"{what}: A/B", f"{a.median / b.median:.2f}x", f"CPU {a.cpu_median / b.cpu_median:.2f}x")


if __name__ == "__main__":
    main()
