"""Round trips: encode then decode gives the same object, for every SML message type,
the transport layer, the streaming decoder and the meter's high-level files."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from meterhub.protocols.sml import (
    OBIS_ENERGY_INTERVAL,
    AttentionResponse,
    CloseRequest,
    CloseResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    ListEntry,
    OpenRequest,
    OpenResponse,
    PeriodEntry,
    SmlMessage,
    SmlStreamDecoder,
    SmlTime,
    build_meter_file,
    build_profile_file,
    decode_messages,
    decode_transport,
    encode_file,
    encode_messages,
    encode_transport,
    extract_profile,
    extract_values,
    make_server_id,
    parse_file,
)
from meterhub.protocols.sml.tl import INT_TYPES

ESC = b"\x1b\x1b\x1b\x1b"

# octet strings biased towards the escape sequence and TL length boundaries
octets = st.one_of(
    st.binary(max_size=20),
    st.binary(min_size=13, max_size=18),
    st.builds(lambda n, tail: ESC * n + tail, st.integers(1, 3), st.binary(max_size=3)),
)
# an empty octet string and an absent OPTIONAL element share the encoding 0x01
# (SML 1.04, "Type-Length-Field"), so optional fields and values round-trip only non-empty strings
nonempty = octets.filter(bool)
opt_octets = st.none() | nonempty
u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)

times = st.one_of(
    st.builds(SmlTime.sec_index, u32),
    st.builds(SmlTime.timestamp, u32),
    st.builds(lambda v, a, b: SmlTime(3, v, a, b), u32, i16, i16),
)
opt_times = st.none() | times


@st.composite
def int_values(draw: st.DrawFn) -> tuple[int, str]:
    name = draw(st.sampled_from(sorted(INT_TYPES)))
    signed, size = INT_TYPES[name]
    bits = 8 * size
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return draw(st.integers(lo, hi)), name


@st.composite
def values(draw: st.DrawFn) -> tuple[object, str | None]:
    kind = draw(st.sampled_from(["int", "bool", "bytes", "time", "none"]))
    if kind == "int":
        return draw(int_values())
    if kind == "bool":
        return draw(st.booleans()), None
    if kind == "bytes":
        return draw(nonempty), None
    if kind == "time":
        return draw(times), None
    return None, None


@st.composite
def list_entries(draw: st.DrawFn) -> ListEntry:
    value, vtype = draw(values())
    return ListEntry(
        draw(octets),
        value,  # type: ignore[arg-type]
        status=draw(st.none() | st.integers(0, 2**64 - 1)),
        val_time=draw(opt_times),
        unit=draw(st.none() | u8),
        scaler=draw(st.none() | st.integers(-128, 127)),
        value_signature=draw(opt_octets),
        value_type=vtype,
    )


@st.composite
def period_entries(draw: st.DrawFn) -> PeriodEntry:
    value, vtype = draw(values())
    return PeriodEntry(
        draw(octets),
        draw(u8),
        draw(st.integers(-128, 127)),
        value,  # type: ignore[arg-type]
        draw(opt_octets),
        vtype,
    )


def _tree(name: bytes) -> bytes:
    # a minimal encoded SML_Tree (parameterName, no value, no children)
    return (
        bytes([0x73, 0x01 + len(name)]) + name + b"\x01\x01"
        if len(name) < 15
        else b"\x73\x01\x01\x01"
    )


small_tuple = st.lists(octets, max_size=4).map(tuple)

bodies = st.one_of(
    st.builds(
        OpenRequest, octets, octets, opt_octets, opt_octets, opt_octets, opt_octets, st.none() | u8
    ),
    st.builds(OpenResponse, octets, octets, opt_octets, opt_octets, opt_times, st.none() | u8),
    st.builds(CloseRequest, opt_octets),
    st.builds(CloseResponse, opt_octets),
    st.builds(GetListRequest, octets, opt_octets, opt_octets, opt_octets, opt_octets),
    st.builds(
        GetListResponse,
        octets,
        st.lists(list_entries(), max_size=4).map(tuple),
        opt_octets,
        opt_octets,
        opt_times,
        opt_octets,
        opt_times,
    ),
    st.builds(
        GetProfileListRequest,
        small_tuple,
        opt_octets,
        opt_octets,
        opt_octets,
        st.none() | st.booleans(),
        opt_times,
        opt_times,
        st.none() | small_tuple,
        st.none() | st.binary(max_size=8).map(_tree),
    ),
    st.builds(
        GetProfileListResponse,
        octets,
        times,
        u32,
        small_tuple,
        times,
        st.integers(0, 2**64 - 1),
        st.lists(period_entries(), max_size=4).map(tuple),
        opt_octets,
        opt_octets,
    ),
    st.builds(
        AttentionResponse,
        octets,
        octets,
        opt_octets,
        st.none() | st.binary(max_size=8).map(_tree),
    ),
)

messages = st.builds(SmlMessage, octets, bodies, u8, u8)


@given(bodies)
def test_body_round_trip(body: object) -> None:
    data = body.to_bytes()  # type: ignore[attr-defined]
    assert type(body).from_bytes(data) == body


@given(messages)
def test_message_round_trip(msg: SmlMessage) -> None:
    data = msg.to_bytes()
    assert SmlMessage.from_bytes(data) == msg
    assert data[-1] == 0x00  # endOfSmlMsg


@given(st.lists(messages, min_size=1, max_size=4))
def test_file_round_trip(msgs: list[SmlMessage]) -> None:
    data = encode_file(msgs)
    assert len(data) % 4 == 0
    assert data.startswith(ESC + b"\x01\x01\x01\x01")
    assert parse_file(data) == msgs
    assert decode_messages(encode_messages(msgs)) == msgs


@given(
    st.binary(max_size=64)
    | st.builds(lambda a, b: a + ESC * 2 + b, st.binary(max_size=9), st.binary(max_size=9))
)
def test_transport_round_trip_any_payload(payload: bytes) -> None:
    data = encode_transport(payload)
    assert decode_transport(data) == payload
    # escaping leaves no lone escape sequence in the body
    body = data[8:-8]
    assert body.replace(ESC * 2, b"").find(ESC) == -1


@given(
    st.lists(messages, min_size=1, max_size=3),
    st.lists(st.binary(max_size=12), min_size=4, max_size=4),
    st.integers(1, 50),
)
def test_stream_decoder_resynchronises(
    msgs: list[SmlMessage], junk: list[bytes], chunk: int
) -> None:
    f = encode_file(msgs)
    # junk must not itself contain a start sequence
    junk = [j.replace(b"\x1b", b"\x1c") for j in junk]
    stream = junk[0] + f + junk[1] + f[: len(f) // 2] + junk[2] + f + junk[3]
    dec = SmlStreamDecoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    assert [g.messages for g in got] == [msgs, msgs]
    assert all(g.raw == f for g in got)


def test_stream_decoder_bounds_memory() -> None:
    dec = SmlStreamDecoder(max_file_size=256)
    assert dec.feed(ESC + b"\x01\x01\x01\x01" + b"\x00" * 1000) == []
    assert dec.error_count == 1
    assert len(dec._buf) < 300
    f = build_meter_file(make_server_id("MHB", 1), 1, 1)
    assert [x.raw for x in dec.feed(f)] == [f]


# ------------------------------------------------------------- meter helpers

SERVER_ID = make_server_id("MHB", 12345678)


@given(
    st.integers(0, 2**64 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.none() | u32,
    st.none() | st.binary(min_size=1, max_size=80),
    st.binary(min_size=1, max_size=6),
)
def test_meter_file_values(
    energy: int, power: int, act: int | None, sig: bytes | None, prefix: bytes
) -> None:
    data = build_meter_file(
        SERVER_ID, energy, power, transaction_prefix=prefix, act_time=act, signature=sig
    )
    msgs = parse_file(data)
    assert [type(m.body) for m in msgs] == [OpenResponse, GetListResponse, CloseResponse]
    assert extract_values(msgs) == {
        "1-0:96.1.0*255": (SERVER_ID, 0, None),
        "1-0:1.8.0*255": (energy, 0, 30),
        "1-0:16.7.0*255": (power, 0, 27),
    }
    body = msgs[1].body
    assert isinstance(body, GetListResponse)
    assert body.server_id == SERVER_ID
    assert body.list_signature == sig
    assert body.act_sensor_time == (None if act is None else SmlTime.timestamp(act))
    assert len({m.transaction_id for m in msgs}) == 3


@given(st.lists(st.tuples(u32, st.integers(0, 10**6)), max_size=12), st.booleans())
def test_profile_file_rows(rows: list[tuple[int, int]], signed: bool) -> None:
    sigs = [bytes([i]) * 8 for i in range(len(rows))] if signed else None
    msgs = parse_file(build_profile_file(SERVER_ID, rows, 900, sigs))
    assert len(msgs) == len(rows) + 2
    got = extract_profile(msgs)
    assert [(t, v) for t, v, _ in got] == rows
    assert [s for _, _, s in got] == (sigs or [None] * len(rows))
    for m in msgs[1:-1]:
        assert isinstance(m.body, GetProfileListResponse)
        assert m.body.reg_period == 900
        assert m.body.period_list[0].obj_name == OBIS_ENERGY_INTERVAL


def test_day_profile_is_fast() -> None:
    rows = [(1_800_000_000 + 900 * i, 100 + i) for i in range(96)]
    sigs = [bytes(64)] * 96
    start = time.perf_counter()
    for _ in range(10):
        data = build_profile_file(SERVER_ID, rows, 900, sigs)
        assert len(extract_profile(parse_file(data))) == 96
    per_day = (time.perf_counter() - start) / 10
    assert per_day < 0.25, per_day  # generous: pure Python does it in a few ms
