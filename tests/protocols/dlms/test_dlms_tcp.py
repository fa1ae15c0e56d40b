"""The meter over TCP with the IEC 62056-47 wrapper, read by dlms-cosem's own client.

The simulated :class:`~meterhub.meter.device.Meter` records a day through
:class:`~meterhub.meter.dlms_server.MeterFeed`; dlms-cosem's ``DlmsClient`` with
``TcpTransport``/``BlockingTcpIO`` reads clock, energy register and load profile
(block transfer, range access) without security and with HLS-GMAC + suite 0.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from dlms_cosem import cosem, utils
from dlms_cosem import enumerations as E
from dlms_cosem.client import DataResultError, DlmsClient
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.exceptions import DlmsClientException
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication, NoSecurityAuthentication

from meterhub.crypto import ecdsa
from meterhub.crypto.pedersen import Commitment, Opening, verify_opening
from meterhub.meter.device import DailyBatch, Meter
from meterhub.meter.dlms_server import DlmsTcpServer, MeterFeed
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.security import Suite0Keys
from meterhub.protocols.dlms.server import DlmsServer
from meterhub.protocols.dlms.tcp import parse_host_port, read_meter

KEYS = Suite0Keys.generate()
CLOCK = cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
ENERGY = cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2)
SCALER = cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 3)
PROFILE = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)
BATCHES = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(0, 128, 96, 2, 0), 2)
NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
READINGS = [(k * 37) % 400 for k in range(96)]
OPENINGS = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(0, 128, 96, 4, 0), 2)
COMMITMENTS = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(0, 128, 96, 1, 0), 2)


@pytest.fixture(scope="module")
def meter_server():
    meter = Meter("mtr-tcp", ecdsa.generate_signing_key())
    feed = MeterFeed(meter, clock=lambda: NOW)
    feed.record_day(date(2026, 3, 1), READINGS)
    feed.record_day(date(2026, 3, 2), READINGS[::-1])
    dlms = DlmsServer(feed, keys=KEYS, max_pdu_size=512)
    loop = asyncio.new_event_loop()
    tcp = DlmsTcpServer(dlms, "127.0.0.1", 0, idle_timeout=2.0, frame_timeout=2.0)
    loop.run_until_complete(tcp.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield feed, tcp
    asyncio.run_coroutine_threadsafe(tcp.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def public_client(port: int) -> DlmsClient:
    return DlmsClient(
        transport=TcpTransport(16, 1, BlockingTcpIO("127.0.0.1", port, timeout=5)),
        authentication=NoSecurityAuthentication(),
    )


def management_client(port: int, title: bytes = b"HUB00001") -> DlmsClient:
    return DlmsClient(
        transport=TcpTransport(1, 1, BlockingTcpIO("127.0.0.1", port, timeout=5)),
        authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
        encryption_key=KEYS.encryption_key,
        authentication_key=KEYS.authentication_key,
        client_system_title=title,
    )


def read_all(c: DlmsClient):
    with c.session() as s:
        clock = utils.parse_as_dlms_data(s.get(CLOCK))
        energy = utils.parse_as_dlms_data(s.get(ENERGY))
        scaler = utils.parse_as_dlms_data(s.get(SCALER))
        profile = utils.parse_as_dlms_data(s.get(PROFILE))
    return clock, energy, scaler, profile


def check(feed: MeterFeed, clock, energy, scaler, profile) -> None:
    assert axdr.decode_datetime(bytes(clock)) == NOW
    assert energy == sum(READINGS) * 2
    assert scaler == [0, 30]
    assert len(profile) == 192
    assert [row[1] for row in profile] == [v for _, v in feed.profile_rows]
    assert axdr.decode_datetime(bytes(profile[-1][0])) == feed.profile_rows[-1][0]


DEVICE_ID = cosem.CosemAttribute(E.CosemInterface.DATA, cosem.Obis(0, 0, 96, 1, 0), 2)
_titles = iter(range(1, 10_000))


def fresh_manager(port: int) -> DlmsClient:
    """A management client under a system title not used before (its counter starts at 1)."""
    return management_client(port, f"TST{next(_titles):05d}".encode())


@pytest.mark.interop
def test_dlms_cosem_public_client_reads_clock_and_identity_but_no_readings(meter_server):
    """Issue 11: a neighbour on the network, as dlms-cosem's public client, gets the clock
    and the device identity; register, profile, commitments, batches and openings are not
    in its object list and come back as data-access-result object-undefined."""
    feed, tcp = meter_server
    with public_client(tcp.port).session() as s:
        assert axdr.decode_datetime(bytes(utils.parse_as_dlms_data(s.get(CLOCK)))) == NOW
        assert bytes(utils.parse_as_dlms_data(s.get(DEVICE_ID))) == b"mtr-tcp"
        for attr in (ENERGY, SCALER, PROFILE, BATCHES, OPENINGS, COMMITMENTS):
            with pytest.raises(DataResultError, match="OBJECT_UNDEFINED"):
                s.get(attr)


@pytest.mark.interop
def test_dlms_cosem_client_with_hls_gmac_and_suite0(meter_server):
    feed, tcp = meter_server
    check(feed, *read_all(management_client(tcp.port)))


@pytest.mark.interop
def test_range_read_over_tcp_and_signed_batches_verify(meter_server):
    feed, tcp = meter_server
    frm = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    rd = RangeDescriptor(CaptureObject(CLOCK), frm, frm + timedelta(hours=2))
    with fresh_manager(tcp.port).session() as s:
        rows = utils.parse_as_dlms_data(s.get(PROFILE, access_descriptor=rd))
        batches = utils.parse_as_dlms_data(s.get(BATCHES))
    assert [r[1] for r in rows] == [v for t, v in feed.profile_rows if frm <= t <= frm + timedelta(hours=2)]
    assert len(rows) == 9
    pub = ecdsa.load_verifying_key(feed.public_key)
    for (_, body, sig), rec in zip(batches, feed.records, strict=True):
        batch = DailyBatch.from_bytes(bytes(body))
        assert batch == rec.batch.batch
        assert ecdsa.verify(pub, batch.signed_message(), bytes(sig))


@pytest.mark.interop
def test_home_link_openings_only_under_suite0_and_they_open_the_commitments(meter_server):
    feed, tcp = meter_server
    with public_client(tcp.port).session() as s, pytest.raises(DataResultError, match="OBJECT_UNDEFINED"):
        s.get(OPENINGS)
    with management_client(tcp.port, b"HUBLINK1").session() as s:
        openings = utils.parse_as_dlms_data(s.get(OPENINGS))
        commitments = utils.parse_as_dlms_data(s.get(COMMITMENTS))
    assert len(openings) == len(commitments) == 192
    for (t1, i, m, r), (t2, j, c) in zip(openings, commitments, strict=True):
        assert bytes(t1) == bytes(t2) and i == j
        assert verify_opening(Commitment.from_bytes(bytes(c)), Opening(m, int.from_bytes(bytes(r), "big")))
    assert [o[2] for o in openings] == READINGS + READINGS[::-1]


@pytest.mark.interop
def test_many_clients_at_once(meter_server):
    feed, tcp = meter_server
    titles = [f"PAR{i:05d}".encode() for i in range(4)]
    def public_clock():
        with public_client(tcp.port).session() as s:
            return axdr.decode_datetime(bytes(utils.parse_as_dlms_data(s.get(CLOCK))))

    jobs = [lambda t=t: read_all(management_client(tcp.port, t)) for t in titles] + [public_clock] * 4
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda f: f(), jobs))
    for result in results[:4]:
        check(feed, *result)
    assert results[4:] == [NOW] * 4


@pytest.mark.interop
def test_counter_restart_under_same_title_is_a_replay(meter_server):
    """The replay guard outlives the association: a client that forgets its invocation
    counter cannot associate again under the same system title until it resumes it."""
    _, tcp = meter_server
    c = management_client(tcp.port, b"REPLAY01")
    with c.session() as s:
        s.get(CLOCK)
    used = c.client_invocation_counter
    fresh = management_client(tcp.port, b"REPLAY01")
    fresh.connect()
    try:
        with pytest.raises(DlmsClientException, match="REJECTED_PERMANENT"):
            fresh.associate()
    finally:
        fresh.disconnect()
    resumed = management_client(tcp.port, b"REPLAY01")
    resumed.client_invocation_counter = used
    with resumed.session() as s:
        assert axdr.decode_datetime(bytes(utils.parse_as_dlms_data(s.get(CLOCK)))) == NOW


def _raw(port: int, payload: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        if not read:
            return b""
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data  # server closed the connection
            data += chunk


@pytest.mark.interop
@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x02\x00\x10\x00\x01\x00\x03\x60\x00\x00",  # wrapper version 2
        b"\x00\x01\x00\x10\x00\x01\x00\x00",  # zero length
        b"\x00\x01\x00\x10\x00\x01\xff\xff" + b"\x00" * 32,  # length beyond our receive PDU
        b"\x00\x01\x00\x10\x00\x05\x00\x01\xc0",  # no logical device 5
    ],
)
def test_malformed_wrapper_closes_only_that_connection(meter_server, frame):
    feed, tcp = meter_server
    assert _raw(tcp.port, frame) == b""
    check(feed, *read_all(fresh_manager(tcp.port)))


def test_garbage_apdu_inside_a_good_wrapper_gets_an_exception_response(meter_server):
    _, tcp = meter_server
    data = _raw(tcp.port, b"\x00\x01\x00\x10\x00\x01\x00\x03\xc0\x01\xc1")
    # One wrapper frame back (server wPort 1 -> client 16), then the idle timeout closes.
    assert data[:6] == b"\x00\x01\x00\x01\x00\x10"
    assert data[8] == 0xD8  # ExceptionResponse: no association yet


@pytest.mark.interop
def test_truncated_frame_then_silence_is_closed_by_the_frame_deadline(meter_server):
    feed, tcp = meter_server
    assert _raw(tcp.port, b"\x00\x01\x00\x10\x00\x01\x00\x40\x60") == b""
    check(feed, *read_all(fresh_manager(tcp.port)))


def test_read_meter_helper_public_and_suite0(meter_server):
    feed, tcp = meter_server
    plain = read_meter("127.0.0.1", tcp.port)
    assert plain.clock == NOW and plain.energy_wh is None and plain.profile == []
    full = read_meter("127.0.0.1", tcp.port, keys=KEYS, system_title=b"READER00")
    assert full.energy_wh == feed.energy_wh and (full.scaler, full.unit) == (0, 30)
    assert full.profile == feed.profile_rows
    frm = feed.profile_rows[10][0]
    secure = read_meter("127.0.0.1", tcp.port, keys=KEYS, system_title=b"READER01", since=frm, until=frm)
    assert secure.profile == [feed.profile_rows[10]]
    assert parse_host_port("10.0.0.7:4060") == ("10.0.0.7", 4060) and parse_host_port("m") == ("m", 4059)
