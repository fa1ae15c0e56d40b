"""SML 1.04 codec: CRC-16/X.25, type-length encoding and single messages.

Vectors marked "libsml" come from volkszaehler/libsml test/src/*.c and those marked
"smllib" from spacemanspiff2007/SmlLib tests/*.py (hex data only).
"""

from __future__ import annotations

import pytest

from meterhub.protocols.sml import (
    CloseResponse,
    GetListResponse,
    ListEntry,
    OpenResponse,
    PeriodEntry,
    SMLCRCError,
    SMLEncodeError,
    SMLError,
    SMLLengthError,
    SmlMessage,
    SMLStructureError,
    SmlTime,
    SMLTruncatedError,
    SMLTypeError,
    SMLUnknownTagError,
    crc16_x25,
    crc16_x25_wire,
    format_server_id,
    make_server_id,
    obis,
    obis_to_str,
)
from meterhub.protocols.sml.tl import Reader, Writer, smallest_int_type


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# ---------------------------------------------------------------- CRC-16/X.25


def test_crc_check_value() -> None:
    # CRC RevEng catalogue, CRC-16/IBM-SDLC (alias X-25): check = 0x906E
    assert crc16_x25(b"123456789") == 0x906E
    assert crc16_x25(b"") == 0x0000
    assert crc16_x25_wire(b"123456789") == 0x6E90


@pytest.mark.parametrize(
    "msg",
    [
        # smllib tests/test_crc.py crc1..crc5
        "7605032b18116200620072630201710163fa3600",
        "7605171756bd6200620072630201710163170f00",
        "760700070615fce7620062007263010176010107000702e053ce0b0901454d4800004895f701016333aa00",
        "76051c414c02620062007263010176010102310b0a01445a47000282c0b07262016505471c2a620263f93800",
        "76040000016200620072650000010176010107000002dba23c0b0a01484c5902000424a0010163945b00",
        # libsml test/src/sml_message_test.c, TEST(sml_message, parse)
        "7607003800003FB662006200726301017601010700380042153D0B06454D48010271533BCD010163820800",
    ],
)
def test_crc_of_real_messages(msg: str) -> None:
    data = h(msg)
    # the CRC covers everything before the crc16 element (63 xx xx) and endOfSmlMsg
    assert crc16_x25_wire(data[:-4]) == int.from_bytes(data[-3:-1], "big")
    SmlMessage.from_bytes(data)  # and the decoder agrees


def test_crc_residue_property() -> None:
    # appending the CRC low byte first yields the X.25 "good" residue (RFC 1662 C.2)
    data = b"meterhub"
    crc = crc16_x25(data)
    assert crc16_x25(data + crc.to_bytes(2, "little")) == 0x0F47


# ---------------------------------------------------------------- TL encoding


def _r(s: str) -> Reader:
    return Reader(h(s))


@pytest.mark.parametrize(
    ("hexdata", "max_bytes", "signed", "value"),
    [
        # libsml test/src/sml_number_test.c
        ("6201", 1, False, 1),
        ("630101", 2, False, 257),
        ("6500000001", 4, False, 1),
        ("64010001", 4, False, 65537),  # parse_unsigned32_fewer_bytes
        ("690000000000000001", 8, False, 1),
        ("67000000000001", 8, False, 1),  # parse_unsigned64_fewer_bytes
        ("52FF", 1, True, -1),
        ("53EC78", 2, True, -5000),
        ("55FFFFEC78", 4, True, -5000),
        ("59FFFFFFFFFFFFFFFF", 8, True, -1),
        ("58FFFFFFFFFFEC78", 8, True, -5000),  # parse_int64_fewer_bytes
        ("58FFFFFFFFFFFF0F", 8, True, -241),  # libsml sml_value_test.c
        # smllib tests/test_sml_data_types.py and test_sml_frame.py
        ("53ff00", 2, True, -256),
        ("53ff01", 2, True, -255),
        ("63ff01", 2, False, 65281),
        ("5500000a8c", 4, True, 2700),
        ("560004eb096c", 8, True, 82512236),
        ("650c6a50b5", 4, False, 208294069),
        ("59000000000dd359d6", 8, True, 231954902),
    ],
)
def test_integers(hexdata: str, max_bytes: int, signed: bool, value: int) -> None:
    r = _r(hexdata)
    got = r.sint(max_bytes, "x") if signed else r.uint(max_bytes, "x")
    assert got == value
    assert r.pos == r.end


@pytest.mark.parametrize(
    ("value", "type_name", "hexdata"),
    [
        # libsml sml_number_test.c / sml_value_test.c / sml_status_test.c write_* cases
        (1, "u8", "6201"),
        (-5000, "i32", "55FFFFEC78"),
        (42, "u32", "650000002A"),
        (-5, "i16", "53FFFB"),
    ],
)
def test_integer_writes(value: int, type_name: str, hexdata: str) -> None:
    w = Writer()
    w.integer(value, type_name)
    assert w.getvalue() == h(hexdata)


