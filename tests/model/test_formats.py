"""model/formats: one codec per wire format, shared by producer and consumer.

Round trips and strictness of the units, statements, settlement, scores, samples,
and the one host:port parser (protocols/endpoint.py) with hypothesis."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.crypto.group import Q
from meterhub.crypto.pedersen import Opening
from meterhub.crypto.sampling import Sample
from meterhub.model.errors import FormatError
from meterhub.model.formats.samples import SampleRelease
from meterhub.model.formats.scores import ProfileScores, ScoreEntry
from meterhub.model.formats.settlement import SettlementStatement
from meterhub.model.formats.statements import (
    STATEMENT_FIELDS,
    BandedBillStatement,
    BillFields,
    BillStatement,
    ProvenBillStatement,
    statement_from_json,
)
from meterhub.model.formats.units import (
    OPENING_SIZE,
    commitment_at,
    commitment_count,
    decode_day,
    decode_openings,
    decode_records,
    encode_day,
    encode_openings,
    encode_records,
    iter_commitments,
    iter_opening_units,
    opening_unit_at,
)
from meterhub.protocols.endpoint import EndpointError, format_endpoint, parse_endpoint

openings = st.lists(
    st.builds(Opening, st.integers(0, 2**32 - 1), st.integers(0, Q - 1)), max_size=20
)
scalars = st.integers(0, Q - 1)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


# --- units -------------------------------------------------------------------------
@given(openings)
def test_opening_units_round_trip(os_: list[Opening]) -> None:
    blob = encode_openings(os_)
    assert len(blob) == OPENING_SIZE * len(os_)
    assert decode_openings(blob, len(os_)) == os_
    assert list(iter_opening_units(blob)) == [(o.m, o.r) for o in os_]
    for k, o in enumerate(os_):
        assert opening_unit_at(blob, k) == (o.m, o.r)


def test_opening_unit_layout_is_u32_then_32_bytes() -> None:
    # docs/formats.md "Sealed openings": u32 Wh big-endian, then the 32-byte blinding.
    blob = encode_openings([Opening(0x01020304, 5)])
    assert blob == bytes.fromhex("01020304") + (5).to_bytes(32, "big")


@given(st.binary(max_size=200))
def test_opening_units_reject_partial_units(blob: bytes) -> None:
    if len(blob) % OPENING_SIZE:
        with pytest.raises(FormatError):
            list(iter_opening_units(blob))
    else:
        assert len(list(iter_opening_units(blob))) == len(blob) // OPENING_SIZE


def test_decode_openings_refuses_a_blinding_at_or_above_q() -> None:
    with pytest.raises(FormatError, match="blinding"):
        decode_openings((1).to_bytes(4, "big") + Q.to_bytes(32, "big"))
    with pytest.raises(FormatError):
        decode_openings(encode_openings([Opening(1, 2)]), 2)


@given(st.integers(0, 2**40), st.lists(st.binary(min_size=33, max_size=33), max_size=10))
def test_commitment_records_round_trip(first: int, cs: list[bytes]) -> None:
    c33 = b"".join(cs)
    assert commitment_count(c33) == len(cs)
    assert list(iter_commitments(c33)) == cs
    assert [commitment_at(c33, k) for k in range(len(cs))] == cs
    assert decode_records(encode_records(first, c33)) == (list(range(first, first + len(cs))), c33)


@given(st.binary(max_size=100))
def test_commitment_slicing_rejects_partial_points(blob: bytes) -> None:
    if len(blob) % 33:
        with pytest.raises(FormatError):
            commitment_count(blob)
    with pytest.raises(FormatError):
        commitment_at(blob, len(blob) // 33)


@given(days)
def test_day_round_trip(d: date) -> None:
    assert len(encode_day(d)) == 4 and decode_day(encode_day(d)) == d


@given(st.binary(max_size=6))
def test_day_decoder_never_crashes(raw: bytes) -> None:
    try:
        d = decode_day(raw)
    except FormatError:
        return
    assert encode_day(d) == raw


# --- statements --------------------------------------------------------------------
@given(days, st.integers(0, 100), st.integers(0, 2**40), st.integers(0, 10**12), scalars)
def test_bill_statement_json_is_canonical_and_round_trips(
    start: date, n: int, first: int, energy: int, r: int
) -> None:
    st_ = BillStatement(
        "MTR-1", start, date.fromordinal(start.toordinal() + n), first, 96 * (n + 1), "de-tou", 3,
        bytes(range(32)), "EUR", 100_000, energy, 400_000 * (n + 1), energy + 400_000 * (n + 1), r,
    )
    text = st_.to_json()
    again = statement_from_json(text)
    assert again == st_ and again.to_json() == text
    assert text == text.strip() and ", " not in text


def test_bill_statement_refuses_duplicate_keys() -> None:
    st_ = BillStatement("M", date(2027, 3, 1), date(2027, 3, 31), 0, 2976, "t", 1, bytes(32), "EUR",
                        100_000, 5, 6, 11, 7)
    text = st_.to_json()
    with pytest.raises(FormatError, match="duplicate"):
        statement_from_json(text[:-1] + ',"total":999}')


def test_every_statement_version_shares_one_field_list() -> None:
    # The v1 fields are defined once (BillFields); the JSON schema names the same ones.
    common = [f.name for f in dataclasses.fields(BillFields)]
    assert sorted(common) == sorted(set(STATEMENT_FIELDS) - {"format"})
    assert [f.name for f in dataclasses.fields(BillStatement)] == common
    for cls, extra in ((ProvenBillStatement, ["tariff_kind", "proof"]),
                       (BandedBillStatement, ["metering_point", "contract_id", "bands"])):
        assert [f.name for f in dataclasses.fields(cls)] == common + extra
        # A later version is not a v1 statement (verifiers dispatch on the class).
        assert not issubclass(cls, BillStatement)


# --- settlement, scores, samples: the applet's bytes are the utility's input ---------------
@given(days, st.integers(0, 2**40), st.integers(0, 10**9), st.integers(0, 10**12), scalars, scalars)
def test_settlement_statement_round_trips(d: date, first: int, e: int, v: int, re_: int, rv: int) -> None:
    s = SettlementStatement("M1", d, d, first, 96, "epex-de", 2, bytes(range(32)), "A000000001", "ab" * 32,
                            e, re_, v, rv)
    text = s.to_json()
    assert SettlementStatement.from_json(text) == s
    assert SettlementStatement.from_json(text.encode()).to_json() == text


def test_settlement_statement_refuses_other_formats() -> None:
    s = SettlementStatement("M1", date(2027, 1, 1), date(2027, 1, 1), 0, 96, "i", 1, bytes(32), "A0", "c",
                            1, 2, 3, 4)
    with pytest.raises(FormatError, match="format"):
        SettlementStatement.from_json(s.to_json().replace("meterhub-settlement/1", "meterhub-settlement/2"))


@given(st.lists(st.tuples(st.text("abc-", min_size=1, max_size=8), st.integers(0, 9), st.integers(0, 10**9),
                          scalars), min_size=1, max_size=4),
       scalars, scalars, st.binary(min_size=1, max_size=40))
def test_profile_scores_round_trip(entries: list, re_: int, rs: int, proof: bytes) -> None:
    scores = tuple(ScoreEntry(sid, ver, bytes(32), score, r) for sid, ver, score, r in entries)
    ps = ProfileScores("M1", date(2027, 3, 1), date(2027, 3, 7), 0, 672, 60, "A0", "c" * 64, 123, re_,
                       4567, rs, proof, scores)
    text = ps.to_json()
    assert ProfileScores.from_json(text) == ps and ProfileScores.from_json(text).to_json() == text


@given(st.lists(st.builds(Sample, st.integers(0, 2**40), st.integers(0, 2**32 - 1), scalars), max_size=5))
def test_sample_release_round_trips(samples: list[Sample]) -> None:
    rel = SampleRelease("M1", date(2027, 3, 1), date(2027, 3, 7), 0, 672, len(samples), bytes(32),
                        bytes(range(32)), bytes(32), "c" * 64, tuple(samples), "A0")
    text = rel.to_json()
    assert SampleRelease.from_json(text) == rel and SampleRelease.from_json(text).to_json() == text


# --- host:port -----------------------------------------------------------------------
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)


@given(st.one_of(hostnames, v4, v6), ports)
def test_endpoint_round_trip(host: str, port: int) -> None:
    assert parse_endpoint(format_endpoint(host, port)) == (host, port)


@given(st.text(max_size=40))
def test_endpoint_parser_raises_only_endpoint_error(text: str) -> None:
    try:
        host, port = parse_endpoint(text, default_host="127.0.0.1", default_port=4059)
    except EndpointError:
        return
    assert 0 < port < 65536 and host
    assert not any(c.isspace() for c in host)


@given(v6)
def test_a_bare_ipv6_address_is_never_split_into_address_and_port(addr: str) -> None:
    # "::1:4059" is a valid address; only "[::1]:4059" names a port.
    assert parse_endpoint(addr, default_port=7) == (addr, 7)
    with pytest.raises(EndpointError, match=r"\[ADDRESS\]:PORT"):
        parse_endpoint(addr)
    ipaddress.IPv6Address(parse_endpoint(f"[{addr}]:80")[0])


@pytest.mark.parametrize(
    "bad", ["h:0", "h:65536", "h:+80", "h: 80", "h:٣", "[::1", "[::1]x", "[nothost]:80", "a b:1", "", ":80"]
)
def test_endpoint_rejects(bad: str) -> None:
    with pytest.raises(EndpointError):
        parse_endpoint(bad)


def test_the_three_old_callers_share_the_rules() -> None:
    from meterhub.card.vpcd import VpcdError
    from meterhub.card.vpcd import parse_endpoint as vpcd_endpoint
    from meterhub.meter.serve import ServeError
    from meterhub.meter.serve import parse_endpoint as meter_endpoint
    from meterhub.protocols.dlms.client import parse_host_port

    assert vpcd_endpoint("[::1]:4000") == meter_endpoint("[::1]:4000") == parse_host_port("[::1]:4000")
    assert parse_host_port("[::1]") == ("::1", 4059)  # brackets now work for the DLMS reader too
    for bad in ("h:70000", "::1:4059"):
        with pytest.raises(ServeError):
            meter_endpoint(bad)
    with pytest.raises(VpcdError):
        vpcd_endpoint("h:70000")
    with pytest.raises(ValueError):
        parse_host_port("m:99999")  # was accepted: no range check
