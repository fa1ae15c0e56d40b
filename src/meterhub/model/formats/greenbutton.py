"""Green Button (NAESB REQ.21 ESPI) Atom XML for consented exports of interval data.

The hub's export applet writes a consented period of readings as an ESPI feed that
utilities' and apps' Green Button readers already understand: an Atom ``feed``
(RFC 4287) with one ``UsagePoint``, one ``MeterReading``, one ``ReadingType``
(energy in Wh, ``powerOfTenMultiplier`` 0, delta data, forward flow) and one
``IntervalBlock`` per local day, whose ``IntervalReading``s carry ``timePeriod``
(``start`` in seconds since the epoch, ``duration`` in seconds) and ``value``.

meterhub adds, as Atom extension elements (RFC 4287 §6.4: foreign markup in its own
namespace, which ESPI readers skip), what lets the recipient check every value against
the meter's signed commitments: on the feed ``mh:export`` (meter id, consent id, first
reading index, count of meter intervals, resolution) and on each ``IntervalBlock``
entry ``mh:blindings``, the hex of each value's 32-byte blinding ``sum r_i mod q``
over the meter intervals it covers. With them the recipient verifies
``sum C_i = value*G + blinding*H`` (:mod:`meterhub.utility.export`).

:func:`parse_export` is strict (one document shape, no DTDs, contiguous readings) and
raises :class:`ExportFormatError` only.
"""

from __future__ import annotations

import hashlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ...errors import MeterhubError

__all__ = ["ATOM", "ESPI", "MH", "Export", "ExportFormatError", "ExportReading", "build_export", "parse_export"]

ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"
MH = "urn:meterhub:export:1"
_BASE = "https://hub.invalid/espi/1_1/resource/Subscription/{c}"
MAX_EXPORT = 8 << 20


class ExportFormatError(MeterhubError, ValueError):
    """A document that is not a meterhub Green Button export."""


@dataclass(frozen=True)
class ExportReading:
    start: int  # seconds since the epoch (UTC)
    duration: int  # seconds
    value: int  # Wh
    blinding: int  # sum of the openings' r mod q


@dataclass(frozen=True)
class Export:
    meter_id: str
    consent_id: str
    first_index: int
    count: int  # meter intervals covered
    resolution_minutes: int
    period_from: date
    period_to: date
    readings: tuple[ExportReading, ...]


def _uuid(*parts: str) -> str:
    h = hashlib.sha256(b"meterhub/v1/greenbutton-id\x00" + "\x00".join(parts).encode()).digest()
    return "urn:uuid:" + str(uuid.UUID(bytes=h[:16], version=5))


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrib)
    if text is not None:
        e.text = text
    return e


def _entry(feed: ET.Element, ident: str, title: str, updated: str, links: Sequence[tuple[str, str]]) -> ET.Element:
    e = _el(feed, f"{{{ATOM}}}entry")
    _el(e, f"{{{ATOM}}}id", ident)
    for rel, href in links:
        _el(e, f"{{{ATOM}}}link", href=href, rel=rel)
    _el(e, f"{{{ATOM}}}title", title)
    _el(e, f"{{{ATOM}}}updated", updated)
    return _el(e, f"{{{ATOM}}}content")


