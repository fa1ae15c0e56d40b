"""What sealing the hub host's store at rest by the hub card costs (docs/privacy.md
"Secrets and readings at rest"), against the same store without sealing, in the same run.

One meter, one month (30 days of 96 15-minute openings, 36 bytes each):

* **write**: store the month's 30 days (one SQLite transaction per day, WAL,
  ``synchronous=FULL``), after deleting the previous run's rows;
* **read**: the month's openings as ``hub bill`` reads them (``HubStore.openings``).

A (sealed by the card): :class:`meterhub.hub.store.HubStore` as shipped, each day's blob
sealed and opened by the card's storage vault (an extended APDU each way over the host
link, AES-256-GCM bound to its row, the key in the card) on an in-memory emulated card.
B (baseline): the same class and schema with the vault replaced by the identity, i.e. the
store with plain blobs. Variants alternate A, B, A, B; medians of ``--runs`` runs (>= 5).

Run: .venv/bin/python benchmarks/bench_at_rest.py [--runs N]   (default 7)
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
from datetime import date, timedelta
from pathlib import Path

from _bench import alternate, header, row
from meterhub.card import Card
from meterhub.card.vault import provision_vault
from meterhub.crypto.pedersen import Opening
from meterhub.hub.secure_element import VaultClient
from meterhub.hub.store import HubStore


class _Plain:
    """Baseline: no sealing (the identity), same call shape as the card's vault."""

    def key_id(self) -> bytes:
        return b"plain"

    def seal(self, identity: bytes, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, identity: bytes, sealed: bytes) -> bytes:
        return bytes(sealed)


def _card_vault() -> VaultClient:
    card = Card(None)
    provision_vault(card)
    card.power_on()
    return VaultClient(card.transmit)


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
    header(f"hub host store sealed at rest by the hub card: one month (30 days x 96 openings), {args.runs} runs A/B alternating")
    month = _month()
    first, last = month[0][0], month[-1][0]
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for name in ("sealed", "plain"):
            hub = HubStore(Path(tmp) / f"{name}.sqlite", {"M1": _card_vault() if name == "sealed" else _Plain()})
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
