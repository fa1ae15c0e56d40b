"""The settlement applet: exact energy and index value per customer and period.

Today suppliers settle from standard load profiles: each customer's share of the
grid's energy is estimated from its annual consumption times the BDEW profile.
This applet releases instead, for a period of whole local days, the total energy
``E = sum m_i`` and the index value ``V = sum index_i*m_i`` (the grid price index,
signed by its publisher; :mod:`meterhub.tariffs.price_index`), each with its
opening ``R_E = sum r_i``, ``R_V = sum index_i*r_i mod Q``, bound to the meter,
the period, the index id, version and digest, and the applet's AID and code hash.
The utility checks ``sum C_i = E*G + R_E*H`` and ``sum index_i*C_i = V*G + R_V*H``
(:mod:`meterhub.utility.settlement`).

Host commands (proprietary class ``80``, the hub's host software):

======  ===========  ==========================================================
INS     name         data → response
======  ===========  ==========================================================
``10``  PAIR METER   BER-TLV ``80`` meter id, ``81`` time zone, ``82`` interval
                     minutes (1 byte). Once; again → ``6985``.
``20``  PUT DAY      P1 ``01``: ``u16 year, u8 month, u8 day, u64 first index,
                     u32 count`` then ``count`` openings ``u32 m || 32-byte r``
                     (the billing applet's format). Days follow on; the same day
                     again is accepted (idempotent).
``32``  GET STATE    → ``u64 next index`` and the last stored day (4 bytes).
======  ===========  ==========================================================

Outputs are released **only** through STORE DATA from the applet's own security
domain (the supplier's; GPC 2.3.1 §11.11: INSTALL [for personalization] reaches
only applications associated with that SD), so they travel inside the supplier's
SCP03 session (level 33: encrypted and MACed) and never over the host's plain
channel. A STORE DATA message (blocks joined; P1 b8 on the last) starts with a
type byte:

* ``01`` + a signed price index file → stored. Refused: malformed, unsigned or
  another format version ``6A80``; bad signature or not the pinned publisher ``6982``;
  expired (its ``expires`` day is not after the last stored reading day)
  ``6984``; an older version of the same index, or the same version with other
  content ``6985``.
* ``02`` + ``u16 y u8 m u8 d`` first and last day + ``u32 version`` + index id →
  the settlement statement (JSON, docs/formats.md) into the outbox; the response is
  the first chunk. Unknown index or version ``6A88``; missing days ``6A88``.
* ``03`` + ``u32 offset`` → the outbox chunk at ``offset``.

Each response chunk is ``u32 total length || up to 224 bytes``, so that with R-ENC
padding and the R-MAC it fits one short R-APDU.
Install parameters: empty, or the index publisher's P-256 key the customer pinned (65
bytes, SEC 1); another key → ``6982``. The index must verify under the pinned key.
Settlement goes through the privacy guard: whole settlement periods of the customer's
cycle only, one statement per period (a re-ask answers the same bytes).
"""

from __future__ import annotations

from typing import Any

from ..card import AppletContext, register_applet_class
from ..crypto.group import Q
from ..model.formats.settlement import SETTLEMENT_FORMAT, SettlementStatement
from ..model.formats.units import OPENING_SIZE, iter_opening_units
from ..model.timebase import range_starts
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..tariffs.price_index import KIND_PRICE_INDEX, Series, SeriesError, load_series, verify_series
from .readings import CHUNK, MeteringApplet, ReadingsStore, encode_pairing, parse_date

__all__ = [
    "CHUNK",
    "CLASS_NAME",
    "SETTLEMENT_FORMAT",
    "SettlementApplet",
    "encode_pairing",
    "ReadingsStore",
    "install_series",
    "fetch_chunk",
]

CLASS_NAME = "meterhub.applets.settlement/1"