def build_export(
    *, meter_id: str, consent_id: str, first_index: int, count: int, resolution_minutes: int,
    period_from: date, period_to: date, days: Sequence[Sequence[ExportReading]],
) -> bytes:
    """The ESPI feed: one IntervalBlock per entry of ``days`` (a local day's readings)."""
    ET.register_namespace("", ATOM)
    ET.register_namespace("espi", ESPI)
    ET.register_namespace("mh", MH)
    last = days[-1][-1]
    updated = datetime.fromtimestamp(last.start + last.duration, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = _BASE.format(c=consent_id)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _el(feed, f"{{{ATOM}}}id", _uuid("feed", meter_id, consent_id, period_from.isoformat()))
    _el(feed, f"{{{ATOM}}}title", f"meterhub export of {meter_id}, {period_from}..{period_to}")
    _el(feed, f"{{{ATOM}}}updated", updated)
    _el(feed, f"{{{ATOM}}}link", href=f"{base}/UsagePoint", rel="self")
    _el(feed, f"{{{MH}}}export", meter_id=meter_id, consent_id=consent_id, first_index=str(first_index),
        count=str(count), resolution_minutes=str(resolution_minutes), period_from=period_from.isoformat(),
        period_to=period_to.isoformat())
    up = f"{base}/UsagePoint/1"
    c = _entry(feed, _uuid("up", meter_id), meter_id, updated,
               [("up", f"{base}/UsagePoint"), ("self", up), ("related", f"{up}/MeterReading")])
    sc = _el(_el(c, f"{{{ESPI}}}UsagePoint"), f"{{{ESPI}}}ServiceCategory")
    _el(sc, f"{{{ESPI}}}kind", "0")  # electricity
    mr = f"{up}/MeterReading/1"
    rt = f"{base}/ReadingType/1"
    c = _entry(feed, _uuid("mr", meter_id), "energy (Wh)", updated,
               [("up", f"{up}/MeterReading"), ("self", mr), ("related", f"{mr}/IntervalBlock"), ("related", rt)])
    _el(c, f"{{{ESPI}}}MeterReading")
    c = _entry(feed, _uuid("rt", meter_id), "Type of meter reading data", updated,
               [("up", f"{base}/ReadingType"), ("self", rt)])
    t = _el(c, f"{{{ESPI}}}ReadingType")
    for tag, val in (("accumulationBehaviour", "4"), ("commodity", "1"), ("dataQualifier", "12"),
                     ("flowDirection", "1"), ("intervalLength", str(resolution_minutes * 60)), ("kind", "12"),
                     ("powerOfTenMultiplier", "0"), ("timeAttribute", "0"), ("uom", "72")):
        _el(t, f"{{{ESPI}}}{tag}", val)
    for n, day in enumerate(days, 1):
        c = _entry(feed, _uuid("ib", meter_id, str(day[0].start)), f"interval block {n}", updated,
                   [("up", f"{mr}/IntervalBlock"), ("self", f"{mr}/IntervalBlock/{n}")])
        entry = feed[-1]
        ib = _el(c, f"{{{ESPI}}}IntervalBlock")
        iv = _el(ib, f"{{{ESPI}}}interval")
        _el(iv, f"{{{ESPI}}}duration", str(sum(r.duration for r in day)))
        _el(iv, f"{{{ESPI}}}start", str(day[0].start))
        for r in day:
            ir = _el(ib, f"{{{ESPI}}}IntervalReading")
            tp = _el(ir, f"{{{ESPI}}}timePeriod")
            _el(tp, f"{{{ESPI}}}duration", str(r.duration))
            _el(tp, f"{{{ESPI}}}start", str(r.start))
            _el(ir, f"{{{ESPI}}}value", str(r.value))
        _el(entry, f"{{{MH}}}blindings", "".join(f"{r.blinding:064x}" for r in day))
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(feed, encoding="utf-8", xml_declaration=False)


def _int(e: ET.Element | None, what: str, lo: int = 0, hi: int = 1 << 62) -> int:
    if e is None or e.text is None or not e.text.strip().isdigit():
        raise ExportFormatError(f"{what}: expected a non-negative integer")
    v = int(e.text.strip())
    if not lo <= v <= hi:
        raise ExportFormatError(f"{what}: out of range")
    return v


def parse_export(raw: bytes) -> Export:
    """Strict parse of :func:`build_export`'s document (what the recipient receives)."""
    if len(raw) > MAX_EXPORT:
        raise ExportFormatError("document too large")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise ExportFormatError("DTDs and entities are not accepted")
    try:
        feed = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ExportFormatError(f"not XML: {exc}") from None
    if feed.tag != f"{{{ATOM}}}feed":
        raise ExportFormatError("not an Atom feed")
    meta = feed.find(f"{{{MH}}}export")
    if meta is None:
        raise ExportFormatError("no mh:export element")
    try:
        meter_id, consent_id = meta.attrib["meter_id"], meta.attrib["consent_id"]
        first_index, count = int(meta.attrib["first_index"]), int(meta.attrib["count"])
        resolution = int(meta.attrib["resolution_minutes"])
        pf, pt = date.fromisoformat(meta.attrib["period_from"]), date.fromisoformat(meta.attrib["period_to"])
    except (KeyError, ValueError):
        raise ExportFormatError("mh:export: missing or malformed attributes") from None
    if not 1 <= resolution <= 1440 or first_index < 0 or count < 1:
        raise ExportFormatError("mh:export: out of range")
    readings: list[ExportReading] = []
    for entry in feed.findall(f"{{{ATOM}}}entry"):
        ib = entry.find(f"{{{ATOM}}}content/{{{ESPI}}}IntervalBlock")
        if ib is None:
            continue
        blob = entry.findtext(f"{{{MH}}}blindings") or ""
        irs = ib.findall(f"{{{ESPI}}}IntervalReading")
        if len(blob) != 64 * len(irs) or not irs:
            raise ExportFormatError("one 32-byte blinding per interval reading is needed")
        try:
            rs = [int(blob[64 * k : 64 * k + 64], 16) for k in range(len(irs))]
        except ValueError:
            raise ExportFormatError("blindings are hex") from None
        for ir, r in zip(irs, rs, strict=True):
            readings.append(ExportReading(
                _int(ir.find(f"{{{ESPI}}}timePeriod/{{{ESPI}}}start"), "timePeriod/start"),
                _int(ir.find(f"{{{ESPI}}}timePeriod/{{{ESPI}}}duration"), "timePeriod/duration", 60, 86400),
                _int(ir.find(f"{{{ESPI}}}value"), "value", 0, 1 << 40),
                r,
            ))
    if not readings:
        raise ExportFormatError("no interval readings")
    for a, b in zip(readings, readings[1:], strict=False):
        if b.start != a.start + a.duration:
            raise ExportFormatError(f"interval readings are not contiguous at {b.start}")
    return Export(meter_id, consent_id, first_index, count, resolution, pf, pt, tuple(readings))
