"""Interop: Yubico's yubikit (PyPI ``yubikey-manager``) manages the hub's ISD in process.

yubikit is an independent SCP03 host: it sends every command in extended-length form (so
the C-MAC covers a 3-byte Lc), uses ``KeyRef(1, FF)`` for the default test keys
``40..4F``, encrypts empty bodies, and writes PUT KEY components without the clear-length
byte. Only the transport is ours: a ``SmartCardConnection`` that calls ``Card.transmit``.
"""

from __future__ import annotations

import pytest
from yubikit.core import TRANSPORT
from yubikit.core.smartcard import ApduError, SmartCardConnection
from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams
from yubikit.core.smartcard.scp import StaticKeys as YkKeys
from yubikit.securitydomain import SecurityDomainSession

from meterhub.card import Card
from meterhub.card.gp import ISD_AID, StaticKeys, provision_isd, provision_ssd
from meterhub.protocols.gp.host import GPClient, parse_get_status_response, parse_key_information

DEFAULT = bytes(range(0x40, 0x50))


class InProcess(SmartCardConnection):
    def __init__(self, card: Card) -> None:
        self.card = card
        self.sent: list[bytes] = []

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        self.sent.append(apdu)
        r = self.card.transmit(apdu)
        return r[:-2], int.from_bytes(r[-2:], "big")


@pytest.fixture
def card() -> Card:
    c = Card()
    provision_isd(c, [StaticKeys.single(0x30, DEFAULT)])
    provision_ssd(c, "A000000617534400", [StaticKeys.single(0x30, bytes(16))])
    c.power_on()
    return c


def _session(card: Card) -> tuple[SecurityDomainSession, InProcess]:
    conn = InProcess(card)
    sd = SecurityDomainSession(conn)
    sd.authenticate(Scp03KeyParams(ref=KeyRef(0x01, 0xFF), keys=YkKeys.default()))
    return sd, conn


@pytest.mark.interop
def test_yubikit_level_33_lists_registry(card: Card) -> None:
    sd, conn = _session(card)
    # EXTERNAL AUTHENTICATE went out in extended form, at level 33.
    assert any(a[:4] == bytes.fromhex("84823300") and a[4] == 0 for a in conn.sent)
    info = parse_key_information(sd.get_data(0xE0))
    assert [(k.kvn, k.length) for k in info] == [(0x30, 16)] * 3
    raw = sd.protocol.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")
    (isd,) = parse_get_status_response(raw, 0x80, tagged=True)
    assert isd.aid == ISD_AID
    raw = sd.protocol.send_apdu(0x80, 0xF2, 0x40, 0x00, b"\x4f\x00")
    assert [e.aid.hex() for e in parse_get_status_response(raw, 0x40, tagged=False)] == [
        "A000000617534400"
    ]
    # A command without data: yubikit encrypts the empty body into one padded block.
    assert sd.get_data(0x66)[:1] == b"\x66"


@pytest.mark.interop
def test_yubikit_wrong_keys_refused(card: Card) -> None:
    conn = InProcess(card)
    sd = SecurityDomainSession(conn)
    with pytest.raises(ValueError):  # yubikit: wrong card cryptogram
        sd.authenticate(Scp03KeyParams(ref=KeyRef(0x01, 0xFF), keys=YkKeys(*[bytes(16)] * 3)))
    with pytest.raises(ApduError) as exc:  # plain management command: no session
        sd.protocol.send_apdu(0x80, 0xF2, 0x80, 0x02, b"\x4f\x00")
    assert exc.value.sw == 0x6982


@pytest.mark.interop
def test_yubikit_put_key_rotates_keys(card: Card) -> None:
    sd, _ = _session(card)
    new = YkKeys(bytes([0x11]) * 16, bytes([0x22]) * 16, bytes([0x33]) * 16)
    sd.put_key(KeyRef(0x01, 0x31), new, replace_kvn=0x30)  # checks the KCVs we answer
    # Old keys fail, new keys work (with meterhub's own host this time).
    cl = GPClient(card.transmit)
    cl.select(ISD_AID)
    with pytest.raises(Exception):  # noqa: B017 - KVN 30 is gone: 6A88
        cl.open(StaticKeys.single(0x30, DEFAULT))
    cl.select(ISD_AID)
    cl.open(StaticKeys(0x31, new.key_enc, new.key_mac, new.key_dek), 0x33)
    assert [e.aid for e in cl.get_status(0x80)] == [ISD_AID]
