"""Property tests: random and mutated APDUs never crash or wedge the server core,
and the A-XDR / date-time / wrapper codecs round-trip and fail only with typed errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from dlms_cosem import cosem
from dlms_cosem import enumerations as E
from dlms_cosem.dlms_data import DlmsDataParser
from dlms_cosem.protocol import xdlms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms import server as server_mod
from meterhub.protocols.dlms.apdu import ApduError, parse_get_request
from meterhub.protocols.dlms.cosem import CLOCK, InMemoryDataSource, build_object_model
from meterhub.protocols.dlms.push import decode_batch_body
from meterhub.protocols.dlms.security import (
    DecipherError,
    Suite0Keys,
    decode_glo_cipher,
    encode_general_glo_cipher,
    encode_glo_cipher,
    encrypt,
)
from meterhub.protocols.dlms.server import DlmsServer
from meterhub.protocols.dlms.state import AssociationState
from meterhub.protocols.dlms.wrapper import WrapperDecoder, WrapperError, WrapperFrame

# Green Book v10 p. 444 AARQ, via dlms-cosem tests/test_asce/test_aarq.py.
GB_AARQ = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFF")
KEYS = Suite0Keys(bytes(range(16)), bytes(range(16, 32)))
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
RESPONSE_TAGS = {0x61, 0x63, 0xC4, 0xC7, 0xD8, 0xDB, 0xCC, 0xCD, 0xCF}
CLOCK_GET = bytes.fromhex("C001C1000800000100 00FF0200".replace(" ", ""))


@pytest.fixture(autouse=True)
def no_internal_errors(monkeypatch):
    """``handle`` turns an unexpected exception into an ExceptionResponse; under fuzzing
    that would hide a bug, so any use of that safety net fails the test."""
    seen: list[str] = []
    monkeypatch.setattr(server_mod.LOG, "exception", lambda msg, *a, **k: seen.append(msg % a))
    yield
    assert seen == []


def server() -> DlmsServer:
    src = InMemoryDataSource(clock=lambda: NOW, energy_wh=42)
    src.profile_rows = [(NOW - timedelta(minutes=15 * k), k) for k in range(200, 0, -1)]
    # Every object public, so that fuzzed GETs reach every object (access: test_dlms_access.py).
    return DlmsServer(src, keys=KEYS, max_pdu_size=256, public_objects=frozenset(build_object_model(src)))


SERVER = server()

# Valid requests to mutate: GET normal, GET with range access, GET with list, GET next, AARQ, RLRQ.
_range = (
    "C001C1000701006301 00FF0201 01 0204 020412000809060000010000FF0F02120000"
    "090C07EA0302FF0A000000FFC400 090C07EA0302FF0C000000FFC400 0100"
).replace(" ", "")
SEEDS = [
    CLOCK_GET,
    bytes.fromhex(_range),
    xdlms.GetRequestWithList(
        [
            cosem.CosemAttributeWithSelection(cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2), None),
            cosem.CosemAttributeWithSelection(cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2), None),
        ]
    ).to_bytes(),
    bytes.fromhex("C002C100000001"),
    GB_AARQ,
    bytes.fromhex("6203800100"),
]


@st.composite
def mutated(draw) -> bytes:
    seed = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if op == "cut":
            seed = seed[: draw(st.integers(0, len(seed)))]
        elif not seed:
            seed += draw(st.binary(min_size=1, max_size=4))
        elif op == "flip":
            i = draw(st.integers(0, len(seed) - 1))
            seed[i] = draw(st.integers(0, 255))
        elif op == "insert":
            i = draw(st.integers(0, len(seed)))
            seed[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            i = draw(st.integers(0, len(seed) - 1))
            del seed[i]
    return bytes(seed)


apdus = st.one_of(st.binary(max_size=300), mutated())


def _assert_still_serving(a) -> None:
    out = a.handle(CLOCK_GET)
    assert out[0] == 0xC4 and out[3] == 0  # Get-Response-Normal carrying data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(apdus, min_size=1, max_size=6))
def test_public_association_survives_random_and_mutated_apdus(seq):
    a = SERVER.association(16)
    a.handle(GB_AARQ)
    for apdu in seq:
        out = a.handle(apdu)
        assert isinstance(out, bytes) and out and out[0] in RESPONSE_TAGS
    if a.state is not AssociationState.ASSOCIATED:
        a.handle(GB_AARQ)
    _assert_still_serving(a)


@settings(max_examples=200, deadline=None)
@given(st.lists(apdus, min_size=1, max_size=4))
def test_fresh_association_answers_everything(seq):
    for sap in (16, 1, 99):
        a = SERVER.association(sap)
        for apdu in seq:
            out = a.handle(apdu)
            assert out and out[0] in RESPONSE_TAGS


@settings(max_examples=150, deadline=None)
@given(mutated(), st.integers(0, 2**32 - 1))
def test_ciphered_garbage_inside_general_glo_ciphering(inner, ic):
    """Random ciphered content (right or wrong key) on a management association that
    never completed HLS: always an answer, never an exception."""
    a = SERVER.association(1)
    for key in (KEYS, Suite0Keys(bytes(16), bytes(16))):
        apdu = encode_general_glo_cipher(b"FUZZCLI1", 0x30, ic, encrypt(key, b"FUZZCLI1", ic, inner))
        out = a.handle(apdu)
        assert out and out[0] in RESPONSE_TAGS


_fuzz_titles = iter(range(10**6))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0xC8, 0xC9, 0xCB, 0xCC, 0x21]), st.one_of(mutated(), st.binary(max_size=40))), min_size=1, max_size=4))
def test_service_specific_glo_in_an_authenticated_association(items):
    """Glo-ciphered requests (right tag or not, valid or mutated content, in order) on a
    management association that completed HLS: always an answer, and it keeps serving."""
    from meterhub.protocols.dlms.client import DlmsLinkClient

    a = SERVER.association(1)
    title = f"FZ{next(_fuzz_titles):06d}".encode()  # a fresh title: its counters start at 1
    client = DlmsLinkClient(a.handle, keys=KEYS, system_title=title)
    client.associate()
    ic = client.counter.value
    for tag, inner in items:
        out = a.handle(encode_glo_cipher(tag, 0x30, ic, encrypt(KEYS, title, ic, inner)))
        assert out and out[0] in RESPONSE_TAGS
        ic += 1
    if a.state is AssociationState.ASSOCIATED:
        out = a.handle(encode_glo_cipher(0xC8, 0x30, ic, encrypt(KEYS, title, ic, CLOCK_GET)))
        assert out[0] == 0xCC


@given(st.binary(max_size=80))
def test_glo_decoder_only_raises_decipher_error(data):
    for tag in (0xC8, 0xCC, 0x21, 0xDB):
        try:
            decode_glo_cipher(bytes([tag]) + data)
        except DecipherError:
            continue


@given(st.binary(max_size=200))
def test_get_request_parser_only_raises_apdu_error(data):
    try:
        parse_get_request(b"\xc0" + data)
    except ApduError:
        pass


@given(st.binary(max_size=200))
def test_axdr_decoder_only_raises_axdr_error(data):
    try:
        axdr.decode(data)
    except axdr.AxdrError:
        pass


leaves = st.one_of(
    st.integers(0, 255).map(axdr.unsigned),
    st.integers(-(2**31), 2**31 - 1).map(axdr.double_long),
    st.integers(0, 2**64 - 1).map(axdr.long64_unsigned),
    st.binary(max_size=300).map(axdr.octet_string),
    st.booleans().map(axdr.boolean),
    st.just(axdr.null()),
)
data = st.recursive(leaves, lambda inner: st.lists(inner, max_size=5).map(axdr.structure), max_leaves=20)


@given(data)
def test_axdr_encoding_is_what_dlms_cosem_parses(encoded):
    ours = axdr.decode(encoded)
    theirs = DlmsDataParser().parse(encoded, limit=1)[0].to_python()

    def norm(v):
        if isinstance(v, list):
            return [norm(x) for x in v]
        return bytes(v) if isinstance(v, bytearray) else v

    assert norm(theirs) == ours


@given(st.integers(0, 2**20))
def test_length_round_trip(n):
    enc = axdr.encode_length(n)
    assert axdr.decode_length(enc + b"x", 0) == (n, len(enc))


@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(-12 * 60, 14 * 60),
)
def test_datetime_round_trip(naive, offset_min):
    tz = UTC if offset_min == 0 else timezone(timedelta(minutes=offset_min))
    dt = naive.replace(microsecond=naive.microsecond // 10000 * 10000, tzinfo=tz)
    back = axdr.decode_datetime(axdr.encode_datetime(dt))
    assert back == dt and back.utcoffset() == dt.utcoffset()


@given(st.lists(st.binary(min_size=1, max_size=100), min_size=1, max_size=5), st.data())
def test_wrapper_reassembles_any_chunking(apdus_, d):
    stream = b"".join(WrapperFrame(16, 1, a).to_bytes() for a in apdus_)
    cuts = sorted(d.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    dec = WrapperDecoder(max_apdu=100)
    got = []
    prev = 0
    for c in [*cuts, len(stream)]:
        got += dec.feed(stream[prev:c])
        prev = c
    assert [f.apdu for f in got] == apdus_ and dec.pending == 0


@given(st.one_of(st.binary(max_size=120), data))
def test_batch_body_decoder_only_raises_axdr_error(body):
    try:
        decode_batch_body(body)
    except axdr.AxdrError:
        pass


@given(st.binary(max_size=64))
def test_wrapper_decoder_only_raises_wrapper_error(data):
    try:
        WrapperDecoder(max_apdu=32).feed(data)
    except WrapperError:
        pass


def test_seeds_are_valid_requests():
    """The mutation seeds themselves are answered with data, so mutations start from valid input."""
    a = SERVER.association(16)
    a.handle(GB_AARQ)
    out = a.handle(SEEDS[1])
    assert out[0] == 0xC4 and out[3] == 0
    rows = axdr.decode(out[4:]) if out[1] == 1 else None
    assert rows is not None and len(rows) == 9  # 10:00..12:00 inclusive, every 15 min
    assert a.handle(CLOCK_GET)[4:] == axdr.octet_string(axdr.encode_datetime(NOW))
    assert CLOCK in SERVER.objects
