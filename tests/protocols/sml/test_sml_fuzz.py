"""Property-based robustness: every SML decoder, fed random or mutated input, either
succeeds or raises an SMLError subclass; nothing else escapes, nothing hangs."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.protocols.sml import (
    AttentionResponse,
    CloseRequest,
    CloseResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    OpenRequest,
    OpenResponse,
    SMLError,
    SmlMessage,
    SmlStreamDecoder,
    build_meter_file,
    build_profile_file,
    decode_messages,
    decode_transport,
    encode_file,
    encode_transport,
    handle_request,
    make_server_id,
    parse_file,
)
from meterhub.protocols.sml.tl import Reader

SID = make_server_id("MHB", 7)
METER_FILE = build_meter_file(SID, 123456, -42, act_time=1_700_000_000, signature=b"\x1b" * 12)
PROFILE_FILE = build_profile_file(
    SID, [(1_700_000_000 + 900 * i, i * 7) for i in range(4)], 900, [b"s"] * 4
)
REQUEST_FILE = encode_file(
    [
        SmlMessage(b"r1", OpenRequest(b"client", b"req", server_id=SID)),
        SmlMessage(b"r2", GetListRequest(b"client", SID)),
        SmlMessage(b"r3", CloseRequest()),
    ]
)
ATT_BODY = AttentionResponse(SID, bytes.fromhex("8181c7c7fe00"), b"msg", b"\x73\x02a\x01\x01")
SEEDS = [METER_FILE, PROFILE_FILE, REQUEST_FILE]
BODY_CLASSES = [
    OpenRequest,
    OpenResponse,
    CloseRequest,
    CloseResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    AttentionResponse,
]


def _payload(f: bytes) -> bytes:
    return decode_transport(f)


def _body_seeds() -> list[bytes]:
    out = [ATT_BODY.to_bytes()]
    for f in SEEDS:
        for m in parse_file(f):
            out.append(m.body.to_bytes())
    return out


BODY_SEEDS = _body_seeds()
MESSAGE_SEEDS = [m.to_bytes() for f in SEEDS for m in parse_file(f)]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(
                st.sampled_from([0x00, 0x01, 0x1B, 0x1A, 0x70, 0x7F, 0x80, 0x8F, 0xF1, 0xFF])
            )
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 6))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 12))]
    return bytes(data)


def only_sml_errors(fn: Callable[[bytes], object], data: bytes) -> None:
    try:
        fn(data)
    except SMLError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg  # typed, one line
    # any other exception propagates and fails the test


files = st.binary(max_size=200) | mutated(SEEDS)


@given(files)
def test_parse_file(data: bytes) -> None:
    only_sml_errors(parse_file, data)
    only_sml_errors(decode_transport, data)


@given(st.sampled_from(SEEDS).map(_payload).flatmap(lambda p: mutated([p])))
def test_payload_with_valid_file_crc(payload: bytes) -> None:
    # the file CRC is recomputed, so the message layer sees the damage
    only_sml_errors(parse_file, encode_transport(payload))
    only_sml_errors(decode_messages, payload)


@given(st.binary(max_size=120) | mutated(MESSAGE_SEEDS))
def test_message_decoder(data: bytes) -> None:
    only_sml_errors(SmlMessage.from_bytes, data)
    only_sml_errors(lambda d: SmlMessage.from_bytes(d, check_crc=False), data)


@settings(max_examples=300)
@given(st.sampled_from(BODY_CLASSES), st.binary(max_size=120) | mutated(BODY_SEEDS))
def test_body_decoders(cls: type, data: bytes) -> None:
    only_sml_errors(cls.from_bytes, data)


@given(st.binary(max_size=64))
def test_reader_skip(data: bytes) -> None:
    only_sml_errors(lambda d: Reader(d).skip(), data)


@given(st.lists(files, max_size=6), st.integers(1, 64))
def test_stream_decoder_never_raises(parts: list[bytes], chunk: int) -> None:
    stream = b"".join(parts) + METER_FILE
    dec = SmlStreamDecoder(max_file_size=4096)
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    assert got and got[-1].raw == METER_FILE  # a good file after garbage is still found


@given(st.binary(max_size=100) | mutated([REQUEST_FILE]))
def test_request_handler_always_answers(data: bytes) -> None:
    reply = handle_request(data, server_id=SID, get_list=lambda: METER_FILE)
    msgs = parse_file(reply)
    assert reply == METER_FILE or any(isinstance(m.body, AttentionResponse) for m in msgs)


def test_deep_nesting_is_bounded() -> None:
    data = b"\x71" * 5000 + b"\x01"
    only_sml_errors(lambda d: Reader(d).skip(), data)
    only_sml_errors(SmlMessage.from_bytes, b"\x76\x01\x62\x00\x62\x00\x72\x62\x01" + data)
