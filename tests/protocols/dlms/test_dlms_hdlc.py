"""HDLC framing (IEC 62056-46) on the meter side.

Published frames: the SNRM, UA and AARQ/AARE I-frames are the captures in
pwitab/dlms-cosem tests/test_hdlc/test_hdlc.py (TestSnrmFrame, TestUAFrame,
TestInformationFrame, TestInformationResponseFrame): server logical 1 / physical 17,
public client 16, max information field 0x9A.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from dlms_cosem import cosem, utils
from dlms_cosem import enumerations as E
from dlms_cosem.client import DlmsClient
from dlms_cosem.hdlc import frames
from dlms_cosem.hdlc import state as hdlc_state
from dlms_cosem.io import BlockingTcpIO, HdlcTransport
from dlms_cosem.security import NoSecurityAuthentication
from hypothesis import given
from hypothesis import strategies as st

from meterhub.meter.dlms_server import DlmsTcpServer
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.cosem import LOAD_PROFILE, InMemoryDataSource
from meterhub.protocols.dlms.hdlc import HdlcDeframer, HdlcError, HdlcFrame, HdlcServerLink
from meterhub.protocols.dlms.server import PUBLIC_OBJECTS, DlmsServer
from meterhub.protocols.dlms.state import AssociationState

SNRM = bytes.fromhex("7ea00802232193bd647e")
UA = bytes.fromhex("7EA01F21022373E6C781801205019A06019A070400000001080400000001CCA27E")
I_AARQ = bytes.fromhex(
    "7EA02C02232110AF9FE6E600601DA109060760857405080101BE10040E01000000065F1F0400001E1DFFFFC5E47E"
)
I_AARE = bytes.fromhex(
    "7EA0382102233034E7E6E7006129A109060760857405080101A203020100A305A103020100BE10040E0800065F1F04"
    "00001E1D04C80007B86A7E"
)
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def source() -> InMemoryDataSource:
    src = InMemoryDataSource(clock=lambda: NOW, energy_wh=777)
    src.profile_rows = [(NOW - timedelta(minutes=15 * k), 1000 - k) for k in range(96, 0, -1)]
    return src


#: A display's policy: the public client may also read the load profile (HDLC framing is
#: under test here; the default object list is tested in tests/protocols/dlms/test_dlms_access.py).
ALL = PUBLIC_OBJECTS | {LOAD_PROFILE}


def link() -> HdlcServerLink:
    return HdlcServerLink(DlmsServer(source(), max_pdu_size=0x04C8), physical_address=17, max_info=0x9A)


def test_snrm_gets_the_published_ua_byte_for_byte():
    assert link().receive(SNRM) == UA


def test_published_aarq_frame_gets_an_aare_frame_like_the_published_one():
    lk = link()
    lk.receive(SNRM)
    out = lk.receive(I_AARQ)
    ours = frames.InformationFrame.from_bytes(out)  # dlms-cosem parses and checks HCS/FCS
    theirs = frames.InformationFrame.from_bytes(I_AARE)
    assert (ours.send_sequence_number, ours.receive_sequence_number) == (0, 1)
    assert out[:9] == I_AARE[:9]  # flag, format, addresses, control, same length
    # Same AARE but for the negotiated conformance (ours AND the proposal).
    assert ours.payload == theirs.payload.replace(bytes.fromhex("001E1D04C8"), bytes.fromhex("00121504C8"))
    assert lk.association is not None and lk.association.state is AssociationState.ASSOCIATED


def test_hcs_and_fcs_errors_are_discarded_silently():
    lk = link()
    lk.receive(SNRM)
    bad_fcs = bytearray(I_AARQ)
    bad_fcs[-2] ^= 0xFF
    bad_hcs = bytearray(I_AARQ)
    bad_hcs[9] ^= 0xFF
    assert lk.receive(bytes(bad_fcs)) == b""
    assert lk.receive(bytes(bad_hcs)) == b""
    with pytest.raises(HdlcError, match="FCS"):
        HdlcFrame.from_bytes(bytes(bad_fcs))
    assert lk.discarded == 2
    assert frames.InformationFrame.from_bytes(lk.receive(I_AARQ)).receive_sequence_number == 1


def test_frames_for_other_addresses_and_before_snrm():
    lk = link()
    other = HdlcFrame(b"\x02\x25", b"\x21", 0x93).to_bytes()  # physical address 18
    assert lk.receive(other) == b""
    dm = HdlcFrame.from_bytes(lk.receive(I_AARQ))  # I-frame before SNRM: DM
    assert dm.control == 0x1F
    assert HdlcFrame.from_bytes(lk.receive(HdlcFrame(b"\x02\x23", b"\x21", 0x53).to_bytes())).control == 0x1F


def test_deframer_handles_split_and_shared_flags_and_garbage():
    d = HdlcDeframer()
    stream = b"\x00\x11" + SNRM + I_AARQ[1:] + b"\x7e" + UA
    got = []
    for i in range(0, len(stream), 5):
        got += d.feed(stream[i : i + 5])
    assert got == [SNRM, I_AARQ, UA]


@given(st.binary(max_size=300))
def test_link_never_raises_on_random_bytes(data):
    lk = link()
    lk.receive(SNRM)
    out = lk.receive(data)
    assert isinstance(out, bytes)


@pytest.fixture(scope="module")
def hdlc_server():
    loop = asyncio.new_event_loop()
    tcp = DlmsTcpServer(
        DlmsServer(source(), max_pdu_size=1024, public_objects=ALL), "127.0.0.1", 0, framing="hdlc", hdlc_physical_address=17, idle_timeout=5
    )
    loop.run_until_complete(tcp.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield tcp
    asyncio.run_coroutine_threadsafe(tcp.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


class LengthFramedHdlcTransport(HdlcTransport):
    """dlms-cosem's ``HdlcTransport`` reads up to the next 0x7E and, when its parser then
    fails, reads again; when a frame's FCS ends in 0x7E (the frame ends ``7E 7E``) it waits
    for a flag that never comes. DLMS HDLC has no byte stuffing (the length field
    delimits frames), so read by length and let the parser retry on what is buffered.
    Only the read loop is replaced; dlms-cosem still parses and sequences every frame."""

    def recv_frame(self) -> bytes:
        head = self.io.recv(3)  # opening flag + frame format field
        return head + self.io.recv((int.from_bytes(head[1:3], "big") & 0x7FF) - 1)

    def next_event(self):  # noqa: ANN201 - dlms-cosem frame
        conn = self.hdlc_connection
        while True:
            event = conn.next_event()
            if event is not hdlc_state.NEED_DATA:
                return event
            if frames.HDLC_FLAG[0] not in conn.buffer[conn.buffer_search_position :]:
                conn.receive_data(self.recv_frame())


class ScriptedIO:
    """An IO that serves fixed bytes and fails instead of blocking when they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)

    def recv(self, amount: int = 1) -> bytes:
        if len(self.data) < amount:
            raise EOFError("would block")
        out = bytes(self.data[:amount])
        del self.data[:amount]
        return out

    def recv_until(self, end: bytes) -> bytes:
        out = b""
        while not out.endswith(end):
            out += self.recv()
        return out