def test_octet_strings() -> None:
    # libsml sml_octet_string_test.c: parse, multi-byte TL parse and write
    assert _r("0648616C6C6F").octets("x") == b"Hallo"
    assert _r("8102616161616F6161616161616161616161").octets("x") == b"aaaaoaaaaaaaaaaa"
    w = Writer()
    w.octets(b"aaaaoaaaaaaaaaaa")
    assert w.getvalue() == h("8102616161616F6161616161616161616161")
    # smllib test_sml_frame.py test_long_str: TL 83 02 = 50 bytes including 2 TL bytes
    long = "8302010203040101010101010101010101010101010101010101010101010101010101010101010101010101010101010102"
    r = _r(long + "FF")
    assert r.octets("x") == h(long[4:])
    assert r.pos == 50
    # optional marker
    assert _r("01").opt_octets("x") is None


@pytest.mark.parametrize("n", [0, 1, 13, 14, 15, 16, 253, 254, 255, 256, 4093, 4094, 5000])
def test_tl_length_boundaries_round_trip(n: int) -> None:
    data = bytes(range(256)) * (n // 256 + 1)
    w = Writer()
    w.octets(data[:n])
    r = Reader(w.getvalue())
    assert r.octets("x") == data[:n]
    assert r.pos == r.end


@pytest.mark.parametrize("count", [0, 1, 15, 16, 20, 255, 256])
def test_list_tl_round_trip(count: int) -> None:
    w = Writer()
    w.list_of(count)
    for _ in range(count):
        w.absent()
    r = Reader(w.getvalue())
    assert r.list_of(count, "x") == count
    for _ in range(count):
        assert r.absent()
    assert r.pos == r.end


def test_long_list_tl_from_capture() -> None:
    # smllib test_sml_stream_reader.py test_msg_long_list: "f104" is a list of 20
    assert Reader(h("f104") + b"\x01" * 20).list_of(None, "x") == 20


def test_booleans() -> None:
    # libsml sml_value_test.c parse_boolean / write_boolean; smllib test_bool
    assert _r("4200").boolean("x") is False
    assert _r("4201").boolean("x") is True
    w = Writer()
    w.boolean(False)
    assert w.getvalue() == h("4200")


def test_time() -> None:
    # libsml sml_time_test.c: secIndex and timestamp, both 8 bytes
    t = SmlTime.decode(_r("72620165000000FF"))
    assert t == SmlTime.sec_index(255)
    assert SmlTime.decode(_r("72620265000000FF")) == SmlTime.timestamp(255)
    w = Writer()
    SmlTime.sec_index(255).encode(w)
    assert w.getvalue() == h("72620165000000FF")
    local = SmlTime(3, 1_700_000_000, 60, 60)
    w = Writer()
    local.encode(w)
    assert SmlTime.decode(Reader(w.getvalue())) == local


def test_list_entry_write_matches_libsml() -> None:
    # libsml sml_list_test.c write_one_entry: objName "Hallo", value "Hallo"
    w = Writer()
    w.list_of(1)
    ListEntry(b"Hallo", b"Hallo").encode(w)
    assert w.getvalue() == h("71770648616C6C6F010101010648616C6C6F01")


def test_list_entries_from_libsml_list_test() -> None:
    # libsml sml_list_test.c parse_two_entries: two entries, objName 0x61, value FALSE
    r = _r("727702610101010142000177026101010101420001")
    n = r.list_of(None, "valList")
    entries = [ListEntry.decode(r) for _ in range(n)]
    assert [e.obj_name for e in entries] == [b"\x61", b"\x61"]
    assert entries[0].value is False


def test_list_entries_from_smllib_fields() -> None:
    # smllib tests/test_sml_fields.py
    e = ListEntry.decode(_r("77078181c78203ff010101010449534b01"))
    assert e.obj_name == h("8181c78203ff") and e.value == b"ISK"
    e = ListEntry.decode(_r("77070100010800ff650000018201621e52ff59000000000112233401"))
    assert (e.obis, e.status, e.unit, e.scaler, e.value) == ("1-0:1.8.0*255", 386, 30, -1, 17965876)
    assert e.value_type == "i64"
    e = ListEntry.decode(_r("77070100600100ff010101010b0a01484c5902000424a001"))
    assert e.val_time is None
    e = ListEntry.decode(_r("77070100600100ff017262016200620052000b0a01445a47000282c0b001"))
    assert e.val_time == SmlTime.sec_index(0)
    # value is an SML_ListType carrying a timestamp: 2021-01-01 02:01:01 UTC
    e = ListEntry.decode(_r("770781006008000101010101726201726202655FEE825D01"))
    assert e.value == SmlTime.timestamp(1609466461)
    # smllib test_sml_frame.py test_get_list
    e = ListEntry.decode(_r("77070100010800ff650000078201621e52ff59000000000dd359d601"))
    assert (e.status, e.unit, e.scaler, e.value) == (1922, 30, -1, 231954902)


def test_status_must_be_unsigned() -> None:
    # libsml sml_status_test.c parse_not_unsigned: 5001 is rejected
    with pytest.raises(SMLError):
        ListEntry.decode(_r("7702615001010101420001"))


def test_period_entry_round_trip() -> None:
    e = PeriodEntry(obis("1-0:1.29.0*255"), 30, -1, 12345, b"sig", "u32")
    w = Writer()
    e.encode(w)
    assert PeriodEntry.decode(Reader(w.getvalue())) == e


# ---------------------------------------------------------------- helpers


def test_obis_and_server_id() -> None:
    assert obis("1-0:1.8.0*255") == h("0100010800ff")
    assert obis_to_str(h("0100100700ff")) == "1-0:16.7.0*255"
    assert obis_to_str(b"\x61") == "61"
    sid = make_server_id("DZG", 0x0282C0B0)
    # the DZG server id of smllib's Frame1 capture
    assert sid == h("0a01445a47000282c0b0")
    assert format_server_id(sid) == "1 DZG00 4212 3440"
    assert format_server_id(b"\x01\x02") == "0102"
    with pytest.raises(SMLEncodeError):
        make_server_id("TOOLONG", 1)
    with pytest.raises(SMLEncodeError):
        obis("1.8.0")


def test_smallest_int_type() -> None:
    assert smallest_int_type(0) == "u8"
    assert smallest_int_type(256) == "u16"
    assert smallest_int_type(-129) == "i16"
    assert smallest_int_type(1 << 40) == "u64"
    with pytest.raises(SMLEncodeError):
        smallest_int_type(1 << 64)


def test_encode_out_of_range() -> None:
    w = Writer()
    with pytest.raises(SMLEncodeError):
        w.integer(256, "u8")
    with pytest.raises(SMLEncodeError):
        w.integer(1, "u128")
    with pytest.raises(SMLEncodeError):
        ListEntry(b"x", b"bytes", value_type="u8").encode(Writer())


# ---------------------------------------------------------------- messages


def test_libsml_message_parse_and_crc_error() -> None:
    # libsml test/src/sml_message_test.c: parse, then the same with 1 bit corrupted
    good = h(
        "7607003800003FB662006200726301017601010700380042153D0B06454D48010271533BCD010163820800"
    )
    msg = SmlMessage.from_bytes(good)
    assert isinstance(msg.body, OpenResponse)
    assert msg.body.server_id == h("06454D48010271533BCD")
    bad = h(
        "7607003800003FB662006200736301017601010700380042153D0B06454D48010271533BCD010163820800"
    )
    with pytest.raises(SMLError):
        SmlMessage.from_bytes(bad)


def test_crc_mismatch_is_typed() -> None:
    msg = SmlMessage(b"\x01", CloseResponse()).to_bytes()
    corrupted = msg[:-3] + bytes([msg[-3] ^ 0x01]) + msg[-2:]
    with pytest.raises(SMLCRCError):
        SmlMessage.from_bytes(corrupted)
    # a flipped payload bit of an octet string keeps the structure: CRC error, too
    tampered = bytearray(SmlMessage(b"\x01\x02", CloseResponse(b"signature")).to_bytes())
    tampered[10] ^= 0x40
    with pytest.raises(SMLCRCError):
        SmlMessage.from_bytes(bytes(tampered))


def test_message_error_types() -> None:
    good = SmlMessage(b"T", GetListResponse(b"srv", ())).to_bytes()
    with pytest.raises(SMLTruncatedError):
        SmlMessage.from_bytes(good[:-5])
    with pytest.raises(SMLStructureError):
        SmlMessage.from_bytes(good + b"\x00")
    with pytest.raises(SMLStructureError):
        SmlMessage.from_bytes(good[:-1] + b"\x01")  # endOfSmlMsg missing
    pad = b"\x01" * 8
    with pytest.raises(SMLTruncatedError):
        SmlMessage.from_bytes(b"\x76\x0f" + pad)  # octet string of 14 bytes, 8 left
    with pytest.raises(SMLLengthError):
        SmlMessage.from_bytes(b"\x76\x80\x01" + pad)  # 2-byte TL announcing 1 byte in all
    with pytest.raises(SMLLengthError):
        SmlMessage.from_bytes(b"\x76\x81\x71" + pad)  # continuation byte with type bits
    with pytest.raises(SMLUnknownTagError):
        SmlMessage.from_bytes(b"\x76\x30" + pad)  # type nibble 3 does not exist
    with pytest.raises(SMLTypeError):
        SmlMessage.from_bytes(b"\x76\x62\x00" + pad)  # transactionId must be an octet string
    with pytest.raises(SMLTruncatedError):
        SmlMessage.from_bytes(b"\x76")  # list of 6 announced, nothing follows


def test_unknown_body_tag() -> None:
    # a well-formed envelope with tag 0x0300 (GetProfilePack.Req, not implemented)
    w = Writer()
    w.list_of(6)
    w.octets(b"T")
    w.integer(0, "u8")
    w.integer(0, "u8")
    w.list_of(2)
    w.integer(0x0300, "u16")
    w.absent()
    w.integer(crc16_x25_wire(w.out), "u16")
    w.out.append(0)
    with pytest.raises(SMLUnknownTagError):
        SmlMessage.from_bytes(w.getvalue())
