"""The member certificate (``MHMC 01``, docs/formats.md) and registry blocks that carry
certificates (``MHGR 02``): strict parsers, under hypothesis."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import mutate_bytes
from meterhub.crypto import ecdsa
from meterhub.model.errors import FormatError
from meterhub.model.formats.aggregation import GroupDefinition, GroupMember, demo_group_key
from meterhub.model.formats.membership import (
    MEMBER_CERT_DST,
    MemberCertificate,
    demo_certificates,
    demo_member_certifier_key,
)
from meterhub.model.group_registry import RegistryBlock, RegistryView

CERTIFIER = demo_member_certifier_key()
_IDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


def _cert(mid: str = "m01", key: bytes = bytes(range(32))) -> MemberCertificate:
    return MemberCertificate(mid, key).signed(CERTIFIER)


def test_layout_and_domain_separation() -> None:
    c = _cert()
    raw = c.to_bytes()
    assert raw[:5] == b"MHMC\x01" and raw[5] == 3 and raw[6:9] == b"m01" and raw[9:41] == bytes(range(32))
    assert len(raw) == 5 + 1 + 3 + 32 + 64 and ecdsa.is_low_s(c.signature)
    assert ecdsa.verify(CERTIFIER.public_key(), MEMBER_CERT_DST + raw[:-64], c.signature)
    assert not ecdsa.verify(CERTIFIER.public_key(), raw[:-64], c.signature)  # the DST is part of the message
    assert c.verify(CERTIFIER.public_key()) and not c.verify(demo_group_key().public_key())
    assert not dataclasses.replace(c, meter_id="m02").verify(CERTIFIER.public_key())
    assert not dataclasses.replace(c, hub_key=bytes(32)).verify(CERTIFIER.public_key())
    with pytest.raises(FormatError, match="version 2"):
        MemberCertificate.from_bytes(b"MHMC\x02" + raw[5:])
    with pytest.raises(FormatError, match="not signed"):
        MemberCertificate("m01", bytes(32)).to_bytes()
    with pytest.raises(FormatError, match="32 bytes"):
        MemberCertificate("m01", bytes(31))


@settings(max_examples=200, deadline=None)
@given(_IDS, st.binary(min_size=32, max_size=32))
def test_round_trip(mid: str, key: bytes) -> None:
    c = _cert(mid, key)
    assert MemberCertificate.from_bytes(c.to_bytes()) == c and c.binds(mid, key)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_parser_on_mutations(data) -> None:
    """Any cut, appended byte or flip: a FormatError, or a certificate that re-encodes to
    exactly the input and verifies only if nothing it binds changed."""
    c = _cert()
    op, raw = mutate_bytes(data, c.to_bytes())
    try:
        out = MemberCertificate.from_bytes(bytes(raw))
    except FormatError:
        return
    assert op == "flip" and out.to_bytes() == bytes(raw)
    assert not out.verify(CERTIFIER.public_key())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parser_on_noise(raw: bytes) -> None:
    for data in (raw, b"MHMC\x01" + raw):
        try:
            MemberCertificate.from_bytes(data)
        except FormatError:
            pass


def _group() -> GroupDefinition:
    members = tuple(GroupMember(f"c{k}", bytes([k + 1]) * 32) for k in range(5))
    d = date(2027, 1, 1)
    return GroupDefinition("G", "f", 60, d, d, members).signed(demo_group_key())


def test_certified_block_round_trip() -> None:
    g = _group()
    b = RegistryBlock("f", 0, bytes(32), (g,), certificates=tuple(demo_certificates([g]))).signed(demo_group_key())
    raw = b.to_bytes()
    assert raw[:5] == b"MHGR\x02" and RegistryBlock.from_bytes(raw) == b
    plain = dataclasses.replace(b, certificates=()).signed(demo_group_key())
    assert plain.to_bytes()[:5] == b"MHGR\x01" and RegistryBlock.from_bytes(plain.to_bytes()).certificates == ()
    assert plain.chain_value() != b.chain_value()  # the certificates are in the chain
    RegistryView().check_extension(b, [ecdsa.public_bytes(demo_group_key())], lambda d: False,
                                   certifier_keys=[ecdsa.public_bytes(CERTIFIER)])
    # version 2 with no certificate is not a valid encoding (one encoding per block)
    body = plain.body()
    with pytest.raises(FormatError, match="1.."):
        RegistryBlock.from_bytes(b"MHGR\x02" + body[5:] + b"\x00\x00" + bytes(64))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_certified_block_parser_on_mutations(data) -> None:
    g = _group()
    op, raw = mutate_bytes(data, RegistryBlock("f", 0, bytes(32), (g,), certificates=tuple(demo_certificates([g])))
                           .signed(demo_group_key()).to_bytes())
    try:
        out = RegistryBlock.from_bytes(bytes(raw))
    except FormatError:
        return
    assert op == "flip" and out.to_bytes() == bytes(raw)
