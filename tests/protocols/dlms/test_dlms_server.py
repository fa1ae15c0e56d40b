"""Sans-IO DLMS server core: association, GET (normal, next, with-list), selective
access, block transfer, release, and the dlms_cosem workarounds.

Published frames: the AARQ/AARE and the ciphered GET are the Green Book
(DLMS UA 1000-2) examples that dlms-cosem's own tests use, in
pwitab/dlms-cosem tests/test_asce/test_aarq.py, tests/test_asce/test_aare.py and
tests/test_security.py ("Example encodings from DLMS Green Book v10: page 444").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dlms_cosem import cosem
from dlms_cosem import enumerations as E
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.protocol import acse, xdlms
from dlms_cosem.security import NoSecurityAuthentication

from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.apdu import encode_get_response_normal, parse_get_request
from meterhub.protocols.dlms.cosem import (
    CLOCK,
    COMMITMENTS,
    ENERGY_IMPORT,
    LOAD_PROFILE,
    METER_PUBLIC_KEY,
    SIGNED_BATCHES,
    InMemoryDataSource,
    build_object_model,
)
from meterhub.protocols.dlms.server import DlmsServer
from meterhub.protocols.dlms.state import AssociationState

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 2, 10, 30, 15, tzinfo=BERLIN)
DAY0 = datetime(2026, 3, 1, 0, 0, tzinfo=BERLIN)

# Green Book v10 p. 444 via dlms-cosem tests/test_asce/test_aarq.py (TestEncodeAARE.test_decode):
# LN, no ciphering, no authentication, proposed conformance 0x001E1D, max PDU 0xFFFF.
GB_AARQ = bytes.fromhex("601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFF")
# Same source (TestParseAARQ.test_hls): mechanism 2 (HLS), not offered to the public client.
GB_AARQ_HLS = bytes.fromhex(
    "6036A1090607608574050801018A0207808B0760857405080202AC0A80083132333435363738"
    "BE10040E01000000065F1F0400007E1FFFFF"
)
# dlms-cosem tests/test_asce/test_aare.py (TestDecodeAARE.test_no_ciphering_no_security_ok_association),
# the Green Book AARE accepting such an AARQ; bytes 0x00501F (conformance) and 0x01F4 (PDU) vary.
GB_AARE = bytes.fromhex("6129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F040000501F01F40007")


def make_source(days: int = 1) -> InMemoryDataSource:
    src = InMemoryDataSource(meter_id="mtr-1", public_key=b"\x04" + bytes(64), clock=lambda: NOW)
    total = 0
    step = timedelta(minutes=15)
    start = DAY0.astimezone(UTC)
    for k in range(96 * days):
        end = (start + (k + 1) * step).astimezone(BERLIN)
        total += k % 7 + 1
        src.profile_rows.append((end, total))
        src.commitment_rows.append((end, k, bytes([2 + k % 2]) + k.to_bytes(32, "big")))
    for d in range(days):
        src.batch_rows.append(((start + timedelta(days=d)).astimezone(BERLIN), b"B" * 90, b"S" * 64))
    src.energy_wh = total
    return src


def display_server(source: InMemoryDataSource, **kw) -> DlmsServer:
    """A server whose public client may read every object (a display's policy): the GET
    mechanics tested here do not depend on who asks. The default public object list is
    tested in tests/protocols/dlms/test_dlms_access.py."""
    return DlmsServer(source, public_objects=frozenset(build_object_model(source)), **kw)


def associate_public(server: DlmsServer):
    a = server.association(16)
    aare = acse.ApplicationAssociationResponse.from_bytes(a.handle(GB_AARQ))
    assert aare.result == E.AssociationResult.ACCEPTED
    return a


def get(a, class_id, ln: bytes, attr: int, access: bytes = b"", invoke: int = 0xC1) -> bytes:
    """Build a Get-Request-Normal by hand (Green Book §9.5) and return the raw response."""
    body = class_id.to_bytes(2, "big") + ln + bytes([attr])
    body += (b"\x01" + access) if access else b"\x00"
    return a.handle(bytes([0xC0, 1, invoke]) + body)


def data_of(response: bytes):
    resp = xdlms.GetResponseFactory.from_bytes(response)
    assert isinstance(resp, xdlms.GetResponseNormal), resp
    return axdr.decode(resp.data)


def error_of(response: bytes) -> E.DataAccessResult:
    resp = xdlms.GetResponseFactory.from_bytes(response)
    assert isinstance(resp, xdlms.GetResponseNormalWithError), resp
    return resp.error


# ------------------------------------------------------------------ ACSE


def test_green_book_aarq_gets_green_book_aare_byte_for_byte():
    server = DlmsServer(make_source(), max_pdu_size=0x01F4)
    a = server.association(16)
    aare = a.handle(GB_AARQ)
    # Negotiated = proposed 0x001E1D AND ours (block-get, multiple-refs, get, selective, action).
    expected = GB_AARE.replace(bytes.fromhex("00501F01F4"), bytes.fromhex("00121501F4"))
    assert aare == expected
    assert a.state is AssociationState.ASSOCIATED


def test_public_client_refuses_hls_and_ciphered_contexts():
    a = DlmsServer(make_source()).association(16)
    aare = acse.ApplicationAssociationResponse.from_bytes(a.handle(GB_AARQ_HLS))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert aare.result_source_diagnostics == E.AcseServiceUserDiagnostics.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNIZED
    assert a.state is AssociationState.IDLE


def test_unknown_client_sap_and_management_without_keys_are_rejected():
    for sap in (3, 1):  # SAP 1 needs suite-0 keys, which this server lacks
        a = DlmsServer(make_source()).association(sap)
        aare = acse.ApplicationAssociationResponse.from_bytes(a.handle(GB_AARQ))
        assert aare.result == E.AssociationResult.REJECTED_PERMANENT


def test_too_small_client_pdu_rejected_with_initiate_error():
    aarq = GB_AARQ[:-2] + b"\x00\x20"  # client-max-receive-pdu-size 32
    a = DlmsServer(make_source()).association(16)
    aare = acse.ApplicationAssociationResponse.from_bytes(a.handle(aarq))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT
    assert aare.user_information.content.error == E.InitiateError.PDU_SIZE_TOO_SHORT


def test_garbage_aarq_is_rejected_not_raised():
    a = DlmsServer(make_source()).association(16)
    aare = acse.ApplicationAssociationResponse.from_bytes(a.handle(b"\x60\x05\xa1\x03\x06\x01\x00"))
    assert aare.result == E.AssociationResult.REJECTED_PERMANENT


def test_get_before_association_is_an_exception_response():
    a = DlmsServer(make_source()).association(16)
    resp = xdlms.ExceptionResponse.from_bytes(get(a, 8, CLOCK, 2))
    assert resp.state_error == E.StateException.SERVICE_NOT_ALLOWED


def test_release_then_get_is_refused():
    a = associate_public(display_server(make_source()))
    rlrq = acse.ReleaseRequest(reason=E.ReleaseRequestReason.NORMAL).to_bytes()
    rlre = acse.ReleaseResponse.from_bytes(a.handle(rlrq))
    assert rlre.reason == E.ReleaseResponseReason.NORMAL
    assert a.state is AssociationState.IDLE
    assert xdlms.ExceptionResponse.from_bytes(get(a, 8, CLOCK, 2))


def test_unknown_apdu_tag_gets_service_unknown():
    a = associate_public(display_server(make_source()))
    resp = xdlms.ExceptionResponse.from_bytes(a.handle(b"\x42\x00\x00"))
    assert resp.state_error == E.StateException.SERVICE_UNKNOWN
    assert resp.service_error == E.ServiceException.SERVICE_NOT_SUPPORTED


# ------------------------------------------------------------------- GET


def test_clock_time_is_a_date_time_octet_string():
    a = associate_public(display_server(make_source()))
    raw = data_of(get(a, 8, CLOCK, 2))
    assert isinstance(raw, bytes) and len(raw) == 12
    assert axdr.decode_datetime(raw) == NOW
    assert raw[9:11] == (-60).to_bytes(2, "big", signed=True)  # CET: UTC = local - 60 min
    assert data_of(get(a, 8, CLOCK, 1)) == CLOCK
    assert data_of(get(a, 8, CLOCK, 3)) == -60


def test_energy_register_value_and_scaler_unit():
    src = make_source()
    a = associate_public(display_server(src))
    assert data_of(get(a, 3, ENERGY_IMPORT, 2)) == src.energy_wh
    assert data_of(get(a, 3, ENERGY_IMPORT, 3)) == [0, 30]  # 10^0 Wh


def test_load_profile_capture_objects_and_period():
    a = associate_public(display_server(make_source()))
    assert data_of(get(a, 7, LOAD_PROFILE, 3)) == [[8, CLOCK, 2, 0], [3, ENERGY_IMPORT, 2, 0]]
    assert data_of(get(a, 7, LOAD_PROFILE, 4)) == 900
    assert data_of(get(a, 7, LOAD_PROFILE, 7)) == 96


def test_get_errors_are_data_access_results():
    a = associate_public(display_server(make_source()))
    assert error_of(get(a, 3, bytes([1, 0, 2, 8, 0, 255]), 2)) == E.DataAccessResult.OBJECT_UNDEFINED
    assert error_of(get(a, 7, CLOCK, 2)) == E.DataAccessResult.OBJECT_CLASS_INCONSISTENT
    assert error_of(get(a, 3, ENERGY_IMPORT, 9)) == E.DataAccessResult.OBJECT_UNDEFINED
    # Interface class unknown to dlms_cosem's enum: still a Data-Access-Result.
    with pytest.raises(ValueError):  # pin: dlms_cosem cannot even parse the descriptor
        cosem.CosemAttribute.from_bytes((9999).to_bytes(2, "big") + CLOCK + b"\x02")
    assert error_of(get(a, 9999, CLOCK, 2)) == E.DataAccessResult.OBJECT_CLASS_INCONSISTENT
    # Selective access on a register.
    assert error_of(get(a, 3, ENERGY_IMPORT, 2, access=b"\x02\x02\x04\x06\x00\x00\x00\x01\x06\x00\x00\x00\x02\x12\x00\x01\x12\x00\x00")) == E.DataAccessResult.OTHER_REASON


def _pump_blocks(conn: DlmsConnection, a, request) -> bytes:
    """Drive a GET through dlms-cosem's sans-IO client, following block transfer."""
    a_resp = a.handle(conn.send(request))
    conn.receive_data(a_resp)
    ev = conn.next_event()
    data = bytearray()
    blocks = 0
    while isinstance(ev, xdlms.GetResponseWithBlock):
        blocks += 1
        data += ev.data
        conn.receive_data(a.handle(conn.send(xdlms.GetRequestNext(ev.block_number, ev.invoke_id_and_priority))))
        ev = conn.next_event()
    if isinstance(ev, xdlms.GetResponseLastBlock):
        assert blocks >= 1
        data += ev.data
    else:
        assert isinstance(ev, xdlms.GetResponseNormal), ev
        data += ev.data
    return bytes(data)


def dlms_cosem_public(server: DlmsServer, max_pdu: int = 65535):
    conn = DlmsConnection(authentication=NoSecurityAuthentication(), client_system_title=None, max_pdu_size=max_pdu)
    a = server.association(16)
    conn.receive_data(a.handle(conn.send(conn.get_aarq())))
    aare = conn.next_event()
    assert aare.result == E.AssociationResult.ACCEPTED
    return conn, a


def test_buffer_block_transfer_with_dlms_cosem_client_state_machine():
    src = make_source(days=2)
    server = display_server(src, max_pdu_size=256)
    conn, a = dlms_cosem_public(server)
    attr = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)
    raw = _pump_blocks(conn, a, xdlms.GetRequestNormal(attr))
    rows = axdr.decode(raw)
    assert len(rows) == 192
    assert [r[1] for r in rows] == [v for _, v in src.profile_rows]
    assert axdr.decode_datetime(rows[0][0]) == src.profile_rows[0][0]
    # The client's own ceiling also bounds our blocks: every APDU fits 256 bytes.
    assert server.max_pdu_size == 256