# A segment of our load profile whose FCS is 3E 7E (found by test_fcs_can_end_in_flag_byte).
FRAME_7E_FCS = bytes.fromhex(
    "7ea88a210223582e6100000000000003960202090c07ea0301070c2d00000000001500000000000003970202090c07ea0301070d"
    "0000000000001500000000000003980202090c07ea0301070d0f00000000001500000000000003990202090c07ea0301070d1e00"
    "0000000015000000000000039a0202090c07ea0301070d2d0000000000150000003e7e7e"
)


@pytest.mark.interop
def test_fcs_can_end_in_flag_byte_pin_dlms_cosem_reader():
    assert HdlcFrame.from_bytes(FRAME_7E_FCS).segmented  # a valid frame: HCS and FCS check
    assert HdlcDeframer().feed(FRAME_7E_FCS) == [FRAME_7E_FCS]
    stock = HdlcTransport(16, 1, io=ScriptedIO(FRAME_7E_FCS), server_physical_address=17)
    with pytest.raises(EOFError):  # pin: it reads past the frame looking for another 7E
        while True:
            stock.hdlc_connection.receive_data(stock.recv_frame())
    fixed = LengthFramedHdlcTransport(16, 1, io=ScriptedIO(FRAME_7E_FCS), server_physical_address=17)
    assert fixed.recv_frame() == FRAME_7E_FCS


@pytest.mark.interop
def test_dlms_cosem_hdlc_client_reads_over_tcp(hdlc_server):
    transport = LengthFramedHdlcTransport(
        client_logical_address=16,
        server_logical_address=1,
        server_physical_address=17,
        io=BlockingTcpIO("127.0.0.1", hdlc_server.port, timeout=5),
    )
    client = DlmsClient(transport=transport, authentication=NoSecurityAuthentication(), max_pdu_size=512)
    clock = cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
    profile = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)
    with client.session() as s:
        t = axdr.decode_datetime(bytes(utils.parse_as_dlms_data(s.get(clock))))
        rows = utils.parse_as_dlms_data(s.get(profile))  # GET blocks over segmented I-frames
    assert t == NOW
    assert [r[1] for r in rows] == [v for _, v in source().profile_rows]
