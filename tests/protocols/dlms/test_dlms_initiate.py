"""xDLMS InitiateRequest/InitiateResponse and the conformance block (Green Book §9.5,
§9.4.6.1), parsed by meterhub rather than dlms-cosem.

Oracles: the Green Book ciphered AARQ that dlms-cosem's tests use (tests/test_asce/
test_aarq.py ``test_parse_ciphered_low_security2``, Green Book v10 p. 444: EK 00..0F,
AK D0..DF, title 4D4D4D0000BC614E), and gurux-dlms (GPL, test-only), which builds
InitiateRequests for any proposed conformance and parses our InitiateResponse.
"""

from __future__ import annotations

import pytest
from dlms_cosem import enumerations as E
from dlms_cosem.protocol import acse, xdlms
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Conformance as GxConformance
from gurux_dlms.enums import InterfaceType
from hypothesis import given
from hypothesis import strategies as st

from meterhub.protocols.dlms.cosem import InMemoryDataSource
from meterhub.protocols.dlms.initiate import (
    Conformance,
    InitiateError,
    InitiateRequest,
    InitiateResponse,
    acse_user_information,
    decode_conformance,
    encode_conformance,
    parse_initiate_request,
    parse_initiate_response,
)
from meterhub.protocols.dlms.security import Suite0Keys, decode_glo_cipher, decrypt
from meterhub.protocols.dlms.server import SERVER_CONFORMANCE, DlmsServer
from meterhub.protocols.dlms.wrapper import WrapperFrame

GB_KEYS = Suite0Keys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"), bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
GB_TITLE = bytes.fromhex("4D4D4D0000BC614E")
GB_CIPHERED_AARQ_LLS = bytes.fromhex(
    "6066a109060760857405080103a60a04084D4D4D0000BC614E8a0207808b0760857405080201ac0a80083132333435363738"
    "be34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
)


def test_green_book_glo_initiate_request_deciphers_and_parses():
    glo = acse_user_information(GB_CIPHERED_AARQ_LLS)
    tag, sc, ic, text = decode_glo_cipher(glo)
    assert (tag, sc, ic) == (0x21, 0x30, 0x01234567)  # glo-initiateRequest [33]
    plain = decrypt(GB_KEYS, GB_TITLE, ic, sc, text)
    req = parse_initiate_request(plain)
    assert req.dedicated_key == bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    assert req.response_allowed and req.proposed_quality_of_service is None
    assert req.proposed_dlms_version_number == 6 and req.client_max_receive_pdu_size == 1200
    assert int(req.proposed_conformance) == 0x007E1F
    assert req.to_bytes() == plain  # and back, byte for byte


def test_standard_bit_numbering_counts_from_the_left():
    assert Conformance.bit(1) is Conformance.GENERAL_PROTECTION
    assert encode_conformance(Conformance.GENERAL_PROTECTION) == bytes.fromhex("5F1F0400400000")
    assert encode_conformance(Conformance.ACTION) == bytes.fromhex("5F1F0400000001")
    assert [Conformance.bit(n) for n in range(24)] == list(Conformance)
    with pytest.raises(ValueError):
        Conformance.bit(24)


def _norm(name: str) -> str:
    """Gurux writes UN_CONFIRMED_WRITE and ATTRIBUTE_0_...; the standard's names match
    once the underscores are gone."""
    return name.replace("_", "")


GX_BY_NAME = {_norm(f.name): f for f in GxConformance if f.value}


@pytest.mark.parametrize("gx_flag", [f for f in GxConformance if f.value], ids=lambda f: f.name)
def test_every_conformance_bit_agrees_with_gurux(gx_flag):
    """Gurux builds the AARQ; our parser must name the same bit."""
    client = GXDLMSClient(True, 16, 1, interfaceType=InterfaceType.WRAPPER)
    client.proposedConformance = gx_flag
    aarq = bytes(client.aarqRequest()[0])[8:]
    req = parse_initiate_request(acse_user_information(aarq))
    (ours,) = list(req.proposed_conformance)
    assert _norm(ours.name) == _norm(gx_flag.name)


def test_pin_dlms_cosem_drops_general_protection_and_we_keep_it():
    """Gurux's default proposal 0x401E5D: dlms-cosem's InitiateRequest.from_bytes reads
    only the last two conformance octets and loses general-protection (bit 1)."""
    client = GXDLMSClient(True, 16, 1, interfaceType=InterfaceType.WRAPPER)
    initiate = acse_user_information(bytes(client.aarqRequest()[0])[8:])
    assert initiate[-5:-2] == bytes.fromhex("401E5D")
    assert not xdlms.InitiateRequest.from_bytes(initiate).proposed_conformance.general_protection
    assert Conformance.GENERAL_PROTECTION in parse_initiate_request(initiate).proposed_conformance


