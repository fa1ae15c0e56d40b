"""Byte layouts of the card manager against GlobalPlatformPro (martinpaljak/GlobalPlatformPro).

Sources, each cited where used:

* ``library/src/test/java/pro/javacard/gp/test/TestParseTags.java``: GET STATUS ``E3``
  entries (``testParseISD``, ``testParsePartialISD``), card recognition data (``testOther``)
  and privilege bytes (``testPrivileges``);
* ``library/src/test/java/pro/javacard/gp/test/TestGPKeyInfo.java``: key information
  templates (``testRSAKeyTemplate``);
* ``library/src/main/java/pro/javacard/gp/GPSession.java``: how GPPro lays out INSTALL
  [for load] / [for install and make selectable] (``loadCapFile``, ``buildInstallData``
  followed by ``DMTokenizer.NULLTokenizer``, which appends an empty token length ``00``),
  the DAP block in front of ``C4`` and PUT KEY for AES (``encodeKey``: ``88``, length + 1,
  key length, cryptogram, ``03`` KCV). Those are transcriptions of GPPro's encoder, not
  recorded card traces.
"""

from __future__ import annotations

from meterhub.card import AID
from meterhub.card.gp import Privilege
from meterhub.card.gp.sd import card_recognition_data
from meterhub.protocols.gp.commands import (
    parse_install_for_install,
    parse_install_for_load,
    parse_put_key,
)
from meterhub.protocols.gp.constants import has_privilege
from meterhub.protocols.gp.host import (
    install_for_install_data,
    install_for_load_data,
    load_file,
    parse_get_status_response,
    parse_key_information,
    put_key_data,
)
from meterhub.protocols.gp.keys import StaticKeys, kcv_aes
from meterhub.protocols.iso7816.tlv import parse


def test_gppro_parse_isd_entry() -> None:
    # TestParseTags.testParseISD
    (e,) = parse_get_status_response(
        bytes.fromhex("E3144F07A00000015100009F700107C50180EA028000"), 0x80, tagged=True
    )
    assert e.aid == AID.from_hex("A0000001510000")
    assert e.life_cycle == 0x07  # INITIALIZED
    assert e.privileges == b"\x80" and has_privilege(e.privileges, Privilege.SECURITY_DOMAIN)


def test_gppro_parse_partial_isd_entry() -> None:
    # TestParseTags.testParsePartialISD
    data = bytes.fromhex(
        "E3464F08A0000000030000009F700101C5039EFE80CF0140CF0141CF0142CF0143CF0180CF0181"
        "CF0182CF0183C40BD276000005AAFFCAFE0001CE020001CC08A000000003000000"
    )
    (e,) = parse_get_status_response(data, 0x80, tagged=True)
    assert e.aid == AID.from_hex("A000000003000000")
    assert e.life_cycle == 0x01
    assert e.privileges == bytes.fromhex("9EFE80")
    assert e.elf_aid == AID.from_hex("D276000005AAFFCAFE0001")
    assert e.version == bytes.fromhex("0001")
    assert e.sd_aid == AID.from_hex("A000000003000000")


def test_gppro_privileges() -> None:
    # TestParseTags.testPrivileges: 80C000 = {SecurityDomain, AuthorizedManagement,
    # TrustedPath}; 9EFE80 holds 13 privileges.
    every = [v for k, v in vars(Privilege).items() if k.isupper()]
    held = [p for p in every if has_privilege(bytes.fromhex("80C000"), p)]
    assert set(held) == {
        Privilege.SECURITY_DOMAIN,
        Privilege.AUTHORIZED_MANAGEMENT,
        Privilege.TRUSTED_PATH,
    }
    # Our table stops at Receipt Generation in byte 3; GPPro's 13 for 9EFE80 are the 12
    # single-bit ones of bytes 1-2 we define plus Receipt Generation.
    assert len([p for p in every if has_privilege(bytes.fromhex("9EFE80"), p)]) == 13


