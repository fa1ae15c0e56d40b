"""The readings part every metering applet shares (billing, settlement, profiling).

:class:`ReadingsStore` keeps, in the applet's own persistent store (so the
firewall keeps each applet's copy apart):

* the pairing: BER-TLV ``80`` meter id, ``81`` time zone, ``82`` interval
  minutes (1 byte) and, optionally, ``83`` the 16-byte home-link key; set once;
* one record per local day, ``u64 first index || u32 count || count x (u32 m ||
  32-byte r)``, written in one atomic transaction with the chain position
  (JCRE ch. 7), an identical re-delivery accepted (idempotent);
* the **gaps**: a day may come after missing days (a meter outage, a lost link) if
  its first index is beyond the next expected one; the missing run is recorded
  (at most :data:`MAX_GAPS` open runs). A missing day delivered late is stored only
  if its indices fit exactly between its neighbours' (the stored day before ends
  where it starts, the stored day after starts where it ends), in one transaction
  with the shrunk gap record;
* STORE DATA messages joined from their blocks (GPC 2.3.1 §11.11: P2 block
  number, P1 b8 last block). Outputs (and their chunks) are the privacy guard's.

PUT DAY data fields (proprietary INS ``20``):

* P1 ``00``: ``u16 year, u8 month, u8 day, u64 first index, u32 count, 12-byte
  nonce`` then the AES-GCM ciphertext sealed by the meter under the home-link
  key (docs/formats.md, "Sealed openings"); needs a pairing with a key;
* P1 ``01``: the same header without the nonce, then the plain openings, from
  the hub's host, which terminates the DLMS home link. A wrong opening only
  yields a figure the utility rejects.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, ClassVar

from ..card import Applet, AppletContext, ins
from ..card.guard import GUARD_AID
from ..crypto import ecdsa
from ..crypto.group import Q
from ..crypto.pedersen import Opening
from ..model.errors import FormatError
from ..model.formats import units
from ..model.formats.sealed import SealedDay, open_sealed_openings
from ..model.formats.units import OPENING_SIZE, decode_day, iter_opening_units
from ..model.timebase import check_interval, check_tz
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLV, TLVError, encode, parse

__all__ = [
    "CHUNK",
    "MeteringApplet",
    "MAX_MESSAGE",
    "ReadingsStore",
    "day_bytes",
    "encode_day",
    "encode_openings_day",
    "encode_pairing",
    "openings_from_blob",
    "parse_date",
]

#: Outbox chunk: + 4-byte header, R-ENC padding and R-MAC fit one short R-APDU.
CHUNK = 224
MAX_MESSAGE = 1 << 20
_DAY = struct.Struct(">HBB")
_PLAIN_HEADER = struct.Struct(">HBBQI")
_SEALED_HEADER = struct.Struct(">HBBQI12s")
_K_PAIRING = b"pairing"
_K_NEXT = b"next"
_K_LAST = b"last"
_K_PENDING = b"store-data"
_K_GAPS = b"gaps"
#: Open runs of missing days the store tracks; a further gap answers ``6A84``.
MAX_GAPS = 16


SW_FULL = 0x6A84  # "not enough memory space"


def _encode_gaps(gaps: Sequence[tuple[date, date]]) -> bytes:
    return b"".join(day_bytes(a) + day_bytes(b) for a, b in gaps)


def parse_date(raw: bytes) -> date:
    """``u16 year, u8 month, u8 day`` (:func:`meterhub.model.formats.units.decode_day`);
    a bad date answers ``6A80``."""
    try:
        return decode_day(raw)
    except FormatError:
        raise ISOException(SW.WRONG_DATA, "bad date") from None


day_bytes = units.encode_day


def encode_pairing(
    meter_id: str, tz: str, interval_minutes: int, home_link_key: bytes | None = None
) -> bytes:
    """The PAIR METER data field."""
    fields = [TLV(0x80, meter_id.encode()), TLV(0x81, tz.encode()), TLV(0x82, bytes([interval_minutes]))]
    if home_link_key is not None:
        fields.append(TLV(0x83, home_link_key))
    return encode(fields)


def encode_openings_day(day: date, first_index: int, openings: Sequence[Opening]) -> bytes:
    """The PUT DAY (P1 ``01``) data field: a day's plain openings from the hub's host."""
    return _PLAIN_HEADER.pack(day.year, day.month, day.day, first_index, len(openings)) + b"".join(
        o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings
    )


def encode_day(sealed: SealedDay) -> bytes:
    """The PUT DAY (P1 ``00``) data field for a day sealed by the meter."""
    d = sealed.day
    return (
        _SEALED_HEADER.pack(d.year, d.month, d.day, sealed.first_index, sealed.count, sealed.nonce)
        + sealed.ciphertext
    )


def openings_from_blob(blob: bytes) -> list[Opening]:
    """Stored 36-byte opening units back to openings (:mod:`meterhub.model.formats.units`)."""
    return [Opening(m, r) for m, r in iter_opening_units(blob)]


class ReadingsStore:
    """See the module docstring."""

    def __init__(self, ctx: AppletContext) -> None:
        self.ctx = ctx

    # -- pairing ----------------------------------------------------------------
    def pair(self, data: bytes) -> None:
        if self.ctx.store.get(_K_PAIRING) is not None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "already paired")
        try:
            f = {t.tag: t.value for t in parse(data)}
            meter_id = f[0x80].decode()
            check_tz(f[0x81].decode())
            if len(f[0x82]) != 1:
                raise ValueError("interval is one byte")
            check_interval(f[0x82][0])
            key = f.get(0x83)
        except (TLVError, KeyError, UnicodeDecodeError, ValueError, IndexError):
            raise ISOException(SW.WRONG_DATA, "bad pairing data") from None
        if not meter_id or (key is not None and len(key) != 16):
            raise ISOException(SW.WRONG_DATA, "bad pairing data")
        self.ctx.store.put(_K_PAIRING, bytes(data))

    def pairing(self) -> tuple[str, str, int, bytes | None]:
        """``(meter id, time zone, interval minutes, home-link key or None)``; ``6985`` if unpaired."""
        raw = self.ctx.store.get(_K_PAIRING)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no meter paired")
        f = {t.tag: t.value for t in parse(raw)}
        return f[0x80].decode(), f[0x81].decode(), f[0x82][0], f.get(0x83)

    # -- days -------------------------------------------------------------------
    def last_day(self) -> date | None:
        raw = self.ctx.store.get(_K_LAST)
        return None if raw is None else parse_date(raw)

    def put_day(self, apdu: CommandAPDU) -> None:
        meter_id, _, _, key = self.pairing()
        data = bytes(apdu.data)
        if apdu.p1 == 0x01:
            if len(data) < _PLAIN_HEADER.size:
                raise ISOException(SW.WRONG_LENGTH, "day message too short")
            y, m, d, first, count = _PLAIN_HEADER.unpack(data[: _PLAIN_HEADER.size])
            day = parse_date(_DAY.pack(y, m, d))
            blob = data[_PLAIN_HEADER.size :]
            if len(blob) != OPENING_SIZE * count or count == 0:
                raise ISOException(SW.WRONG_LENGTH, "opening count and length differ")
            if any(r >= Q for _, r in iter_opening_units(blob)):
                raise ISOException(SW.WRONG_DATA, "blinding out of range")
        elif apdu.p1 == 0x00:
            if key is None:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "paired without a home-link key")
            if len(data) < _SEALED_HEADER.size + 16:
                raise ISOException(SW.WRONG_LENGTH, "day message too short")
            y, m, d, first, count, nonce = _SEALED_HEADER.unpack(data[: _SEALED_HEADER.size])
            day = parse_date(_DAY.pack(y, m, d))
            sealed = SealedDay(meter_id, day, first, count, nonce, data[_SEALED_HEADER.size :])
            try:
                openings = open_sealed_openings(key, sealed)
            except FormatError:
                raise ISOException(
                    SW.SECURITY_STATUS_NOT_SATISFIED, "home-link message fails authentication"
                ) from None
            blob = b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings)
        else:
            raise ISOException(SW.INCORRECT_P1P2, "P1 must be 00 (sealed) or 01 (plain)")
        record = first.to_bytes(8, "big") + count.to_bytes(4, "big") + blob
        existing = self.ctx.store.get(b"d" + day_bytes(day))
        if existing is not None:
            if existing == record:
                return  # the same day delivered again
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "day already stored with other readings")
        last = self.last_day()
        gaps = self.gaps()
        if last is not None and day <= last:
            self._put_late_day(day, first, count, record, gaps)
            return
        if last is not None and day != last + timedelta(days=1):
            # Days missing in between: their intervals lie between the two first indices.
            if first <= self.ctx.store.get_int(_K_NEXT, -1):
                raise ISOException(SW.WRONG_DATA, "day after a gap must start beyond the next expected index")
            if len(gaps) >= MAX_GAPS:
                raise ISOException(SW_FULL, "too many runs of missing days")
            gaps.append((last + timedelta(days=1), day - timedelta(days=1)))
        elif last is not None and first != self.ctx.store.get_int(_K_NEXT, -1):
            raise ISOException(SW.WRONG_DATA, "day does not follow on from the last stored day")
        self.ctx.begin_transaction()
        self.ctx.store.put(b"d" + day_bytes(day), record)
        self.ctx.store.put_int(_K_NEXT, first + count)
        self.ctx.store.put(_K_LAST, day_bytes(day))
        self.ctx.store.put(_K_GAPS, _encode_gaps(gaps))
        self.ctx.commit_transaction()

    def gaps(self) -> list[tuple[date, date]]:
        """The runs of missing days (first and last day, inclusive), in day order."""
        raw = self.ctx.store.get(_K_GAPS) or b""
        return [(parse_date(raw[k : k + 4]), parse_date(raw[k + 4 : k + 8])) for k in range(0, len(raw), 8)]

    def _put_late_day(self, day: date, first: int, count: int, record: bytes, gaps: list[tuple[date, date]]) -> None:
        """A missing day delivered late: it must fill a recorded gap and fit its neighbours."""
        k = next((k for k, (a, b) in enumerate(gaps) if a <= day <= b), None)
        if k is None:
            raise ISOException(SW.WRONG_DATA, "day is before the last stored day and not a missing day")
        a, b = gaps[k]
        before = self.ctx.store.get(b"d" + day_bytes(day - timedelta(days=1)))
        after = self.ctx.store.get(b"d" + day_bytes(day + timedelta(days=1)))
        lo = hi = None
        if before is not None:
            lo = int.from_bytes(before[:8], "big") + int.from_bytes(before[8:12], "big")
        if after is not None:
            hi = int.from_bytes(after[:8], "big")
        # The stored days around the gap bound it; a neighbour inside the gap is absent.
        if (lo is not None and first != lo) or (hi is not None and first + count != hi):
            raise ISOException(SW.WRONG_DATA, "late day does not fit exactly between its neighbours")
        if lo is None or hi is None:
            edge_lo = self.ctx.store.get(b"d" + day_bytes(a - timedelta(days=1)))
            edge_hi = self.ctx.store.get(b"d" + day_bytes(b + timedelta(days=1)))
            if edge_lo is None or edge_hi is None:
                raise ISOException(SW.UNKNOWN, "gap record and stored days disagree")
            low = int.from_bytes(edge_lo[:8], "big") + int.from_bytes(edge_lo[8:12], "big")
            if first < low or first + count > int.from_bytes(edge_hi[:8], "big"):
                raise ISOException(SW.WRONG_DATA, "late day does not fit between the days around the gap")
        rest = [g for g in ((a, day - timedelta(days=1)), (day + timedelta(days=1), b)) if g[0] <= g[1]]
        self.ctx.begin_transaction()
        self.ctx.store.put(b"d" + day_bytes(day), record)
        self.ctx.store.put(_K_GAPS, _encode_gaps(gaps[:k] + rest + gaps[k + 1 :]))
        self.ctx.commit_transaction()

    def state(self) -> bytes:
        """``u64 next index`` and the last stored day (4 bytes, or none)."""
        return self.ctx.store.get_int(_K_NEXT, 0).to_bytes(8, "big") + (self.ctx.store.get(_K_LAST) or b"")

    def runs(self, first_day: date, last_day: date) -> tuple[list[tuple[date, date, int, bytes]], list[tuple[date, date]]]:
        """The held runs of consecutive days ``(first day, last day, first index, openings)``
        and the missing runs ``(first day, last day)`` of a period, both in day order. A
        day neither held nor a recorded gap (beyond the last stored day, or before the
        first) answers ``6A88``."""
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        gaps = self.gaps()
        held: list[tuple[date, date, int, bytes]] = []
        missing: list[tuple[date, date]] = []
        day = first_day
        while day <= last_day:
            rec = self.ctx.store.get(b"d" + day_bytes(day))
            if rec is None:
                if not any(a <= day <= b for a, b in gaps):
                    raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no readings for {day}")
                if missing and missing[-1][1] == day - timedelta(days=1):
                    missing[-1] = (missing[-1][0], day)
                else:
                    missing.append((day, day))
            elif held and held[-1][1] == day - timedelta(days=1):
                d0, _, idx, blob = held[-1]
                held[-1] = (d0, day, idx, blob + rec[12:])
            else:
                held.append((day, day, int.from_bytes(rec[:8], "big"), rec[12:]))
            day += timedelta(days=1)
        return held, missing

    def period(self, first_day: date, last_day: date) -> tuple[int, bytes]:
        """``(first index, 36-byte openings)`` of whole days; ``6A88`` names a missing day."""
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        blobs: list[bytes] = []
        first_index = None
        day = first_day
        while day <= last_day:
            rec = self.ctx.store.get(b"d" + day_bytes(day))
            if rec is None:
                raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no readings for {day}")
            if first_index is None:
                first_index = int.from_bytes(rec[:8], "big")
            blobs.append(rec[12:])
            day += timedelta(days=1)
        return first_index or 0, b"".join(blobs)

    # -- STORE DATA framing and the outbox ------------------------------------------
    def assemble(self, apdu: CommandAPDU) -> bytes | None:
        """Join STORE DATA blocks (P2 block number, P1 b8 last); the whole message or None."""
        pending = self.ctx.store.get(_K_PENDING) if apdu.p2 else b""
        if pending is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "STORE DATA block out of sequence")
        data = pending + bytes(apdu.data)
        if len(data) > MAX_MESSAGE:
            self.ctx.store.delete(_K_PENDING)
            raise ISOException(SW.WRONG_LENGTH, "message too large")
        if not apdu.p1 & 0x80:
            self.ctx.store.put(_K_PENDING, data)
            return None
        if apdu.p2:
            self.ctx.store.delete(_K_PENDING)
        if not data:
            raise ISOException(SW.WRONG_LENGTH, "empty message")
        return data


class MeteringApplet(Applet):
    """Base of the applets that hold a meter's openings. Every output passes through the
    card's privacy guard (:mod:`meterhub.card.guard`): the keys that sign the applet's
    inputs are the guard's pinned publisher keys for ``KEY_ROLE``, and install
    parameters may only repeat one of them (another key: ``6982``; none: fine). PAIR
    METER (``10``), PUT DAY (``20``) and GET STATE (``32``) go to the
    :class:`ReadingsStore`; GET STATE's answer is issued by the guard too."""

    KEY_ROLE: ClassVar[str] = "signer"

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> MeteringApplet:
        if params:
            try:
                ecdsa.load_verifying_key(params)
            except ValueError:
                raise ISOException(
                    SW.WRONG_DATA, f"install parameters must be empty or the pinned {cls.KEY_ROLE} key"
                ) from None
            port = ctx.get_shareable(GUARD_AID, 1)
            if port is None:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no privacy guard on this card")
            if not port.is_pinned(cls.KEY_ROLE, bytes(params)):
                raise ISOException(
                    SW.SECURITY_STATUS_NOT_SATISFIED, f"not the {cls.KEY_ROLE} key the customer pinned"
                )
        return cls(ctx)

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self.rs = ReadingsStore(ctx)
        self._port: Any = None

    @property
    def guard(self) -> Any:
        """The guard's :class:`~meterhub.card.guard.GuardPort` for this applet (``6985``
        when the card has no guard or this applet serves no known recipient)."""
        if self._port is None:
            self._port = self.ctx.get_shareable(GUARD_AID)
            if self._port is None:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no privacy guard serves this applet")
        return self._port

    def signer_keys(self) -> list[bytes]:
        return list(self.guard.pinned(self.KEY_ROLE))

    @ins(0x10, cla=0x80)
    def pair_meter(self, apdu: CommandAPDU) -> None:
        self.rs.pair(bytes(apdu.data))

    @ins(0x20, cla=0x80)
    def put_day(self, apdu: CommandAPDU) -> None:
        self.rs.put_day(apdu)

    @ins(0x32, cla=0x80)
    def get_state(self, apdu: CommandAPDU) -> bytes:
        return self.guard.state(self.ctx.store.get_int(_K_NEXT, 0), self.ctx.store.get(_K_LAST) or b"")