def test_negotiated_conformance_is_the_intersection_and_gurux_reads_it():
    client = GXDLMSClient(True, 16, 1, interfaceType=InterfaceType.WRAPPER)
    assoc = DlmsServer(InMemoryDataSource()).association(16)
    aare = assoc.handle(bytes(client.aarqRequest()[0])[8:])
    resp = parse_initiate_response(acse_user_information(aare))
    assert resp.negotiated_conformance == Conformance(0x401E5D) & SERVER_CONFORMANCE
    assert Conformance.GENERAL_PROTECTION in resp.negotiated_conformance
    reply = GXReplyData()
    client.getData(GXByteBuffer(WrapperFrame(1, 16, aare).to_bytes()), reply, None)
    client.parseAareResponse(reply.data)
    assert int(client.negotiatedConformance) == sum(GX_BY_NAME[_norm(f.name)].value for f in resp.negotiated_conformance)


def test_no_usable_service_is_incompatible_conformance():
    client = GXDLMSClient(True, 16, 1, interfaceType=InterfaceType.WRAPPER)
    client.proposedConformance = GxConformance.SET | GxConformance.DATA_NOTIFICATION
    assoc = DlmsServer(InMemoryDataSource()).association(16)
    aare = acse.ApplicationAssociationResponse.from_bytes(assoc.handle(bytes(client.aarqRequest()[0])[8:]))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert aare.user_information.content.error == E.InitiateError.INCOMPATIBLE_CONFORMANCE


flags = st.integers(0, 0xFFFFFF).map(Conformance)


@given(
    flags,
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.none() | st.binary(max_size=32),
    st.booleans(),
    st.none() | st.integers(0, 255),
)
def test_initiate_request_round_trip(conf, pdu, version, key, allowed, qos):
    req = InitiateRequest(conf, pdu, version, key, allowed, qos)
    assert parse_initiate_request(req.to_bytes()) == req


@given(flags, st.integers(0, 0xFFFF), st.integers(0, 255), st.none() | st.integers(0, 255), st.integers(0, 0xFFFF))
def test_initiate_response_round_trip(conf, pdu, version, qos, vaa):
    resp = InitiateResponse(conf, pdu, version, qos, vaa)
    raw = resp.to_bytes()
    assert parse_initiate_response(raw) == resp
    if qos is None and vaa == 7:  # dlms-cosem decodes our response the same way
        theirs = xdlms.InitiateResponse.from_bytes(raw)
        assert theirs.server_max_receive_pdu_size == pdu


@given(st.sampled_from([b"", b"\x01", b"\x08", b"\x60", b"\x62", b"\x01\x00\x00\x00\x06\x5f\x1f\x04\x00"]), st.binary(max_size=64))
def test_parsers_raise_only_initiate_error(prefix, data):
    """Any input: a parsed value or InitiateError, never another exception."""
    for parse in (parse_initiate_request, parse_initiate_response, acse_user_information):
        try:
            parse(prefix + data)
        except InitiateError:
            continue


@given(st.binary(min_size=0, max_size=10), st.integers(0, 12))
def test_decode_conformance_bounds(data, pos):
    try:
        conf, end = decode_conformance(data, pos)
    except InitiateError:
        return
    assert end == pos + 7 and encode_conformance(conf) == data[pos:end]


@given(st.integers(0, 0xFFFFFF), st.integers(64, 0xFFFF))
def test_server_negotiates_the_intersection(proposal, pdu):
    """For any proposal: accepted with proposal AND server's conformance, or refused with
    incompatible-conformance when neither get nor action is left."""
    initiate = InitiateRequest(Conformance(proposal), pdu).to_bytes()
    assert len(initiate) == 14
    # The Green Book AARQ (LN, no ciphering, no authentication) around our InitiateRequest.
    aarq = bytes.fromhex("601DA109060760857405080101BE10040E") + initiate
    assoc = DlmsServer(InMemoryDataSource()).association(16)
    raw = assoc.handle(aarq)
    expected = Conformance(proposal) & SERVER_CONFORMANCE
    aare = acse.ApplicationAssociationResponse.from_bytes(raw)
    if expected & (Conformance.GET | Conformance.ACTION):
        assert aare.result == E.AssociationResult.ACCEPTED
        assert parse_initiate_response(acse_user_information(raw)).negotiated_conformance == expected
        assert assoc.conformance == expected
    else:
        assert aare.result == E.AssociationResult.REJECTED_PERMANENT
