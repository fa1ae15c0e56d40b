"""The export applet: consented fine-grained readings as Green Button (ESPI) Atom XML.

The one sanctioned way readings leave the hub (issue 11): the customer signs a consent
(:mod:`meterhub.policy.consent`) naming the recipient, purpose, resolution, period and
expiry and gives it to the card's privacy guard (guard INS ``50``); the recipient's
applet instance (this class, installed under the recipient's security domain) then
releases the consented period, at the consented resolution or coarser, with each
value's opening, as an ESPI feed (:mod:`meterhub.model.formats.greenbutton`). Every export is a
release-log entry naming its consent; a revocation (guard INS ``52``) stops further
exports, re-asks included, at once.

Host commands as the other metering applets (``10`` PAIR METER, ``20`` PUT DAY,
``32`` GET STATE). STORE DATA from the recipient's SD, message types:

* ``30`` + ``u8 n`` + consent id (n bytes) + first and last day (``u16 y u8 m u8 d``
  each) + ``u16`` resolution minutes → the feed, first chunk answered (``u32 total ||
  <= 224 bytes``). No valid consent for this recipient, period and resolution → ``6982``;
  a resolution that is not a multiple of the meter's interval or does not divide every
  day → ``6A80``; another request for an exported period → ``6985``.
* ``03`` + ``u32 offset`` → the chunk at ``offset``.

Install parameters: none (an export applet takes no signed inputs; any key → ``6982``).
"""

from __future__ import annotations

from datetime import timedelta

from ..card import register_applet_class
from ..crypto.group import Q
from ..model.formats.greenbutton import ExportReading, build_export
from ..model.formats.units import OPENING_SIZE, opening_unit_at
from ..model.timebase import day_starts
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from .readings import MeteringApplet, parse_date
from .settlement import fetch_chunk

__all__ = ["CLASS_NAME", "ExportApplet", "export_request"]

CLASS_NAME = "meterhub.applets.export/1"


def export_request(consent_id: str, first, last, resolution_minutes: int) -> bytes:  # type: ignore[no-untyped-def]
    """The STORE DATA message ``30`` (module docstring)."""
    cid = consent_id.encode()
    day = lambda d: d.year.to_bytes(2, "big") + bytes((d.month, d.day))  # noqa: E731
    return b"\x30" + bytes((len(cid),)) + cid + day(first) + day(last) + resolution_minutes.to_bytes(2, "big")


class ExportApplet(MeteringApplet):
    """See the module docstring."""

    KEY_ROLE = "export"  # no publisher role: install parameters must be empty

    def process_data(self, apdu: CommandAPDU) -> bytes:
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x30:
            return self._export(body)
        if kind == 0x03:
            return fetch_chunk(self.guard, body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    def _export(self, body: bytes) -> bytes:
        if not body or len(body) != 1 + body[0] + 10:
            raise ISOException(SW.WRONG_LENGTH, "export takes a consent id, a period and a resolution")
        n = body[0]
        try:
            consent_id = body[1 : 1 + n].decode("ascii")
        except UnicodeDecodeError:
            raise ISOException(SW.WRONG_DATA, "bad consent id") from None
        first, last = parse_date(body[1 + n : 5 + n]), parse_date(body[5 + n : 9 + n])
        resolution = int.from_bytes(body[9 + n : 11 + n], "big")
        if last < first or not 1 <= resolution <= 1440:
            raise ISOException(SW.WRONG_DATA, "bad period or resolution")
        today = self.rs.last_day()
        again = self.guard.begin_export(consent_id, first, last, resolution, body, today)
        if again is not None:
            return bytes(again)
        doc, values = self._document(consent_id, first, last, resolution)
        return bytes(self.guard.commit_export(consent_id, first, last, resolution, body, doc, values, today))

    def _document(self, consent_id: str, first, last, resolution: int) -> tuple[bytes, int]:  # type: ignore[no-untyped-def]
        meter_id, tz, interval, _ = self.rs.pairing()
        if resolution % interval:
            raise ISOException(SW.WRONG_DATA, "the resolution is not a multiple of the meter's interval")
        g = resolution // interval
        first_index, blob = self.rs.period(first, last)
        days: list[list[ExportReading]] = []
        k = 0
        day = first
        while day <= last:
            starts = day_starts(day, tz, interval)
            if len(starts) % g:
                raise ISOException(SW.WRONG_DATA, f"the resolution does not divide {day}")
            out = []
            for j in range(0, len(starts), g):
                m = r = 0
                for i in range(k + j, k + j + g):
                    mi, ri = opening_unit_at(blob, i)
                    m += mi
                    r += ri
                out.append(ExportReading(int(starts[j].timestamp()), resolution * 60, m, r % Q))
            days.append(out)
            k += len(starts)
            day += timedelta(days=1)
        if OPENING_SIZE * k != len(blob):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        doc = build_export(meter_id=meter_id, consent_id=consent_id, first_index=first_index, count=k,
                           resolution_minutes=resolution, period_from=first, period_to=last, days=days)
        return doc, sum(len(d) for d in days)


register_applet_class(CLASS_NAME, ExportApplet)
