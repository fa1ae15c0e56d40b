"""SCP03 (GP Amendment D) against published vectors, plus host<->card round trips.

Every vector below is hex data copied from the cited public source; none of their code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.protocols.gp.keys import KeySetError, StaticKeys, kcv_aes
from meterhub.protocols.gp.scp03 import (
    C_DECRYPTION,
    C_MAC,
    I_PSEUDO_RANDOM,
    I_R_ENCRYPTION,
    I_R_MAC,
    I_S16,
    R_ENCRYPTION,
    R_MAC,
    SECURITY_LEVELS,
    SEQUENCE_COUNTER_MAX,
    MemoryCounterStore,
    SCP03CardSession,
    SCP03Error,
    SCP03HostSession,
    aes_cmac,
    derive_session_keys,
    host_cryptogram,
    kdf_counter_cmac,
    pad80,
    pseudo_random_card_challenge,
    scp03_kdf,
    unpad80,
)

h = bytes.fromhex
ISD_AID = h("A000000151000000")
# ISD-R of an eUICC (GSMA SGP.22); the pySim traces were recorded against it - the card
# challenges of pysim's SCP03_Test_* classes derive from this AID and their counters.
ISD_R_AID = h("A0000005591010FFFFFFFF8900000100")


def split_capdu(apdu: bytes) -> tuple[int, int, int, int, bytes]:
    """Test helper: ISO 7816-4 C-APDU (cases 1-4, short/extended) -> header and data."""
    cla, ins, p1, p2 = apdu[:4]
    rest = apdu[4:]
    if len(rest) <= 1:
        return cla, ins, p1, p2, b""
    if rest[0] == 0 and len(rest) >= 3:
        if len(rest) == 3:
            return cla, ins, p1, p2, b""
        lc = int.from_bytes(rest[1:3], "big")
        assert len(rest) in (3 + lc, 5 + lc)
        return cla, ins, p1, p2, rest[3 : 3 + lc]
    lc = rest[0]
    assert len(rest) in (1 + lc, 2 + lc)
    return cla, ins, p1, p2, rest[1 : 1 + lc]


def _is_extended(apdu: bytes) -> bool:
    """Does this C-APDU use extended length fields (ISO 7816-4 §5.1)?"""
    rest = apdu[4:]
    return len(rest) >= 3 and rest[0] == 0


# ---------------------------------------------------------------------------------------
# KDF (Amendment D §6.2.1; NIST SP 800-108 counter mode, AES-CMAC PRF)
# ---------------------------------------------------------------------------------------

# blaufish/scp03_kdf_testvectors, file testvectors.txt (all 40 lines).
# Format (README.md): KeyIn, derivation constant, context, KeyOut; L = len(KeyOut) * 8.
BLAUFISH_KDF = """
00000000000000000000000000000000 1 00000000000000000000000000000000 329C873894717F6D545C755D175AE7ECDAB085DE2592FC3B9218A7FD77005E31
00000000000000000000000000000000 2 329C873894717F6D545C755D175AE7ECDAB085DE2592FC3B9218A7FD77005E31 2AF2B9613F5B87B9E33F28F39EDC8376DDB4B6FE7701232DDD5477CEB17DA9F7
329C873894717F6D545C755D175AE7ECDAB085DE2592FC3B9218A7FD77005E31 3 2AF2B9613F5B87B9E33F28F39EDC8376DDB4B6FE7701232DDD5477CEB17DA9F7 0E6F2B49DC94633D02549405EA86612C717EAF8CB9EF3D7D80DDFC3792184D34
2AF2B9613F5B87B9E33F28F39EDC8376DDB4B6FE7701232DDD5477CEB17DA9F7 4 0E6F2B49DC94633D02549405EA86612C717EAF8CB9EF3D7D80DDFC3792184D34 B863B9A5B35D5566A67E44F560B5E75C
0E6F2B49DC94633D02549405EA86612C717EAF8CB9EF3D7D80DDFC3792184D34 5 B863B9A5B35D5566A67E44F560B5E75C 0C5AC50C3E0BD61A37DB5D5AA64C6474
B863B9A5B35D5566A67E44F560B5E75C 6 0C5AC50C3E0BD61A37DB5D5AA64C6474 EEBC5FD69F6B2003A7D1CF5B11A0471019C794D29EC3A67EF94692119ADFB610
0C5AC50C3E0BD61A37DB5D5AA64C6474 7 EEBC5FD69F6B2003A7D1CF5B11A0471019C794D29EC3A67EF94692119ADFB610 2D6E5553E5E0A45CDDE71126928A85A5882ADF9ABA9B62DE090694FFCD0BB000
EEBC5FD69F6B2003A7D1CF5B11A0471019C794D29EC3A67EF94692119ADFB610 8 2D6E5553E5E0A45CDDE71126928A85A5882ADF9ABA9B62DE090694FFCD0BB000 5D1FFC45D17CD375DF7123115C60FE9E7ADBD2CEE0EB6273FE267FF17344E6C2
2D6E5553E5E0A45CDDE71126928A85A5882ADF9ABA9B62DE090694FFCD0BB000 9 5D1FFC45D17CD375DF7123115C60FE9E7ADBD2CEE0EB6273FE267FF17344E6C2 A3ADA0967A515B7C142EDF8B3E5C807E
5D1FFC45D17CD375DF7123115C60FE9E7ADBD2CEE0EB6273FE267FF17344E6C2 a A3ADA0967A515B7C142EDF8B3E5C807E A3E08B3835334A1E5533A0C8482C2E68
A3ADA0967A515B7C142EDF8B3E5C807E b A3E08B3835334A1E5533A0C8482C2E68 404123E057A3432221317B2272B0FB5A0E56BCB2F98149713CFFE0DF57EC92E8
A3E08B3835334A1E5533A0C8482C2E68 c 404123E057A3432221317B2272B0FB5A0E56BCB2F98149713CFFE0DF57EC92E8 3B8B73EC7B2CD38F25ADD8B3325FF5A71FFC378A86F61FA5E9CCA0E8427EC6A1
404123E057A3432221317B2272B0FB5A0E56BCB2F98149713CFFE0DF57EC92E8 d 3B8B73EC7B2CD38F25ADD8B3325FF5A71FFC378A86F61FA5E9CCA0E8427EC6A1 34C5F7117A38BE87ED6D310742625221FADA4EDB3F42417563ABD742A004D10D
3B8B73EC7B2CD38F25ADD8B3325FF5A71FFC378A86F61FA5E9CCA0E8427EC6A1 e 34C5F7117A38BE87ED6D310742625221FADA4EDB3F42417563ABD742A004D10D 9647FC0628B5D84048247D161364381C
34C5F7117A38BE87ED6D310742625221FADA4EDB3F42417563ABD742A004D10D f 9647FC0628B5D84048247D161364381C 6149659B9A0BF3CFC8A445250D247B85
9647FC0628B5D84048247D161364381C 10 6149659B9A0BF3CFC8A445250D247B85 B482BF142F15895D11745807C0FDD1DE8C824EA16AB42A47A82DBA32DFCBC8B2
6149659B9A0BF3CFC8A445250D247B85 11 B482BF142F15895D11745807C0FDD1DE8C824EA16AB42A47A82DBA32DFCBC8B2 2BA22A15300E65F84920112B6B0021B46AA41DFF7A0FC1D4066822BC4AECFAFB
B482BF142F15895D11745807C0FDD1DE8C824EA16AB42A47A82DBA32DFCBC8B2 12 2BA22A15300E65F84920112B6B0021B46AA41DFF7A0FC1D4066822BC4AECFAFB C80B45FD26DC43868D44AE4FAFCA0F154E2CDCA8EEA6F6461E5B64A193323432
2BA22A15300E65F84920112B6B0021B46AA41DFF7A0FC1D4066822BC4AECFAFB 13 C80B45FD26DC43868D44AE4FAFCA0F154E2CDCA8EEA6F6461E5B64A193323432 3869784BDF14BBDB6380ED102A524AB1
C80B45FD26DC43868D44AE4FAFCA0F154E2CDCA8EEA6F6461E5B64A193323432 14 3869784BDF14BBDB6380ED102A524AB1 FFBF3C8701CFD1F5763EE5AEFB34E460
3869784BDF14BBDB6380ED102A524AB1 15 FFBF3C8701CFD1F5763EE5AEFB34E460 EE335499B23DDD85CCE72F9183603FC41E2A917D3DC32FA39D79522B8590218F
FFBF3C8701CFD1F5763EE5AEFB34E460 16 EE335499B23DDD85CCE72F9183603FC41E2A917D3DC32FA39D79522B8590218F FF4A0600CCEB69EECFFCEF1C95EB6EF7A285097D2AAB883B2DC20BAC60405BEF
EE335499B23DDD85CCE72F9183603FC41E2A917D3DC32FA39D79522B8590218F 17 FF4A0600CCEB69EECFFCEF1C95EB6EF7A285097D2AAB883B2DC20BAC60405BEF 12C28CF1BB44A6ABCDB6AFE66C49BCAAB950149B06382B68952508AFA8E897C7
FF4A0600CCEB69EECFFCEF1C95EB6EF7A285097D2AAB883B2DC20BAC60405BEF 18 12C28CF1BB44A6ABCDB6AFE66C49BCAAB950149B06382B68952508AFA8E897C7 9612F0E7B8C953099B22BADB55AB5543
12C28CF1BB44A6ABCDB6AFE66C49BCAAB950149B06382B68952508AFA8E897C7 19 9612F0E7B8C953099B22BADB55AB5543 8C40FE3B84BCC37A5D94E0199F62F4C3
9612F0E7B8C953099B22BADB55AB5543 1a 8C40FE3B84BCC37A5D94E0199F62F4C3 070249E87AE0151E52FD0B2E2E4A7E1974AA715412A0C0A54964F39CC95DD1F8
8C40FE3B84BCC37A5D94E0199F62F4C3 1b 070249E87AE0151E52FD0B2E2E4A7E1974AA715412A0C0A54964F39CC95DD1F8 1DE9069383313AF1F2ED502A9FBA9F9702A056D3E100E52EEC6643E0627F28AA
070249E87AE0151E52FD0B2E2E4A7E1974AA715412A0C0A54964F39CC95DD1F8 1c 1DE9069383313AF1F2ED502A9FBA9F9702A056D3E100E52EEC6643E0627F28AA 59987112B17239EA289DEE6DF92F61E2C0F84721196F5D5132C52E56E24E10C0
1DE9069383313AF1F2ED502A9FBA9F9702A056D3E100E52EEC6643E0627F28AA 1d 59987112B17239EA289DEE6DF92F61E2C0F84721196F5D5132C52E56E24E10C0 806F4232E88C022C37A70D9406283314
59987112B17239EA289DEE6DF92F61E2C0F84721196F5D5132C52E56E24E10C0 1e 806F4232E88C022C37A70D9406283314 998DDD6DAB4BCB103E8324F5A582FD98
806F4232E88C022C37A70D9406283314 1f 998DDD6DAB4BCB103E8324F5A582FD98 A4DA6273E81857F8E8FFBC8A331ED5EA7A584C387FBE7B548DE1BA6756E42B39
998DDD6DAB4BCB103E8324F5A582FD98 20 A4DA6273E81857F8E8FFBC8A331ED5EA7A584C387FBE7B548DE1BA6756E42B39 930970ABD8569ECB12A3F129CEED58753F46399A9374CA6C36B5D1AA27F19666
A4DA6273E81857F8E8FFBC8A331ED5EA7A584C387FBE7B548DE1BA6756E42B39 21 930970ABD8569ECB12A3F129CEED58753F46399A9374CA6C36B5D1AA27F19666 FDC9A1E1744569948504F1B7A7DAC78ED6F8ADBBF027E131708E75A6AAE55377
930970ABD8569ECB12A3F129CEED58753F46399A9374CA6C36B5D1AA27F19666 22 FDC9A1E1744569948504F1B7A7DAC78ED6F8ADBBF027E131708E75A6AAE55377 3E5309459B03CD7B0E08828952075C54
FDC9A1E1744569948504F1B7A7DAC78ED6F8ADBBF027E131708E75A6AAE55377 23 3E5309459B03CD7B0E08828952075C54 D023E4ABDEC5262C1B55B7BC8D5C5230
3E5309459B03CD7B0E08828952075C54 24 D023E4ABDEC5262C1B55B7BC8D5C5230 421BEFC749169B4A9C06E4095D3B2FBF0E01A84F3D02CC054BE668A83CF67D20
D023E4ABDEC5262C1B55B7BC8D5C5230 25 421BEFC749169B4A9C06E4095D3B2FBF0E01A84F3D02CC054BE668A83CF67D20 695AD99F02962E4BD08405EA256CCA863B45713B3B3835384BE144F77BDE20AA
421BEFC749169B4A9C06E4095D3B2FBF0E01A84F3D02CC054BE668A83CF67D20 26 695AD99F02962E4BD08405EA256CCA863B45713B3B3835384BE144F77BDE20AA 0C3B7C4E85E5CE4AE946BE7E5ADFEEC8291B2FBDCFD4A6AFC2EB422B14F27A74
695AD99F02962E4BD08405EA256CCA863B45713B3B3835384BE144F77BDE20AA 27 0C3B7C4E85E5CE4AE946BE7E5ADFEEC8291B2FBDCFD4A6AFC2EB422B14F27A74 CBBBD32BA6F57ED8C8CAEEE156FDF95B
0C3B7C4E85E5CE4AE946BE7E5ADFEEC8291B2FBDCFD4A6AFC2EB422B14F27A74 28 CBBBD32BA6F57ED8C8CAEEE156FDF95B 31209E2DA75C9083D16508A5EB63A82C
"""


@pytest.mark.parametrize("line", BLAUFISH_KDF.split("\n")[1:-1])
def test_kdf_blaufish_vectors(line: str) -> None:
    key_in, constant, context, key_out = line.split()
    out = h(key_out)
    assert scp03_kdf(h(key_in), int(constant, 16), h(context), len(out) * 8) == out


def test_kdf_gppro_generic_block_kcv() -> None:
    # martinpaljak/GlobalPlatformPro library/src/test/java/pro/javacard/gp/test/TestPlaintextKeys.java,
    # testScp3Kdf: key 404142..4F, block_a = 16 x 00, block_b = 16 x 00, 16 bytes -> KCV BD8165.
    out = kdf_counter_cmac(h("404142434445464748494A4B4C4D4E4F"), bytes(16), bytes(16), 16)
    assert kcv_aes(out) == h("BD8165")


def test_session_keys_gppro_kcvs() -> None:
    # GlobalPlatformPro TestPlaintextKeys.java, testSessionKeys_SCP03: static keys 404142..4F,
    # context = KDD 00010203040506070809; KCVs S-ENC C25559, S-MAC 0E12CC, S-RMAC 9ACB9C, DEK 504A77.
    key = h("404142434445464748494A4B4C4D4E4F")
    kdd = h("00010203040506070809")
    # derive_session_keys takes host || card challenge as context; split KDD to reuse it.
    session = derive_session_keys(StaticKeys.single(0x30, key), kdd[:5], kdd[5:])
    assert kcv_aes(session.s_enc) == h("C25559")
    assert kcv_aes(session.s_mac) == h("0E12CC")
    assert kcv_aes(session.s_rmac) == h("9ACB9C")
    assert kcv_aes(session.dek) == h("504A77")


def test_session_keys_kaoh_vectors() -> None:
    # kaoh/globalplatform globalplatform/src/scp03Test.c, delete_application and mutual_auth:
    # static keys sEnc/sMac/dek, host challenge from the INITIALIZE UPDATE request, card
    # challenge from the response, expected sessionEnc / sessionCMac / sessionRMac.
    keys = KAOH_KEYS
    for host_chal, card_chal, s_enc, s_mac, s_rmac in [
        ("B2BDE1A2DC66BD56", "C40932A6FEFEAEB2", "9B841BB63D1087484FF7F16802017243",
         "8117FE5ADED74AC0DAABE9FB81DBDB67", "4521D75E4D6F60DBFB8AB4EE254EF6F1"),
        ("9BD6BF878FB8E991", "3C80C2CC87EB3A35", "D83EE38C9954C8078987A5E9EE6AB13C",
         "6FF37716E0413065E8DFD08BF1E9EC5E", "0254C786E57ACA8982670C1C1A05FF12"),
    ]:  # fmt: skip
        session = derive_session_keys(keys, h(host_chal), h(card_chal))
        assert (session.s_enc, session.s_mac, session.s_rmac) == (h(s_enc), h(s_mac), h(s_rmac))


def test_pseudo_random_challenge_kaoh() -> None:
    # kaoh/globalplatform scp03Test.c, delete_application: i = 70, invoking AID = ISD
    # A000000151000000, sequence counter 000015 -> card challenge C40932A6FEFEAEB2.
    assert pseudo_random_card_challenge(KAOH_KEYS.enc, 0x15, ISD_AID) == h("C40932A6FEFEAEB2")


# ---------------------------------------------------------------------------------------
# Key check values
# ---------------------------------------------------------------------------------------


def test_kcv_gppro_and_pysim() -> None:
    # GlobalPlatformPro TestPlaintextKeys.java, testSessionKeys_SCP03: KCV of the static DEK
    # 404142..4F is 504A77.
    assert kcv_aes(h("404142434445464748494A4B4C4D4E4F")) == h("504A77")
    # osmocom/pysim tests/unittests/test_globalplatform.py, SCP03_KCV_Test.test_kcv.
    assert KEYSET_AES128.kcv() == (h("C35280"), h("013808"), h("840DE5"))


def test_key_set_validation() -> None:
    with pytest.raises(KeySetError):
        StaticKeys(0x30, bytes(16), bytes(24), bytes(16))
    with pytest.raises(KeySetError):
        StaticKeys(0x30, bytes(8), bytes(8), bytes(8))
    with pytest.raises(KeySetError):
        StaticKeys(0x80, bytes(16), bytes(16), bytes(16))
    assert "0000" not in repr(StaticKeys.single(0x30, bytes(16)))  # no key material printed


# ---------------------------------------------------------------------------------------
# Full traces: osmocom/pysim tests/unittests/test_globalplatform.py, classes
# SCP03_Test_AES{128,192,256}_{03,11,33} (S8, i = 70, recorded against an eUICC ISD-R).
# ---------------------------------------------------------------------------------------

# pysim: KEYSET_AES128 / KEYSET_AES192 / KEYSET_AES256 (KVN 30 / 31 / 32).
KEYSET_AES128 = StaticKeys(
    0x30, h("000102030405060708090a0b0c0d0e0f"), h("101112131415161718191a1b1c1d1e1f"),
    h("202122232425262728292a2b2c2d2e2f"),
)  # fmt: skip
KEYSET_AES192 = StaticKeys(
    0x31, h("000102030405060708090a0b0c0d0e0f0001020304050607"),
    h("101112131415161718191a1b1c1d1e1f1011121314151617"),
    h("202122232425262728292a2b2c2d2e2f2021222324252627"),
)  # fmt: skip
KEYSET_AES256 = StaticKeys(
    0x32, h("000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"),
    h("101112131415161718191a1b1c1d1e1f101112131415161718191a1b1c1d1e1f"),
    h("202122232425262728292a2b2c2d2e2f202122232425262728292a2b2c2d2e2f"),
)  # fmt: skip

# pysim SCP03_Test: the plain commands (get_eid_cmd_plain, case_1..4_apdu_plain) as
# (CLA, INS, P1, P2, data, Le) and the plain GET EID response (get_eid_rsp_plain).
PYSIM_PLAIN = [
    (0x80, 0xE2, 0x91, 0x00, h("BF3E035C015A"), 0),
    (0x80, 0xF2, 0x20, 0x02, b"", None),
    (0x80, 0xCA, 0x00, 0x66, b"", 0),
    (0x80, 0xF2, 0x20, 0x02, h("4f0212345c054f9f70c5"), None),
    (0x80, 0xF2, 0x80, 0x02, h("4f00"), 0),
]
PYSIM_EID_RSP_PLAIN = h("bf3e125a1089882119900000000000000000000005")


@dataclass(frozen=True)
class PysimTrace:
    name: str
    keys: StaticKeys
    init_upd_cmd: str
    init_upd_rsp: str
    ext_auth_cmd: str
    get_eid_cmd: str
    get_eid_rsp: str
    cases: tuple[str, str, str, str]


PYSIM_TRACES = [
    PysimTrace("SCP03_Test_AES128_11", KEYSET_AES128, "8050300008b13e5f938fc108c400",
               "000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002",
               "84821100107d5f5826a993ebc89eea24957fa0b3ce",
               "84e291000ebf3e035c015a558d036518a2829700",
               "bf3e125a1089882119900000000000000000000005971be68992dbbdfa",
               ("84f220020863a63f8959827fb2", "84ca006608a0c6a4a74166f7ce00",
                "84f22002124f0212345c054f9f70c52249b50272656536", "84f280020a4f00e91443f6dce6b8ed00")),
    PysimTrace("SCP03_Test_AES128_03", KEYSET_AES128, "80503000088e1552d0513c60f300",
               "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d7000001",
               "8482030010fd4721a14d9b07003c451d2f8ae6bb21",
               "84e2910018ca9c00f6713d79bc8baa642bdff51c3f6a4082d3bd9ad26c00",
               "bf3e125a1089882119900000000000000000000005",
               ("84f2200208c9811b11f1264cf1", "84ca006608e10ab60b3054798800",
                "84f22002184e2908bdb48b2315a55482e9e936ca122d6ecfae7d17416e",
                "84f28002180dd10a6b6193e5340b9e77d32d5a179cd710ac2773aefb2800")),
    PysimTrace("SCP03_Test_AES128_33", KEYSET_AES128, "8050300008fdf38259a1e0de4400",
               "000000000000000000003003703b1aca81e821f219081cdc01c26b372d000003",
               "84823300108c36f96bcc00724a4e13ad591d7da3f0",
               "84e2910018267a85dfe4a98fca6fb0527e0dfecce4914e40401433c87f00",
               "f3ba2b1013aa6224f5e1c138d71805c569e5439b47576260b75fc021b25097cb2e68f8a0144975b9",
               ("84f2200208ac6a59024bed84cc", "84ca006608409912ad8fb7aed000",
                "84f22002185f3dafc3ac14c381536a488bf44e06d056df9d74dbd21e5a",
                "84f280021865165105be3373347d0424d4400af2ac393f569ec779389e00")),
    PysimTrace("SCP03_Test_AES192_11", KEYSET_AES192, "80503100087396430b768b085b00",
               "000000000000000000003103708cfc23522ffdbf1e5df5542cac8fd866000003",
               "84821100102145ed30b146f5db252fb7e624cec244",
               "84e291000ebf3e035c015aff42cf801d14394400",
               "bf3e125a1089882119900000000000000000000005162fbd33e04940a9",
               ("84f22002084584e4f6784811ee", "84ca006608937776ebe190fa3000",
                "84f22002124f0212345c054f9f70c59a52bddf3040368c", "84f280020a4f009804b11411f7393d00")),
    PysimTrace("SCP03_Test_AES192_03", KEYSET_AES192, "805031000869c65da8202bf19f00",
               "00000000000000000000310370b570a67be38446717729d6dd3d2ec5b1000001",
               "848203001065df4f1a356a887905466516d9e5b7c1",
               "84e2910018d2c6fb477c5d4afe4fd4d21f17eff10d3578ec1774a12a2d00",
               "bf3e125a1089882119900000000000000000000005",
               ("84f2200208964e188f0b1bb697", "84ca006608f0820035a41d3e1800",
                "84f220021806b076ed452cd1fa84f77f5c08a146aa77a9286757dea791",
                "84f2800218d06527e39222dce091fabdb8e9b898417a67a6852d3577db00")),
    PysimTrace("SCP03_Test_AES192_33", KEYSET_AES192, "80503100089b3f2eef0e8c937400",
               "00000000000000000000310370f6bb305a15bae1a68f79fb08212fbed7000002",
               "84823300109100bc22d58b45b86a26365ce39ff3cf",
               "84e29100188f7f946c84f70d17994bc6e8791251bb1bb1bf02cf8de58900",
               "c05176c1b6f72aae50c32cbee63b0e95998928fd4dfb2be9f27ffde8c8476f5909b4805cc4039599",
               ("84f2200208d5d97754b6b3d2ba", "84ca006608516c82b8e30adbeb00",
                "84f2200218cc247f4761e6944277a4e0d6e32e44025b1e31537e2fc668",
                "84f2800218ba22b63d509bef5d093b43e5eaed03ed23144ab2d9cb51de00")),
    PysimTrace("SCP03_Test_AES256_11", KEYSET_AES256, "805032000811666d57866c6f5400",
               "0000000000000000000032037053ea8847efa7674e41498a4d66cf0dee000003",
               "84821100102f2ad190eff2fafc4908996d1cebd310",
               "84e291000ebf3e035c015af4b680372542b59d00",
               "bf3e125a10898821199000000000000000000000058012dd7f01f1c4c1",
               ("84f2200208d618b7da68d5fe52", "84ca0066088f3e055db23ad5e500",
                "84f22002124f0212345c054f9f70c5b6e15cc42404915e", "84f280020a4f00aa124aa74afe7f7500")),
    PysimTrace("SCP03_Test_AES256_03", KEYSET_AES256, "8050320008c6066990fc426e1d00",
               "000000000000000000003203708682cd81bbd8919f2de3f2664581f118000001",
               "848203001077c493b632edadaf865a1e64acc07ce9",
               "84e29100183ddaa60594963befaada3525b492ede23c2ab2c1ce3afe4400",
               "bf3e125a1089882119900000000000000000000005",
               ("84f2200208480ddc8e419da38d", "84ca0066083e9d6a6c0b2d732000",
                "84f22002183ebfef2da8b04af2a85f491f299b76973df76ff08a4031be",
                "84f2800218783fff80990f5585b1055010ea95094a26e4a8f1ef4b18e100")),
    PysimTrace("SCP03_Test_AES256_33", KEYSET_AES256, "805032000897b2055fe58599fd00",
               "00000000000000000000320370a8439a22cedf045fa9f1903b2834f26e000002",
               "8482330010508a0fd959d2e547c6b33154a6be2057",
               "84e29100187a5ef717eaf1e135ae92fe54429d0e465decda65f5fe5aea00",
               "ea90dbfa648a67c5eb6abc57f8530b97d0cd5647c5e8732016b55203b078dd2ace7f8bc5d1c1cd99",
               ("84f2200208bcc5c17275545d93",
                "84ca00660804806aba9d543bb600",
                "84f2200218717222491556ec81a45f49ce48be33320024801a1c4cb0e0",
                "84f2800218561f105bccd3a1642904b251ccc1228beb80a82370a8637000")),
]  # fmt: skip


def _trace_commands(t: PysimTrace) -> list[bytes]:
    return [h(t.get_eid_cmd), *(h(c) for c in t.cases)]


@pytest.mark.parametrize("t", PYSIM_TRACES, ids=lambda t: t.name)
def test_pysim_trace_host_side(t: PysimTrace) -> None:
    host = SCP03HostSession(t.keys, aid=ISD_R_AID)
    init_cmd = h(t.init_upd_cmd)
    assert host.initialize_update(host_challenge=init_cmd[5:-1]) == init_cmd
    host.process_initialize_update_response(h(t.init_upd_rsp) + b"\x90\x00")
    ext = h(t.ext_auth_cmd)
    assert host.external_authenticate(ext[2]) == ext
    wrapped = [host.wrap_command(*PYSIM_PLAIN[0])]
    # The GET EID response comes back before the next command is wrapped.
    assert host.unwrap_response(h(t.get_eid_rsp) + b"\x90\x00") == (PYSIM_EID_RSP_PLAIN, 0x9000)
    wrapped += [host.wrap_command(*cmd) for cmd in PYSIM_PLAIN[1:]]
    assert wrapped == _trace_commands(t)


@pytest.mark.parametrize("t", PYSIM_TRACES, ids=lambda t: t.name)
def test_pysim_trace_card_side(t: PysimTrace) -> None:
    rsp = h(t.init_upd_rsp)
    counter = int.from_bytes(rsp[-3:], "big")
    # The card's counter store holds the last value used; the trace shows the next one.
    card = SCP03CardSession(
        t.keys, aid=ISD_R_AID, counters=MemoryCounterStore({t.keys.kvn: counter - 1})
    )
    init_cmd = h(t.init_upd_cmd)
    assert card.initialize_update(init_cmd[0], init_cmd[2], init_cmd[3], init_cmd[5:-1]) == rsp
    ext = h(t.ext_auth_cmd)
    card.external_authenticate(ext[0], ext[2], ext[3], ext[5:])
    assert card.is_authenticated and card.security_level == ext[2]
    for apdu, plain in zip(_trace_commands(t), PYSIM_PLAIN, strict=True):
        cla, ins, p1, p2, data = split_capdu(apdu)
        assert card.unwrap_command(cla, ins, p1, p2, data) == plain[:5]
        if plain[1] == 0xE2:  # the card answers GET EID exactly as the trace shows
            assert card.wrap_response(PYSIM_EID_RSP_PLAIN, 0x9000) == h(t.get_eid_rsp)


# ---------------------------------------------------------------------------------------
# Full traces: kaoh/globalplatform globalplatform/src/scp03Test.c (S8, level 03).
# ---------------------------------------------------------------------------------------

# scp03Test.c: sEnc, sMac, dek of delete_application / mutual_auth / get_status /
# get_status_enc_mac (the card answers with KVN 30).
KAOH_KEYS = StaticKeys(
    0x30, h("F995D0A069335C7DF42E590317FFEA6D"), h("58563362EC5A4541ABCD32B34B1EAE7D"),
    h("0A02A6D687406DCFA09DC70B3EDB7E38"),
)  # fmt: skip
# scp03Test.c get_status_aes_192: one 24-byte key for ENC/MAC/DEK, card answers KVN 02, i = 10.
KAOH_KEYS_192 = StaticKeys.single(0x02, h("DE2A3629CBC24E8D8869E82C8B4C0D874D88166B6F8A1C12"))


@dataclass(frozen=True)
class KaohTrace:
    name: str
    keys: StaticKeys
    init_upd_cmd: str
    init_upd_rsp: str  # with SW 9000, as in the C source
    ext_auth_cmd: str
    commands: tuple[tuple[tuple[int, int, int, int, bytes, int | None], str], ...]
    i_param: int = 0x70
    diversification: bytes = bytes(10)


_GS = h("4F00")  # GET STATUS search criteria of GP211_get_status: tag 4F, any AID
KAOH_TRACES = [
    KaohTrace("delete_application", KAOH_KEYS, "8050000008B2BDE1A2DC66BD5600",
              "00000000000000000000300370C40932A6FEFEAEB2E127185170F45FCA0000159000",
              "848203001059D54D932423D29F6313C970875F8C2F",
              (((0x80, 0xE4, 0x00, 0x80, h("4F08A00100015141434C"), None),
                "84E400801829F06AEC3180B3EFE91FF662310B945DE0D5FE66AD67A5B6"),)),
    KaohTrace("mutual_auth", KAOH_KEYS, "80500000089BD6BF878FB8E99100",
              "000000000000000000003003703C80C2CC87EB3A35E4EDBA35E629C33600001E9000",
              "848203001023EBFEDC579D22CDCDB6A25A5FF7891F", ()),
    KaohTrace("get_status", KAOH_KEYS, "8050000008A6D40AEC55FE798600",
              "00000000000000000000300370B6E362D0F90F8101C34B7B21A74553200000259000",
              "84820300103D958B36BB38AE5896A559345F81471A",
              (((0x80, 0xF2, 0x40, 0x02, _GS, 0), "84f2400218d18c9a7bb2b1b1c7ed1b24e1b1307cb9d71a66abc55cbc3a00"),)),
    KaohTrace("get_status_enc_mac", KAOH_KEYS, "8050000008DA2390D378D94B0A00",
              "00000000000000000000300370A7EFE2BFDB3A27A6EAE3FF0EA0D175240000859000",
              "8482030010953EEC5B4A81BF393ADC2ADFD638827A",
              (((0x80, 0xF2, 0x20, 0x02, _GS, 0), "84F2200218705C4D16C7BAC5496AEE0ED9963222455472F3CFAC97BCCA00"),
               ((0x80, 0xF2, 0x40, 0x02, _GS, 0), "84F240021834AF0FEDDAE7C07308600587E1B1E6EC87811520D9A6AAAD00"),
               ((0x80, 0xF2, 0x80, 0x02, _GS, 0), "84F28002188D6CFE9EB359EACB9594D8EC161E45C10ED0138E34A10BF300"),
               ((0x80, 0xF2, 0x10, 0x02, _GS, 0), "84F21002183D98B6DE9CBF3905EAE4FAF5E141C58DAB7013D1076745C700"))),
    KaohTrace("get_status_aes_192", KAOH_KEYS_192, "80500000084157115CAD7D2FE700",
              "00008301A8186727A822020310726B1E22EED4F4BBAB21001BFD4B6F020000129000",
              "84820300109B126D1B1557297F3C06766CA9ACBD27",
              (((0x80, 0xF2, 0x20, 0x02, _GS, 0), "84F2200218110C222888859059700E5D42AD65F41299B0BFFC03BF79A800"),),
              i_param=0x10, diversification=h("00008301A8186727A822")),
]  # fmt: skip


@pytest.mark.parametrize("t", KAOH_TRACES, ids=lambda t: t.name)
def test_kaoh_trace_host_side(t: KaohTrace) -> None:
    host = SCP03HostSession(t.keys, aid=ISD_AID)  # scp03Test.c: invokingAid = GP231_ISD_AID
    init_cmd = h(t.init_upd_cmd)
    assert host.initialize_update(kvn=0, host_challenge=init_cmd[5:-1]) == init_cmd
    host.process_initialize_update_response(h(t.init_upd_rsp))
    ext = h(t.ext_auth_cmd)
    assert host.external_authenticate(ext[2]) == ext
    for plain, wrapped in t.commands:
        assert host.wrap_command(*plain) == h(wrapped)


@pytest.mark.parametrize("t", KAOH_TRACES, ids=lambda t: t.name)
def test_kaoh_trace_card_side(t: KaohTrace) -> None:
    rsp = h(t.init_upd_rsp)[:-2]
    counter = int.from_bytes(rsp[-3:], "big")
    card = SCP03CardSession(
        t.keys, aid=ISD_AID, i_param=t.i_param, diversification_data=t.diversification,
        counters=MemoryCounterStore({t.keys.kvn: counter - 1}),
    )  # fmt: skip
    init_cmd = h(t.init_upd_cmd)
    assert card.initialize_update(init_cmd[0], init_cmd[2], init_cmd[3], init_cmd[5:-1]) == rsp
    ext = h(t.ext_auth_cmd)
    card.external_authenticate(ext[0], ext[2], ext[3], ext[5:])
    assert card.key_set is t.keys  # P1 = '00' picked the only (first available) key set
    for plain, wrapped in t.commands:
        assert card.unwrap_command(*split_capdu(h(wrapped))) == plain[:5]


def test_kaoh_rmac_renc_trace_host_side() -> None:
    # kaoh/globalplatform scp03Test.c, send_apdu_rmac_rencryption (level 33, i = 70, keys =
    # OPGP_VISA_DEFAULT_KEY 404142..4F): three commands of 165 bytes ("Hello World" x 15)
    # and their R-ENC + R-MAC protected responses. The card answered KVN 00 and the
    # invoking AID of the trace does not reproduce its challenge, so only the host side
    # (cryptogram, C-MAC, C-DEC, R-MAC, R-ENC) is replayed.
    host = SCP03HostSession(StaticKeys.single(0x30, h("404142434445464748494A4B4C4D4E4F")))
    assert host.initialize_update(kvn=0, host_challenge=h("2C8130E574247B1B")) == h(
        "80500000082C8130E574247B1B00"
    )
    host.process_initialize_update_response(
        h("00010203040506070809000370A5874C57119B976BF94879E36F29E0390000019000")
    )
    assert host.external_authenticate(0x33) == h("8482330010A75F1CD48F3B93DFA57E690937921F92")
    hello = b"Hello World" * 15
    commands = [
        "84400000B80422E602DD973125102DDE05875CA115C04D811A40593DB9D9480927CC9A249BD118FB6C674A86BF70D0CD898153A438DAC4CD302B74876D718481FCDB9D39944453BEBD28832300C99FB8035D2DFF3E3CB3F5DAD568330127929207A179226EB5C6C52341A297CB2C8F25E481F1CE6EF6EADD2410E70EB268AF48D29CB20CFCB8448DE83235ADA96A5EEED379C0701924707DA111DBB9039ACF8E19F1CE62AA4EF26D7C871E842ED815245F7F2D9A9A87D9BDA54B188DCB",
        "84400000B803C6D93C9A2EBE310E2215CEAC64C9CB8A03A89657272AE001E398FB7A7F42E02210672D0927DBE2BF6F80AA322D948C2743EFBA75EC51FD9BC5E6B4306371916CC50B0F341177FB99091F560A37C88D1A387443792E128A3A04118D0EA9F8EC989012FE4E097440411852373B4470851AC573A0B15262E506B34F771DCC53A24E91FAD37FE67454FAAFEFCC3E2F7141DCD7174D88933629E632C1CFDD5D1D30017D0CA14FE32A022F064C93EB4769F5A497BE036C5A563F",
        "84400000B8982E6E5F120796589037A751431F835CCF17C5A13CB4D7F5E0948CF48538FEDCD6F2F0A54F813E8BA755DFE22F7B847BF6A8BBDB1FEEC531B44D01B92BD55EEAA5B55B770AF293E4995E14E3076A40A89ED21A6C2F3772839E6E9A31FAB4B493AB31FE1D951AD11D9924DF15C1C33A5F3C90D168E2A78437ED40601B5289C56F2F020C78744C8C22141A2FCFFADB4B4FDE504EFABA6DD9D5EAD7E0F7D57B58F97C28DACD4C9E93052A0F16EFDF2A41DDFE373917C351B9B8",
    ]
    responses = [
        "20F075017DE9F58A1E3D7567CBE71140AC0EBFA376881449A0665992BB997C6A145AC6BE3B642931C2652F62B85532B45689EB3E37602E6276B72BABE6A0FF00BEB02473EF22792A37F70D17F7715F103528CC6122880FC86AE75E5F085F1B37492FF33DD148162DAFA203D973F3A4579F8B547FACB14034641FC817BBDF119A9EB0F24DED4F9CE3640B46189EE2138B405446FA4F154D4F9600B288299642BEF5A387B71922A0CAD4D77D9596E8F417A6DB42CFE2C1081E9000",
        "EFA214CD7DE37F299690265ECDBF210361CBC87EAA227C7A5FC1C984A8DFFAF82B6C1856E57C399FA46AA13F9A7150F76207BCBF7421EFE6424D1FCFEF090F63CDF6C1F21F951E286D6A237843B4E1AD070D7FB16C883D052338F19D5C5E96135398F6251E5D48984EBE528E42A93CBD880D67D6631BCCEF13C3D54572C77CEAD84D26F72A4A66FA13DDCFA6C1BF8F5CF4AB151D722B3DBE86841F30BA15E4B90834B122257913FAA6F09D0E540E114817C1ED9F9D2F7AD39000",
        "0E625EA4492C2253DF239C271E0DEA22DDB136461742E6AD02FA9710588655A17B9C9C115076E00EF858C84662827AF5B90CE2374A575A7208E708BB3D01F655A996BF10F6077F61FBD71927E352215CE9348429FDAB03A3E6EEC5C71556A3C42B98240D224314638608CFDCFE5847BB2811948956F9204BC69085A034F33982E75BEBDEB71B59665FCEA9EDD27A85ABE908171D68E2FA639E2ABA02A27CD21E3A37EE831A1C1C1CF6ECD1B4C744EBD250EA42072B5300789000",
    ]
    for cmd, rsp in zip(commands, responses, strict=True):
        assert host.wrap_command(0x80, 0x40, 0x00, 0x00, hello) == h(cmd)
        # The card (an echo applet) answers the plain text back under R-ENC and R-MAC.
        assert host.unwrap_response(h(rsp)) == (hello, 0x9000)


# ---------------------------------------------------------------------------------------
# Host <-> card round trips (every level, every key length, S8 and S16)
# ---------------------------------------------------------------------------------------

TEST_AID = h("A0000006472F0001")


def _keys(length: int, seed: int = 0x40, kvn: int = 0x30) -> StaticKeys:
    return StaticKeys(
        kvn,
        bytes((seed + i) & 0xFF for i in range(length)),
        bytes((seed + 0x20 + i) & 0xFF for i in range(length)),
        bytes((seed + 0x40 + i) & 0xFF for i in range(length)),
    )


def _open(
    level: int, key_len: int = 16, *, s16: bool = False, i_param: int = 0x70,
    counters: MemoryCounterStore | None = None,
) -> tuple[SCP03HostSession, SCP03CardSession]:  # fmt: skip
    keys = _keys(key_len)
    i_param |= I_S16 if s16 else 0
    card = SCP03CardSession(keys, aid=TEST_AID, i_param=i_param, counters=counters)
    host = SCP03HostSession(keys, aid=TEST_AID, s16=s16)
    cmd = host.initialize_update()
    cla, ins, p1, p2, data = split_capdu(cmd)
    assert (cla, ins) == (0x80, 0x50)
    host.process_initialize_update_response(card.initialize_update(cla, p1, p2, data) + b"\x90\x00")
    cla, ins, p1, p2, data = split_capdu(host.external_authenticate(level))
    assert (cla, ins, p1) == (0x84, 0x82, level)
    card.external_authenticate(cla, p1, p2, data)
    assert card.is_authenticated and host.is_authenticated
    return host, card


def _exchange(
    host: SCP03HostSession, card: SCP03CardSession, cmd: tuple, rdata: bytes, sw: int = 0x9000
) -> bytes:
    cla, ins, p1, p2, data = cmd
    wrapped = host.wrap_command(cla, ins, p1, p2, data, 0)
    got = card.unwrap_command(*split_capdu(wrapped), extended=_is_extended(wrapped))
    assert got == (cla, ins, p1, p2, data)
    data_out, sw_out = host.unwrap_response(card.wrap_response(rdata, sw) + sw.to_bytes(2, "big"))
    assert sw_out == sw
    return data_out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=st.sampled_from(sorted(SECURITY_LEVELS)),
    key_len=st.sampled_from([16, 24, 32]),
    s16=st.booleans(),
    exchanges=st.lists(
        st.tuples(st.binary(max_size=300), st.binary(max_size=64), st.sampled_from([0x9000, 0x6310, 0x6A82])),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_round_trip(level: int, key_len: int, s16: bool, exchanges: list) -> None:
    host, card = _open(level, key_len, s16=s16)
    for i, (cdata, rdata, sw) in enumerate(exchanges):
        # Error status words carry no data (and no R-MAC), as ISO 7816-4 responses do.
        rdata = rdata if sw != 0x6A82 else b""
        assert _exchange(host, card, (0x80, 0xE2, 0x90, i & 0xFF, cdata), rdata, sw) == rdata


def test_levels_change_the_wire_format() -> None:
    # Not a tautology check: each protection bit must show up on the wire.
    secret = b"tariff v7 signed blob"
    wires = {}
    for level in sorted(SECURITY_LEVELS):
        host, card = _open(level)
        wires[level] = host.wrap_command(0x80, 0xE2, 0x90, 0x00, secret)
        card.unwrap_command(*split_capdu(wires[level]))
        rsp = card.wrap_response(secret, 0x9000)
        expected_len = {0x11: len(secret) + 8, 0x13: len(secret) + 8, 0x33: 32 + 8}.get(
            level, len(secret)
        )
        assert len(rsp) == expected_len
        assert (secret in rsp) == (level != 0x33)
    assert wires[0x00] == h("80E2900015") + secret
    assert (
        wires[0x01][0] == 0x84 and secret in wires[0x01] and len(wires[0x01]) == 5 + len(secret) + 8
    )
    assert secret not in wires[0x03] and len(wires[0x03]) == 5 + 32 + 8


def test_logical_channel_and_extended_length() -> None:
    host, card = _open(0x33)
    big = bytes(range(256)) * 3
    for cla in (0x81, 0x83, 0xC1, 0xCF):
        wire = host.wrap_command(cla, 0xE8, 0x00, 0x00, big)
        assert wire[0] == cla | (0x20 if cla & 0x40 else 0x04)
        assert wire[4] == 0x00  # extended Lc
        assert card.unwrap_command(*split_capdu(wire)) == (cla, 0xE8, 0x00, 0x00, big)
        assert host.unwrap_response(card.wrap_response(big, 0x9000) + b"\x90\x00") == (big, 0x9000)


def test_card_accepts_padded_empty_block_as_empty_data() -> None:
    # yubikit encrypts an empty command body into one block '80 00..00'; build exactly that
    # command by hand with this session's S-ENC, counter 1 and C-MAC.
    keys = _keys(16)
    card = SCP03CardSession(keys, aid=TEST_AID)
    host_chal = bytes(8)
    rsp = card.initialize_update(0x80, 0x30, 0x00, host_chal)
    card_chal = rsp[13:21]
    session = derive_session_keys(keys, host_chal, card_chal)
    crypt = host_cryptogram(session.s_mac, host_chal, card_chal)
    chain = aes_cmac(session.s_mac, bytes(16) + h("8482030010") + crypt)
    card.external_authenticate(0x84, 0x03, 0x00, crypt + chain[:8])
    ecb = Cipher(algorithms.AES(session.s_enc), modes.ECB()).encryptor()
    icv = ecb.update((1).to_bytes(16, "big")) + ecb.finalize()
    cbc = Cipher(algorithms.AES(session.s_enc), modes.CBC(icv)).encryptor()
    block = cbc.update(h("80") + bytes(15)) + cbc.finalize()
    mac = aes_cmac(session.s_mac, chain + h("84CA006618") + block)[:8]
    assert card.unwrap_command(0x84, 0xCA, 0x00, 0x66, block + mac) == (0x80, 0xCA, 0x00, 0x66, b"")
    assert card.is_authenticated


# ---------------------------------------------------------------------------------------
# Attacks and misuse: every one answers 6982 (or its own SW) and closes the session
# ---------------------------------------------------------------------------------------


def _expect(sw: int, fn, *args) -> SCP03Error:
    with pytest.raises(SCP03Error) as info:
        fn(*args)
    assert info.value.sw == sw, info.value
    return info.value


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_tampered_mac_closes_session(level: int) -> None:
    host, card = _open(level, 32)
    cla, ins, p1, p2, data = split_capdu(host.wrap_command(0x80, 0xE6, 0x0C, 0x00, b"install me"))
    bad = data[:-1] + bytes([data[-1] ^ 0x01])
    _expect(0x6982, card.unwrap_command, cla, ins, p1, p2, bad)
    assert not card.is_authenticated and card.key_set is None and card.security_level is None
    # The genuine command no longer gets through: the session is gone.
    _expect(0x6982, card.unwrap_command, cla, ins, p1, p2, data)


@pytest.mark.parametrize("field", ["cla", "ins", "p1", "p2", "body"])
def test_tampered_header_or_body_fails_mac(field: str) -> None:
    host, card = _open(0x03)
    cla, ins, p1, p2, data = split_capdu(
        host.wrap_command(0x80, 0xE4, 0x00, 0x80, h("4F05A000000001"))
    )
    fields = {"cla": cla, "ins": ins, "p1": p1, "p2": p2}
    if field == "body":
        data = bytes([data[0] ^ 0x80]) + data[1:]
    elif field == "cla":
        fields["cla"] = cla ^ 0x80  # 84 -> 04: still SM, other class
    else:
        fields[field] ^= 0x01
    _expect(
        0x6982, card.unwrap_command, fields["cla"], fields["ins"], fields["p1"], fields["p2"], data
    )
    assert not card.is_authenticated


def test_replayed_command_fails() -> None:
    host, card = _open(0x13)
    first = split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x00, b"push tariff"))
    card.unwrap_command(*first)
    _expect(0x6982, card.unwrap_command, *first)
    assert not card.is_authenticated


def test_reordered_commands_fail() -> None:
    host, card = _open(0x01)
    a = split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x00, b"one"))
    b = split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x01, b"two"))
    _expect(0x6982, card.unwrap_command, *b)
    assert not card.is_authenticated
    _expect(0x6982, card.unwrap_command, *a)


def test_dropped_command_fails() -> None:
    host, card = _open(0x01)
    host.wrap_command(0x80, 0xE2, 0x90, 0x00, b"lost on the way")
    _expect(
        0x6982, card.unwrap_command, *split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x01, b"x"))
    )


def test_unprotected_command_in_session_fails() -> None:
    host, card = _open(0x01)
    _expect(0x6982, card.unwrap_command, 0x80, 0xE4, 0x00, 0x00, h("4F05A000000001"))
    assert not card.is_authenticated


def test_wrong_static_key_card_cryptogram() -> None:
    card = SCP03CardSession(_keys(16, seed=0x40), aid=TEST_AID)
    host = SCP03HostSession(_keys(16, seed=0x41), aid=None)
    cla, ins, p1, p2, data = split_capdu(host.initialize_update())
    rsp = card.initialize_update(cla, p1, p2, data)
    _expect(0x6982, host.process_initialize_update_response, rsp + b"\x90\x00")
    assert not host.is_authenticated


def test_wrong_host_cryptogram_or_mac_closes_session() -> None:
    for corrupt in (0, 8):  # byte 0: host cryptogram, byte 8: C-MAC
        keys = _keys(24)
        card = SCP03CardSession(keys, aid=TEST_AID)
        host = SCP03HostSession(keys, aid=TEST_AID)
        cla, ins, p1, p2, data = split_capdu(host.initialize_update())
        host.process_initialize_update_response(
            card.initialize_update(cla, p1, p2, data) + b"\x90\x00"
        )
        cla, ins, p1, p2, data = split_capdu(host.external_authenticate(0x03))
        data = data[:corrupt] + bytes([data[corrupt] ^ 0x10]) + data[corrupt + 1 :]
        _expect(0x6982, card.external_authenticate, cla, p1, p2, data)
        assert not card.is_authenticated
        # a second try with the genuine command is refused: INITIALIZE UPDATE must come first
        _expect(0x6985, card.external_authenticate, cla, p1, p2, data)


def test_tampered_response_rmac() -> None:
    host, card = _open(0x33)
    card.unwrap_command(*split_capdu(host.wrap_command(0x80, 0xF2, 0x40, 0x02, h("4F00"))))
    rsp = bytearray(card.wrap_response(b"registry entry", 0x9000) + b"\x90\x00")
    rsp[3] ^= 0x01
    _expect(0x6982, host.unwrap_response, bytes(rsp))
    assert not host.is_authenticated


def test_response_replayed_to_next_command_fails() -> None:
    host, card = _open(0x11)
    card.unwrap_command(*split_capdu(host.wrap_command(0x80, 0xCA, 0x00, 0x66, b"")))
    old = card.wrap_response(b"card data", 0x9000) + b"\x90\x00"
    assert host.unwrap_response(old) == (b"card data", 0x9000)
    card.unwrap_command(*split_capdu(host.wrap_command(0x80, 0xCA, 0x00, 0x66, b"")))
    _expect(0x6982, host.unwrap_response, old)


def test_sequence_counter_persists_and_exhausts() -> None:
    store = MemoryCounterStore({0x30: SEQUENCE_COUNTER_MAX - 2})
    seen = []
    for _ in range(2):
        host, card = _open(0x01, counters=store)
        seen.append(host.sequence_counter)
    assert seen == [SEQUENCE_COUNTER_MAX - 1, SEQUENCE_COUNTER_MAX]
    assert store.load(0x30) == SEQUENCE_COUNTER_MAX
    card = SCP03CardSession(_keys(16), aid=TEST_AID, counters=store)
    _expect(0x6985, card.initialize_update, 0x80, 0x30, 0x00, bytes(8))
    assert store.load(0x30) == SEQUENCE_COUNTER_MAX and not card.is_authenticated


def test_challenges_never_repeat_across_sessions() -> None:
    store = MemoryCounterStore()
    card = SCP03CardSession(_keys(16), aid=TEST_AID, counters=store)
    challenges = {card.initialize_update(0x80, 0x00, 0x00, bytes(8))[13:21] for _ in range(50)}
    assert len(challenges) == 50 and store.load(0x30) == 50


def test_random_challenge_mode_and_level_support() -> None:
    host, card = _open(0x03, i_param=0x00)  # random challenge, no R-MAC support
    assert host.sequence_counter is None
    assert _exchange(host, card, (0x80, 0xE2, 0x90, 0x00, b"x"), b"y") == b"y"
    keys = _keys(16)
    card = SCP03CardSession(keys, aid=TEST_AID, i_param=I_PSEUDO_RANDOM)
    host = SCP03HostSession(keys, aid=TEST_AID)
    cla, ins, p1, p2, data = split_capdu(host.initialize_update())
    host.process_initialize_update_response(card.initialize_update(cla, p1, p2, data) + b"\x90\x00")
    _expect(0x6A86, host.external_authenticate, 0x11)  # host refuses what the card lacks
    host.i_param = I_PSEUDO_RANDOM | I_R_MAC  # a host that ignores the card's i parameter...
    cla, ins, p1, p2, data = split_capdu(host.external_authenticate(0x11))
    _expect(0x6A86, card.external_authenticate, cla, p1, p2, data)  # ...is refused by the card
    assert not card.is_authenticated
    with pytest.raises(ValueError):
        SCP03CardSession(keys, aid=TEST_AID, i_param=I_R_ENCRYPTION)  # R-ENC needs R-MAC


def test_card_rejects_malformed_handshake() -> None:
    card = SCP03CardSession(_keys(16), aid=TEST_AID)
    _expect(0x6700, card.initialize_update, 0x80, 0x30, 0x00, bytes(7))
    _expect(0x6A86, card.initialize_update, 0x80, 0x30, 0x01, bytes(8))
    _expect(0x6A88, card.initialize_update, 0x80, 0x31, 0x00, bytes(8))
    _expect(0x6E00, card.initialize_update, 0x84, 0x30, 0x00, bytes(8))
    _expect(0x6985, card.external_authenticate, 0x84, 0x01, 0x00, bytes(16))
    card.initialize_update(0x80, 0x30, 0x00, bytes(8))
    _expect(0x6A86, card.external_authenticate, 0x84, 0x02, 0x00, bytes(16))  # C-DEC w/o C-MAC
    card.initialize_update(0x80, 0x30, 0x00, bytes(8))
    _expect(0x6700, card.external_authenticate, 0x84, 0x01, 0x00, bytes(15))
    _expect(0x6982, card.unwrap_command, 0x84, 0xE2, 0x00, 0x00, bytes(8))  # no session


def test_new_initialize_update_ends_session() -> None:
    host, card = _open(0x01)
    card.initialize_update(0x80, 0x30, 0x00, bytes(8))
    assert not card.is_authenticated
    _expect(
        0x6982, card.unwrap_command, *split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x00, b""))
    )


def test_padding_helpers() -> None:
    for n in range(40):
        data = bytes(range(n))
        padded = pad80(data)
        assert len(padded) % 16 == 0 and len(padded) - n <= 16 and unpad80(padded) == data
    _expect(0x6A80, unpad80, bytes(16))
    _expect(0x6A80, unpad80, h("80") + bytes(31))  # more than one block of padding
    _expect(0x6700, unpad80, h("80") + bytes(14))


# ---------------------------------------------------------------------------------------
# Fuzzing the unwrap paths: anything malformed ends in SCP03Error, never another exception
# ---------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    level=st.sampled_from([0x01, 0x03, 0x11, 0x13, 0x33]),
    payload=st.binary(max_size=80),
    position=st.integers(min_value=0, max_value=10_000),
    xor=st.integers(min_value=1, max_value=255),
    mode=st.sampled_from(["flip", "truncate", "extend", "random"]),
    junk=st.binary(max_size=40),
)  # fmt: skip
def test_fuzz_unwrap_command(
    level: int, payload: bytes, position: int, xor: int, mode: str, junk: bytes
) -> None:
    host, card = _open(level)
    cla, ins, p1, p2, data = split_capdu(host.wrap_command(0x80, 0xE2, 0x90, 0x00, payload))
    if mode == "flip":
        i = position % len(data)
        data = data[:i] + bytes([data[i] ^ xor]) + data[i + 1 :]
    elif mode == "truncate":
        data = data[: position % len(data)]
    elif mode == "extend":
        data = data + junk + bytes([xor])
    else:
        data = junk
    with pytest.raises(SCP03Error) as info:
        card.unwrap_command(cla, ins, p1, p2, data)
    assert info.value.sw in (0x6982, 0x6700, 0x6A80)
    assert not card.is_authenticated


@settings(max_examples=150, deadline=None)
@given(
    cla=st.integers(-2, 300), p1=st.integers(-2, 300), p2=st.integers(-2, 300),
    data=st.binary(max_size=40), ext=st.binary(max_size=40), ins=st.integers(0, 255),
)  # fmt: skip
def test_fuzz_card_handshake(cla: int, p1: int, p2: int, data: bytes, ext: bytes, ins: int) -> None:
    card = SCP03CardSession(_keys(16), aid=TEST_AID)
    for call in (
        lambda: card.initialize_update(cla, p1, p2, data),
        lambda: card.external_authenticate(cla, p1, p2, ext),
        lambda: card.unwrap_command(cla, ins, p1, p2, data),
    ):
        with contextlib.suppress(SCP03Error):
            call()
    # Only a correct host cryptogram and C-MAC authenticates; random bytes never do.
    assert not card.is_authenticated


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rapdu=st.binary(max_size=60), init_rsp=st.binary(max_size=60))
def test_fuzz_host_unwrap(rapdu: bytes, init_rsp: bytes) -> None:
    host = SCP03HostSession(_keys(16), aid=TEST_AID)
    host.initialize_update()
    with contextlib.suppress(SCP03Error):
        host.process_initialize_update_response(init_rsp)
    assert not host.is_authenticated
    host, card = _open(0x33)
    host.wrap_command(0x80, 0xCA, 0x00, 0x66, b"")
    try:
        data, sw = host.unwrap_response(rapdu)
    except SCP03Error as exc:
        assert exc.sw in (0x6982, 0x6700, 0x6A80)
    else:
        # accepted only when the status word is an error, which carries no protection
        assert not (sw == 0x9000 or sw >> 8 in (0x62, 0x63))
        assert data == rapdu[:-2]


def test_error_sw_is_not_protected() -> None:
    host, card = _open(0x33)
    card.unwrap_command(*split_capdu(host.wrap_command(0x80, 0xE4, 0x00, 0x00, h("4F01AA"))))
    assert card.wrap_response(b"", 0x6A88) == b""
    assert host.unwrap_response(h("6A88")) == (b"", 0x6A88)
    assert card.security_level == 0x33 == C_MAC | C_DECRYPTION | R_MAC | R_ENCRYPTION


@pytest.mark.parametrize("level", [0x01, 0x03, 0x33])
@pytest.mark.parametrize("size,le", [(0, 0x10000), (240, None), (247, None), (248, None), (300, 0x100), (1000, 0x1000)])
def test_extended_commands_mac_the_extended_lc(level: int, size: int, le: int | None) -> None:
    # The C-MAC covers Lc as sent (Amendment D §6.2.4): extended Lc when the protected
    # data or Le need extended length, so the card must verify with the same encoding.
    host, card = _open(level)
    data = bytes(range(256)) * 4
    data = data[:size]
    wrapped = host.wrap_command(0x80, 0xE2, 0x80, 0x00, data, le)
    assert _is_extended(wrapped) == (len(split_capdu(wrapped)[4]) > 0xFF or (le or 0) > 0x100)
    got = card.unwrap_command(*split_capdu(wrapped), extended=_is_extended(wrapped))
    assert got == (0x80, 0xE2, 0x80, 0x00, data)


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([16, 24, 32]),
    st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 0xFFFF), st.integers(1, 1 << 24)), min_size=1,
             max_size=6),
)
def test_session_macs_and_icvs_equal_fresh_computations_on_every_command(key_len, commands):
    """Secure messaging sets each session key's AES context up once (messaging.py) and
    reuses it for every command: each C-MAC, R-MAC, ICV and cryptogram of a sequence of
    commands must be byte for byte what a fresh CMAC / AES per value gives (Amendment D
    §6.2.4-§6.2.7), whatever came before in the session."""
    import os

    from meterhub.protocols.gp.scp03.kdf import SessionKeys, _aes_ecb_block, aes_cmac, pad80
    from meterhub.protocols.gp.scp03.messaging import _SecureMessaging

    keys = SessionKeys(os.urandom(key_len), os.urandom(key_len), os.urandom(key_len), os.urandom(key_len))
    sm = _SecureMessaging(keys, 0x33, 8, bytes(16))
    for body, sw, counter in commands:
        chain = sm.chain
        full = sm.command_mac(0x84, 0xE2, 0x80, 0x00, body)
        lc = bytes([len(body) + 8]) if len(body) + 8 <= 0xFF else b"\x00" + (len(body) + 8).to_bytes(2, "big")
        assert full == aes_cmac(keys.s_mac, chain + bytes([0x84, 0xE2, 0x80, 0x00]) + lc + body)
        sm.chain = full
        assert sm.response_mac(body, sw) == aes_cmac(keys.s_rmac, full + body + sw.to_bytes(2, "big"))[:8]
        for response in (False, True):
            block = (b"\x80" + counter.to_bytes(15, "big")) if response else counter.to_bytes(16, "big")
            icv = _aes_ecb_block(keys.s_enc, block)
            assert sm._icv(counter, response) == icv
            enc = Cipher(algorithms.AES(keys.s_enc), modes.CBC(icv)).encryptor()
            expected = enc.update(pad80(body)) + enc.finalize()
            assert sm.encrypt(body, counter, response=response) == expected
            assert sm.decrypt(expected, counter, response=response) == body
