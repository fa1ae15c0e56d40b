"""BER-TLV codec (ISO/IEC 7816-4:2020 §5.2; ISO/IEC 8825-1 §8.1.2-§8.1.3).

Vectors:
* the FCI of a payment system environment, ``6F1A840E315041592E5359532E4444463031A5088801025F2D02656E``,
  is the example SELECT '1PAY.SYS.DDF01' response structure of EMV 4.3 Book 1
  §11.3.4 (FCI: 84 DF name, A5 proprietary with 88 SFI and 5F2D language);
  its lengths were checked by hand.
* length encodings are the definite forms of ISO/IEC 8825-1 §8.1.3.4-§8.1.3.5.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.protocols.iso7816 import SW
from meterhub.protocols.iso7816.tlv import (
    TLV,
    TLVError,
    encode,
    encode_length,
    encode_tag,
    find,
    find_all,
    parse,
    parse_one,
)


@st.composite
def tags(draw: st.DrawFn, constructed: bool) -> int:
    cls_bits = draw(st.integers(0, 3)) << 6
    c = 0x20 if constructed else 0
    form = draw(st.sampled_from([1, 2, 3]))
    if form == 1:
        number = draw(st.integers(0, 30))
        first = cls_bits | c | number
        if first == 0x00:  # 00 is padding, not a tag (ISO/IEC 7816-4 §5.2)
            first = 0x01
        return first
    first = cls_bits | c | 0x1F
    if first == 0xFF:  # FF is padding, not a tag
        first = 0xBF  # keep it constructed
    if form == 2:
        return (first << 8) | draw(st.integers(0x1F, 0x7F))
    return (first << 16) | (draw(st.integers(0x81, 0xFF)) << 8) | draw(st.integers(0, 0x7F))


def tlvs(depth: int = 3) -> st.SearchStrategy[TLV]:
    prim = st.builds(TLV, tags(False), st.binary(max_size=40) | st.binary(min_size=120, max_size=300))
    if depth == 0:
        return prim
    cons = st.builds(
        lambda t, kids: TLV.build(t, kids),
        tags(True),
        st.lists(st.deferred(lambda: tlvs(depth - 1)), max_size=4),
    )
    return st.one_of(prim, cons)


@given(st.lists(tlvs(), max_size=5))
def test_round_trip(objs: list[TLV]) -> None:
    raw = encode(objs)
    assert parse(raw) == objs
    assert encode(parse(raw)) == raw


@given(tlvs())
def test_children_round_trip(obj: TLV) -> None:
    if obj.constructed:
        assert TLV.build(obj.tag, obj.children()) == obj
    else:
        with pytest.raises(TLVError):
            obj.children()


@given(st.binary(max_size=400))
def test_random_bytes_parse_or_6a80(raw: bytes) -> None:
    try:
        objs = parse(raw)
    except TLVError as exc:
        assert exc.sw == SW.WRONG_DATA
    else:
        assert encode(objs) == raw  # strict: only canonical encodings parse


def test_fci_vector() -> None:
    raw = bytes.fromhex("6F1A840E315041592E5359532E4444463031A5088801025F2D02656E")
    (fci,) = parse(raw)
    assert fci.tag == 0x6F and fci.constructed
    df_name = fci.find(0x84)
    assert df_name is not None and df_name.value == b"1PAY.SYS.DDF01"
    prop = fci.find(0xA5)
    assert prop is not None
    assert [(o.tag, o.value) for o in prop.children()] == [(0x88, b"\x02"), (0x5F2D, b"en")]
    assert fci.to_bytes() == raw


@pytest.mark.parametrize(
    ("n", "hexstr"),
    [
        (0, "00"),
        (0x7F, "7F"),
        (0x80, "8180"),
        (0xFF, "81FF"),
        (0x100, "820100"),
        (0xFFFF, "82FFFF"),
        (0x10000, "83010000"),
        (0x01000000, "8401000000"),
    ],
)
def test_length_forms(n: int, hexstr: str) -> None:
    assert encode_length(n) == bytes.fromhex(hexstr)


def test_tags() -> None:
    assert encode_tag(0x84) == b"\x84"
    assert encode_tag(0x9F65) == b"\x9f\x65"
    assert encode_tag(0x5F2D) == b"\x5f\x2d"
    assert encode_tag(0xBF3F) == b"\xbf\x3f"
    assert encode_tag(0xDF8101) == b"\xdf\x81\x01"
    assert TLV(0x9F65).tag_class == 2 and not TLV(0x9F65).constructed
    assert TLV(0xBF3F).constructed and TLV(0x7F49).tag_class == 1
    # 9F1E and BF0C: ISO/IEC 7816-4 §5.2 forbids 00-1E and 80 as second tag byte
    for bad in (0x00, 0xFF, 0x1F, 0x9F1E, 0xBF0C, 0x9F80, 0x9F8001, 0x9F818181, 0x9F81, 0x1234):
        with pytest.raises(ValueError):
            encode_tag(bad)


@pytest.mark.parametrize(
    "hexstr",
    [
        "84",  # no length
        "8402AA",  # value too short
        "8480",  # indefinite length
        "8485000000000001",  # five length bytes after 85
        "848105" + "AA" * 5,  # non-minimal long form
        "84820005" + "AA" * 5,  # non-minimal two-byte form
        "8481",  # truncated length
        "9F",  # truncated tag
        "9F800100",  # leading zero bits in the tag number
        "9F1E00",  # number below 31 in the long form
        "DF81818100",  # four-byte tag
        "00",  # padding is not a tag in strict mode
        "FF00",
        "6F03840201",  # child runs past its parent
        "6F0284",  # constructed with a truncated child
    ],
)
def test_malformed(hexstr: str) -> None:
    with pytest.raises(TLVError) as ei:
        parse(bytes.fromhex(hexstr))
    assert ei.value.sw == SW.WRONG_DATA


def test_padding_allowed_when_asked() -> None:
    raw = bytes.fromhex("00 8401AA FF FF 8500 00".replace(" ", ""))
    assert parse(raw, allow_padding=True) == [TLV(0x84, b"\xaa"), TLV(0x85)]


def test_nesting_limit() -> None:
    inner = TLV(0x84, b"x")
    for _ in range(40):
        inner = TLV.build(0xA5, [inner])
    with pytest.raises(TLVError):
        parse(inner.to_bytes())
    ok = TLV(0x84, b"x")
    for _ in range(10):
        ok = TLV.build(0xA5, [ok])
    assert parse(ok.to_bytes()) == [ok]


def test_parse_one_and_find() -> None:
    raw = bytes.fromhex("8401AA8502BBCC8401DD")
    obj, off = parse_one(raw, 3)
    assert obj == TLV(0x85, b"\xbb\xcc") and off == 7
    objs = parse(raw)
    assert find(objs, 0x84) == TLV(0x84, b"\xaa")
    assert find(objs, 0x99) is None
    assert find_all(objs, 0x84) == [TLV(0x84, b"\xaa"), TLV(0x84, b"\xdd")]
    with pytest.raises(ValueError):
        TLV.build(0x84, [])  # primitive tag cannot be built from children
