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
``20``  PUT DAY      P1 ``00``: ``u16 year, u8 month, u8 day, u64 first index,
                     u32 count, 12-byte nonce, AES-GCM ciphertext``
                     (docs/formats.md, "Sealed openings"), opened with the
                     home-link key. P1 ``01``: the same header without the
                     nonce, then ``count`` plain openings ``u32 m || 32-byte r``
                     from the hub's host, which terminates the DLMS home link.
                     Days must follow on; a repeated identical day is accepted
                     again (idempotent delivery).
``30``  GET BILL     ``u16 y, u8 m, u8 d`` first and last day (inclusive) →
                     the bill statement as JSON (docs/formats.md): v1 for a
                     time-of-use tariff, v2 with zero-knowledge proofs for a
                     non-linear one (tiered, inclining-block, polynomial;
                     docs/nonlinear.md). Longer answers than Ne come in
                     ``61xx`` chunks (GET RESPONSE).
``32``  GET STATE    → ``u64 next index`` and the last stored day (4 bytes, or
                     none).
======  ===========  ==========================================================

STORE DATA (``E2``, through the supplier's security domain after INSTALL [for
personalization], GPC 2.3.1 §11.11) carries a signed tariff in blocks; the
last block installs it as PUT TARIFF does.

Install parameters: the supplier's P-256 public key (65 bytes, SEC 1).
Each day is stored in one atomic transaction (JCRE ch. 7).

Openings from the host (P1 ``01``) need no integrity protection for the
bill's sake: a wrong opening only yields a bill the utility rejects. They do
pass through the host in the clear, which the DLMS home link already implies.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import date, timedelta

from ..card import Applet, AppletContext, ins, register_applet_class
from ..crypto import ecdsa
from ..crypto.group import Q
from ..crypto.pedersen import Opening
from ..exchange import FormatError, SealedDay, open_sealed_openings
from ..hub.billing import statement_from_sums
from ..hub.proving import prove_bill
from ..meter.timebase import check_interval, check_tz
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLVError, parse
from ..tariffs import Tariff, TariffError, load_tariff, verify_tariff
from ..tariffs.nonlinear import NonLinearTariff

__all__ = ["BillingApplet", "CLASS_NAME", "encode_day", "encode_openings_day", "encode_pairing"]

CLASS_NAME = "meterhub.applets.billing/1"

_K_PAIRING = b"pairing"
_K_TARIFF = b"tariff"
_K_SUPPLIER = b"supplier"
_K_NEXT = b"next"
_K_LAST = b"last"
_DAY = struct.Struct(">HBB")
_DAY_HEADER = struct.Struct(">HBBQI12s")
_PLAIN_HEADER = struct.Struct(">HBBQI")
_K_STORE = b"store-data"


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


