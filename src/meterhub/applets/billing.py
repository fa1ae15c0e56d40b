"""The billing applet: time-of-use bills computed inside the hub's secure element.

The applet holds a meter's openings, received sealed over the home link, and
the supplier's signed tariff, and releases only bill statements
(``sum t_i*m_i`` and ``sum t_i*r_i mod Q``; see :mod:`meterhub.hub.billing`).
Readings never leave it.

Commands (proprietary class ``80``; data fields are big-endian):

======  ===========  ==========================================================
INS     name         data → response
======  ===========  ==========================================================
``10``  PAIR METER   BER-TLV ``80`` meter id, ``81`` time zone, ``82`` interval
                     minutes (1 byte), ``83`` home-link key (16 bytes). Once
                     only (the customer pairs the meter); again → ``6985``.
``12``  PUT TARIFF   a signed tariff file (docs/tariffs.md). The signature must
                     verify under the supplier key given at install, else
                     ``6A80``; an older version than the stored one → ``6985``.
``20``  PUT DAY      ``u16 year, u8 month, u8 day, u64 first index, u32 count,
                     12-byte nonce, AES-GCM ciphertext`` (docs/formats.md,
                     "Sealed openings"). Days must follow on; a repeated
                     identical day is accepted again (idempotent delivery).
``30``  GET BILL     ``u16 y, u8 m, u8 d`` first and last day (inclusive) →
                     the bill statement as JSON (docs/formats.md).
``32``  GET STATE    → ``u64 next index`` and the last stored day (4 bytes, or
                     none).
======  ===========  ==========================================================

Install parameters: the supplier's P-256 public key (65 bytes, SEC 1).
Each day is stored in one atomic transaction (JCRE ch. 7).
"""

from __future__ import annotations

import hashlib
import struct
from datetime import date, timedelta
from pathlib import Path

from ..card import Applet, AppletContext, ins, register_applet_class
from ..crypto import ecdsa
from ..crypto.pedersen import Opening
from ..exchange import FormatError, SealedDay, open_sealed_openings
from ..hub.billing import bill_statement
from ..meter.timebase import check_interval, check_tz, range_starts
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLVError, parse
from ..tariffs import TariffError, load_tariff, verify_tariff

__all__ = ["BillingApplet", "CLASS_NAME", "CODE_HASH", "encode_day", "encode_pairing"]

CLASS_NAME = "meterhub.applets.billing/1"
#: SHA-256 of this module's source: the code hash a load file names for this applet.
CODE_HASH = hashlib.sha256(Path(__file__).read_bytes()).digest()

_K_PAIRING = b"pairing"
_K_TARIFF = b"tariff"
_K_SUPPLIER = b"supplier"
_K_NEXT = b"next"
_K_LAST = b"last"
_DAY = struct.Struct(">HBB")
_DAY_HEADER = struct.Struct(">HBBQI12s")


def _date(raw: bytes) -> date:
    try:
        y, m, d = _DAY.unpack(raw)
        return date(y, m, d)
    except (struct.error, ValueError):
        raise ISOException(SW.WRONG_DATA, "bad date") from None


def _day_bytes(d: date) -> bytes:
    return _DAY.pack(d.year, d.month, d.day)


def encode_pairing(meter_id: str, tz: str, interval_minutes: int, home_link_key: bytes) -> bytes:
    """The PAIR METER data field."""
    from ..protocols.iso7816.tlv import TLV, encode

    return encode(
        [
            TLV(0x80, meter_id.encode()),
            TLV(0x81, tz.encode()),
            TLV(0x82, bytes([interval_minutes])),
            TLV(0x83, home_link_key),
        ]
    )


def encode_day(sealed: SealedDay) -> bytes:
    """The PUT DAY data field for a sealed day."""
    return (
        _DAY_HEADER.pack(
            sealed.day.year, sealed.day.month, sealed.day.day, sealed.first_index, sealed.count, sealed.nonce
        )
        + sealed.ciphertext
    )


