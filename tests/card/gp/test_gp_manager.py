"""The GlobalPlatform card manager end to end: SCP03 sessions at every level, card content
management, GET STATUS formats and continuation, life cycles, PUT KEY, DAP, persistence.

Hosts here are meterhub's own :class:`GPClient` over an in-process :class:`Card`; the byte
layouts they exchange are checked against GlobalPlatformPro in tests/protocols/gp/test_gp_vectors.py.
"""

from __future__ import annotations

import pytest

from meterhub.card import Applet, AppletContext, Card, ins, register_applet_class
from meterhub.card.gp import (
    CARD_LOCKED,
    INITIALIZED,
    ISD_AID,
    OP_READY,
    SECURED,
    TERMINATED,
    StaticKeys,
    card_life_cycle,
    make_load_file,
    open_card,
    provision_isd,
    provision_ssd,
    sign_load_file,
)
from meterhub.card.gp.sd import MAX_STATUS_DATA
from meterhub.crypto import ecdsa
from meterhub.protocols.gp.host import (
    GPClient,
    GPError,
    get_status_data,
    install_for_install_data,
    install_for_load_data,
    load_blocks,
    load_file,
    parse_key_information,
    select_apdu,
)
from meterhub.protocols.gp.scp03 import (
    SCP03Error,
    aes_cmac,
    derive_session_keys,
    host_cryptogram,
)
from meterhub.protocols.iso7816 import CommandAPDU

SUPPLIER = "A000000617534400"
GRID = "A000000617534401"
THIRD = "A000000617534402"
PKG = "A0000006174D01"
MODULE = "A0000006174D0101"
APP = "A0000006174D010101"

TEST_KEY = bytes(range(0x40, 0x50))
ISD_KEYS = StaticKeys.single(0x30, TEST_KEY)
SUP_KEYS = StaticKeys(0x30, bytes([1]) * 16, bytes([2]) * 16, bytes([3]) * 16)
GRID_KEYS = StaticKeys(0x30, bytes([4]) * 24, bytes([5]) * 24, bytes([6]) * 24)
THIRD_KEYS = StaticKeys(0x31, bytes([7]) * 32, bytes([8]) * 32, bytes([9]) * 32)


class Tariffed(Applet):
    """A test applet: counts, and takes personalization data through STORE DATA."""

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> Tariffed:
        ctx.store.put(b"params", params)
        return cls(ctx)

    @ins(0x10)
    def read(self, apdu: CommandAPDU) -> bytes:
        return (self.ctx.store.get(b"params") or b"") + (self.ctx.store.get(b"tariff") or b"")

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """GP API Application.processData: a signed tariff arrives here."""
        old = self.ctx.store.get(b"tariff") or b""
        self.ctx.store.put(b"tariff", (old if apdu.p2 else b"") + apdu.data)
        return b""


class NotReviewed(Applet):
    pass


register_applet_class("test.gp.tariffed", Tariffed)
register_applet_class("test.gp.notreviewed", NotReviewed)

DAP_ISD = ecdsa.generate_signing_key()
DAP_SUP = ecdsa.generate_signing_key()
DAP_GRID = ecdsa.generate_signing_key()


def provision(card: Card) -> None:
    provision_isd(card, [ISD_KEYS], dap_key=DAP_ISD, iin=b"\x12\x34", cin=b"\x56" * 8)
    provision_ssd(card, SUPPLIER, [SUP_KEYS], dap_key=DAP_SUP)
    provision_ssd(card, GRID, [GRID_KEYS], dap_key=DAP_GRID)
    provision_ssd(card, THIRD, [THIRD_KEYS])


@pytest.fixture
def card() -> Card:
    c = Card()
    provision(c)
    c.power_on()
    return c


def client(card: Card, sd: str | bytes = ISD_AID.raw, keys: StaticKeys = ISD_KEYS, level=0x01):
    cl = GPClient(card.transmit)
    _, sw = cl.select(sd)
    assert sw == 0x9000
    cl.open(keys, level)
    return cl


def package(key=DAP_SUP, sd: str = SUPPLIER, cls=Tariffed, pkg=PKG, module=MODULE) -> bytes:
    lfdb = make_load_file(pkg, {module: cls})
    return load_file(lfdb, [(sd, sign_load_file(lfdb, key))])