def test_block_transfer_respects_client_max_pdu():
    server = display_server(make_source(), max_pdu_size=4096)
    a = server.association(16)
    a.handle(GB_AARQ[:-2] + (100).to_bytes(2, "big"))  # client-max-receive-pdu-size 100
    first = get(a, 7, LOAD_PROFILE, 2)
    assert len(first) <= 100
    resp = xdlms.GetResponseFactory.from_bytes(first)
    assert isinstance(resp, xdlms.GetResponseWithBlock) and resp.block_number == 1
    nxt = a.handle(bytes([0xC0, 2, 0xC1]) + (1).to_bytes(4, "big"))
    assert len(nxt) <= 100
    assert xdlms.GetResponseFactory.from_bytes(nxt).block_number == 2


def test_block_number_mismatch_and_next_without_long_get():
    a = associate_public(display_server(make_source(), max_pdu_size=128))
    get(a, 7, LOAD_PROFILE, 2)
    bad = xdlms.GetResponseFactory.from_bytes(a.handle(bytes([0xC0, 2, 0xC1]) + (7).to_bytes(4, "big")))
    assert isinstance(bad, xdlms.GetResponseLastBlockWithError)
    assert bad.error == E.DataAccessResult.DATA_BLOCK_NUMBER_INVALID
    none = xdlms.GetResponseFactory.from_bytes(a.handle(bytes([0xC0, 2, 0xC1]) + (1).to_bytes(4, "big")))
    assert none.error == E.DataAccessResult.NO_LONG_GET_IN_PROGRESS


