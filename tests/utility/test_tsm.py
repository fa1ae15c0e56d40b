"""The utility's TSM (meterhub.utility.tsm) against the in-process GlobalPlatform card manager.

Every management step runs in an SCP03 session at level 33 (GPC 2.3.1 Amendment D); the card
side is meterhub's own card manager (meterhub.card.gp), whose byte layouts are checked against
published vectors elsewhere (tests/protocols/gp/test_scp03.py, tests/card/gp/test_gp_manager.py).
"""

from __future__ import annotations

import pytest

from meterhub.card import Applet, AppletContext, Card, ins, register_applet_class
from meterhub.card.gp import (
    ISD_AID,
    StaticKeys,
    make_load_file,
    provision_isd,
    provision_ssd,
)
from meterhub.card.gp.registry import elf_records
from meterhub.crypto import ecdsa
from meterhub.protocols.iso7816 import CommandAPDU, ResponseAPDU
from meterhub.utility.tsm import DEFAULT_LEVEL, TSM, TSMError, dap_signer

ISD_KEYS = StaticKeys.single(0x30, bytes(range(0x40, 0x50)))
SUP_KEYS = StaticKeys(0x30, bytes([0x11]) * 16, bytes([0x22]) * 16, bytes([0x33]) * 16)
SUPPLIER = "A000000617545300"
PKG = "A0000006175453"
MOD = "A000000617545301"
APP = "A00000061754530101"


class ProbeV1(Applet):
    """Test applet: answers its version, install parameters and personalization data."""

    VERSION = b"\x01"

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> ProbeV1:
        ctx.store.put(b"p", params)
        return cls(ctx)

    @ins(0x10)
    def read(self, apdu: CommandAPDU) -> bytes:
        return self.VERSION + (self.ctx.store.get(b"p") or b"") + (self.ctx.store.get(b"d") or b"")

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """GP API Application.processData: STORE DATA blocks, P2 = block number."""
        old = self.ctx.store.get(b"d") if apdu.p2 else b""
        self.ctx.store.put(b"d", (old or b"") + apdu.data)
        return b""


class ProbeV2(ProbeV1):
    VERSION = b"\x02"


register_applet_class("tests.tsm.probe/1", ProbeV1)
register_applet_class("tests.tsm.probe/2", ProbeV2)


@pytest.fixture(scope="module")
def dap_keys() -> tuple[ecdsa.SigningKey, ecdsa.SigningKey]:
    return ecdsa.generate_signing_key(), ecdsa.generate_signing_key()


@pytest.fixture
def card(dap_keys) -> Card:
    c = Card(None)
    provision_isd(c, [ISD_KEYS], dap_key=dap_keys[0])
    provision_ssd(c, SUPPLIER, [SUP_KEYS], dap_key=dap_keys[1])
    c.power_on()
    return c


@pytest.fixture
def tsm(card: Card, dap_keys) -> TSM:
    return TSM(card, ISD_KEYS, dap=dap_signer(ISD_AID, dap_keys[0])).open()


def package(cls: type[Applet] = ProbeV1, version: bytes = b"\x01\x00", pkg: str = PKG) -> bytes:
    return make_load_file(pkg, {MOD: cls}, version)


def ask(card: Card, aid: str, ins_: int = 0x10) -> ResponseAPDU:
    r = card.transmit_apdu(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(aid), le=256))
    assert r.sw == 0x9000, hex(r.sw)
    r = card.transmit_apdu(CommandAPDU(0x80, ins_, 0, 0, le=256))
    data = r.data
    while r.sw >> 8 == 0x61:  # ISO/IEC 7816-4 GET RESPONSE for the rest
        r = card.transmit_apdu(CommandAPDU(0x00, 0xC0, 0, 0, le=256))
        data += r.data
    return ResponseAPDU(data, r.sw)


def test_session_is_level_33(tsm: TSM) -> None:
    assert tsm.client.scp is not None and tsm.client.scp.security_level == DEFAULT_LEVEL == 0x33


def test_deploy_lists_and_runs(tsm: TSM, card: Card) -> None:
    tsm.deploy(package(), APP, params=b"hello")
    reg = tsm.registry()
    app = reg.application(APP)
    assert app is not None and app.life_cycle == 0x07  # SELECTABLE
    assert app.elf_aid is not None and app.elf_aid.raw.hex().upper() == PKG
    elf = reg.load_file(PKG)
    assert elf is not None and elf.version == b"\x01\x00"
    assert [e.aid for e in reg.issuer_sd] == [ISD_AID]
    r = ask(card, APP)
    assert (r.sw, r.data) == (0x9000, b"\x01hello")