class BillingApplet(Applet):
    """See the module docstring for the command set."""

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> BillingApplet:
        try:
            ecdsa.load_verifying_key(params)
        except ValueError:
            raise ISOException(SW.WRONG_DATA, "install parameters must be the supplier's P-256 key") from None
        ctx.store.put(_K_SUPPLIER, bytes(params))
        return cls(ctx)

    # -- pairing and tariff ---------------------------------------------------
    @ins(0x10, cla=0x80)
    def pair_meter(self, apdu: CommandAPDU) -> None:
        if self.ctx.store.get(_K_PAIRING) is not None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "already paired")
        try:
            fields = {t.tag: t.value for t in parse(apdu.data)}
            meter_id = fields[0x80].decode()
            check_tz(fields[0x81].decode())
            interval = check_interval(fields[0x82][0]) if len(fields[0x82]) == 1 else -1
            key = fields[0x83]
        except (TLVError, KeyError, UnicodeDecodeError, ValueError, IndexError):
            raise ISOException(SW.WRONG_DATA, "bad pairing data") from None
        if interval < 0 or len(key) != 16 or not meter_id:
            raise ISOException(SW.WRONG_DATA, "bad pairing data")
        self.ctx.store.put(_K_PAIRING, bytes(apdu.data))

    def _pairing(self) -> tuple[str, str, int, bytes]:
        raw = self.ctx.store.get(_K_PAIRING)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no meter paired")
        f = {t.tag: t.value for t in parse(raw)}
        return f[0x80].decode(), f[0x81].decode(), f[0x82][0], f[0x83]

    @ins(0x12, cla=0x80)
    def put_tariff(self, apdu: CommandAPDU) -> None:
        supplier = self.ctx.store.get(_K_SUPPLIER)
        try:
            signed = load_tariff(bytes(apdu.data))
            tariff = verify_tariff(signed, supplier)
        except TariffError:
            raise ISOException(SW.WRONG_DATA, "tariff refused") from None
        old = self.ctx.store.get(_K_TARIFF)
        if old is not None:
            current = load_tariff(old).tariff
            if current.tariff_id == tariff.tariff_id and tariff.version < current.version:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "older tariff version")
        self.ctx.store.put(_K_TARIFF, bytes(apdu.data))

    # -- readings ---------------------------------------------------------------
    @ins(0x20, cla=0x80)
    def put_day(self, apdu: CommandAPDU) -> None:
        meter_id, tz, interval, key = self._pairing()
        data = bytes(apdu.data)
        if len(data) < _DAY_HEADER.size + 16:
            raise ISOException(SW.WRONG_LENGTH, "day message too short")
        y, m, d, first, count, nonce = _DAY_HEADER.unpack(data[: _DAY_HEADER.size])
        day = _date(_DAY.pack(y, m, d))
        sealed = SealedDay(meter_id, day, first, count, nonce, data[_DAY_HEADER.size :])
        try:
            openings = open_sealed_openings(key, sealed)
        except FormatError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "home-link message fails authentication") from None
        blob = b"".join(o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings)
        record = first.to_bytes(8, "big") + count.to_bytes(4, "big") + blob
        existing = self.ctx.store.get(b"d" + _day_bytes(day))
        if existing is not None:
            if existing == record:
                return  # the same day delivered again
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "day already stored with other readings")
        nxt = self.ctx.store.get_int(_K_NEXT, -1)
        last = self.ctx.store.get(_K_LAST)
        if last is not None and (day != _date(last) + timedelta(days=1) or first != nxt):
            raise ISOException(SW.WRONG_DATA, "day does not follow on from the last stored day")
        self.ctx.begin_transaction()
        self.ctx.store.put(b"d" + _day_bytes(day), record)
        self.ctx.store.put_int(_K_NEXT, first + count)
        self.ctx.store.put(_K_LAST, _day_bytes(day))
        self.ctx.commit_transaction()

    @ins(0x32, cla=0x80)
    def get_state(self, apdu: CommandAPDU) -> bytes:
        nxt = self.ctx.store.get_int(_K_NEXT, 0)
        return nxt.to_bytes(8, "big") + (self.ctx.store.get(_K_LAST) or b"")

    # -- bills --------------------------------------------------------------------
    @ins(0x30, cla=0x80)
    def get_bill(self, apdu: CommandAPDU) -> bytes:
        meter_id, tz, interval, _ = self._pairing()
        if len(apdu.data) != 8:
            raise ISOException(SW.WRONG_LENGTH, "GET BILL takes two dates")
        first_day, last_day = _date(bytes(apdu.data[:4])), _date(bytes(apdu.data[4:]))
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        raw = self.ctx.store.get(_K_TARIFF)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no tariff")
        tariff = load_tariff(raw).tariff
        openings: list[Opening] = []
        first_index = None
        day = first_day
        while day <= last_day:
            rec = self.ctx.store.get(b"d" + _day_bytes(day))
            if rec is None:
                raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no readings for {day}")
            fi, count = int.from_bytes(rec[:8], "big"), int.from_bytes(rec[8:12], "big")
            if first_index is None:
                first_index = fi
            blob = rec[12:]
            openings.extend(
                Opening(int.from_bytes(blob[36 * k : 36 * k + 4], "big"), int.from_bytes(blob[36 * k + 4 : 36 * k + 36], "big"))
                for k in range(count)
            )
            day += timedelta(days=1)
        try:
            tariff.check_valid_on(first_day)
            tariff.check_valid_on(last_day)
            starts = range_starts(first_day, (last_day - first_day).days + 1, tz, interval)
            prices = tariff.prices_for(starts, interval)
        except (TariffError, ValueError):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period") from None
        st = bill_statement(
            meter_id=meter_id,
            tariff=tariff,
            period_from=first_day,
            period_to=last_day,
            first_index=first_index or 0,
            prices=prices,
            openings=openings,
        )
        return st.to_json().encode()


register_applet_class(CLASS_NAME, BillingApplet)
