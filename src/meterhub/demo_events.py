"""The demo's daily-operations events (``meterhub demo --events``).

One metering point over 20 days of June 2027, in a scratch directory (nothing is
kept): a tariff change on the 10th and a supplier switch on the 17th split the
period into three contract segments (:mod:`meterhub.utility.contracts`); the
5th is lost on the link, so the first segment is billed with a substitute value
(register interpolation) and corrected when the day arrives late
(:mod:`meterhub.utility.invoices`). Every figure is verified against the
meter-signed commitments. See docs/billing-operations.md.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .crypto import ecdsa
from .exchange import DayUpload, encode_records
from .hub.billing import banded_statement
from .meter.device import Meter
from .model.display import format_amount
from .model.timebase import day_starts
from .tariffs import demo_supplier_key, dump_tariff, example_tariff, sign_tariff
from .utility.contracts import Contract, TariffPeriod, segments_for, split_period
from .utility.invoices import InvoiceStore, make_period_bill
from .utility.store import UtilityStore

__all__ = ["run_events", "format_events"]

TZ = "Europe/Berlin"
MALO = "51238696781"
START = date(2027, 6, 1)
DAYS = 20
LOST_DAY = 5


def _d(n: int) -> date:
    return START + timedelta(days=n - 1)


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
    tou2 = dataclasses.replace(example_tariff(2027).from_dict(d2), version=2)
    t2 = sign_tariff(tou2, demo_supplier_key())
    alpha = Contract("VK-ALPHA-1", "alpha", MALO, _d(1), _d(16))
    beta = Contract("VK-BETA-7", "beta", MALO, _d(17))
    tariffs = [TariffPeriod(alpha.contract_id, _d(1), t1.tariff.tariff_id, 1),
               TariffPeriod(alpha.contract_id, _d(10), t2.tariff.tariff_id, 2),
               TariffPeriod(beta.contract_id, _d(17), t1.tariff.tariff_id, 1)]
    segments, vacant = split_period(_d(1), _d(DAYS), [alpha, beta], tariffs)
    by_version = {1: tou1, 2: tou2}

    def statement(first: int, last: int, seg: Any) -> Any:
        part = days[first - 1 : last]
        return banded_statement(
            meter_id=meter.meter_id, metering_point=MALO, contract_id=seg.contract.contract_id,
            tariff=by_version[seg.tariff_version], period_from=_d(first), period_to=_d(last),
            first_index=part[0].first_index, tz=TZ, interval_minutes=15,
            openings=[o for d in part for o in d.openings],
        )

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
        "segments": [], "correction": None,
    }
    with tempfile.TemporaryDirectory(prefix="meterhub-events-") as tmp:
        u = UtilityStore(Path(tmp) / "utility.sqlite")
        inv = InvoiceStore(Path(tmp) / "invoices.sqlite")
        try:
            for t in (t1, t2):
                u.add_tariff(t, dump_tariff(t))
            u.register_meter(meter.meter_id, meter.public_key_bytes, TZ, 15, tariff=t1)
            for k, d in enumerate(days, 1):
                if k != LOST_DAY:  # lost on the link, delivered later
                    assert u.ingest_day(DayUpload(d.batch, encode_records(d.first_index, d.commitments))).accepted
            first = segments[0]
            parts = [statement(1, LOST_DAY - 1, first), statement(LOST_DAY + 1, first.period_to.day, first)]
            kw: dict[str, Any] = dict(meter_id=meter.meter_id, metering_point=MALO, contract_id=first.contract.contract_id,
                      period_from=first.period_from, period_to=first.period_to,
                      tariff_key=(first.tariff_id, first.tariff_version))
            est = make_period_bill(u, parts, **kw)
            v1, _ = inv.record(est)
            late = days[LOST_DAY - 1]
            assert u.ingest_day(DayUpload(late.batch, encode_records(late.first_index, late.commitments))).accepted
            fixed = make_period_bill(u, [*parts, statement(LOST_DAY, LOST_DAY, first)], **kw)
            v2, corr = inv.record(fixed)
            out["segments"].append({"supplier": first.contract.supplier, "bills": [line(est, v1), line(fixed, v2)]})
            assert corr is not None
            out["correction"] = {"energy_wh": corr.energy_wh, "total": corr.total,
                                 "amount": format_amount(abs(corr.total), fixed.subunits_per_unit, fixed.currency),
                                 "sign": "+" if corr.total >= 0 else "-"}
            for seg in segments[1:]:
                bill = make_period_bill(
                    u, [statement(seg.period_from.day, seg.period_to.day, seg)], meter_id=meter.meter_id,
                    metering_point=MALO, contract_id=seg.contract.contract_id, period_from=seg.period_from,
                    period_to=seg.period_to, tariff_key=(seg.tariff_id, seg.tariff_version))
                v, _ = inv.record(bill)
                out["segments"].append({"supplier": seg.contract.supplier, "bills": [line(bill, v)]})
        finally:
            inv.close()
            u.close()
    out["segments_per_supplier"] = {s: len(segments_for(s, segments)) for s in ("alpha", "beta")}
    out["all_verified"] = all(seg["bills"][-1]["status"] == "verified" for seg in out["segments"])
    out["readings_wh"] = sum(o.m for d in days for o in d.openings)
    return out


def format_events(ev: dict[str, Any]) -> str:
    """The events section of the demo's text output."""
    lines = [
        f"Daily operations (metering point {ev['metering_point']}, {ev['period_from']}..{ev['period_to']}): "
        f"tariff change on {ev['tariff_change']}, supplier switch on {ev['supplier_switch']}, "
        f"day {ev['lost_day']} lost and delivered late",
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
    lines.append(f"  correction of the estimate: {c['energy_wh'] / 1000:+.3f} kWh, {c['sign']}{c['amount']}")
    per = ", ".join(f"{s}: {n} segment(s)" for s, n in ev["segments_per_supplier"].items())
    lines.append(f"  each supplier receives only its own segments ({per}); all verified: {ev['all_verified']}")
    return "\n".join(lines)
