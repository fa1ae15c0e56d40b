"""The demo's daily-operations events (``meterhub demo --events``).

One metering point over June 2027, in a scratch directory (nothing is kept), billed
THROUGH the hub's card and its privacy guard (docs/privacy.md, "Split periods" and
"Gaps and corrections"): the customer's signed policy declares the supplier switch on
the 17th as a split day; the supplier's tariff change on the 10th splits the month once
more when the card accepts the new tariff; the 5th is lost on the link, so the card
releases the first piece as bill parts with the missing day listed, the utility bills
it with a substitute value (register interpolation), and the card's one correction for
that piece corrects it when the day arrives late (:mod:`meterhub.utility.invoices`). The
new supplier bills its piece from its own billing applet instance. Every figure is
verified against the meter-signed commitments. See docs/billing-operations.md.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..crypto import ecdsa
from ..hub.secure_element import (
    BILLING_APP_AID,
    BILLING_MODULE_AID,
    BILLING_PACKAGE_AID,
    SUPPLIER_SD_AID,
    BillingClient,
    billing_load_file,
    demo_dap_key,
    demo_scp03_keys,
    open_hub_card,
)
from ..meter.device import Meter
from ..model.display import format_amount
from ..model.formats.units import encode_records
from ..model.formats.upload import DayUpload
from ..model.timebase import day_starts
from ..policy import default_policy
from ..tariffs import Tariff, demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from ..utility.contracts import Contract, TariffPeriod, segments_for, split_period
from ..utility.invoices import InvoiceStore, make_period_bill
from ..utility.store import UtilityStore
from ..utility.tsm import TSM, dap_signer

__all__ = ["run_events", "format_events"]

TZ = "Europe/Berlin"
MALO = "51238696781"
START = date(2027, 6, 1)
DAYS = 30  # the whole month: the card releases whole pieces of the customer's cycle
LOST_DAY = 5
#: The new supplier's billing applet instance (from the load file already on the card).
BETA_APP_AID = BILLING_APP_AID[:-2] + "02"


def _d(n: int) -> date:
    return START + timedelta(days=n - 1)


def _tsm(card: Any) -> TSM:
    return TSM(card.transmit, demo_scp03_keys("supplier"), sd_aid=SUPPLIER_SD_AID,
               dap=dap_signer(SUPPLIER_SD_AID, demo_dap_key("supplier")))


def run_events(seed: int) -> dict[str, Any]:
    """Run the scenario; returns the report (also the ``events`` part of the demo's JSON)."""
    rng = random.Random(seed)
    meter = Meter("m-events", ecdsa.generate_signing_key(), register_wh=0)
    days = [meter.record_day(_d(n), [rng.randint(0, 350) for _ in day_starts(_d(n), TZ, 15)])
            for n in range(1, DAYS + 1)]
    tou1 = example_tariff(2027)
    t1 = sign_tariff(tou1, demo_supplier_key())
    d2 = example_tariff(2027).to_dict()
    for b in d2["bands"]:
        b["price"] += 20
    base2 = Tariff.from_dict(d2)
    # The new prices take effect on the 10th (the holidays before it leave the tariff).
    t2 = sign_tariff(dataclasses.replace(base2, version=2, valid_from=_d(10),
                                         holidays=frozenset(h for h in base2.holidays if h >= _d(10))),
                     demo_supplier_key())
    alpha = Contract("VK-ALPHA-1", "alpha", MALO, _d(1), _d(16))
    beta = Contract("VK-BETA-7", "beta", MALO, _d(17))
    tariffs = [TariffPeriod(alpha.contract_id, _d(1), t1.tariff.tariff_id, 1),
               TariffPeriod(alpha.contract_id, _d(10), t2.tariff.tariff_id, 2),
               TariffPeriod(beta.contract_id, _d(17), t1.tariff.tariff_id, 1)]
    segments, vacant = split_period(_d(1), _d(DAYS), [alpha, beta], tariffs)
    # The customer declares the switch in the signed release policy; the card's guard
    # splits the month there and at the tariff change, and nowhere else.
    # Each release of per-band sums costs one functional per band: five releases this
    # month (two parts around the gap, the correction, the piece after the tariff change,
    # the new supplier's piece) need more than the default 16, so this customer signs the
    # hard limit of 32 (docs/privacy.md, "Split periods").
    policy = default_policy(anchor=START, splits=(beta.start,), budget={"functionals_per_period": 32})

    def line(bill: Any, version: int) -> dict[str, Any]:
        return {
            "contract_id": bill.contract_id, "period_from": bill.period_from.isoformat(),
            "period_to": bill.period_to.isoformat(), "tariff_version": bill.tariff_version,
            "version": version, "status": bill.status, "energy_wh": bill.energy_wh,
            "estimated_wh": bill.estimated_wh, "total": bill.total,
            "amount": format_amount(bill.total, bill.subunits_per_unit, bill.currency),
            "estimates": [e.to_dict() for e in bill.estimates],
            "registers_wh": list(bill.registers) if bill.registers else None,
        }

    out: dict[str, Any] = {
        "metering_point": MALO, "period_from": _d(1).isoformat(), "period_to": _d(DAYS).isoformat(),
        "tariff_change": _d(10).isoformat(), "supplier_switch": _d(17).isoformat(),
        "lost_day": _d(LOST_DAY).isoformat(), "vacant": [[a.isoformat(), b.isoformat()] for a, b in vacant],
        "segments": [], "correction": None, "through_card": True,
    }
    with tempfile.TemporaryDirectory(prefix="meterhub-events-") as tmp:
        card = open_hub_card(Path(tmp) / "hub.sqlite", issuer_keys=demo_scp03_keys("issuer"),
                             supplier_keys=demo_scp03_keys("supplier"),
                             supplier_dap=demo_dap_key("supplier").public_key(), policy=policy)
        u = UtilityStore(Path(tmp) / "utility.sqlite")
        inv = InvoiceStore(Path(tmp) / "invoices.sqlite")
        try:
            with _tsm(card) as t:
                t.deploy(billing_load_file(), BILLING_APP_AID, params=ecdsa.public_bytes(demo_supplier_key()))
                t.install(BILLING_PACKAGE_AID, BILLING_MODULE_AID, BETA_APP_AID,
                          params=ecdsa.public_bytes(demo_supplier_key()))
                t.push_tariff(BILLING_APP_AID, dump_tariff(t1))
                t.push_tariff(BETA_APP_AID, dump_tariff(t1))
            hub_a, hub_b = BillingClient(card.transmit, BILLING_APP_AID), BillingClient(card.transmit, BETA_APP_AID)
            for c in (hub_a, hub_b):
                c.select()
                c.pair(meter.meter_id, TZ, 15, bytes(16))
            for k, d in enumerate(days, 1):
                if k == 6:  # alpha announces the new prices, from the 10th
                    with _tsm(card) as t:
                        t.push_tariff(BILLING_APP_AID, dump_tariff(t2))
                if k < beta.start.day and k != LOST_DAY:  # the 5th is lost on the link
                    hub_a.select()
                    hub_a.put_openings(d.batch.batch.day, d.first_index, d.openings)
                elif k >= beta.start.day:
                    hub_b.select()
                    hub_b.put_openings(d.batch.batch.day, d.first_index, d.openings)
            for signed in (t1, t2):
                u.add_tariff(signed, dump_tariff(signed))
            u.register_meter(meter.meter_id, meter.public_key_bytes, TZ, 15, tariff=t1)
            for k, d in enumerate(days, 1):
                if k != LOST_DAY:  # lost on the link, delivered later
                    assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
            first = segments[0]
            hub_a.select()
            released = hub_a.banded_bill_parts(first.period_from, first.period_to, MALO, first.contract.contract_id)
            kw: dict[str, Any] = dict(meter_id=meter.meter_id, metering_point=MALO, contract_id=first.contract.contract_id,
                      period_from=first.period_from, period_to=first.period_to,
                      tariff_key=(first.tariff_id, first.tariff_version))
            est = make_period_bill(u, released.parts, **kw)
            v1, _ = inv.record(est)
            late = days[LOST_DAY - 1]
            hub_a.put_openings(late.batch.batch.day, late.first_index, late.openings)
            assert u.ingest_day(DayUpload(late.batch, encode_records(late.first_index, late.commitments))).accepted
            fix = hub_a.banded_bill_parts(first.period_from, first.period_to, MALO, first.contract.contract_id,
                                          correction=True)
            fixed = make_period_bill(u, [*released.parts, *fix.parts], **kw)
            v2, corr = inv.record(fixed)
            out["segments"].append({"supplier": first.contract.supplier, "bills": [line(est, v1), line(fixed, v2)]})
            assert corr is not None
            out["correction"] = {"energy_wh": corr.energy_wh, "total": corr.total, "corrects_release": fix.corrects,
                                 "amount": format_amount(abs(corr.total), fixed.subunits_per_unit, fixed.currency),
                                 "sign": "+" if corr.total >= 0 else "-"}
            for seg in segments[1:]:
                hub = hub_b if seg.contract is beta else hub_a
                hub.select()
                rel = hub.banded_bill_parts(seg.period_from, seg.period_to, MALO, seg.contract.contract_id)
                bill = make_period_bill(
                    u, rel.parts, meter_id=meter.meter_id, metering_point=MALO,
                    contract_id=seg.contract.contract_id, period_from=seg.period_from,
                    period_to=seg.period_to, tariff_key=(seg.tariff_id, seg.tariff_version))
                v, _ = inv.record(bill)
                out["segments"].append({"supplier": seg.contract.supplier, "bills": [line(bill, v)]})
        finally:
            inv.close()
            u.close()
            card.close()
    out["segments_per_supplier"] = {s: len(segments_for(s, segments)) for s in ("alpha", "beta")}
    out["all_verified"] = all(seg["bills"][-1]["status"] == "verified" for seg in out["segments"])
    out["readings_wh"] = sum(o.m for d in days for o in d.openings)
    return out


def format_events(ev: dict[str, Any]) -> str:
    """The events section of the demo's text output."""
    lines = [
        f"Daily operations (metering point {ev['metering_point']}, {ev['period_from']}..{ev['period_to']}): "
        f"tariff change on {ev['tariff_change']}, supplier switch on {ev['supplier_switch']}, "
        f"day {ev['lost_day']} lost and delivered late; every bill released through the hub's card and its guard",
    ]
    for seg in ev["segments"]:
        for b in seg["bills"]:
            est = ""
            if b["estimates"]:
                e = b["estimates"][0]
                est = f" (estimated {e['period_from']}: {e['energy_wh'] / 1000:.3f} kWh by {e['method']})"
            lines.append(
                f"  {seg['supplier']:<6} {b['contract_id']:<11} {b['period_from']}..{b['period_to']} tariff "
                f"v{b['tariff_version']} bill v{b['version']}: {b['status']:<9} {b['energy_wh'] / 1000:8.3f} kWh "
                f"{b['amount']}{est}"
            )
    c = ev["correction"]
    lines.append(f"  correction of the estimate: {c['energy_wh'] / 1000:+.3f} kWh, {c['sign']}{c['amount']} "
                 f"(the card's one correction of release #{c['corrects_release']})")
    per = ", ".join(f"{s}: {n} segment(s)" for s, n in ev["segments_per_supplier"].items())
    lines.append(f"  each supplier receives only its own segments ({per}); all verified: {ev['all_verified']}")
    return "\n".join(lines)