def encode_openings_day(day: date, first_index: int, openings: Sequence[Opening]) -> bytes:
    """The PUT DAY (P1 01) data field: a day's plain openings from the hub's host."""
    return _PLAIN_HEADER.pack(day.year, day.month, day.day, first_index, len(openings)) + b"".join(
        o.m.to_bytes(4, "big") + o.r.to_bytes(32, "big") for o in openings
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
        self._install_tariff(bytes(apdu.data))

    def _install_tariff(self, raw: bytes) -> None:
        supplier = self.ctx.store.get(_K_SUPPLIER)
        try:
            signed = load_tariff(raw)
            tariff = verify_tariff(signed, supplier)
        except TariffError:
            raise ISOException(SW.WRONG_DATA, "tariff refused") from None
        old = self.ctx.store.get(_K_TARIFF)
        if old is not None:
            current = load_tariff(old).tariff
            if current.tariff_id == tariff.tariff_id and tariff.version < current.version:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "older tariff version")
        self.ctx.store.put(_K_TARIFF, raw)

    def _tariff(self, raw: bytes) -> Tariff:
        """The stored tariff, parsed once per content (its signature was checked on entry)."""
        cached = getattr(self, "_tariff_cache", None)
        if cached is not None and cached[0] == raw:
            return cached[1]
        tariff = load_tariff(raw).tariff
        self._tariff_cache = (raw, tariff)
        return tariff

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA blocks from the security domain (GP API ``Application.processData``):
        P2 is the block number, P1 b8 marks the last block, whose arrival installs
        the assembled tariff."""
        pending = self.ctx.store.get(_K_STORE) if apdu.p2 else b""
        if pending is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "STORE DATA block out of sequence")
        data = pending + bytes(apdu.data)
        if len(data) > 65536:
            self.ctx.store.delete(_K_STORE)
            raise ISOException(SW.WRONG_LENGTH, "tariff too large")
        if not apdu.p1 & 0x80:
            self.ctx.store.put(_K_STORE, data)
            return b""
        self.ctx.store.delete(_K_STORE)
        self._install_tariff(data)
        return b""

    # -- readings ---------------------------------------------------------------
    @ins(0x20, cla=0x80)
    def put_day(self, apdu: CommandAPDU) -> None:
        meter_id, tz, interval, key = self._pairing()
        data = bytes(apdu.data)
        if apdu.p1 == 0x01:
            if len(data) < _PLAIN_HEADER.size:
                raise ISOException(SW.WRONG_LENGTH, "day message too short")
            y, m, d, first, count = _PLAIN_HEADER.unpack(data[: _PLAIN_HEADER.size])
            day = _date(_DAY.pack(y, m, d))
            blob = data[_PLAIN_HEADER.size :]
            if len(blob) != 36 * count or count == 0:
                raise ISOException(SW.WRONG_LENGTH, "opening count and length differ")
            if any(int.from_bytes(blob[36 * k + 4 : 36 * k + 36], "big") >= Q for k in range(count)):
                raise ISOException(SW.WRONG_DATA, "blinding out of range")
        elif apdu.p1 == 0x00:
            if len(data) < _DAY_HEADER.size + 16:
                raise ISOException(SW.WRONG_LENGTH, "day message too short")
            y, m, d, first, count, nonce = _DAY_HEADER.unpack(data[: _DAY_HEADER.size])
            day = _date(_DAY.pack(y, m, d))
            sealed = SealedDay(meter_id, day, first, count, nonce, data[_DAY_HEADER.size :])
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
        tariff = self._tariff(raw)
        blobs: list[bytes] = []
        first_index = None
        day = first_day
        while day <= last_day:
            rec = self.ctx.store.get(b"d" + _day_bytes(day))
            if rec is None:
                raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no readings for {day}")
            if first_index is None:
                first_index = int.from_bytes(rec[:8], "big")
            blobs.append(rec[12:])
            day += timedelta(days=1)
        blob = b"".join(blobs)
        if isinstance(tariff, NonLinearTariff):
            return self._proven_bill(tariff, meter_id, tz, interval, first_day, last_day, first_index, blob)
        try:
            tariff.check_valid_on(first_day)
            tariff.check_valid_on(last_day)
            prices = tariff.period_prices(first_day, (last_day - first_day).days + 1, tz, interval)
        except (TariffError, ValueError):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period") from None
        if len(prices) * 36 != len(blob):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        # sum t_i*m_i and sum t_i*r_i straight from the stored openings (36-byte units).
        energy = blinding = 0
        frm = int.from_bytes
        for k, t in enumerate(prices):
            off = 36 * k
            energy += t * frm(blob[off : off + 4], "big")
            blinding += t * frm(blob[off + 4 : off + 36], "big")
        st = statement_from_sums(
            meter_id=meter_id,
            tariff=tariff,
            period_from=first_day,
            period_to=last_day,
            first_index=first_index or 0,
            count=len(prices),
            energy_charge=energy,
            blinding=blinding,
        )
        return st.to_json().encode()

    @staticmethod
    def _proven_bill(
        tariff: NonLinearTariff,
        meter_id: str,
        tz: str,
        interval: int,
        first_day: date,
        last_day: date,
        first_index: int | None,
        blob: bytes,
    ) -> bytes:
        """The v2 statement (:func:`meterhub.hub.proving.prove_bill`) from the stored
        openings: the bill, its blinding and the zero-knowledge proofs that it
        follows from the meter's commitments (Rial and Danezis, WPES 2011, section 4)."""
        openings = [
            Opening(int.from_bytes(blob[k : k + 4], "big"), int.from_bytes(blob[k + 4 : k + 36], "big"))
            for k in range(0, len(blob), 36)
        ]
        try:
            tariff.check_valid_on(first_day)
            tariff.check_valid_on(last_day)
            st = prove_bill(
                meter_id=meter_id,
                tariff=tariff,
                period_from=first_day,
                period_to=last_day,
                first_index=first_index or 0,
                openings=openings,
                tz=tz,
                interval_minutes=interval,
            )
        except (TariffError, ValueError):
            raise ISOException(
                SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period or the readings"
            ) from None
        return st.to_json().encode()


register_applet_class(CLASS_NAME, BillingApplet)