def test_unsigned_package_is_refused_and_nothing_is_loaded(card: Card) -> None:
    tsm = TSM(card, ISD_KEYS).open()  # no DAP signer
    with pytest.raises(TSMError) as err:
        tsm.deploy(package(), APP)
    assert err.value.sw == 0x6A80
    assert [e.aid.raw.hex().upper() for e in elf_records(card.store) if not e.builtin] == []
    assert card.registry.get(APP) is None


def test_package_signed_by_another_key_is_refused(card: Card) -> None:
    tsm = TSM(card, ISD_KEYS, dap=dap_signer(ISD_AID, ecdsa.generate_signing_key())).open()
    with pytest.raises(TSMError) as err:
        tsm.load(package())
    assert err.value.sw == 0x6A80
    assert tsm.registry().load_file(PKG) is None


def test_malformed_package_is_refused_locally(tsm: TSM) -> None:
    with pytest.raises(TSMError) as err:
        tsm.deploy(b"\x80\x01\x09", APP)
    assert err.value.sw == 0x6A80


def test_update_replaces_the_version(tsm: TSM, card: Card) -> None:
    tsm.deploy(package(), APP, params=b"a")
    tsm.update(package(ProbeV2, b"\x02\x00"), APP, params=b"b")
    reg = tsm.registry()
    assert reg.load_file(PKG).version == b"\x02\x00"
    assert [
        e.aid.raw.hex().upper() for e in reg.applications if e.aid.raw.hex().upper() == APP
    ] == [APP]
    assert ask(card, APP).data == b"\x02b"


def test_update_of_an_absent_applet_deploys_it(tsm: TSM, card: Card) -> None:
    tsm.update(package(), APP)
    assert ask(card, APP).data == b"\x01"


def test_delete_applet_then_package(tsm: TSM) -> None:
    tsm.deploy(package(), APP)
    tsm.delete(APP, related=False)
    reg = tsm.registry()
    assert reg.application(APP) is None and reg.load_file(PKG) is not None
    tsm.delete(PKG)
    assert tsm.registry().load_file(PKG) is None
    with pytest.raises(TSMError) as err:
        tsm.delete(PKG)
    assert err.value.sw == 0x6A88


def test_store_data_in_several_blocks(tsm: TSM, card: Card) -> None:
    tsm.deploy(package(), APP)
    blob = bytes(range(256)) * 2
    tsm.store_data(APP, blob, block_size=100)  # six STORE DATA blocks
    assert ask(card, APP).data == b"\x01" + blob


def test_push_tariff_reaches_the_applet(tsm: TSM, card: Card) -> None:
    from meterhub.tariffs import dump_tariff, example_signed_tariff

    tsm.deploy(package(), APP)
    tariff = dump_tariff(example_signed_tariff())
    tariff = tariff.encode() if isinstance(tariff, str) else tariff
    assert len(tariff) > 255  # several STORE DATA blocks
    tsm.push_tariff(APP, tariff)
    assert ask(card, APP).data == b"\x01" + tariff


def test_registry_follows_6310(card: Card, dap_keys) -> None:
    sent: list[bytes] = []

    def transmit(capdu: bytes) -> bytes:
        sent.append(capdu)
        return card.transmit(capdu)

    tsm = TSM(transmit, ISD_KEYS, dap=dap_signer(ISD_AID, dap_keys[0])).open()
    tsm.load(package())
    aids = [f"A000000617545301{i:02X}" for i in range(12)]
    for a in aids:
        tsm.install(PKG, MOD, a)
    sent.clear()
    apps = tsm.registry().applications
    listed = [e.aid.raw.hex().upper() for e in apps]
    assert set(aids) <= set(listed) and len(listed) == len(set(listed))
    # 12 entries do not fit one response (GPC 2.3.1 §11.4: 6310, then P2 b1 = next occurrence)
    assert any(c[1] == 0xF2 and c[2] == 0x40 and c[3] == 0x03 for c in sent)