def range_descriptor(frm: datetime, to: datetime) -> RangeDescriptor:
    clock = cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
    return RangeDescriptor(CaptureObject(clock), frm, to)


@pytest.mark.parametrize("tz", [UTC, BERLIN])
def test_buffer_selective_access_by_range_is_inclusive(tz):
    src = make_source(days=2)
    conn, a = dlms_cosem_public(display_server(src))
    frm = datetime(2026, 3, 1, 12, 0, tzinfo=BERLIN).astimezone(tz)
    to = frm + timedelta(hours=1)
    attr = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)
    rows = axdr.decode(_pump_blocks(conn, a, xdlms.GetRequestNormal(attr, access_selection=range_descriptor(frm, to))))
    expected = [v for t, v in src.profile_rows if frm <= t <= to]
    assert len(expected) == 5
    assert [r[1] for r in rows] == expected


def test_buffer_selective_access_by_entry_and_columns():
    src = make_source()
    a = associate_public(display_server(src, max_pdu_size=4096))
    # entry_descriptor {from_entry 3, to_entry 5, from_selected_value 2, to_selected_value 0}
    access = b"\x02" + axdr.structure(
        [axdr.double_long_unsigned(3), axdr.double_long_unsigned(5), axdr.long_unsigned(2), axdr.long_unsigned(0)]
    )
    rows = data_of(get(a, 7, COMMITMENTS, 2, access=access))
    assert rows == [[2, src.commitment_rows[2][2]], [3, src.commitment_rows[3][2]], [4, src.commitment_rows[4][2]]]


