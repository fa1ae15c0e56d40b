"""The hub's secure element: SCP03 round trips, a full applet install, and billing inside
the card runtime (issue 3).

Each figure is printed next to a baseline timed in the same run:
- SCP03 at level 33 (C-MAC, C-DEC, R-MAC, R-ENC) vs the same APDU without a secure channel;
- a full install over SCP03 (authenticate, INSTALL [for load], LOAD, INSTALL [for install])
  vs registering the same applet directly in the registry (no GlobalPlatform);
- a monthly bill (2,880 readings) computed by the billing applet through APDUs, through the
  privacy guard (checks, the statement and its log entry in one card transaction), vs the
  same computation called directly (the runtime's overhead), target <= 5 ms. The guard
  releases one bill per billing period, so each of the 9 timed bills is on a fresh card.

Run: .venv/bin/python benchmarks/bench_card.py
"""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from _bench import alternate, header, row
from meterhub.applets.billing import CLASS_NAME
from meterhub.crypto import ecdsa
from meterhub.hub.billing import bill_statement
from meterhub.hub.secure_element import (
    BILLING_APP_AID,
    SUPPLIER_SD_AID,
    BillingClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from meterhub.meter.device import Meter
from meterhub.model.formats.sealed import new_home_link_key
from meterhub.model.timebase import day_starts
from meterhub.protocols.gp.host import GPClient
from meterhub.protocols.iso7816 import CommandAPDU
from meterhub.tariffs import demo_supplier_key, dump_tariff, example_signed_tariff
from meterhub.utility.tsm import TSM, dap_signer

SUPPLIER = demo_scp03_keys("supplier")
DAP = demo_dap_key("supplier")
START = date(2027, 4, 1)
DAYS = 30


def new_card(tmp: Path, name: str):
    return open_hub_card(
        tmp / f"{name}.sqlite", issuer_keys=demo_scp03_keys("issuer"), supplier_keys=SUPPLIER, supplier_dap=DAP.public_key()
    )


def bench_scp03(tmp: Path) -> None:
    # Two cards, as the variants alternate: an unprotected command in between would end
    # the secure session of the first (its next wrapped command then fails).
    card, plain_card = new_card(tmp, "scp"), new_card(tmp, "plain")
    gp = GPClient(card.transmit)
    gp.select(SUPPLIER_SD_AID)
    GPClient(plain_card.transmit).select(SUPPLIER_SD_AID)
    plain = CommandAPDU(0x80, 0xCA, 0x00, 0x66, le=256).to_bytes()  # GET DATA card recognition data

    def unprotected() -> None:
        plain_card.transmit(plain)

    gp.open(SUPPLIER, 0x33)

    def wrapped() -> None:
        data, sw = gp.send(0xCA, 0x00, 0x66, b"", le=256)
        assert sw == 0x9000

    r = alternate({"scp03": wrapped, "plain": unprotected}, runs=25, number=20)
    a, b = r["scp03"], r["plain"]
    note = f"{a.note} of 20 calls each, alternating"
    row("SCP03 level 33 round trip (GET DATA 0066, in process)", f"{a.median * 1e6:.0f} us",
        f"cpu {a.cpu_median * 1e6:.0f} us; {note}")
    row("  baseline: same APDU without a secure channel", f"{b.median * 1e6:.0f} us",
        f"cpu {b.cpu_median * 1e6:.0f} us; SCP03 costs {a.median / b.median:.1f}x "
        f"(cpu {a.cpu_median / b.cpu_median:.1f}x)")
    card.close()
    plain_card.close()


def bench_install(tmp: Path) -> None:
    lfdb = billing_load_file()
    params = ecdsa.public_bytes(demo_supplier_key())
    n = [0]

    def full_install() -> None:
        n[0] += 1
        card = new_card(tmp, f"inst{n[0]}")
        with TSM(card.transmit, SUPPLIER, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, DAP)) as tsm:
            tsm.deploy(lfdb, BILLING_APP_AID, params=params)
        card.close()

    def direct() -> None:
        n[0] += 1
        card = new_card(tmp, f"dir{n[0]}")
        card.registry.install_applet(CLASS_NAME, BILLING_APP_AID, sd_aid=SUPPLIER_SD_AID, params=params)
        card.close()

    r = alternate({"full": full_install, "direct": direct}, runs=15)
    a, b = r["full"], r["direct"]
    row("full install over SCP03 33 (auth, INSTALL load, LOAD, INSTALL)", f"{a.median * 1e3:.1f} ms",
        f"{a.cpu_ms()}; card opened and provisioned each time; {a.note}")
    row("  baseline: card opened, applet put in the registry directly", f"{b.median * 1e3:.1f} ms",
        f"{b.cpu_ms()}; GlobalPlatform costs {a.median / b.median:.1f}x (cpu {a.cpu_median / b.cpu_median:.1f}x)")