def test_gppro_key_information_template() -> None:
    # TestGPKeyInfo.testRSAKeyTemplate: five C0 entries.
    t = bytes.fromhex("E020C00401018820C00402018820C00403018820C0060170A180A003C00401718010")
    keys = parse_key_information(t)
    assert len(keys) == 5
    assert (keys[0].key_id, keys[0].kvn, keys[0].key_type, keys[0].length) == (1, 1, 0x88, 0x20)


def test_card_recognition_data_layout() -> None:
    # TestParseTags.testOther, second sample, is a GP 2.2 card with SCP03 i=70; ours differs
    # only in the version (2.3.1) and carries the same OIDs and the same SCP03 object.
    gppro = bytes.fromhex(
        "6657735506072A864886FC6B01600B06092A864886FC6B020202630906072A864886FC6B03640B"
        "06092A864886FC6B040370640B06092A864886FC6B048000650A06082A864886FC6B0504660C06"
        "0A2B060104012A026E0103"
    )
    ours = card_recognition_data(0x70)
    # first occurrence of each tag (GPPro's sample has two 64 objects)
    gp_objs: dict = {}
    for o in parse(parse(gppro)[0].value)[0].children():
        gp_objs.setdefault(o.tag, o)
    our_objs = {o.tag: o for o in parse(parse(ours)[0].value)[0].children()}
    assert our_objs[0x06] == gp_objs[0x06]
    assert our_objs[0x63] == gp_objs[0x63]
    assert our_objs[0x64] == gp_objs[0x64]  # first 64 in GPPro's sample: SCP03, i = 70
    assert our_objs[0x60].value == bytes.fromhex("060A2A864886FC6B02020301")


def test_install_data_as_gppro_lays_it_out() -> None:
    pkg, sd = AID.from_hex("A0000006174D01"), AID.from_hex("A000000151000000")
    mod, inst = AID.from_hex("A0000006174D0101"), AID.from_hex("A0000006174D010101")
    # loadCapFile without hash and parameters, then the NULL tokenizer's 00.
    ifl = bytes.fromhex("07A0000006174D01" + "08A000000151000000" + "00" + "00" + "00")
    assert install_for_load_data(pkg, sd) == ifl
    assert parse_install_for_load(ifl).elf_aid == pkg
    # buildInstallData with no privileges (one byte 00) and empty parameters -> C9 00.
    ifi = bytes.fromhex(
        "07A0000006174D01"
        + "08A0000006174D0101"
        + "09A0000006174D010101"
        + "0100"
        + "02C900"
        + "00"
    )
    assert install_for_install_data(pkg, mod, inst) == ifi
    req = parse_install_for_install(ifi)
    assert (req.elf_aid, req.module_aid, req.app_aid, req.app_params) == (pkg, mod, inst, b"")


def test_dap_block_as_gppro_lays_it_out() -> None:
    # loadCapFile: E2 len 4F len SD-AID C3 len DAP, then C4 len code.
    sd, sig, code = bytes.fromhex("A000000151000000"), bytes(range(64)), b"\x01\x02\x03"
    expected = (
        bytes((0xE2, 2 + len(sd) + 2 + len(sig), 0x4F, len(sd)))
        + sd
        + bytes((0xC3, len(sig)))
        + sig
        + bytes((0xC4, 3))
        + code
    )
    assert load_file(code, [(sd, sig)]) == expected


def test_put_key_layout_as_gppro() -> None:
    # GPSession.putKeys / encodeKey for AES: KVN, then per key 88 (len+1) len cgram 03 KCV.
    new = StaticKeys(0x31, bytes([1]) * 16, bytes([2]) * 16, bytes([3]) * 16)
    data = put_key_data(new, bytes(16))
    assert data[0] == 0x31
    assert data[1:4] == bytes((0x88, 0x11, 0x10))
    assert data[20:24] == b"\x03" + kcv_aes(new.enc)
    req = parse_put_key(data)
    assert [c.key_length for c in req.components] == [16, 16, 16]
