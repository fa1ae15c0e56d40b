"""The output gate against applet paths that forget the guard (docs/privacy.md, "The
output gate"): responses to SELECT, GET RESPONSE chaining, logical channels, STORE DATA."""

from __future__ import annotations

import pytest

from meterhub.card import ins, register_applet_class
from meterhub.hub.secure_element import SETTLEMENT_APP_AID, SUPPLIER_SD_AID, ReadingsClient
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.protocols.iso7816.tlv import TLV
from meterhub.utility.settlement import AppletMailbox, HubRefused
from test_guard import Leaky, _log, hub  # noqa: F401 - the fixture

SPY_AID = "F04D48004C4B0201"


class SelectLeaky(Leaky):
    """Puts the openings it holds into its SELECT answer (the FCI's proprietary part)."""

    def fci_proprietary(self) -> list[TLV]:
        last = self.rs.last_day()
        blob = self.rs.period(last, last)[1][:120] if last is not None else b""
        return [TLV(0xC0, blob)] if blob else []

    @ins(0x5A, cla=0x80)
    def big(self, apdu: CommandAPDU) -> bytes:
        return self.rs.period(self.rs.last_day(), self.rs.last_day())[1]  # > 256 bytes: chained


register_applet_class("tests.select-leaky/1", SelectLeaky)


def _select(card, aid: str, channel: int = 0) -> ResponseAPDU:
    return ResponseAPDU.from_bytes(card.transmit(CommandAPDU(channel, 0xA4, 0x04, 0x00, bytes.fromhex(aid),
                                                             le=256).to_bytes()))


def _fed(hub):  # noqa: F811
    h = hub.h
    hub.card.registry.install_applet("tests.select-leaky/1", SPY_AID, sd_aid=SUPPLIER_SD_AID)
    rc = ReadingsClient(hub.card.transmit, SPY_AID)
    rc.select()
    rc.pair(h.registration.meter_id, "Europe/Berlin", 15)
    for d in h.days:
        rc.put_openings(d.batch.batch.day, d.first_index, d.openings)


def test_a_select_answer_carries_only_the_plain_fci(hub):  # noqa: F811
    _fed(hub)
    count0 = _log(hub.card)[0]
    r = _select(hub.card, SPY_AID)
    assert r.sw == 0x6F00 and r.data == b""  # the FCI with readings in it is withheld
    # A plain FCI (P2 asks for no data, or an applet without proprietary objects) passes.
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x0C, bytes.fromhex(SPY_AID)).to_bytes()))
    assert r.sw == 0x9000 and r.data == b""
    r = _select(hub.card, SETTLEMENT_APP_AID)
    assert r.sw == 0x9000 and r.data == TLV.build(0x6F, [TLV(0x84, bytes.fromhex(SETTLEMENT_APP_AID)),
                                                        TLV.build(0xA5, [])]).to_bytes()
    assert _log(hub.card)[0] == count0


def test_chaining_and_other_channels_release_nothing(hub):  # noqa: F811
    _fed(hub)
    count0 = _log(hub.card)[0]
    # A long answer would be chained with 61xx / GET RESPONSE: the gate sees it whole first.
    hub.card.transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x0C, bytes.fromhex(SPY_AID)).to_bytes())
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x80, 0x5A, 0, 0, b"").to_bytes()))
    assert (r.sw, r.data) == (0x6F00, b"")
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x00, 0xC0, 0, 0, b"", le=256).to_bytes()))
    assert r.data == b"" and r.sw != 0x9000 and r.sw >> 8 != 0x61
    # On logical channel 1 (MANAGE CHANNEL open), the same.
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x00, 0x70, 0x00, 0x00, b"", le=1).to_bytes()))
    assert r.sw == 0x9000 and r.data == b"\x01"
    _select(hub.card, SETTLEMENT_APP_AID)  # channel 0 moves on (the applet is not multiselectable)
    r = ResponseAPDU.from_bytes(hub.card.transmit(CommandAPDU(0x01, 0xA4, 0x04, 0x0C, bytes.fromhex(SPY_AID)).to_bytes()))
    assert r.sw == 0x9000
    for cmd in (CommandAPDU(0x81, 0x58, 0, 0, b"", le=256), CommandAPDU(0x81, 0x5A, 0, 0, b"")):
        r = ResponseAPDU.from_bytes(hub.card.transmit(cmd.to_bytes()))
        assert (r.sw, r.data) == (0x6F00, b"")
    # STORE DATA through the supplier's own SCP03 domain (level 33): withheld too.
    with pytest.raises(HubRefused) as e:
        AppletMailbox(hub.mailbox("supplier", SETTLEMENT_APP_AID).tsm, SPY_AID).send(b"\x02", "leak")
    assert e.value.sw == 0x6F00
    assert _log(hub.card)[0] == count0