def test_range_with_selected_columns():
    src = make_source()
    a = associate_public(display_server(src, max_pdu_size=4096))
    frm = datetime(2026, 3, 1, 0, 15, tzinfo=BERLIN)
    energy = CaptureObject(cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2))
    access = (
        b"\x01\x02\x04"
        + range_descriptor(frm, frm)
        .restricting_object.to_bytes()
        + axdr.octet_string(axdr.encode_datetime(frm))
        + axdr.octet_string(axdr.encode_datetime(frm + timedelta(minutes=15)))
        + b"\x01\x01"
        + energy.to_bytes()
    )
    assert data_of(get(a, 7, LOAD_PROFILE, 2, access=access)) == [[src.profile_rows[0][1]], [src.profile_rows[1][1]]]


def test_malformed_range_gives_type_unmatched():
    a = associate_public(display_server(make_source()))
    access = b"\x01" + axdr.structure([axdr.unsigned(1), axdr.null(), axdr.null(), axdr.array([])])
    assert error_of(get(a, 7, LOAD_PROFILE, 2, access=access)) == E.DataAccessResult.TYPE_UNMATCHED


def test_get_with_list_mixes_data_and_errors():
    src = make_source()
    a = associate_public(display_server(src))
    items = [
        cosem.CosemAttributeWithSelection(cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2), None),
        cosem.CosemAttributeWithSelection(cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2), None),
        cosem.CosemAttributeWithSelection(cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 2, 8, 0), 2), None),
    ]
    resp = xdlms.GetResponseWithList.from_bytes(a.handle(xdlms.GetRequestWithList(items).to_bytes()))
    clock, energy, missing = resp.result
    assert axdr.decode_datetime(bytes(clock)) == NOW
    assert energy == src.energy_wh
    assert missing == E.DataAccessResult.OBJECT_UNDEFINED