def install_tariffed(cl: GPClient, sd: str = SUPPLIER, key=DAP_SUP) -> None:
    cl.install_for_load(PKG, sd)
    cl.load(package(key, sd))
    cl.install(PKG, MODULE, APP, params=b"\xaa")


# --- full flows at every security level ---------------------------------------------------
@pytest.mark.parametrize("level", [0x01, 0x03, 0x13, 0x33])
def test_full_management_flow(card: Card, level: int) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, level)
    cl.install_for_load(PKG, SUPPLIER)
    cl.load(package())
    cl.install(PKG, MODULE, APP, params=b"\xaa")
    # The new applet answers.
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0010000000")) == b"\xaa\x90\x00"
    # The registry as the supplier sees it, both formats.
    cl = client(card, SUPPLIER, SUP_KEYS, level)
    apps = cl.get_status(0x40)
    assert [e.aid.hex() for e in apps] == [SUPPLIER, APP]
    assert apps[1].life_cycle == 0x07 and apps[1].sd_aid.hex() == SUPPLIER
    assert apps[1].elf_aid.hex() == PKG
    legacy = cl.get_status(0x40, tagged=False)
    assert [(e.aid.hex(), e.life_cycle) for e in legacy] == [(SUPPLIER, 0x0F), (APP, 0x07)]
    mods = cl.get_status(0x10)
    assert [(e.aid.hex(), [m.hex() for m in e.modules]) for e in mods] == [(PKG, [MODULE])]
    assert cl.get_status(0x10, tagged=False)[0].modules[0].hex() == MODULE
    assert cl.get_status(0x20)[0].version == b"\x01\x00"
    # Lock, then the applet is unreachable; unlock restores it.
    cl.set_status(0x40, 0x80, APP)
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x82"
    cl = client(card, SUPPLIER, SUP_KEYS, level)
    assert cl.get_status(0x40, aid_prefix=APP)[0].life_cycle == 0x87
    cl.set_status(0x40, 0x00, APP)
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    # Delete the load file with its instance.
    cl = client(card, SUPPLIER, SUP_KEYS, level)
    with pytest.raises(GPError) as exc:
        cl.delete(PKG)  # instances exist and P2 does not say "related"
    assert exc.value.sw == 0x6985
    cl.delete(PKG, related=True)
    assert card.registry.get(APP) is None
    assert cl.get_status(0x20) == []
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x82"


