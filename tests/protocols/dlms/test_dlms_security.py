"""Management association: HLS-GMAC (mechanism 5) and security suite 0.

Driven by dlms-cosem's sans-IO ``DlmsConnection`` (a client nobody here wrote).
The ciphered GET below is the Green Book example that dlms-cosem's
tests/test_security.py uses (EK 000102..0F, AK D0..DF, system title
4D4D4D0000BC614E, IC 0x01234567); the ciphered AARQ is from its
tests/test_asce/test_aarq.py (``test_parse_ciphered_low_security2``), Green Book v10 p. 444.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from dlms_cosem import cosem, dlms_data
from dlms_cosem import enumerations as E
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import HighLevelSecurityGmacAuthentication

from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.apdu import parse_get_request
from meterhub.protocols.dlms.cosem import CLOCK, InMemoryDataSource
from meterhub.protocols.dlms.initiate import (
    Conformance,
    InitiateRequest,
    acse_user_information,
    parse_initiate_response,
)
from meterhub.protocols.dlms.security import (
    DecipherError,
    InvocationCounterError,
    ReplayGuard,
    Suite0Keys,
    decode_general_glo_cipher,
    decode_glo_cipher,
    decrypt,
    encode_general_glo_cipher,
    encode_glo_cipher,
    encrypt,
)
from meterhub.protocols.dlms.server import DlmsServer
from meterhub.protocols.dlms.state import AssociationState

GB_KEYS = Suite0Keys(
    bytes.fromhex("000102030405060708090A0B0C0D0E0F"), bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
)
GB_TITLE = bytes.fromhex("4D4D4D0000BC614E")
GB_IC = 0x01234567
GB_PLAIN_GET = bytes.fromhex("C0010000080000010000FF0200")
GB_CIPHERED_GET = bytes.fromhex("411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
GB_CIPHERED_AARQ_LLS = bytes.fromhex(
    "6066a109060760857405080103a60a04084D4D4D0000BC614E8a0207808b0760857405080201ac0a80083132333435363738"
    "be34043221303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
CLOCK_ATTR = cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
LP_ATTR = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)


def source() -> InMemoryDataSource:
    src = InMemoryDataSource(clock=lambda: NOW, energy_wh=1234)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    src.profile_rows = [(start + timedelta(minutes=15 * (k + 1)), 10 * k) for k in range(96)]
    return src


def client(keys: Suite0Keys = GB_KEYS, title: bytes = b"CLIENT01") -> DlmsConnection:
    return DlmsConnection(
        authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
        client_system_title=title,
        global_encryption_key=keys.encryption_key,
        global_authentication_key=keys.authentication_key,
    )


def exchange(conn: DlmsConnection, assoc, event):
    raw = conn.send(event)
    conn.receive_data(assoc.handle(raw))
    return conn.next_event()


def associate(server: DlmsServer, conn: DlmsConnection):
    assoc = server.association(1)
    aare = exchange(conn, assoc, conn.get_aarq())
    assert aare.result == E.AssociationResult.ACCEPTED
    assert aare.result_source_diagnostics == E.AcseServiceUserDiagnostics.AUTHENTICATION_REQUIRED
    assert assoc.state is AssociationState.AWAITING_HLS
    reply = dlms_data.OctetStringData(conn.authentication.hls_generate_reply_data(conn)).to_bytes()
    method = cosem.CosemMethod(E.CosemInterface.ASSOCIATION_LN, cosem.Obis(0, 0, 40, 0, 0), 1)
    resp = exchange(conn, assoc, xdlms.ActionRequestNormal(method, reply))
    assert isinstance(resp, xdlms.ActionResponseNormalWithData)
    # dlms-cosem itself checked our f(CtoS) and moved to READY.
    assert conn.state.current_state.__name__ == "READY"
    assert assoc.state is AssociationState.ASSOCIATED
    return assoc


# -------------------------------------------------------- published vectors


def test_green_book_ciphered_get_vector():
    assert encrypt(GB_KEYS, GB_TITLE, GB_IC, GB_PLAIN_GET) == GB_CIPHERED_GET
    apdu = encode_general_glo_cipher(GB_TITLE, 0x30, GB_IC, GB_CIPHERED_GET)
    title, sc, ic, text = decode_general_glo_cipher(apdu)
    assert decrypt(GB_KEYS, title, ic, sc, text) == GB_PLAIN_GET
    req = parse_get_request(GB_PLAIN_GET)
    assert (req.items[0].class_id, req.items[0].logical_name, req.items[0].attribute) == (8, CLOCK, 2)


def test_green_book_ciphered_aarq_with_lls_is_rejected():
    server = DlmsServer(source(), keys=GB_KEYS)
    aare = acse.ApplicationAssociationResponse.from_bytes(server.association(1).handle(GB_CIPHERED_AARQ_LLS))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert aare.result_source_diagnostics == E.AcseServiceUserDiagnostics.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED
    # The AARQ's ciphered InitiateRequest itself deciphers with the Green Book keys.
    content = acse.ApplicationAssociationRequest.from_bytes(GB_CIPHERED_AARQ_LLS).user_information.content
    plain = decrypt(GB_KEYS, GB_TITLE, content.invocation_counter, 0x30, content.ciphered_text)
    assert isinstance(xdlms.InitiateRequest.from_bytes(plain), xdlms.InitiateRequest)


# pwitab/dlms-cosem tests/test_general_global_cipher.py: a meter's ciphered DataNotification
# push (general-glo-ciphering), EK = AK = b"MYDUMMYGLOBALKEY".
PUSH_CAPTURE = (
    b"\xdb\x08/\x19\"\x91\x99\x16A\x03;0\x00\x00\x01\xe5\x02\\\xe9\xd2'\x1f\xd7\x8b\xe8\xc2\x04!"
    b"\x1a\x91j\x9d\x7fX~\nz\x81L\xad\xea\x89\xe9Y?\x01\xf9.\xa8\xc0\x87\xb5\xbd\xfd\xef\xea\xb6\xbe"
    b"\xcf(-\xfeI\xc0\x8f[\xe6\xdc\x84\x00"
)


def test_published_ciphered_push_deciphers_with_our_codec():
    title, sc, ic, text = decode_general_glo_cipher(PUSH_CAPTURE)
    assert title == b'/\x19"\x91\x99\x16A\x03' and sc == 0x30 and ic == 0x1E5
    key = Suite0Keys(b"MYDUMMYGLOBALKEY", b"MYDUMMYGLOBALKEY")
    plain = decrypt(key, title, ic, sc, text)
    assert isinstance(xdlms.DataNotification.from_bytes(plain), xdlms.DataNotification)
    # Our encoder reproduces the capture byte for byte (short lengths here).
    assert encode_general_glo_cipher(title, sc, ic, text) == PUSH_CAPTURE
    with pytest.raises(DecipherError):
        decrypt(GB_KEYS, title, ic, sc, text)


# ------------------------------------------------------------ association


def test_hls_gmac_association_and_ciphered_get():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = associate(server, conn)
    resp = exchange(conn, assoc, xdlms.GetRequestNormal(CLOCK_ATTR))
    assert isinstance(resp, xdlms.GetResponseNormal)
    assert axdr.decode_datetime(axdr.decode(resp.data)) == NOW
    rlre = exchange(conn, assoc, conn.get_rlrq())
    assert isinstance(rlre, acse.ReleaseResponse)
    assert assoc.state is AssociationState.IDLE


def test_large_ciphered_response_uses_long_form_length():
    # 96 rows, ~2.4 kB in one general-glo-ciphering APDU: dlms_cosem's own encoder cannot write it.
    server = DlmsServer(source(), keys=GB_KEYS, max_pdu_size=8192)
    conn = client()
    assoc = associate(server, conn)
    raw = conn.send(xdlms.GetRequestNormal(LP_ATTR))
    out = assoc.handle(raw)
    assert len(out) > 255
    title, sc, ic, text = decode_general_glo_cipher(out)
    with pytest.raises(ValueError):  # pin: GeneralGlobalCipher.to_bytes writes a 1-byte length
        xdlms.GeneralGlobalCipher(title, conn.security_control, ic, text).to_bytes()
    conn.receive_data(out)
    resp = conn.next_event()
    assert isinstance(resp, xdlms.GetResponseNormal)
    assert len(axdr.decode(resp.data)) == 96


def test_wrong_hls_reply_ends_association():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = server.association(1)
    exchange(conn, assoc, conn.get_aarq())
    method = cosem.CosemMethod(E.CosemInterface.ASSOCIATION_LN, cosem.Obis(0, 0, 40, 0, 0), 1)
    bogus = dlms_data.OctetStringData(b"\x10" + bytes(16)).to_bytes()
    conn.receive_data(assoc.handle(conn.send(xdlms.ActionRequestNormal(method, bogus))))
    resp = xdlms.ActionResponseFactory.from_bytes(
        decrypt(GB_KEYS, server.system_title, *_ic_sc_text(conn.buffer))
    )
    assert resp.status != E.ActionResultStatus.SUCCESS
    assert assoc.state is AssociationState.IDLE


def _ic_sc_text(apdu: bytes):
    _, sc, ic, text = decode_general_glo_cipher(bytes(apdu))
    return ic, sc, text


def test_get_before_hls_completes_is_refused():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = server.association(1)
    exchange(conn, assoc, conn.get_aarq())
    ic = conn.client_invocation_counter
    apdu = encode_general_glo_cipher(b"CLIENT01", 0x30, ic, encrypt(GB_KEYS, b"CLIENT01", ic, GB_PLAIN_GET))
    plain = decrypt(GB_KEYS, server.system_title, *_ic_sc_text(assoc.handle(apdu)))
    assert xdlms.ExceptionResponse.from_bytes(plain).state_error == E.StateException.SERVICE_NOT_ALLOWED


def test_replayed_apdu_gets_invocation_counter_error():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = associate(server, conn)
    raw = conn.send(xdlms.GetRequestNormal(CLOCK_ATTR))
    assert assoc.handle(raw)[0] == 0xDB
    replay = xdlms.ExceptionResponse.from_bytes(assoc.handle(raw))
    assert replay.service_error == E.ServiceException.INVOCATION_COUNTER_ERROR
    _, _, ic, _ = decode_general_glo_cipher(raw)
    assert replay.invocation_counter_data == ic + 1
    with pytest.raises(ValueError):  # pin: dlms_cosem writes this Unsigned32 as one byte
        xdlms.ExceptionResponse(
            E.StateException.SERVICE_NOT_ALLOWED, E.ServiceException.INVOCATION_COUNTER_ERROR, 1000
        ).to_bytes()
    # The replay guard is server-wide: the same APDU on a second association fails too.
    other = associate(server, client(title=b"CLIENT02"))
    assert xdlms.ExceptionResponse.from_bytes(other.handle(raw)).service_error in (
        E.ServiceException.DECIPHERING_ERROR,  # title differs from CLIENT02's
        E.ServiceException.INVOCATION_COUNTER_ERROR,
    )


def test_tampered_apdu_gets_deciphering_error_and_counter_is_not_advanced():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = associate(server, conn)
    raw = bytearray(conn.send(xdlms.GetRequestNormal(CLOCK_ATTR)))
    raw[-1] ^= 1
    resp = xdlms.ExceptionResponse.from_bytes(assoc.handle(bytes(raw)))
    assert resp.service_error == E.ServiceException.DECIPHERING_ERROR
    raw[-1] ^= 1  # the genuine APDU still goes through: forgery did not burn its counter
    assert assoc.handle(bytes(raw))[0] == 0xDB


def test_wrong_key_client_cannot_associate():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client(keys=Suite0Keys.generate())
    assoc = server.association(1)
    raw = conn.send(conn.get_aarq())
    aare = acse.ApplicationAssociationResponse.from_bytes(assoc.handle(raw))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert assoc.state is AssociationState.IDLE


def test_plain_get_in_ciphered_association_is_refused():
    server = DlmsServer(source(), keys=GB_KEYS)
    assoc = associate(server, client())
    resp = xdlms.ExceptionResponse.from_bytes(assoc.handle(GB_PLAIN_GET))
    assert resp.service_error == E.ServiceException.OPERATION_NOT_POSSIBLE


def test_management_requires_ciphered_context():
    # Green Book v10 p. 444 plain AARQ (dlms-cosem tests/test_asce/test_aarq.py).
    gb_aarq = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFF")
    aare = acse.ApplicationAssociationResponse.from_bytes(DlmsServer(source(), keys=GB_KEYS).association(1).handle(gb_aarq))
    assert aare.result_source_diagnostics == E.AcseServiceUserDiagnostics.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED


def test_replay_guard_and_decipher_units():
    guard = ReplayGuard()
    guard.check(b"T" * 8, 0)
    guard.accept(b"T" * 8, 5)
    with pytest.raises(InvocationCounterError) as info:
        guard.check(b"T" * 8, 5)
    assert info.value.expected_at_least == 6
    with pytest.raises(DecipherError):
        decrypt(GB_KEYS, GB_TITLE, GB_IC, 0x30, GB_CIPHERED_GET[:-1] + b"\x00")
    with pytest.raises(DecipherError):
        decrypt(GB_KEYS, GB_TITLE, GB_IC, 0x20, GB_CIPHERED_GET)  # encryption without authentication
    with pytest.raises(DecipherError):
        decode_general_glo_cipher(b"\xdb\x08" + GB_TITLE + b"\x82\xff")


# ------------------------------------- service-specific glo-ciphering, release, counters


def _glo(tag: int, ic: int, plain: bytes, title: bytes = b"CLIENT01") -> bytes:
    return encode_glo_cipher(tag, 0x30, ic, encrypt(GB_KEYS, title, ic, plain))


def test_glo_get_request_gets_glo_get_response():
    """glo-get-request [200] (title from the AARQ) is answered with glo-get-response [204]."""
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = associate(server, conn)
    ic = conn.client_invocation_counter + 1
    out = assoc.handle(_glo(0xC8, ic, GB_PLAIN_GET))
    tag, sc, ric, text = decode_glo_cipher(out)
    assert (tag, sc) == (0xCC, 0x30)
    resp = xdlms.GetResponseFactory.from_bytes(decrypt(GB_KEYS, server.system_title, ric, sc, text))
    assert axdr.decode_datetime(axdr.decode(resp.data)) == NOW
    # The same counter again is a replay; a glo-get-request carrying an action is refused.
    replay = xdlms.ExceptionResponse.from_bytes(assoc.handle(_glo(0xC8, ic, GB_PLAIN_GET)))
    assert replay.service_error == E.ServiceException.INVOCATION_COUNTER_ERROR
    wrong = assoc.handle(_glo(0xC8, ic + 1, bytes.fromhex("C301C1000F0000280000FF0100")))
    assert xdlms.ExceptionResponse.from_bytes(wrong).state_error == E.StateException.SERVICE_NOT_ALLOWED
    # Wrong key: deciphering-error, in clear (ExceptionResponse has no ciphered form).
    forged = encode_glo_cipher(0xC8, 0x30, ic + 2, encrypt(Suite0Keys.generate(), b"CLIENT01", ic + 2, GB_PLAIN_GET))
    assert xdlms.ExceptionResponse.from_bytes(assoc.handle(forged)).service_error == E.ServiceException.DECIPHERING_ERROR


def test_general_glo_ciphering_needs_general_protection():
    """A client that did not propose general-protection may not use general-glo-ciphering."""
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = DlmsConnection(
        authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
        client_system_title=b"CLIENT01",
        global_encryption_key=GB_KEYS.encryption_key,
        global_authentication_key=GB_KEYS.authentication_key,
    )
    conn.conformance.general_protection = False
    assoc = server.association(1)
    exchange(conn, assoc, conn.get_aarq())
    assert Conformance.GENERAL_PROTECTION not in assoc.conformance
    ic = conn.client_invocation_counter + 1
    apdu = encode_general_glo_cipher(b"CLIENT01", 0x30, ic, encrypt(GB_KEYS, b"CLIENT01", ic, GB_PLAIN_GET))
    resp = xdlms.ExceptionResponse.from_bytes(assoc.handle(apdu))
    assert resp.service_error == E.ServiceException.SERVICE_NOT_SUPPORTED


def test_plain_rlrq_releases_a_ciphered_association():
    """A plain RLRQ (reason normal, no user-information) gets a plain RLRE."""
    server = DlmsServer(source(), keys=GB_KEYS)
    assoc = associate(server, client())
    assert assoc.handle(bytes.fromhex("6203800100")) == bytes.fromhex("6303800100")
    assert assoc.state is AssociationState.IDLE
    assert assoc.handle(bytes.fromhex("6203800100"))[0] == 0xD8  # nothing left to release


def test_ciphered_rlrq_gets_glo_initiate_response_and_a_replayed_one_is_refused():
    server = DlmsServer(source(), keys=GB_KEYS)
    conn = client()
    assoc = associate(server, conn)
    ic = conn.client_invocation_counter + 1
    initiate = InitiateRequest(Conformance.GET, 1024).to_bytes()
    rlrq = acse.ReleaseRequest(
        reason=E.ReleaseRequestReason.NORMAL, user_information=acse.UserInformation(_Raw(_glo(0x21, ic, initiate)))
    ).to_bytes()
    rlre = assoc.handle(rlrq)
    assert rlre[0] == 0x63
    tag, sc, ric, text = decode_glo_cipher(acse_user_information(rlre))
    assert tag == 0x28  # glo-initiateResponse
    assert parse_initiate_response(decrypt(GB_KEYS, server.system_title, ric, sc, text)).negotiated_conformance
    assert assoc.state is AssociationState.IDLE
    # The same ciphered RLRQ on a new association of that client is a replay.
    fresh = client()
    fresh.client_invocation_counter = ic + 1
    second = associate(server, fresh)
    replay = xdlms.ExceptionResponse.from_bytes(second.handle(rlrq))
    assert replay.service_error == E.ServiceException.INVOCATION_COUNTER_ERROR
    assert second.state is AssociationState.ASSOCIATED


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def to_bytes(self) -> bytes:
        return self.data


def test_reused_counter_in_aarq_gets_a_diagnostic_and_a_log_line(caplog):
    """Green Book §9.2.7.2.4.2: a glo-initiateRequest whose counter is not above the last
    accepted one is refused: AARE rejected-permanent with user-information
    confirmedServiceError (initiateError, application-reference, deciphering-error),
    and a warning naming the counters."""
    server = DlmsServer(source(), keys=GB_KEYS)
    first = client()
    associate(server, first)
    again = client()  # same title, counter starting over
    with caplog.at_level(logging.WARNING, logger="meterhub.protocols.dlms.server"):
        raw = server.association(1).handle(again.send(again.get_aarq()))
    aare = acse.ApplicationAssociationResponse.from_bytes(raw)
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert acse_user_information(raw) == bytes([0x0E, 0x01, 0x00, 0x06])
    assert aare.user_information.content.error == E.ApplicationReferenceError.DECIPHERING_ERROR
    (record,) = [r for r in caplog.records if "reused invocation counter" in r.getMessage()]
    assert "434c49454e543031" in record.getMessage()  # the client's system title, hex
    assert record.levelno == logging.WARNING
