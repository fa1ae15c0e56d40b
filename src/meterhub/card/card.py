"""The card OS: a sans-IO state machine from C-APDU bytes to R-APDU bytes.

``Card.transmit`` implements, in this order:

1. strict C-APDU decoding (ISO/IEC 7816-4 §5.1): ``6700``/``6E00``/``6D00``;
2. GET RESPONSE (ISO/IEC 7816-4 GET RESPONSE command, ``00 C0 00 00 Le``) for data left
   by a ``61xx`` answer, and the resend of a command answered ``6Cxx``;
3. logical channels from CLA (ISO/IEC 7816-4 §5.4.1) and MANAGE CHANNEL
   (ISO/IEC 7816-4 MANAGE CHANNEL command; JCRE §4.4);
4. applet SELECT by DF name, full or partial, first or next occurrence
   (ISO/IEC 7816-4 §11.2.2; JCRE §4.5.2; GPC 2.3.1 §11.9), with the
   life-cycle checks of GPC 2.3.1 §5.3 (INSTALLED or LOCKED answer ``6A82``);
5. dispatch to the selected applet in its own context; an uncaught
   ``ISOException`` gives its SW, a ``SecurityException`` ``6982``, anything
   else ``6F00`` (JCRE §3.3), and a transaction left open is aborted (JCRE §7.6).

The only exception that leaves ``transmit`` is :class:`PowerLoss`, the
simulated tear used by tests; after it the card is off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.apdu import CommandAPDU, ResponseAPDU
from ..protocols.iso7816.sw import SW, ISOException, bytes_remaining, correct_length, sw_bytes
from .guard import clear_issued, output_allowed
from .registry import AppletRecord, Registry
from .runtime import CLEAR_ON_DESELECT, CLEAR_ON_RESET, Runtime, SecurityException
from .store import PersistentStore, PowerLoss

__all__ = ["Card", "build_atr", "DEFAULT_HISTORICAL_BYTES", "SelectGuard"]

log = logging.getLogger(__name__)

#: Historical bytes (ISO/IEC 7816-4, historical bytes clause): category
#: indicator 80, then the card capabilities COMPACT-TLV object 73 (its three
#: software function tables):
#: selection by full and partial DF name (C0); data coding 00; extended Lc/Le
#: (b7), logical channels assigned by card or interface device (b5-b4 = 11)
#: and four logical channels (b3-b1 = 011).
DEFAULT_HISTORICAL_BYTES = bytes.fromhex("8073C0005B")

#: Optional policy hook (the GlobalPlatform card manager installs one): given
#: the candidate of a SELECT, return 9000 to allow, a 62xx/63xx warning to
#: allow with that SW (e.g. 6283 when the card is CARD_LOCKED, GPC 2.3.1
#: §11.9, SELECT response), or an error SW to refuse.
SelectGuard = Callable[[AppletRecord], int]

MAX_CHANNELS = 4


def build_atr(historical: bytes = DEFAULT_HISTORICAL_BYTES) -> bytes:
    """An ISO/IEC 7816-3 §8.2 ATR offering T=1 only.

    ``3B`` direct convention; T0 = ``8K`` (TD1 follows, K historical bytes);
    TD1 = ``81`` (TD2 follows, T=1); TD2 = ``31`` (TA3, TB3 follow, T=1);
    TA3 = ``FE`` (IFSC 254); TB3 = ``45`` (BWI 4, CWI 5); historical bytes;
    TCK so that T0..TCK XOR to zero (§8.2.5, required when T=1 is offered).
    """
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes((0x80 | len(historical), 0x81, 0x31, 0xFE, 0x45)) + bytes(historical)
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


@dataclass
class _Pending:
    data: bytes
    sw: int


@dataclass
class _Cached6C:
    header: bytes
    data: bytes
    sw: int


class Card:
    """A Java Card-like card: registry, runtime, channels, APDU processing.

    ``store`` is a :class:`PersistentStore`, a file path for one, or ``None``
    for a volatile in-memory store.
    """

    def __init__(
        self,
        store: PersistentStore | str | Path | None = None,
        *,
        historical_bytes: bytes = DEFAULT_HISTORICAL_BYTES,
    ) -> None:
        self.store = store if isinstance(store, PersistentStore) else PersistentStore(store)
        self.runtime = Runtime(self.store)
        self.registry = Registry(self.runtime)
        self.runtime.registry = self.registry
        self.runtime.card = self
        self.atr = build_atr(historical_bytes)
        self.select_guard: SelectGuard | None = None
        self.powered = False
        self._selected: dict[int, AID | None] = {}
        self._pending: dict[int, _Pending] = {}
        self._cached6c: dict[int, _Cached6C] = {}

    # --- power -------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Cold reset: fresh RAM, default applet on the basic channel; the ATR."""
        return self._reset()

    def reset(self) -> bytes:
        """Warm reset (same observable effect as power-on here); the ATR."""
        return self._reset()

    def power_off(self) -> None:
        """Remove power: RAM lost, open transaction lost, no deselect() calls."""
        self._lose_ram()
        self.powered = False

    def close(self) -> None:
        """Power off and close the store file."""
        self.power_off()
        self.store.close()

    def _lose_ram(self) -> None:
        if not self.store.closed and self.store.in_transaction:
            self.store.abort()  # JCRE §7.6: a tear rolls the transaction back
        for rec in self.registry:
            rec.context.clear_transients((CLEAR_ON_RESET, CLEAR_ON_DESELECT))
        self.runtime.reset_contexts()
        self._selected = {}
        self._pending.clear()
        self._cached6c.clear()

    def _reset(self) -> bytes:
        if self.store.closed:
            raise PowerLoss("the store was torn; build a new Card on the same file")
        self._lose_ram()
        self._selected = {0: None}
        self.powered = True
        default = self.registry.default_record()
        if default is not None and self._guard_ok(default) is not None:
            self._activate(0, default)  # JCRE §4.1: implicit selection, no process()
        return self.atr

    # --- queries -----------------------------------------------------------------------
    def is_selected(self, aid: AID | bytes | str) -> bool:
        """Is ``aid`` active on any logical channel?"""
        a = AID.of(aid)
        return any(v == a for v in self._selected.values())

    def selected(self, channel: int = 0) -> AID | None:
        return self._selected.get(channel)

    @property
    def open_channels(self) -> list[int]:
        return sorted(self._selected)

    # --- APDU entry point --------------------------------------------------------------
    def transmit(self, capdu: bytes) -> bytes:
        """Process one C-APDU; always returns R-APDU bytes ending with a SW."""
        if not self.powered:
            return sw_bytes(SW.UNKNOWN)
        # Every write of the command goes into one synced commit (card/store.py).
        self.store.begin_batch()
        try:
            try:
                out = self._transmit(bytes(capdu))
            finally:
                self.store.end_batch()
            return out
        except PowerLoss:
            self.powered = False
            raise
        except ISOException as exc:
            return sw_bytes(exc.sw)
        except SecurityException:
            return sw_bytes(SW.SECURITY_STATUS_NOT_SATISFIED)
        except Exception:  # the card never lets a Python error escape
            log.exception("internal error while processing %s", bytes(capdu).hex())
            return sw_bytes(SW.UNKNOWN)

    def transmit_apdu(self, apdu: CommandAPDU) -> ResponseAPDU:
        """Convenience: :meth:`transmit` with codec objects."""
        return ResponseAPDU.from_bytes(self.transmit(apdu.to_bytes()))

    def _transmit(self, raw: bytes) -> bytes:
        apdu = CommandAPDU.from_bytes(raw)
        ch = apdu.channel
        pending = self._pending.pop(ch, None)  # any other command discards it
        cached = self._cached6c.pop(ch, None)
        if ch >= MAX_CHANNELS:
            raise ISOException(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
        if apdu.interindustry and apdu.ins == 0xC0:
            return self._get_response(ch, apdu, pending)
        if (
            cached is not None
            and apdu.header == cached.header
            and apdu.case == 2
            and apdu.ne == len(cached.data)
        ):
            return cached.data + sw_bytes(cached.sw)  # the 6Cxx resend: no re-execution
        if self._is_applet_select(apdu):
            if ch not in self._selected:
                self._selected[ch] = None  # JCRE §4.5.2 step 3: SELECT opens the channel
            resp = self._select(ch, apdu)
        elif ch not in self._selected:
            raise ISOException(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
        elif apdu.interindustry and apdu.ins == 0x70:
            resp = self._manage_channel(ch, apdu)
        else:
            aid = self._selected[ch]
            if aid is None:
                raise ISOException(SW.APPLET_SELECT_FAILED)  # JCRE §4.5: no active applet
            rec = self.registry.get(aid)
            if rec is None:
                self._selected[ch] = None
                raise ISOException(SW.APPLET_SELECT_FAILED)
            resp = self._process(ch, rec, apdu, selecting=False)
        return self._deliver(ch, apdu, resp)

    # --- response length handling ------------------------------------------------------
    def _deliver(self, ch: int, apdu: CommandAPDU, resp: ResponseAPDU) -> bytes:
        """Fit the response to Ne (ISO/IEC 7816-4 §5.1, §5.6 61xx and 6Cxx)."""
        data, sw = resp.data, resp.sw
        if not data:
            return sw_bytes(sw)
        ne = apdu.ne
        if ne == 0:
            # No Le field: hold the data and say how much there is (61xx).
            self._pending[ch] = _Pending(data, sw)
            return sw_bytes(bytes_remaining(len(data)))
        if len(data) <= ne:
            return data + sw_bytes(sw)
        if apdu.case == 2 and not apdu.extended and len(data) <= 256:
            # Wrong short Le on a case-2 command: tell the exact length (6Cxx);
            # the answer is kept so the resend does not execute twice.
            self._cached6c[ch] = _Cached6C(apdu.header, data, sw)
            return sw_bytes(correct_length(len(data)))
        return self._chunk(ch, data, sw, ne)

    def _chunk(self, ch: int, data: bytes, sw: int, ne: int) -> bytes:
        head, rest = data[:ne], data[ne:]
        if rest:
            self._pending[ch] = _Pending(rest, sw)
            return head + sw_bytes(bytes_remaining(len(rest)))
        return head + sw_bytes(sw)

    def _get_response(self, ch: int, apdu: CommandAPDU, pending: _Pending | None) -> bytes:
        """GET RESPONSE (ISO/IEC 7816-4): case 2, P1-P2 = 0000."""
        if apdu.p1 or apdu.p2:
            if pending is not None:
                self._pending[ch] = pending
            raise ISOException(SW.INCORRECT_P1P2)
        if apdu.data:
            if pending is not None:
                self._pending[ch] = pending
            raise ISOException(SW.WRONG_LENGTH)
        if pending is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED)
        ne = apdu.ne or min(len(pending.data), 256)
        return self._chunk(ch, pending.data, pending.sw, ne)

    # --- MANAGE CHANNEL ----------------------------------------------------------------
    def _manage_channel(self, ch: int, apdu: CommandAPDU) -> ResponseAPDU:
        """MANAGE CHANNEL (ISO/IEC 7816-4; JCRE §4.4). P1 00 opens,
        P1 80 closes; P2 names the channel (00: the card assigns / this one)."""
        if apdu.data:
            raise ISOException(SW.WRONG_LENGTH)
        if apdu.p1 == 0x00:
            if apdu.p2 == 0:
                free = [n for n in range(1, MAX_CHANNELS) if n not in self._selected]
                if not free:
                    raise ISOException(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
                self._open_channel(ch, free[0])
                return ResponseAPDU(bytes((free[0],)))
            if apdu.p2 >= 20:
                raise ISOException(SW.INCORRECT_P1P2)
            if apdu.p2 >= MAX_CHANNELS:
                raise ISOException(SW.LOGICAL_CHANNEL_NOT_SUPPORTED)
            if apdu.p2 in self._selected:
                raise ISOException(SW.INCORRECT_P1P2)
            self._open_channel(ch, apdu.p2)
            return ResponseAPDU()
        if apdu.p1 == 0x80:
            target = apdu.p2 or ch
            if target == 0 or target not in self._selected:
                raise ISOException(SW.INCORRECT_P1P2)  # the basic channel never closes
            self._deactivate(target)
            del self._selected[target]
            self._pending.pop(target, None)
            self._cached6c.pop(target, None)
            return ResponseAPDU()
        raise ISOException(SW.INCORRECT_P1P2)

    def _open_channel(self, origin: int, new: int) -> None:
        """Open ``new`` and give it an applet as JCRE §4.4.1 does: from the
        basic channel the default applet, from another channel the applet
        active there. When that applet cannot be active twice (not
        multiselectable) or refuses, the channel stays open with no applet."""
        self._selected[new] = None
        if origin == 0:
            rec = self.registry.default_record()
        else:
            aid = self._selected.get(origin)
            rec = self.registry.get(aid) if aid is not None else None
        if rec is None or not self._visible(rec) or self._guard_ok(rec) is None:
            return
        if self.is_selected(rec.aid) and not _multiselectable(rec):
            return
        self._activate(new, rec)

    # --- SELECT -------------------------------------------------------------------------
    @staticmethod
    def _is_applet_select(apdu: CommandAPDU) -> bool:
        """JCRE §4.5.2 step 1: interindustry SELECT by DF name without SM."""
        return (
            apdu.interindustry
            and apdu.ins == 0xA4
            and apdu.p1 == 0x04
            and apdu.secure_messaging == 0
        )

    def _visible(self, rec: AppletRecord) -> bool:
        return rec.selectable and rec.instance is not None

    def _find(self, ch: int, apdu: CommandAPDU) -> AppletRecord | None:
        """Candidate for SELECT by DF name (ISO/IEC 7816-4 §11.2.2, P2 b2-b1):
        00 first or only occurrence (an exact match wins, else the first AID,
        in installation order, that starts with the data); 10 next occurrence
        after the applet selected on this channel."""
        name = apdu.data
        if not name:
            return self.registry.default_record()
        if len(name) > 16:
            return None
        if apdu.p2 & 0x03 == 0x00:
            exact = self.registry.get(name) if len(name) >= 5 else None
            if exact is not None:
                return exact if self._visible(exact) else None
            for rec in self.registry:
                if rec.aid.partial_equals(name) and self._visible(rec):
                    return rec
            return None
        current = self._selected.get(ch)
        passed = current is None
        for rec in self.registry:
            if not passed:
                passed = rec.aid == current
                continue
            if rec.aid.partial_equals(name) and self._visible(rec):
                return rec
        return None

    def _guard_ok(self, rec: AppletRecord) -> int | None:
        """SW the guard allows with (9000 or a warning), or None when refused."""
        if self.select_guard is None:
            return SW.NO_ERROR
        sw = int(self.select_guard(rec))
        return sw if sw == SW.NO_ERROR or sw >> 8 in (0x62, 0x63) else None

    def _select(self, ch: int, apdu: CommandAPDU) -> ResponseAPDU:
        if apdu.p2 & 0x03 not in (0x00, 0x02) or apdu.p2 & 0x0C not in (0x00, 0x0C) or apdu.p2 & 0xF0:
            raise ISOException(SW.INCORRECT_P1P2)
        rec = self._find(ch, apdu)
        if rec is None:
            active = self._selected.get(ch)
            active_rec = self.registry.get(active) if active is not None else None
            if active_rec is not None:  # JCRE §4.5.2 step 4: forward to the active applet
                return self._process(ch, active_rec, apdu, selecting=False)
            raise ISOException(SW.FILE_NOT_FOUND)
        guard_sw = int(self.select_guard(rec)) if self.select_guard is not None else SW.NO_ERROR
        if guard_sw != SW.NO_ERROR and guard_sw >> 8 not in (0x62, 0x63):
            raise ISOException(guard_sw)
        others = [c for c, a in self._selected.items() if a == rec.aid and c != ch]
        if others and not _multiselectable(rec):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED)  # JCRE §4.5.2 step 5
        self._deactivate(ch)
        if not self._activate(ch, rec):
            raise ISOException(SW.APPLET_SELECT_FAILED)
        resp = self._process(ch, rec, apdu, selecting=True)
        if guard_sw != SW.NO_ERROR and resp.sw == SW.NO_ERROR:
            resp = ResponseAPDU(resp.data, guard_sw)
        return resp

    def _activate(self, ch: int, rec: AppletRecord) -> bool:
        """Call ``select()`` in the applet's context (JCRE §4.5)."""
        inst = rec.instance
        if inst is None:
            return False
        rec.context.channel = ch
        try:
            with self.runtime.enter(rec.context):
                ok = bool(inst.select())
        except PowerLoss:
            raise
        except Exception:  # noqa: BLE001 - JCRE: an exception in select() is a refusal
            ok = False
        finally:
            if self.store.in_transaction:
                self.store.abort()
        self._selected[ch] = rec.aid if ok else None
        if not ok:
            rec.context.clear_transients((CLEAR_ON_DESELECT,))
        return ok

    def _deactivate(self, ch: int) -> None:
        """Deselect the applet on ``ch`` (JCRE §4.6), clearing its
        CLEAR_ON_DESELECT memory unless it stays active on another channel."""
        aid = self._selected.get(ch)
        if aid is None:
            return
        self._selected[ch] = None
        rec = self.registry.get(aid)
        if rec is None or rec.instance is None:
            return
        try:
            with self.runtime.enter(rec.context):
                rec.instance.deselect()
        except PowerLoss:
            raise
        except Exception:  # noqa: BLE001 - JCRE §4.6: deselection happens regardless
            log.debug("deselect() of %s raised", aid, exc_info=True)
        finally:
            if self.store.in_transaction:
                self.store.abort()
        if aid not in self._selected.values():
            rec.context.clear_transients((CLEAR_ON_DESELECT,))

    # --- process ------------------------------------------------------------------------
    def _process(
        self, ch: int, rec: AppletRecord, apdu: CommandAPDU, *, selecting: bool
    ) -> ResponseAPDU:
        """Run ``process`` in the applet's context and turn its outcome into an R-APDU."""
        inst = rec.instance
        if inst is None:
            raise ISOException(SW.FILE_NOT_FOUND)
        ctx = rec.context
        ctx.selecting, ctx.channel = selecting, ch
        clear_issued(self.runtime, rec.aid)
        try:
            with self.runtime.enter(ctx):
                out = inst.process(apdu)
        except PowerLoss:
            raise
        except ISOException as exc:
            return ResponseAPDU(b"", exc.sw)
        except SecurityException:
            return ResponseAPDU(b"", SW.SECURITY_STATUS_NOT_SATISFIED)
        except Exception:  # JCRE §3.3: any other uncaught exception is 6F00
            log.exception("applet %s raised", rec.aid)
            return ResponseAPDU(b"", SW.UNKNOWN)
        finally:
            ctx.selecting = False
            if not self.store.closed and self.store.in_transaction:
                self.store.abort()  # JCRE §7.6.x: a transaction still open is aborted
        if out is None:
            resp = ResponseAPDU()
        elif isinstance(out, ResponseAPDU):
            resp = out
        elif isinstance(out, bytes | bytearray | memoryview):
            resp = ResponseAPDU(bytes(out))
        else:
            log.error("applet %s returned %r", rec.aid, type(out))
            return ResponseAPDU(b"", SW.UNKNOWN)
        # The privacy guard's output gate (card/guard/common.py): on a card with a guard, an
        # application's data leaves only if the guard issued exactly those bytes.
        if not output_allowed(self.runtime, rec, resp.data, selecting=selecting):
            return ResponseAPDU(b"", SW.UNKNOWN)
        return resp


def _multiselectable(rec: AppletRecord) -> bool:
    """Whether ``rec``'s applet may be selected on several channels at once (JCRE §4.5.2)."""
    instance = rec.instance
    return instance is not None and type(instance).multiselectable
