"""The privacy guard's cost per release, against the same release without it.

One customer, one month (April 2027, 2,880 15-minute readings). Each run builds two
fresh hub cards (a release can happen only once per period, so every run needs a
card that has not released yet; building and feeding them is not timed) and times one
release on each, alternating A, B, A, B:

* **A (guarded)**: the settlement applet under the supplier's SD, its index checked
  against the customer's pinned publisher, the request through the guard (entitlement,
  whole period, one release per period, overlap scan, budget; statement, log entry,
  index, budget and chain head in one card transaction; output gate), fetched in
  chunks over SCP03 level 33;
* **B (baseline)**: the same applet code without the guard, as before issue 11: it
  computes the same statement, keeps it in its own outbox and answers the same chunks
  over the same SCP03 session; the card has no guard, so no gate.

The same pair for a monthly bill (GET BILL on the plain channel, 2,880 readings).
Also reported: a re-ask on the guarded card (the stored statement, byte for byte).

Run: .venv/bin/python benchmarks/bench_guard.py [--runs N]   (N >= 5, default 7)
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from _bench import header, row
from meterhub.applets.billing import BillingApplet
from meterhub.applets.readings import parse_date
from meterhub.applets.settlement import SettlementApplet, install_series
from meterhub.card import register_applet_class
from meterhub.card.gp import open_card, provision_isd, provision_ssd
from meterhub.crypto import ecdsa
from meterhub.crypto.group import Q
from meterhub.crypto.pedersen import Opening
from meterhub.demo.hubs import demo_tsm, open_demo_hub
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    SETTLEMENT_APP_AID,
    SUPPLIER_SD_AID,
    BillingClient,
    ReadingsClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    settlement_load_file,
)
from meterhub.model.timebase import range_starts
from meterhub.protocols.iso7816.sw import SW, ISOException
from meterhub.tariffs import (
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    load_tariff,
    verify_tariff,
)
from meterhub.tariffs.price_index import (
    KIND_PRICE_INDEX,
    demo_index_publisher_key,
    example_price_index,
    sign_series,
)
from meterhub.utility.settlement import AppletMailbox, settlement_request

START = date(2027, 4, 1)
DAYS = 30
LAST = START + timedelta(days=DAYS - 1)
TZ = "Europe/Berlin"


class UnguardedSettlement(SettlementApplet):
    """Baseline only (never deployed by meterhub): the pre-guard release path."""

    def signer_keys(self) -> list[bytes]:
        return [ecdsa.public_bytes(demo_index_publisher_key())]

    def process_data(self, apdu):  # type: ignore[no-untyped-def]
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x02:
            out = self._settle(body)
            self.ctx.store.put(b"outbox", out)
            return len(out).to_bytes(4, "big") + out[:224]
        if kind == 0x03:
            out = self.ctx.store.get(b"outbox") or b""
            off = int.from_bytes(body, "big")
            return len(out).to_bytes(4, "big") + out[off : off + 224]
        install_series(self.rs, body, self.signer_keys(), KIND_PRICE_INDEX, self._slot_of(body))
        return b""


class UnguardedBilling(BillingApplet):
    """Baseline only: GET BILL computed and answered without the guard."""

    def _install_tariff(self, raw: bytes) -> None:
        verify_tariff(load_tariff(raw), demo_supplier_key().public_key())
        self.ctx.store.put(b"tariff", raw)

    def get_bill(self, apdu):  # type: ignore[no-untyped-def]
        meter_id, tz, interval, _ = self.rs.pairing()
        first, last = parse_date(bytes(apdu.data[:4])), parse_date(bytes(apdu.data[4:]))
        raw = self.ctx.store.get(b"tariff")
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no tariff")
        return self._compute_bill(raw, meter_id, tz, interval, first, last)


register_applet_class("bench.unguarded-settlement/1", UnguardedSettlement)
register_applet_class("bench.unguarded-billing/1", UnguardedBilling)


def month(rng: random.Random) -> list[tuple[date, int, list[Opening]]]:
    out, first = [], 0
    for d in range(DAYS):
        day = START + timedelta(days=d)
        n = len(range_starts(day, 1, TZ, 15))
        out.append((day, first, [Opening(rng.randrange(0, 400), rng.randrange(1, Q)) for _ in range(n)]))
        first += n
    return out


def _feed(card, aid: str, days) -> None:  # type: ignore[no-untyped-def]
    rc = ReadingsClient(card.transmit, aid)
    rc.select()
    rc.pair("bench", TZ, 15)
    for day, first, openings in days:
        rc.put_openings(day, first, openings)


def guarded(tmp: Path, n: int, days, index) -> object:  # type: ignore[no-untyped-def]
    card = open_demo_hub(tmp / f"a{n}.sqlite")
    with demo_tsm(card, "supplier") as t:
        t.deploy(settlement_load_file(), SETTLEMENT_APP_AID)
        AppletMailbox(t, SETTLEMENT_APP_AID).push_series(index)
        t.deploy(billing_load_file(), BILLING_APP_AID)
        t.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
    _feed(card, SETTLEMENT_APP_AID, days)
    _feed(card, BILLING_APP_AID, days)
    return card


def unguarded(tmp: Path, n: int, days, index) -> object:  # type: ignore[no-untyped-def]
    card = open_card(str(tmp / f"b{n}.sqlite"))
    provision_isd(card, [demo_scp03_keys("issuer")])
    provision_ssd(card, SUPPLIER_SD_AID, [demo_scp03_keys("supplier")], dap_key=demo_dap_key("supplier").public_key())
    card.registry.install_applet(UnguardedSettlement, SETTLEMENT_APP_AID, sd_aid=SUPPLIER_SD_AID)
    card.registry.install_applet(UnguardedBilling, BILLING_APP_AID, sd_aid=SUPPLIER_SD_AID)
    card.power_on()
    with demo_tsm(card, "supplier") as t:
        AppletMailbox(t, SETTLEMENT_APP_AID).push_series(index)
        t.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
    _feed(card, SETTLEMENT_APP_AID, days)
    _feed(card, BILLING_APP_AID, days)
    return card


def timed(fn: Callable[[], bytes]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    runs = max(5, ap.parse_args().runs)
    header(f"privacy guard: cost per release, one month of 15-minute readings, {runs} runs A/B alternating")
    rng = random.Random(11)
    days = month(rng)
    index = sign_series(example_price_index(START, DAYS), demo_index_publisher_key())
    req = settlement_request(START, LAST, index.series.series_id, 1)
    t = {"sA": [], "sB": [], "bA": [], "bB": [], "again": []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in range(runs):
            for variant, build in (("A", guarded), ("B", unguarded)):
                card = build(tmp, n, days, index)
                tsm = demo_tsm(card, "supplier").open()
                mb = AppletMailbox(tsm, SETTLEMENT_APP_AID)
                dt, st = timed(lambda mb=mb: mb.request(req, "settlement"))
                t["s" + variant].append(dt)
                if variant == "A":
                    dt2, again = timed(lambda mb=mb: mb.request(req, "settlement"))
                    assert again == st  # the stored statement, byte for byte
                    t["again"].append(dt2)
                client = BillingClient(card.transmit)
                client.select()
                dt, bill = timed(lambda client=client: client.bill(START, LAST))
                assert bill.period_to == LAST and bill.count == 2880
                t["b" + variant].append(dt)
                card.close()
    med = {k: statistics.median(v) for k, v in t.items()}
    row("settlement statement, guarded (A)", f"{med['sA'] * 1e3:.2f} ms",
        f"without the guard (B) {med['sB'] * 1e3:.2f} ms: A/B = {med['sA'] / med['sB']:.2f}x, "
        f"guard {1e3 * (med['sA'] - med['sB']):+.2f} ms per release (medians of {runs})")
    row("monthly bill (GET BILL, plain channel), guarded (A)", f"{med['bA'] * 1e3:.2f} ms",
        f"without the guard (B) {med['bB'] * 1e3:.2f} ms: A/B = {med['bA'] / med['bB']:.2f}x, "
        f"guard {1e3 * (med['bA'] - med['bB']):+.2f} ms per release (medians of {runs})")
    row("settlement re-ask on the guarded card (stored bytes)", f"{med['again'] * 1e3:.2f} ms",
        f"vs computing it without the guard {med['sB'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