def test_get_with_list_too_big_goes_through_block_transfer():
    src = make_source(days=3)
    server = display_server(src, max_pdu_size=512)
    conn, a = dlms_cosem_public(server)
    lp = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)
    req = xdlms.GetRequestWithList([cosem.CosemAttributeWithSelection(lp, None)] * 2)
    first = a.handle(req.to_bytes())
    resp = xdlms.GetResponseFactory.from_bytes(first)
    assert isinstance(resp, xdlms.GetResponseWithBlock)
    raw = bytearray(resp.data)
    while True:
        nxt = xdlms.GetResponseFactory.from_bytes(a.handle(xdlms.GetRequestNext(resp.block_number).to_bytes()))
        raw += nxt.data
        resp = nxt
        if isinstance(nxt, xdlms.GetResponseLastBlock):
            break
    parsed = xdlms.GetResponseWithList.parse_list_response(bytes(raw[1:]), raw[0])
    assert [len(p.to_python()) for p in parsed] == [288, 288]


def test_manufacturer_objects_serve_commitments_batches_and_key():
    src = make_source()
    a = associate_public(display_server(src, max_pdu_size=8192))
    rows = data_of(get(a, 7, COMMITMENTS, 2))
    assert [r[1:] for r in rows] == [[i, c] for _, i, c in src.commitment_rows]
    batches = data_of(get(a, 7, SIGNED_BATCHES, 2))
    assert batches == [[axdr.encode_datetime(src.batch_rows[0][0]), b"B" * 90, b"S" * 64]]
    assert data_of(get(a, 1, METER_PUBLIC_KEY, 2)) == src.public_key
    assert data_of(get(a, 7, SIGNED_BATCHES, 4)) == 86400


def test_data_source_failure_is_hardware_fault_and_association_survives():
    src = make_source()

    def broken() -> int:
        raise RuntimeError("register bus down")

    src.energy_total_wh = broken  # type: ignore[method-assign]
    a = associate_public(display_server(src))
    assert error_of(get(a, 3, ENERGY_IMPORT, 2)) == E.DataAccessResult.HARDWARE_FAULT
    assert data_of(get(a, 8, CLOCK, 2))


# ------------------------------------------------------- dlms_cosem workarounds


def test_pin_get_response_normal_to_bytes_raises_and_ours_round_trips():
    with pytest.raises(TypeError):
        xdlms.GetResponseNormal(data=b"\x11\x05").to_bytes()
    ours = encode_get_response_normal(0xC1, b"\x11\x05")
    parsed = xdlms.GetResponseNormal.from_bytes(ours)
    assert parsed.data == b"\x11\x05" and parsed.invoke_id_and_priority.invoke_id == 1


def test_pin_zero_deviation_decodes_naive_in_dlms_cosem_and_utc_here():
    from dlms_cosem.time import datetime_from_bytes

    t = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    raw = axdr.encode_datetime(t)
    theirs, _ = datetime_from_bytes(raw)
    assert theirs.tzinfo is None  # the bug
    assert axdr.decode_datetime(raw) == t and axdr.decode_datetime(raw).utcoffset() == timedelta(0)
    # "Not specified" (0x8000) is the only naive case.
    assert axdr.decode_datetime(raw[:9] + b"\x80\x00" + raw[11:]).tzinfo is None


def test_parse_get_request_agrees_with_dlms_cosem():
    # dlms-cosem tests/test_xdlms/test_get.py: GET attr 2 of Data 0.0.43.1.0.255
    frame = b"\xc0\x01\xc1\x00\x01\x00\x00+\x01\x00\xff\x02\x00"
    ours = parse_get_request(frame)
    theirs = xdlms.GetRequestNormal.from_bytes(frame)
    item = ours.items[0]
    assert (item.class_id, item.logical_name, item.attribute) == (
        theirs.cosem_attribute.interface,
        theirs.cosem_attribute.instance.to_bytes(),
        theirs.cosem_attribute.attribute,
    )
    assert ours.invoke == 0xC1