def test_rotate_keys(card: Card, dap_keys) -> None:
    new = StaticKeys(0x31, bytes([0xA1]) * 16, bytes([0xB2]) * 16, bytes([0xC3]) * 16)
    tsm = TSM(card, ISD_KEYS, dap=dap_signer(ISD_AID, dap_keys[0])).open()
    tsm.rotate_keys(new)
    assert tsm.keys == new and tsm.client.scp is not None  # reopened with the new set
    tsm.deploy(package(), APP)  # and it manages the card
    with pytest.raises(TSMError) as err:
        TSM(card, ISD_KEYS).open()  # the old set is gone
    assert err.value.sw == 0x6A88
    assert TSM(card, new).open().registry().application(APP) is not None


def test_another_domains_keys_do_not_open_the_isd(card: Card) -> None:
    with pytest.raises(TSMError):
        TSM(card, StaticKeys.single(0x30, bytes([0x11]) * 16)).open()


def test_supplier_domain_manages_its_own_applets(card: Card, dap_keys) -> None:
    sup = TSM(card, SUP_KEYS, sd_aid=SUPPLIER, dap=dap_signer(SUPPLIER, dap_keys[1])).open()
    sup.deploy(package(), APP)
    rec = card.registry.get(APP)
    assert rec is not None and rec.sd_aid.raw.hex().upper() == SUPPLIER
    sup.store_data(APP, b"tariff")
    assert ask(card, APP).data == b"\x01tariff"
    # the ISD's DAP key cannot sign for the supplier's domain
    other = TSM(card, SUP_KEYS, sd_aid=SUPPLIER, dap=dap_signer(SUPPLIER, dap_keys[0])).open()
    with pytest.raises(TSMError) as err:
        other.load(package(pkg="A0000006175454"))
    assert err.value.sw == 0x6A80


def test_commands_need_an_open_session(card: Card) -> None:
    tsm = TSM(card, ISD_KEYS)
    with pytest.raises(TSMError, match="no open secure channel"):
        tsm.registry()


def test_select_of_a_missing_domain_fails_cleanly(card: Card) -> None:
    with pytest.raises(TSMError) as err:
        TSM(card, ISD_KEYS, sd_aid="A0000006179999").open()
    assert err.value.sw == 0x6A82


def test_tampered_response_ends_the_session(card: Card, dap_keys) -> None:
    flip = {"on": False}

    def transmit(capdu: bytes) -> bytes:
        r = card.transmit(capdu)
        if flip["on"] and len(r) > 2:
            r = bytes([r[0] ^ 1]) + r[1:]
        return r

    tsm = TSM(transmit, ISD_KEYS, dap=dap_signer(ISD_AID, dap_keys[0])).open()
    flip["on"] = True
    with pytest.raises(TSMError) as err:
        tsm.registry()
    assert err.value.sw == 0x6982
    assert tsm.client.scp is None


def test_billing_applet_deployed_through_the_tsm(tsm: TSM, card: Card) -> None:
    from helpers import provision_test_guard
    from meterhub.applets.billing import BillingApplet
    from meterhub.card.guard import Pinned
    from meterhub.card.guard import pinned_points as points

    supplier = ecdsa.generate_signing_key()
    lfdb = make_load_file("A0000006174249", {"A000000617424901": BillingApplet})
    # No privacy guard on the card: an applet that holds readings cannot be installed
    # with a signer key (nobody pinned one), and nothing is half-installed.
    with pytest.raises(TSMError) as exc:
        tsm.deploy(lfdb, "A00000061742490101", params=ecdsa.public_bytes(supplier))
    assert exc.value.sw == 0x6985
    assert card.registry.get("A00000061742490101") is None
    # With the guard, only the tariff signer the customer pinned is accepted.
    provision_test_guard(card, pinned=Pinned(points([supplier]), points([supplier]), {"supplier": points([supplier])}))
    tsm.delete("A0000006174249")
    with pytest.raises(TSMError) as exc:
        tsm.deploy(lfdb, "A00000061742490101", params=ecdsa.public_bytes(ecdsa.generate_signing_key()))
    assert exc.value.sw == 0x6982
    tsm.delete("A0000006174249")
    tsm.deploy(lfdb, "A00000061742490101", params=ecdsa.public_bytes(supplier))
    app = tsm.registry().application("A00000061742490101")
    assert app is not None and app.life_cycle == 0x07
    # Installed by the ISD, it serves no data recipient: the guard gives it no port.
    r = ask(card, "A00000061742490101", 0x32)
    assert r.sw == 0x6985