def bench_billing_in_runtime(tmp: Path) -> None:
    rng = random.Random(5)
    meter = Meter("bench", ecdsa.generate_signing_key())
    days = []
    for k in range(DAYS):
        day = START + timedelta(days=k)
        readings = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in day_starts(day, "Europe/Berlin", 15)]
        days.append(meter.record_day(day, readings))
    last = START + timedelta(days=DAYS - 1)
    tariff = example_signed_tariff().tariff
    openings = [o for d in days for o in d.openings]
    st_direct = bill_statement(meter_id="bench", tariff=tariff, period_from=START, period_to=last,
                               first_index=0, prices=tariff.period_prices(START, DAYS, "Europe/Berlin", 15), openings=openings)

    def fresh_applet(n: int) -> tuple[Any, BillingClient]:
        # The privacy guard releases one bill per billing period (a re-ask answers the
        # stored bytes), so each timed bill needs a card that has not billed the month.
        card = new_card(tmp, f"bill{n}")
        with TSM(card.transmit, SUPPLIER, sd_aid=SUPPLIER_SD_AID, dap=dap_signer(SUPPLIER_SD_AID, DAP)) as tsm:
            tsm.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
            tsm.push_tariff(BILLING_APP_AID, dump_tariff(example_signed_tariff()))
        applet = BillingClient(card.transmit)
        applet.select()
        applet.pair("bench", "Europe/Berlin", 15, new_home_link_key())
        for d in days:
            applet.put_openings(d.batch.batch.day, d.first_index, d.openings)
        return card, applet

    def direct() -> None:
        bill_statement(meter_id="bench", tariff=tariff, period_from=START, period_to=last,
                       first_index=0, prices=tariff.period_prices(START, DAYS, "Europe/Berlin", 15), openings=openings)

    # Cards are prepared before timing (one per timed bill plus the warm-up), so the
    # timed call is the bill alone and alternates with the direct computation.
    runs = 9
    pool = [fresh_applet(n) for n in range(runs + 1)]
    used: list[tuple[Any, BillingClient]] = []

    def in_card() -> None:
        card, applet = pool.pop()
        assert applet.bill(START, last) == st_direct
        used.append((card, applet))

    r = alternate({"card": in_card, "direct": direct}, runs=runs)
    for card, _ in used:
        card.close()
    a, b = r["card"], r["direct"]
    row(f"monthly bill in the billing applet ({len(openings)} readings, via APDUs)", a.ms(),
        f"target <= 5 ms; {a.cpu_ms()}; {a.note}, a fresh card each")
    row("  baseline: the same bill computed directly", b.ms(),
        f"{b.cpu_ms()}; runtime overhead {a.median / b.median:.1f}x (cpu {a.cpu_median / b.cpu_median:.1f}x)")


def main() -> int:
    header("bench_card: the hub's secure element (issue 3)")
    with tempfile.TemporaryDirectory(prefix="meterhub-bench-card-") as tmp:
        bench_scp03(Path(tmp))
        bench_install(Path(tmp))
        bench_billing_in_runtime(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