def test_install_then_make_selectable_and_delete_instance(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    cl.install_for_load(PKG, SUPPLIER)
    cl.load(package())
    cl.install(PKG, MODULE, APP, make_selectable=False)
    assert card.registry.get(APP).state == 0x03
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x82"
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    cl.make_selectable(APP)
    with pytest.raises(GPError) as exc:
        cl.make_selectable(APP)
    assert exc.value.sw == 0x6985
    cl.delete(APP)
    assert card.registry.get(APP) is None
    assert [e.aid.hex() for e in cl.get_status(0x20)] == [PKG]  # the load file stays


def test_store_data_personalizes_applet(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    install_tariffed(cl)
    cl.install_for_personalization(APP)
    cl.store_data([b"signed-", b"tariff"], p1_format=0x00)
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0010000000")) == b"\xaasigned-tariff\x90\x00"
    # Out-of-sequence block numbers are refused.
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    cl.install_for_personalization(APP)
    assert cl.send(0xE2, 0x80, 0x05, b"x")[1] == 0x6A86


def test_store_data_iin_cin_and_get_data(card: Card) -> None:
    cl = client(card)
    assert cl.get_data(0x0042) == bytes.fromhex("42021234")
    # BER-TLV then DGI structure (P1 b5-b4 = 10 / 01).
    cl.store_data([bytes.fromhex("4203ABCDEF")], p1_format=0x10)
    assert cl.get_data(0x0042) == bytes.fromhex("4203ABCDEF")
    cl.store_data([bytes.fromhex("0045020102")], p1_format=0x08)
    assert cl.get_data(0x0045) == bytes.fromhex("45020102")
    assert cl.send(0xE2, 0x90, 0x00, bytes.fromhex("5A0101"))[1] == 0x6A80
    assert cl.send(0xCA, 0x9F, 0x7F)[1] == 0x6A88


def test_get_data_without_session(card: Card) -> None:
    card.transmit(select_apdu(ISD_AID.raw))
    r = card.transmit(bytes.fromhex("80CA00E000"))
    assert r[-2:] == b"\x90\x00"
    info = parse_key_information(r[:-2])
    assert [(k.key_id, k.kvn, k.key_type, k.length) for k in info] == [
        (1, 0x30, 0x88, 16),
        (2, 0x30, 0x88, 16),
        (3, 0x30, 0x88, 16),
    ]
    r = card.transmit(bytes.fromhex("80CA006600"))
    # GPC 2.3.1 §H.2 layout; the SCP03 i=70 entry as in GPPro's TestParseTags second sample.
    assert r[:-2].startswith(bytes.fromhex("66"))
    assert bytes.fromhex("640B06092A864886FC6B040370") in r
    assert bytes.fromhex("600C060A2A864886FC6B02020301") in r
    assert card.transmit(bytes.fromhex("00CA004500"))[:-2] == bytes.fromhex("4508") + b"\x56" * 8


# --- refusals --------------------------------------------------------------------------------
def test_no_session_answers_6982(card: Card) -> None:
    card.transmit(select_apdu(ISD_AID.raw))
    ifl = install_for_load_data(PKG, SUPPLIER)
    for apdu in (
        CommandAPDU(0x80, 0xE6, 0x02, 0x00, ifl, 256),
        CommandAPDU(0x80, 0xE8, 0x80, 0x00, bytes.fromhex("C400")),
        CommandAPDU(0x80, 0xE4, 0x00, 0x00, bytes.fromhex("4F07" + PKG)),
        CommandAPDU(0x80, 0xF2, 0x40, 0x02, get_status_data(), 256),
        CommandAPDU(0x80, 0xF0, 0x40, 0x80, bytes.fromhex(APP)),
        CommandAPDU(0x80, 0xD8, 0x00, 0x81, b"\x31"),
        CommandAPDU(0x80, 0xE2, 0x80, 0x00, b"\xaa"),
        CommandAPDU(0x84, 0xF2, 0x40, 0x02, get_status_data() + bytes(8), 256),
    ):
        assert card.transmit(apdu.to_bytes())[-2:] == b"\x69\x82", apdu


def test_level_00_session_manages_nothing(card: Card) -> None:
    cl = client(card, level=0x00)
    assert cl.send(0xF2, 0x40, 0x02, get_status_data())[1] == 0x6982


def test_plain_command_inside_session_closes_it(card: Card) -> None:
    cl = client(card, level=0x01)
    assert card.transmit(bytes.fromhex("80F24002024F0000"))[-2:] == b"\x69\x82"
    with pytest.raises((GPError, SCP03Error)):  # the session is gone on both ends now
        cl.get_status(0x40)


def test_other_domains_keys_never_open_a_channel(card: Card) -> None:
    # Same KVN (30) in the ISD and the supplier SD: the supplier's keys on the ISD give a
    # card cryptogram the host rejects, and a forged EXTERNAL AUTHENTICATE gets 6982.
    cl = GPClient(card.transmit)
    cl.select(ISD_AID.raw)
    with pytest.raises(SCP03Error):  # the host's card-cryptogram check
        cl.open(SUP_KEYS)
    for target, keys in ((ISD_AID.raw, SUP_KEYS), (GRID, SUP_KEYS), (SUPPLIER, GRID_KEYS)):
        card.transmit(select_apdu(target))
        host_chal = bytes(range(8))
        r = card.transmit(bytes.fromhex("8050300008") + host_chal + b"\x00")
        assert r[-2:] == b"\x90\x00"
        card_chal = r[13:21]
        s = derive_session_keys(keys, host_chal, card_chal)
        crypto = host_cryptogram(s.s_mac, host_chal, card_chal, 8)
        mac = aes_cmac(s.s_mac, bytes(16) + bytes.fromhex("8482010010") + crypto)[:8]
        assert card.transmit(bytes.fromhex("8482010010") + crypto + mac) == b"\x69\x82"
    # A KVN the domain does not have: 6A88.
    card.transmit(select_apdu(THIRD))
    assert card.transmit(bytes.fromhex("8050300008") + bytes(8) + b"\x00") == b"\x6a\x88"
    # And the rightful keys do work on each domain.
    for sd, keys in ((SUPPLIER, SUP_KEYS), (GRID, GRID_KEYS), (THIRD, THIRD_KEYS)):
        client(card, sd, keys, 0x33).get_status(0x40)


def test_ssd_sees_and_manages_only_its_own(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x03)
    install_tariffed(cl)
    grid = client(card, GRID, GRID_KEYS, 0x03)
    assert [e.aid.hex() for e in grid.get_status(0x40)] == [GRID]
    assert grid.get_status(0x20) == []
    assert grid.get_status(0x80) == []  # 6A88: only the ISD reports itself
    with pytest.raises(GPError) as exc:
        grid.delete(APP)
    assert exc.value.sw == 0x6A88
    with pytest.raises(GPError) as exc:
        grid.set_status(0x40, 0x80, APP)
    assert exc.value.sw == 0x6A88
    with pytest.raises(GPError) as exc:
        grid.install_for_load("A0000006174D02", SUPPLIER)  # loading into another domain
    assert exc.value.sw == 0x6982
    # The ISD sees everything.
    isd = client(card)
    assert {e.aid.hex() for e in isd.get_status(0x40)} == {SUPPLIER, GRID, THIRD, APP}


def test_tampered_unsigned_and_unknown_packages_refused(card: Card) -> None:
    lfdb = make_load_file(PKG, {MODULE: Tariffed})
    good = sign_load_file(lfdb, DAP_SUP)
    tampered = lfdb[:-1] + bytes([lfdb[-1] ^ 1])

    def signed(name: str, digest: bytes = bytes(32)) -> bytes:
        other = make_load_file(PKG, {MODULE: (name, digest)})
        return load_file(other, [(SUPPLIER, sign_load_file(other, DAP_SUP))])

    cases = {
        "unsigned": load_file(lfdb),
        "tampered": load_file(tampered, [(SUPPLIER, good)]),
        "wrong key": load_file(lfdb, [(SUPPLIER, sign_load_file(lfdb, DAP_GRID))]),
        "bad signature": load_file(lfdb, [(SUPPLIER, good[:-1] + bytes([good[-1] ^ 1]))]),
        "unknown class": signed("test.gp.absent"),
        "wrong code hash": signed("test.gp.tariffed"),
        "security domain class": signed("meterhub.gp.sd"),
        "other package AID": package(pkg="A0000006174D09"),
        "DAP of a domain without DAP key": load_file(lfdb, [(SUPPLIER, good), (THIRD, good)]),
        "not a load file": bytes.fromhex("C1020000"),
    }
    for name, lf in cases.items():
        cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
        cl.install_for_load(PKG, SUPPLIER)
        sws = [cl.send(0xE8, p1, p2, block)[1] for p1, p2, block in load_blocks(lf, 100)]
        assert sws[-1] == 0x6A80, name
        assert cl.get_status(0x20) == [], name
        assert card.registry.get(APP) is None
    # Mismatching hash announced in INSTALL [for load].
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    cl.install_for_load(PKG, SUPPLIER, lfdb_hash=bytes(32))
    assert [cl.send(0xE8, p1, p2, b)[1] for p1, p2, b in load_blocks(package(), 150)][-1] == 0x6A80
    # Any registered class with its true code hash and a good DAP is accepted.
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    cl.install_for_load(PKG, SUPPLIER)
    cl.load(package(cls=NotReviewed))
    assert [e.aid.hex() for e in cl.get_status(0x20)] == [PKG]


def test_unsigned_load_refused_even_for_domain_without_dap_privilege(card: Card) -> None:
    # THIRD has DAP privilege but no DAP key: its loads need a DAP it cannot check -> 6A80.
    cl = client(card, THIRD, THIRD_KEYS, 0x01)
    cl.install_for_load(PKG, THIRD)
    lfdb = make_load_file(PKG, {MODULE: Tariffed})
    sws = [cl.send(0xE8, p1, p2, b)[1] for p1, p2, b in load_blocks(load_file(lfdb), 200)]
    assert sws[-1] == 0x6A80


def test_load_sequence_errors(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x01)
    assert cl.send(0xE8, 0x80, 0x00, b"\xc4\x00")[1] == 0x6985  # no INSTALL [for load]
    cl.install_for_load(PKG, SUPPLIER)
    assert cl.send(0xE8, 0x00, 0x01, b"\xc4")[1] == 0x6A86  # block 1 before block 0
    assert cl.send(0xE8, 0x80, 0x00, b"\xc4\x00")[1] == 0x6985  # the load was abandoned
    with pytest.raises(GPError) as exc:
        cl.install_for_load(SUPPLIER, SUPPLIER)  # AID in use
    assert exc.value.sw == 0x6A80
    with pytest.raises(GPError) as exc:
        cl.install_for_load(PKG, "A000000617FFFF")
    assert exc.value.sw == 0x6A88
    with pytest.raises(GPError) as exc:
        cl.install("A0000006174D07", MODULE, APP)  # no such load file
    assert exc.value.sw == 0x6A88
    assert cl.send(0xE6, 0x40, 0x00, b"")[1] == 0x6A86  # registry update: not offered


def test_install_refusals(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x01)
    install_tariffed(cl)
    cases = [
        (install_for_install_data(PKG, MODULE, APP), 0x6A80),  # duplicate instance
        (install_for_install_data(PKG, "A0000006174D0199", "A0000006174D010102"), 0x6A88),
        (install_for_install_data(PKG, MODULE, "A0000006174D010103", b"\x80\x00\x00"), 0x6A80),
        (install_for_install_data(PKG, MODULE, PKG), 0x6A80),  # AID of a load file
        (b"\x01", 0x6A80),
    ]
    for data, sw in cases:
        assert cl.send(0xE6, 0x0C, 0x00, data)[1] == sw, data.hex()
    # An SSD cannot be created over the air (provision_ssd does it, with its keys).
    isd = client(card)
    data = install_for_install_data(
        "A0000001515350", "A000000151535041", "A000000617534409", b"\x80\x00\x00"
    )
    assert isd.send(0xE6, 0x0C, 0x00, data)[1] == 0x6985


def test_delete_refusals(card: Card) -> None:
    isd = client(card)
    for aid, sw in ((ISD_AID.hex(), 0x6985), ("A0000001515350", 0x6985), (APP, 0x6A88)):
        with pytest.raises(GPError) as exc:
            isd.delete(aid)
        assert exc.value.sw == sw
    sup = client(card, SUPPLIER, SUP_KEYS)
    install_tariffed(sup)
    isd = client(card)
    with pytest.raises(GPError) as exc:
        isd.delete(SUPPLIER)  # still has content
    assert exc.value.sw == 0x6985
    # The ISD can delete an SSD's applet and then the empty SSD.
    isd.delete(PKG, related=True)
    isd.delete(SUPPLIER)
    assert card.registry.get(SUPPLIER) is None
    assert card.transmit(select_apdu(SUPPLIER))[-2:] == b"\x6a\x82"
    # A selected applet cannot go.
    grid = client(card, GRID, GRID_KEYS)
    grid.install_for_load(PKG, GRID)
    grid.load(package(DAP_GRID, GRID))
    grid.install(PKG, MODULE, APP)
    assert card.transmit(bytes.fromhex("0070000001"))[-2:] == b"\x90\x00"  # channel 1
    assert card.transmit(bytes.fromhex("01A4040009") + bytes.fromhex(APP) + b"\x00")[-2:] == (
        b"\x90\x00"
    )
    assert grid.send(0xE4, 0x00, 0x80, bytes.fromhex("4F07" + PKG))[1] == 0x6985


# --- GET STATUS continuation ---------------------------------------------------------------
def test_get_status_6310_continuation(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    install_tariffed(cl)
    aids = []
    for i in range(30):
        aid = "A0000006174D0101%02X00" % (0x10 + i) + "0000000000"
        cl.install(PKG, MODULE, aid)
        aids.append(aid)
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    data = get_status_data()
    first, sw = cl.send(0xF2, 0x40, 0x02, data)
    assert sw == 0x6310 and 0 < len(first) <= MAX_STATUS_DATA
    raw, n = first, 1
    while sw == 0x6310:
        chunk, sw = cl.send(0xF2, 0x40, 0x03, data)
        raw += chunk
        n += 1
    assert sw == 0x9000 and n >= 3
    # After the end, "next" has nothing to continue.
    assert cl.send(0xF2, 0x40, 0x03, data)[1] == 0x6A86
    for tagged in (True, False):
        entries = cl.get_status(0x40, tagged=tagged)
        assert [e.aid.hex() for e in entries] == [SUPPLIER, APP] + aids
    # A wrong P1/P2 or search criteria.
    assert cl.send(0xF2, 0x30, 0x02, data)[1] == 0x6A86
    assert cl.send(0xF2, 0x40, 0x06, data)[1] == 0x6A86
    assert cl.send(0xF2, 0x40, 0x02, b"\x5c\x00")[1] == 0x6A80
    assert cl.send(0xF2, 0x40, 0x02, get_status_data("A0000009"))[1] == 0x6A88


def test_get_status_isd_both_formats(card: Card) -> None:
    cl = client(card, level=0x13)
    (isd,) = cl.get_status(0x80)
    assert isd.aid == ISD_AID and isd.life_cycle == SECURED
    assert isd.privileges == bytes.fromhex("DC5C00")
    (legacy,) = cl.get_status(0x80, tagged=False)
    assert (legacy.aid, legacy.life_cycle, legacy.privileges) == (ISD_AID, SECURED, b"\xdc")
    elfs = cl.get_status(0x10)
    assert [m.hex() for m in elfs[0].modules] == ["A000000151535041"]


# --- PUT KEY --------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [16, 24, 32])
def test_put_key_replace_then_old_fail_new_work(card: Card, length: int) -> None:
    new = StaticKeys(0x31, bytes([0x11]) * length, bytes([0x22]) * length, bytes([0x33]) * length)
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    kvn, kcvs = cl.put_key(new, replace_kvn=0x30)
    assert kvn == 0x31 and kcvs == list(new.kcv())
    cl.get_status(0x40)  # the running session continues
    with pytest.raises(GPError) as exc:  # the card has no KVN 30 any more
        client(card, SUPPLIER, SUP_KEYS)
    assert exc.value.sw == 0x6A88
    cl = client(card, SUPPLIER, new, 0x33)
    info = parse_key_information(cl.get_data(0x00E0))
    assert {(k.kvn, k.length) for k in info} == {(0x31, length)}
    # Add a second key set (P1 = 00), then adding it again is refused.
    extra = StaticKeys(0x32, bytes([0x44]) * 16, bytes([0x55]) * 16, bytes([0x66]) * 16)
    assert cl.put_key(extra)[0] == 0x32
    with pytest.raises(GPError) as exc:
        cl.put_key(extra)
    assert exc.value.sw == 0x6A80
    with pytest.raises(GPError) as exc:
        cl.put_key(extra, replace_kvn=0x40)
    assert exc.value.sw == 0x6A88
    client(card, SUPPLIER, extra, 0x01)
    # The other domains are untouched.
    client(card, GRID, GRID_KEYS, 0x01)


def test_put_key_bad_data(card: Card) -> None:
    from meterhub.protocols.gp.host import put_key_data

    cl = client(card, SUPPLIER, SUP_KEYS, 0x03)
    new = StaticKeys(0x31, bytes(16), bytes(16), bytes(16))
    good = put_key_data(new, SUP_KEYS.dek)
    wrong_dek = put_key_data(new, bytes(16))  # KCVs no longer match the decrypted keys
    assert cl.send(0xD8, 0x00, 0x81, wrong_dek)[1] == 0x6A80
    assert cl.send(0xD8, 0x00, 0x01, good)[1] == 0x6A86
    assert cl.send(0xD8, 0x00, 0x81, good[:-4])[1] == 0x6A80
    assert cl.send(0xD8, 0x00, 0x81, b"\x00" + good[1:])[1] == 0x6A80  # KVN 00
    assert cl.send(0xD8, 0x00, 0x81, good)[1] == 0x9000


def test_counter_persists_and_exhaustion_ends_key_set(tmp_path) -> None:
    path = tmp_path / "hub.db"
    card = Card(path)
    provision(card)
    card.power_on()
    cl = client(card, SUPPLIER, SUP_KEYS)
    first = cl.scp.sequence_counter
    card.close()
    card = open_card(path)
    card.power_on()
    cl = client(card, SUPPLIER, SUP_KEYS)
    assert cl.scp.sequence_counter == first + 1
    # Exhaust it: 6985, and PUT KEY of a new key set restarts the count.
    card.store.put(bytes.fromhex(SUPPLIER), b"C\x30", b"\xff\xff\xfe")
    cl = client(card, SUPPLIER, SUP_KEYS)
    new = StaticKeys(0x30, bytes([0xA1]) * 16, bytes([0xA2]) * 16, bytes([0xA3]) * 16)
    cl.put_key(new, replace_kvn=0x30)
    card.transmit(select_apdu(SUPPLIER))
    assert card.transmit(bytes.fromhex("8050300008") + bytes(8) + b"\x00")[-2:] == b"\x90\x00"
    cl = client(card, SUPPLIER, new)
    assert cl.scp.sequence_counter == 2
    card.store.put(bytes.fromhex(SUPPLIER), b"C\x30", b"\xff\xff\xff")
    card.transmit(select_apdu(SUPPLIER))
    assert card.transmit(bytes.fromhex("8050300008") + bytes(8) + b"\x00") == b"\x69\x85"
    card.close()


# --- life cycles ----------------------------------------------------------------------------
def test_card_life_cycle_transitions(tmp_path) -> None:
    path = tmp_path / "hub.db"
    card = Card(path)
    provision_isd(card, [ISD_KEYS], dap_key=DAP_ISD, life_cycle=OP_READY)
    provision_ssd(card, SUPPLIER, [SUP_KEYS], dap_key=DAP_SUP)
    card.power_on()
    cl = client(card)
    cl.set_status(0x80, INITIALIZED)
    with pytest.raises(GPError) as exc:
        cl.set_status(0x80, OP_READY)  # never backwards
    assert exc.value.sw == 0x6985
    with pytest.raises(GPError) as exc:
        cl.set_status(0x80, CARD_LOCKED)  # locking needs SECURED
    assert exc.value.sw == 0x6985
    cl.set_status(0x80, SECURED)
    sup = client(card, SUPPLIER, SUP_KEYS)
    with pytest.raises(GPError) as exc:
        sup.set_status(0x80, CARD_LOCKED)  # no Card Lock privilege
    assert exc.value.sw == 0x6982
    install_tariffed(sup)
    cl = client(card)
    cl.set_status(0x80, CARD_LOCKED)
    assert card_life_cycle(card.store) == CARD_LOCKED
    # Locked: the ISD answers 6283, every other application 6A81.
    assert card.transmit(select_apdu(ISD_AID.raw))[-2:] == b"\x62\x83"
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x81"
    assert card.transmit(select_apdu(SUPPLIER))[-2:] == b"\x6a\x81"
    # The lock survives a restart, and content management is off while locked.
    card.close()
    card = open_card(path)
    assert card.power_on()
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x81"
    cl = client_locked(card)
    assert cl.send(0xE6, 0x02, 0x00, install_for_load_data("A0000006174D05"))[1] == 0x6985
    assert cl.get_status(0x80)[0].life_cycle == CARD_LOCKED
    cl.set_status(0x80, SECURED)
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    cl = client(card)
    cl.set_status(0x80, TERMINATED)
    assert card.transmit(select_apdu(ISD_AID.raw))[-2:] == b"\x6a\x81"
    assert card.transmit(select_apdu(APP))[-2:] == b"\x6a\x81"
    card.close()
    card = open_card(path)
    card.power_on()
    assert card.selected(0) is None  # not even the ISD is implicitly selected
    assert card.transmit(select_apdu(ISD_AID.raw)) == b"\x6a\x81"
    card.close()


def client_locked(card: Card) -> GPClient:
    cl = GPClient(card.transmit)
    _, sw = cl.select(ISD_AID.raw)
    assert sw == 0x6283
    cl.open(ISD_KEYS, 0x03)
    return cl


def test_application_specific_states_and_sd_lock(card: Card) -> None:
    sup = client(card, SUPPLIER, SUP_KEYS)
    install_tariffed(sup)
    sup.set_status(0x40, 0x0F, APP)  # an application-specific state (b3-b1 = 111)
    assert card.registry.get(APP).state == 0x0F
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    sup = client(card, SUPPLIER, SUP_KEYS)
    for p2, sw in ((0x05, 0x6A80), (0x00, 0x6985)):
        with pytest.raises(GPError) as exc:
            sup.set_status(0x40, p2, APP)
        assert exc.value.sw == sw
    with pytest.raises(GPError) as exc:
        sup.set_status(0x40, 0x80, SUPPLIER)
    assert exc.value.sw == 0x6985  # not itself
    # The ISD locks the supplier's domain and its applications together (P1 = 60).
    isd = client(card)
    isd.set_status(0x60, 0x80, SUPPLIER)
    assert card.registry.get(APP).state == 0x8F
    assert card.transmit(select_apdu(SUPPLIER))[-2:] == b"\x6a\x82"
    isd = client(card)
    isd.set_status(0x60, 0x00, SUPPLIER)
    assert card.registry.get(APP).state == 0x0F
    with pytest.raises(GPError) as exc:
        isd.set_status(0x40, 0x80, ISD_AID.raw)  # the ISD's state is the card's
    assert exc.value.sw == 0x6985
    with pytest.raises(GPError) as exc:
        isd.set_status(0x40, 0x80, "A000000617FFFF")
    assert exc.value.sw == 0x6A88


# --- persistence and atomicity -------------------------------------------------------------
def test_state_survives_restart(tmp_path) -> None:
    path = tmp_path / "hub.db"
    card = Card(path)
    provision(card)
    card.power_on()
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    install_tariffed(cl)
    new = StaticKeys(0x31, bytes([0x11]) * 16, bytes([0x22]) * 16, bytes([0x33]) * 16)
    cl.put_key(new, replace_kvn=0x30)
    card.close()
    card = open_card(path)
    card.power_on()
    assert card.select_guard is not None
    cl = client(card, SUPPLIER, new, 0x33)
    assert [e.aid.hex() for e in cl.get_status(0x40)] == [SUPPLIER, APP]
    assert [e.aid.hex() for e in cl.get_status(0x20)] == [PKG]
    assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
    assert card.transmit(bytes.fromhex("0010000000")) == b"\xaa\x90\x00"
    card.close()


def test_session_ends_on_reset_and_reselect(card: Card) -> None:
    cl = client(card, SUPPLIER, SUP_KEYS)
    card.reset()
    card.transmit(select_apdu(SUPPLIER))
    raw = cl.scp.wrap_command(0x80, 0xF2, 0x40, 0x02, get_status_data(), 256)
    assert card.transmit(raw)[-2:] == b"\x69\x82"
    cl = client(card, SUPPLIER, SUP_KEYS)
    card.transmit(select_apdu(SUPPLIER))
    raw = cl.scp.wrap_command(0x80, 0xF2, 0x40, 0x02, get_status_data(), 256)
    assert card.transmit(raw)[-2:] == b"\x69\x82"


def _flow(card: Card) -> None:
    """Authenticate, load, install and personalize: every write point of it."""
    card.power_on()
    cl = client(card, SUPPLIER, SUP_KEYS, 0x33)
    install_tariffed(cl)
    cl.install_for_personalization(APP)
    cl.store_data([b"T1"])
    cl.put_key(ROTATED, replace_kvn=0x30)
    cl.delete(PKG, related=True)


ROTATED = StaticKeys(0x31, bytes([0x71]) * 16, bytes([0x72]) * 16, bytes([0x73]) * 16)


def _opens(card: Card, keys: StaticKeys) -> bool:
    try:
        client(card, SUPPLIER, keys)
    except GPError as exc:  # the card knows no such key version
        assert exc.sw == 0x6A88
        return False
    except SCP03Error:  # a cryptogram mismatch
        return False
    return True


@pytest.mark.parametrize("kind", ["journal", "row", "pre-commit", "post-commit"])
def test_power_loss_never_half_installs(tmp_path, kind: str) -> None:
    from meterhub.card import PowerLoss

    base = tmp_path / "probe.db"
    probe = Card(base)
    provision(probe)
    start = probe.store.write_points
    points: list[int] = []
    probe.store.fault_hook = lambda what, n: points.append(n) if what == kind else None
    _flow(probe)
    probe.close()
    targets = [n - start for n in points]
    assert targets
    for i, offset in enumerate(targets):
        path = tmp_path / f"c{kind}{i}.db"
        card = Card(path)
        provision(card)
        target = card.store.write_points + offset

        def hook(what: str, n: int, target: int = target) -> None:
            if n == target:
                raise PowerLoss()

        card.store.fault_hook = hook
        with pytest.raises(PowerLoss):
            _flow(card)
        card = open_card(path)
        card.power_on()
        elf = [e.aid.hex() for e in client(card).get_status(0x20)]
        app = card.registry.get(APP)
        # Each object is whole or absent; an applet never exists without its load file,
        # and a present applet works.
        assert elf in (["A0000001515350"], ["A0000001515350", PKG])
        if app is not None:
            assert PKG in elf
            assert card.transmit(select_apdu(APP))[-2:] == b"\x90\x00"
            assert card.transmit(bytes.fromhex("0010000000"))[:1] == b"\xaa"
        # The supplier's key set is the old one or the rotated one, never a mix or none.
        assert _opens(card, SUP_KEYS) != _opens(card, ROTATED)
        card.close()
