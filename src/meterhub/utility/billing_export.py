"""Billing export for a back office (docs/billing-operations.md, "Billing export").

Period bills (:class:`meterhub.utility.substitute.PeriodBill`, as stored by
:class:`meterhub.utility.invoices.InvoiceStore`) as

* **CSV** (RFC 4180, UTF-8, ``\\r\\n`` line ends, header row), one line per band and
  bill plus a ``standing`` and a ``total`` line per bill: the long format an
  IS-U-style billing system loads into its billing-document lines;
* **JSON** ``{"format": "meterhub/billing-export/v1", "bills": [...]}`` with each
  bill as stored (every field of the period bill, amounts in sub-units).

Amounts in the CSV are decimal strings in the currency's main unit with all
sub-unit digits (exact integers, no floats); energies in kWh with three
decimals (exact Wh).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["CSV_COLUMNS", "EXPORT_FORMAT", "to_csv", "to_json", "decimal_amount"]

EXPORT_FORMAT = "meterhub/billing-export/v1"
CSV_COLUMNS = (
    "metering_point", "contract_id", "meter_id", "period_from", "period_to", "version", "status",
    "line", "band", "energy_kwh", "estimated_kwh", "price_per_kwh", "amount", "currency",
    "register_start_kwh", "register_end_kwh",
)


def decimal_amount(subunits: int, per_unit: int) -> str:
    """``subunits / per_unit`` exactly, with as many decimals as ``per_unit`` has zeros
    (``per_unit`` is a power of ten, tariffs.md)."""
    digits = len(str(per_unit)) - 1
    sign = "-" if subunits < 0 else ""
    q, r = divmod(abs(subunits), per_unit)
    return f"{sign}{q}.{r:0{digits}d}" if digits else f"{sign}{q}"


def _kwh(wh: int | None) -> str:
    if wh is None:
        return ""
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"


def to_csv(bills: Iterable[dict[str, Any]]) -> str:
    """The CSV export of stored period bills (``InvoiceStore.history()`` rows)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for b in bills:
        per = b["subunits_per_unit"]
        head = [b["metering_point"], b["contract_id"], b["meter_id"], b["period_from"], b["period_to"],
                b.get("version", ""), b["status"]]
        regs = [_kwh(b["register_start_wh"]), _kwh(b["register_end_wh"])]
        for line in b["bands"]:
            w.writerow([*head, "band", line["name"], _kwh(line["energy_wh"]), _kwh(line["estimated_wh"]),
                        decimal_amount(line["price"] * 1000, per), decimal_amount(line["amount"], per),
                        b["currency"], *regs])
        w.writerow([*head, "standing", "", "", "", "", decimal_amount(b["standing_charge"], per),
                    b["currency"], *regs])
        w.writerow([*head, "total", "", _kwh(b["energy_wh"]), _kwh(b["estimated_wh"]), "",
                    decimal_amount(b["total"], per), b["currency"], *regs])
    return out.getvalue()


def to_json(bills: Iterable[dict[str, Any]]) -> str:
    """The JSON export: the stored bills in one document (sorted keys, UTF-8)."""
    return json.dumps({"format": EXPORT_FORMAT, "bills": list(bills)}, sort_keys=True, indent=1)
