"""A stock Gurux client (gurux-dlms, GPL: a test oracle only, never imported by
src/meterhub) against the meter's DLMS server over TCP (IEC 62056-47 wrapper).

* As the management client with Gurux's stock secure settings - authentication
  HIGH_GMAC, security AUTHENTICATION_ENCRYPTION, a system title, block cipher key and
  authentication key, nothing else changed - it associates (HLS-GMAC passes 1-4 with
  glo-initiateRequest and glo-action-request), then reads clock, register, load profile,
  commitments and the openings, and releases. Issue 9 "Stock DLMS head-ends".
* With a proposed conformance that lacks general-protection (the one override, in its
  own test), it must use service-specific glo-get-request, which the server answers
  with glo-get-response.
* As the public client it gets clock and identity, and object-undefined for the rest
  (issue 11, "The meter's own interfaces leak too").

Gurux's Python client is sans-IO on the client side: :class:`GuruxTcp` drives the
socket.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, date, datetime

import pytest
from gurux_dlms import GXDLMSException, GXDLMSExceptionResponse
from gurux_dlms.enums import (
    AssociationResult,
    Authentication,
    Conformance,
    ErrorCode,
    ExceptionServiceError,
    InterfaceType,
)
from gurux_dlms.objects import GXDLMSClock, GXDLMSData, GXDLMSProfileGeneric, GXDLMSRegister
from gurux_dlms.secure import GXDLMSSecureClient

from gurux_link import GuruxTcp, gurux_management_client
from meterhub.crypto import ecdsa
from meterhub.crypto.pedersen import Commitment, Opening, verify_opening
from meterhub.meter.device import Meter
from meterhub.meter.dlms_server import DlmsTcpServer, MeterFeed
from meterhub.protocols.dlms.security import Suite0Keys
from meterhub.protocols.dlms.server import DlmsServer

KEYS = Suite0Keys.generate()
NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
READINGS = [(k * 53) % 300 for k in range(96)]


@pytest.fixture(scope="module")
def meter():
    feed = MeterFeed(Meter("mtr-gurux", ecdsa.generate_signing_key()), clock=lambda: NOW)
    feed.record_day(date(2026, 3, 1), READINGS)
    feed.record_day(date(2026, 3, 2), READINGS[::-1])
    dlms = DlmsServer(feed, keys=KEYS, max_pdu_size=512)
    loop = asyncio.new_event_loop()
    tcp = DlmsTcpServer(dlms, "127.0.0.1", 0, idle_timeout=5.0)
    loop.run_until_complete(tcp.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield feed, dlms, tcp.port
    asyncio.run_coroutine_threadsafe(tcp.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def management_client(title: bytes = b"GRX00001") -> GXDLMSSecureClient:
    return gurux_management_client(KEYS, title)


def read_everything(link: GuruxTcp) -> dict:
    clock = link.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    register = GXDLMSRegister("1.0.1.8.0.255")
    link.read(register, 3)
    link.read(register, 2)
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    link.read(profile, 3)
    link.read(profile, 2)
    commitments = GXDLMSProfileGeneric("0.128.96.1.0.255")
    link.read(commitments, 3)
    link.read(commitments, 2)
    openings = GXDLMSProfileGeneric("0.128.96.4.0.255")
    link.read(openings, 3)
    link.read(openings, 2)
    return {
        "clock": clock,
        "register": register,
        "profile": profile,
        "commitments": commitments,
        "openings": openings,
    }


def check_everything(got: dict, feed: MeterFeed) -> None:
    t = got["clock"].time.value
    assert t.replace(tzinfo=UTC) == NOW
    reg = got["register"]
    assert reg.value == feed.energy_wh == sum(READINGS) * 2
    assert (reg.scaler, int(reg.unit)) == (1.0, 30)  # 10^0, Wh
    rows = got["profile"].buffer
    assert [int(r[1]) for r in rows] == [v for _, v in feed.profile_rows]
    assert len(got["profile"].captureObjects) == 2
    openings, commitments = got["openings"].buffer, got["commitments"].buffer
    assert len(openings) == len(commitments) == 192
    for (_, i, m, r), (_, j, c) in zip(openings, commitments, strict=True):
        assert int(i) == int(j)
        assert verify_opening(Commitment.from_bytes(bytes(c)), Opening(int(m), int.from_bytes(bytes(r), "big")))
    assert [int(o[2]) for o in openings] == READINGS + READINGS[::-1]


@pytest.mark.interop
def test_gurux_management_client_hls_gmac_suite0_reads_everything(meter):
    feed, _, port = meter
    link = GuruxTcp(management_client(), port)
    link.associate()
    # Our conformance parse keeps general-protection, so Gurux uses general-glo-ciphering.
    assert link.client.negotiatedConformance & Conformance.GENERAL_PROTECTION
    check_everything(read_everything(link), feed)
    link.release()


@pytest.mark.interop
def test_gurux_without_general_protection_uses_glo_get_request(meter):
    """The one client-side override: propose no general-protection. Gurux then sends
    glo-get-request [200] and must get glo-get-response [204] back."""
    feed, _, port = meter
    client = management_client(b"GRX00002")
    client.proposedConformance &= ~Conformance.GENERAL_PROTECTION
    link = GuruxTcp(client, port)
    sent: list[bytes] = []
    original = link._packet

    def spy(frame, reply):
        sent.append(bytes(frame)[8:])
        original(frame, reply)

    link._packet = spy  # type: ignore[method-assign]
    link.associate()
    assert not client.negotiatedConformance & Conformance.GENERAL_PROTECTION
    check_everything(read_everything(link), feed)
    link.release()
    tags = {apdu[0] for apdu in sent}
    assert 0xC8 in tags and 0xDB not in tags  # glo-get-request, never general-glo-ciphering


@pytest.mark.interop
def test_gurux_reused_invocation_counter_is_refused_with_a_diagnostic(meter, caplog):
    """A second association under the same title starting again at IC 0 is a replay:
    the AARE rejects it. Mid-association replays get invocation-counter-error with the
    counter the meter expects, which Gurux reports."""
    _, dlms, port = meter
    link = GuruxTcp(management_client(b"GRX00003"), port)
    link.associate()
    link.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    link.release()
    again = GuruxTcp(management_client(b"GRX00003"), port)
    with caplog.at_level(logging.WARNING, logger="meterhub.protocols.dlms.server"), pytest.raises(
        GXDLMSException
    ) as refused:
        again.associate()
    assert refused.value.result == AssociationResult.PERMANENT_REJECTED
    assert any("reused invocation counter" in r.getMessage() for r in caplog.records)
    again.sock.close()
    # Resuming above the meter's invocation counter object (read as the public client
    # first, as Gurux's own reader does) associates again.
    pub = GuruxTcp(GXDLMSSecureClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER), port)
    pub.associate()
    counter = pub.read(GXDLMSData("0.0.43.1.0.255"), 2).value
    pub.release()
    assert counter >= dlms.replay.last[b"GRX00003"]
    resumed = management_client(b"GRX00003")
    resumed.ciphering.invocationCounter = counter + 1
    link = GuruxTcp(resumed, port)
    link.associate()
    link.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    # Replay the last request's counter: the meter says which counter it expects.
    resumed.ciphering.invocationCounter -= 1
    with pytest.raises(GXDLMSExceptionResponse) as exc:
        link.read(GXDLMSClock("0.0.1.0.0.255"), 2)
    assert exc.value.exceptionServiceError == ExceptionServiceError.INVOCATION_COUNTER_ERROR
    assert exc.value.serviceErrorValue == dlms.replay.last[b"GRX00003"] + 1
    link.sock.close()


@pytest.mark.interop
def test_gurux_public_client_gets_clock_and_identity_only(meter):
    _, _, port = meter
    link = GuruxTcp(GXDLMSSecureClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER), port)
    link.associate()
    assert link.read(GXDLMSClock("0.0.1.0.0.255"), 2).time.value.replace(tzinfo=UTC) == NOW
    assert bytes(link.read(GXDLMSData("0.0.96.1.0.255"), 2).value) == b"mtr-gurux"
    assert bytes(link.read(GXDLMSData("0.0.42.0.0.255"), 2).value) == b"MHBmtr-gurux"
    for obj, attribute in (
        (GXDLMSRegister("1.0.1.8.0.255"), 2),
        (GXDLMSProfileGeneric("1.0.99.1.0.255"), 2),
        (GXDLMSProfileGeneric("0.128.96.1.0.255"), 2),
        (GXDLMSProfileGeneric("0.128.96.2.0.255"), 2),
        (GXDLMSProfileGeneric("0.128.96.4.0.255"), 2),
    ):
        with pytest.raises(GXDLMSException) as exc:
            link.read(obj, attribute)
        assert exc.value.errorCode == ErrorCode.UNDEFINED_OBJECT
    link.release()


def _object_list(link: GuruxTcp) -> dict[str, int]:
    """Gurux's own object-list reader: Association LN 0.0.40.0.0.255 attribute 2."""
    reply = link.exchange([link.client.getObjectsRequest()])  # one frame, not a list
    objects = link.client.parseObjects(reply.data, False)
    return {o.logicalName: int(o.objectType) for o in objects}


@pytest.mark.interop
def test_gurux_reads_each_associations_object_list(meter):
    """Each association lists what it may read (Blue Book §4.4.3 object_list): the public
    client's list is clock, identity, logical device name, invocation counter and the
    association; the management client's list is every object."""
    _, dlms, port = meter
    pub = GuruxTcp(GXDLMSSecureClient(True, 16, 1, Authentication.NONE, None, InterfaceType.WRAPPER), port)
    pub.associate()
    assert _object_list(pub) == {
        "0.0.40.0.0.255": 15, "0.0.1.0.0.255": 8, "0.0.96.1.0.255": 1, "0.0.42.0.0.255": 1, "0.0.43.1.0.255": 1,
    }
    pub.release()
    link = GuruxTcp(management_client(b"GRX00004"), port)
    link.associate()
    listed = _object_list(link)
    assert len(listed) == len(dlms.objects)
    assert listed["1.0.99.1.0.255"] == 7 and listed["0.128.96.4.0.255"] == 7 and listed["1.0.1.8.0.255"] == 3
    link.release()
