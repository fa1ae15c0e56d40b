"""ISO/IEC 7816-4 APDU codec and status words (meterhub.protocols.iso7816).

Byte layouts follow ISO/IEC 7816-4:2020 §5.1 (cases 1-4, short and extended
length fields) and §5.4.1 (class byte). The literal C-APDUs below are written
by hand from those rules; the SELECT of the GlobalPlatform ISD uses the AID
A000000151000000 of GPC 2.3.1 (Table F-1 / §F.2 example scripts use it too).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.protocols.iso7816 import SW, CommandAPDU, ISOException, ResponseAPDU
from meterhub.protocols.iso7816.sw import (
    bytes_remaining,
    correct_length,
    is_success,
    sw_bytes,
    sw_from_bytes,
)

valid_cla = st.integers(0, 0xFE).filter(lambda c: (c & 0xE0) != 0x20)
valid_ins = st.integers(0, 0xFF).filter(lambda i: (i & 0xF0) not in (0x60, 0x90))
byte = st.integers(0, 0xFF)


@st.composite
def commands(draw: st.DrawFn) -> CommandAPDU:
    case = draw(st.sampled_from([1, 2, 3, 4]))
    extended = draw(st.booleans()) if case != 1 else False
    max_nc = 65535 if extended else 255
    max_ne = 65536 if extended else 256
    data = b""
    if case in (3, 4):
        n = draw(st.one_of(st.integers(1, min(max_nc, 300)), st.just(max_nc)))
        data = draw(st.binary(min_size=n, max_size=n)) if n <= 300 else bytes(n)
    le = None
    if case in (2, 4):
        le = draw(st.one_of(st.integers(1, max_ne), st.sampled_from([1, 256, max_ne])))
    return CommandAPDU(draw(valid_cla), draw(valid_ins), draw(byte), draw(byte), data, le, extended)


@given(commands())
def test_command_round_trip(cmd: CommandAPDU) -> None:
    raw = cmd.to_bytes()
    back = CommandAPDU.from_bytes(raw)
    assert back == cmd
    assert back.to_bytes() == raw
    assert back.case == cmd.case


@given(st.binary(max_size=600))
def test_random_bytes_parse_or_status_word(raw: bytes) -> None:
    try:
        cmd = CommandAPDU.from_bytes(raw)
    except ISOException as exc:
        assert exc.sw in (SW.WRONG_LENGTH, SW.CLA_NOT_SUPPORTED, SW.INS_NOT_SUPPORTED)
    else:
        assert cmd.to_bytes() == raw  # a strict parse is a bijection


@given(
    valid_cla,
    valid_ins,
    byte,
    byte,
    st.binary(min_size=1, max_size=255),
    st.one_of(st.integers(-255, -1), st.integers(2, 50)),
)
def test_short_lc_mismatch_is_6700(
    cla: int, ins: int, p1: int, p2: int, data: bytes, delta: int
) -> None:
    """Lc says len(data) but the body is shorter, or longer by 2 or more."""
    good = CommandAPDU(cla, ins, p1, p2, data).to_bytes()
    bad = good[:delta] if delta < 0 else good + bytes(delta)
    if len(bad) <= 5:  # 4 or 5 bytes are valid cases 1 and 2S
        return
    with pytest.raises(ISOException) as ei:
        CommandAPDU.from_bytes(bad)
    assert ei.value.sw == SW.WRONG_LENGTH


def test_cases_by_hand() -> None:
    c1 = CommandAPDU.from_bytes(bytes.fromhex("00708001"))
    assert (c1.case, c1.ins, c1.p1, c1.p2, c1.data, c1.le) == (1, 0x70, 0x80, 0x01, b"", None)
    c2 = CommandAPDU.from_bytes(bytes.fromhex("00C0000000"))
    assert (c2.case, c2.le, c2.extended) == (2, 256, False)
    c3 = CommandAPDU.from_bytes(bytes.fromhex("00A4040008A000000151000000"))
    assert (c3.case, c3.data, c3.le) == (3, bytes.fromhex("A000000151000000"), None)
    c4 = CommandAPDU.from_bytes(bytes.fromhex("00A4040008A00000015100000000"))
    assert (c4.case, c4.le) == (4, 256)
    c2e = CommandAPDU.from_bytes(bytes.fromhex("00B0000000 0000".replace(" ", "")))
    assert (c2e.case, c2e.le, c2e.extended) == (2, 65536, True)
    c2e2 = CommandAPDU.from_bytes(bytes.fromhex("00B00000000102"))
    assert (c2e2.case, c2e2.le) == (2, 0x0102)
    c3e = CommandAPDU.from_bytes(bytes.fromhex("00DA00000000 03 AABBCC".replace(" ", "")))
    assert (c3e.case, c3e.data, c3e.extended) == (3, b"\xaa\xbb\xcc", True)
    c4e = CommandAPDU.from_bytes(bytes.fromhex("80E2000000 0002 1122 0000".replace(" ", "")))
    assert (c4e.case, c4e.data, c4e.le, c4e.extended) == (4, b"\x11\x22", 65536, True)


def test_encoder_picks_short_or_extended() -> None:
    assert CommandAPDU(0, 0xB0, 0, 0, le=256).to_bytes() == bytes.fromhex("00B0000000")
    assert CommandAPDU(0, 0xB0, 0, 0, le=257).to_bytes() == bytes.fromhex("00B00000000101")
    assert CommandAPDU(0, 0xD6, 0, 0, bytes(256)).to_bytes()[:7] == bytes.fromhex("00D60000000100")
    assert CommandAPDU(0, 0xB0, 0, 0, le=5, extended=True).to_bytes() == bytes.fromhex(
        "00B00000000005"
    )
    with pytest.raises(ValueError):
        CommandAPDU(0, 0xB0, 0, 0, le=300, extended=False)
    with pytest.raises(ValueError):
        CommandAPDU(0, 0xB0, 0, 0, extended=True)  # case 1 has no extended form
    with pytest.raises(ValueError):
        CommandAPDU(0, 0xB0, 0, 0, le=0)
    with pytest.raises(ValueError):
        CommandAPDU(0x100, 0xB0, 0, 0)


@pytest.mark.parametrize(
    ("hexstr", "sw"),
    [
        ("", SW.WRONG_LENGTH),
        ("00", SW.WRONG_LENGTH),
        ("00A404", SW.WRONG_LENGTH),
        ("00A4040000 00".replace(" ", ""), SW.WRONG_LENGTH),  # 6 bytes, 00 then 1 byte
        ("00A4040002AA", SW.WRONG_LENGTH),  # Lc 2, one byte of data
        ("00A4040001AABBCC", SW.WRONG_LENGTH),  # two bytes too many
        ("00A40400000000", SW.NO_ERROR),  # case 2E, Le = 65536: valid
        ("00A4040000000011", SW.WRONG_LENGTH),  # extended Lc 0 with trailing byte
        ("00A404000000", SW.WRONG_LENGTH),
        ("00A40400000002AA", SW.WRONG_LENGTH),  # extended Lc 2, one byte
        ("00A40400000001AA00", SW.WRONG_LENGTH),  # extended needs a 2-byte Le
        ("FFA40400", SW.CLA_NOT_SUPPORTED),
        ("20A40400", SW.CLA_NOT_SUPPORTED),
        ("00600000", SW.INS_NOT_SUPPORTED),
        ("009F0000", SW.INS_NOT_SUPPORTED),
    ],
)
def test_malformed_commands(hexstr: str, sw: int) -> None:
    raw = bytes.fromhex(hexstr)
    if sw == SW.NO_ERROR:
        assert CommandAPDU.from_bytes(raw).to_bytes() == raw
        return
    with pytest.raises(ISOException) as ei:
        CommandAPDU.from_bytes(raw)
    assert ei.value.sw == sw


@pytest.mark.parametrize(
    ("cla", "channel", "sm", "interindustry"),
    [
        (0x00, 0, 0, True),
        (0x03, 3, 0, True),
        (0x0C, 0, 3, True),
        (0x40, 4, 0, True),
        (0x4F, 19, 0, True),
        (0x61, 5, 1, True),
        (0x80, 0, 0, False),
        (0x84, 0, 1, False),
        (0x86, 2, 1, False),
        (0xC1, 5, 0, False),
    ],
)
def test_class_byte(cla: int, channel: int, sm: int, interindustry: bool) -> None:
    cmd = CommandAPDU(cla, 0xCA, 0, 0)
    assert (cmd.channel, cmd.secure_messaging, cmd.interindustry) == (channel, sm, interindustry)


@given(commands(), st.integers(0, 19))
def test_with_channel(cmd: CommandAPDU, channel: int) -> None:
    moved = cmd.with_channel(channel)
    assert moved.channel == channel
    assert moved.interindustry == cmd.interindustry
    assert (moved.ins, moved.p1, moved.p2, moved.data, moved.le) == (
        cmd.ins,
        cmd.p1,
        cmd.p2,
        cmd.data,
        cmd.le,
    )
    assert bool(moved.secure_messaging) == bool(cmd.secure_messaging)


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    r = ResponseAPDU(data, sw)
    raw = r.to_bytes()
    assert ResponseAPDU.from_bytes(raw) == r
    assert (r.sw1, r.sw2) == (sw >> 8, sw & 0xFF)
    assert sw_from_bytes(raw) == sw


def test_response_too_short() -> None:
    with pytest.raises(ValueError):
        ResponseAPDU.from_bytes(b"\x90")


def test_status_word_helpers() -> None:
    assert bytes_remaining(0x58) == 0x6158
    assert bytes_remaining(300) == 0x6100
    assert bytes_remaining(256) == 0x6100
    assert correct_length(0x14) == 0x6C14
    assert correct_length(256) == 0x6C00
    with pytest.raises(ValueError):
        correct_length(0)
    assert sw_bytes(SW.FILE_NOT_FOUND) == b"\x6a\x82"
    assert is_success(0x9000) and is_success(0x6110)
    assert not is_success(0x6A82)
    exc = ISOException(SW.WRONG_DATA)
    assert exc.sw == 0x6A80
    with pytest.raises(ISOException) as ei:
        ISOException.throw_it(0x6985)
    assert ei.value.sw == 0x6985
    with pytest.raises(ValueError):
        ISOException(0x10000)
