"""MSCONS for aggregated billing quantities (docs/billing-operations.md, "MSCONS").

Market communication in Germany exchanges metered quantities as UN/EDIFACT
MSCONS (BDEW "MSCONS Anwendungshandbuch", D.04B, association code 2.4c). This
module writes one MSCONS message per period bill, holding **only what the bill
already holds**: per tariff band the period's energy (what a time-of-use meter
shows as its 1.8.1, 1.8.2, ... registers) and the period total (1.8.0), never an
interval value, so it sends no finer data than the verified statements the hub
released. Serialisation is ``pydifact`` (MIT), the maintained EDIFACT library.

Segments per message: ``UNH`` (MSCONS:D:04B:UN:2.4c), ``BGM+7`` (process data
report) with the document number, ``DTM+137`` (document date, format 303),
``NAD+MS``/``NAD+MR`` (sender and recipient market partner ids, code list 293 =
BDEW), ``UNS+D``, ``NAD+DP``, ``LOC+172`` (the metering point: MaLo-ID), then per
register a ``LIN``, ``PIA+5`` (OBIS code, ``SRW``), ``QTY`` and the period's
``DTM+163``/``DTM+164`` (start/end, format 303, local midnight). The quantity
qualifier is ``220`` (true value) for a fully verified quantity and ``67``
(substitute value, "Ersatzwert") when any of it was estimated.

Limits: the BDEW implementation guide has further conditional segments (``RFF``,
``CCI``, ``STS`` status codes) and prüfidentifikatoren that a certified market
communication gateway adds; this writer covers the quantities only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from pydifact.segmentcollection import Interchange, Message
from pydifact.segments import Segment

from ..model.ids import is_malo

__all__ = ["mscons_for_bills", "QTY_TRUE", "QTY_SUBSTITUTE"]

QTY_TRUE = "220"
QTY_SUBSTITUTE = "67"


def _dtm(qualifier: str, day: dt.date, tz: str) -> Segment:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
    off = start.utcoffset() or dt.timedelta(0)
    hours = int(off.total_seconds() // 3600)
    return Segment("DTM", [qualifier, f"{start:%Y%m%d%H%M}{'+' if hours >= 0 else '-'}{abs(hours):02d}", "303"])


def _kwh(wh: int) -> str:
    return f"{wh // 1000}.{wh % 1000:03d}"


def mscons_for_bills(
    bills: Sequence[dict[str, Any]],
    *,
    sender: str,
    recipient: str,
    control_reference: str,
    now: dt.datetime,
    tz: str = "Europe/Berlin",
) -> str:
    """One interchange with one MSCONS message per period bill (``PeriodBill.to_dict()``
    or an ``InvoiceStore.history()`` row). ``sender``/``recipient`` are 13-digit BDEW
    market partner ids. Bills must name a MaLo-ID (MSCONS addresses market locations)."""
    for p in (sender, recipient):
        if len(p) != 13 or not p.isascii() or not p.isdigit():
            raise ValueError(f"market partner id {p!r:.20} must be 13 digits")
    ic = Interchange(sender=[sender, "500"], recipient=[recipient, "500"], control_reference=control_reference,
                     syntax_identifier=("UNOC", 3), timestamp=now)
    for n, b in enumerate(bills, 1):
        if not is_malo(b["metering_point"]):
            raise ValueError(f"bill {n}: MSCONS needs a MaLo-ID, not {b['metering_point']!r:.40}")
        pf, pt = dt.date.fromisoformat(b["period_from"]), dt.date.fromisoformat(b["period_to"])
        end = pt + dt.timedelta(days=1)
        m = Message(f"{control_reference}{n:04d}"[-14:], ["MSCONS", "D", "04B", "UN", "2.4c"])
        m.add_segment(Segment("BGM", "7", f"{control_reference}-{n}", "9"))
        m.add_segment(Segment("DTM", ["137", f"{now:%Y%m%d%H%M}+00", "303"]))
        m.add_segment(Segment("NAD", "MS", [sender, "", "293"]))
        m.add_segment(Segment("NAD", "MR", [recipient, "", "293"]))
        m.add_segment(Segment("UNS", "D"))
        m.add_segment(Segment("NAD", "DP"))
        m.add_segment(Segment("LOC", "172", b["metering_point"]))
        lines = [(f"1-0:1.8.{k}", line["energy_wh"], line["estimated_wh"])
                 for k, line in enumerate(b["bands"], 1)]
        lines.append(("1-0:1.8.0", b["energy_wh"], b["estimated_wh"]))
        for k, (obis, wh, est) in enumerate(lines, 1):
            m.add_segment(Segment("LIN", str(k)))
            m.add_segment(Segment("PIA", "5", [obis, "SRW"]))
            m.add_segment(Segment("QTY", [QTY_SUBSTITUTE if est else QTY_TRUE, _kwh(wh), "KWH"]))
            m.add_segment(_dtm("163", pf, tz))
            m.add_segment(_dtm("164", end, tz))
        ic.add_message(m)
    return ic.serialize()