def install_series(rs: ReadingsStore, raw: bytes, keys: list[bytes], kind: str, slot: bytes) -> Series:
    """Check a signed series as the module docstring says (its signature under one of the
    customer's pinned ``keys``) and store it under ``slot``."""
    try:
        signed = load_series(raw)
    except SeriesError:
        raise ISOException(SW.WRONG_DATA, "malformed, unsigned or wrong-format series") from None
    if signed.series.kind != kind:
        raise ISOException(SW.WRONG_DATA, f"expected a {kind}")
    series = None
    for key in keys:
        try:
            series = verify_series(signed, key)
            break
        except SeriesError:
            continue
    if series is None:
        raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "series not signed by a pinned publisher")
    last = rs.last_day()
    if last is not None and series.expires <= last:
        raise ISOException(SW.DATA_INVALID, "series expired")
    old = rs.ctx.store.get(slot)
    if old is not None:
        cur = load_series(old).series
        if series.version < cur.version or (series.version == cur.version and series != cur):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "older version")
    rs.ctx.store.put(slot, bytes(raw))
    return series


def fetch_chunk(guard: Any, body: bytes) -> bytes:
    """Message ``03``: the chunk at ``u32 offset`` of the last statement the guard handed out."""
    if len(body) != 4:
        raise ISOException(SW.WRONG_LENGTH, "fetch takes a u32 offset")
    return bytes(guard.fetch(int.from_bytes(body, "big")))


def code_hash_of(cls: type) -> str:
    from ..card.gp.loadfile import applet_code_hash

    return applet_code_hash(cls).hex()


class SettlementApplet(MeteringApplet):
    """See the module docstring for the command set."""

    KEY_ROLE = "price-index"

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._cache: tuple[bytes, Series] | None = None

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA from the supplier's SD (GP API ``Application.processData``)."""
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x01:
            install_series(self.rs, body, self.signer_keys(), KIND_PRICE_INDEX, self._slot_of(body))
            return b""
        if kind == 0x02:
            return self._release(body)
        if kind == 0x03:
            return fetch_chunk(self.guard, body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    def _slot_of(self, raw: bytes) -> bytes:
        try:
            return b"i" + load_series(raw).series.series_id.encode()
        except SeriesError:
            raise ISOException(SW.WRONG_DATA, "malformed, unsigned or wrong-format series") from None

    def _index(self, series_id: str, version: int) -> Series:
        raw = self.ctx.store.get(b"i" + series_id.encode())
        if raw is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such index")
        if self._cache is None or self._cache[0] != raw:
            self._cache = (raw, load_series(raw).series)
        s = self._cache[1]
        if s.version != version:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "the hub holds another version")
        return s

    def _release(self, body: bytes) -> bytes:
        """A settlement statement of one whole settlement period, through the guard (a
        re-ask answers the same bytes; E and V count as two linear functionals)."""
        if len(body) < 12:
            raise ISOException(SW.WRONG_LENGTH, "settlement request too short")
        first_day, last_day = parse_date(body[:4]), parse_date(body[4:8])
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        again = self.guard.begin("settlement", first_day, last_day, body, chunked=True)
        if again is not None:
            return again
        st = self._settle(body)
        return self.guard.commit("settlement", first_day, last_day, body, st, functionals=2, chunked=True)

    def _settle(self, body: bytes) -> bytes:
        first_day, last_day = parse_date(body[:4]), parse_date(body[4:8])
        version = int.from_bytes(body[8:12], "big")
        try:
            series_id = body[12:].decode()
        except UnicodeDecodeError:
            raise ISOException(SW.WRONG_DATA, "bad index id") from None
        index = self._index(series_id, version)
        meter_id, tz, interval, _ = self.rs.pairing()
        first_index, blob = self.rs.period(first_day, last_day)
        starts = range_starts(first_day, (last_day - first_day).days + 1, tz, interval)
        if OPENING_SIZE * len(starts) != len(blob):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        try:
            prices = index.values_for(starts, interval)
        except SeriesError:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the index does not cover the period") from None
        e = re_ = v = rv = 0
        for p, (m, r) in zip(prices, iter_opening_units(blob), strict=True):
            e += m
            re_ += r
            v += p * m
            rv += p * r
        st = SettlementStatement(
            meter_id=meter_id,
            period_from=first_day,
            period_to=last_day,
            first_index=first_index,
            count=len(prices),
            index_id=index.series_id,
            index_version=index.version,
            index_digest=index.digest(),
            applet_aid=bytes(self.ctx.aid).hex().upper(),
            code_hash=code_hash_of(type(self)),
            energy_wh=e,
            energy_blinding=re_ % Q,
            value=v,
            value_blinding=rv % Q,
        )
        return st.to_json().encode()


register_applet_class(CLASS_NAME, SettlementApplet)
