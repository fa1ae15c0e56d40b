"""What each association sees (issue 11, "The meter's own interfaces leak too";
docs/dlms.md "What each association sees").

The public client (SAP 16, no authentication) gets what real meters give anyone:
the association object, clock, device identity, logical device name and the
invocation counter a head-end needs before it associates. Every other object is
not in its object list: Data-Access-Result object-undefined (IEC 62056-5-3
Get-Data-Result; Blue Book §4.4.3 Association LN object_list). The management
association (HLS-GMAC, suite 0) sees everything.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from meterhub.crypto import ecdsa
from meterhub.meter.device import Meter
from meterhub.meter.dlms_server import MeterFeed
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.client import DlmsLinkClient, DlmsLinkError
from meterhub.protocols.dlms.cosem import (
    ASSOCIATION_LN,
    CLOCK,
    DEVICE_ID,
    INVOCATION_COUNTER,
    LOGICAL_DEVICE_NAME,
    OPENINGS,
)
from meterhub.protocols.dlms.security import Suite0Keys
from meterhub.protocols.dlms.server import PUBLIC_OBJECTS, DlmsServer

KEYS = Suite0Keys.generate()
NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


def meter_server(**kw) -> DlmsServer:
    feed = MeterFeed(Meter("mtr-acc", ecdsa.generate_signing_key()), clock=lambda: NOW)
    feed.record_day(date(2026, 3, 1), [k % 9 for k in range(96)])
    return DlmsServer(feed, keys=KEYS, **kw)


def public(server: DlmsServer) -> DlmsLinkClient:
    c = DlmsLinkClient(server.association(16).handle)
    c.associate()
    return c


def manager(server: DlmsServer, title: bytes = b"MGMT0001") -> DlmsLinkClient:
    c = DlmsLinkClient(server.association(1).handle, keys=KEYS, system_title=title)
    c.associate()
    return c


def test_public_object_list_is_clock_identity_and_association():
    assert {ASSOCIATION_LN, CLOCK, DEVICE_ID, LOGICAL_DEVICE_NAME, INVOCATION_COUNTER} == PUBLIC_OBJECTS


def test_public_client_gets_object_undefined_for_everything_else():
    server = meter_server()
    c = public(server)
    hidden = [o for ln, o in server.objects.items() if ln not in PUBLIC_OBJECTS]
    assert len(hidden) >= 6  # register, load profile, commitments, batches, public key, openings
    for obj in hidden:
        for attribute in (1, 2):
            with pytest.raises(DlmsLinkError, match="object-undefined"):
                c.get(obj.class_id, obj.logical_name, attribute)
    for ln in PUBLIC_OBJECTS:
        obj = server.objects[ln]
        assert axdr.decode(c.get(obj.class_id, ln, 1)) == ln
    assert axdr.decode_datetime(axdr.decode(c.get(8, CLOCK, 2))) == NOW
    assert axdr.decode(c.get(1, DEVICE_ID, 2)) == b"mtr-acc"
    assert axdr.decode(c.get(1, LOGICAL_DEVICE_NAME, 2)) == b"MHBmtr-acc"


def test_management_client_sees_every_object():
    server = meter_server()
    c = manager(server)
    for ln, obj in server.objects.items():
        assert axdr.decode(c.get(obj.class_id, ln, 1)) == ln
    assert len(axdr.decode(c.get(7, OPENINGS, 2))) == 96


def test_invocation_counter_object_lets_a_head_end_resume():
    """0.0.43.1.0.255 holds the highest counter accepted from any management client; a
    client that forgot its counter reads it publicly and starts above it."""
    server = meter_server()
    assert axdr.decode(public(server).get(1, INVOCATION_COUNTER, 2)) == 0
    m = manager(server, b"MGMT0002")
    m.get(8, CLOCK, 2)
    seen = axdr.decode(public(server).get(1, INVOCATION_COUNTER, 2))
    assert seen == server.replay.last[b"MGMT0002"] == m.counter.value - 1
    with pytest.raises(DlmsLinkError, match="refused"):
        manager(server, b"MGMT0002")  # counter starting at 1 again: a replay
    resumed = DlmsLinkClient(server.association(1).handle, keys=KEYS, system_title=b"MGMT0002")
    resumed.counter.value = seen + 1
    resumed.associate()
    assert axdr.decode_datetime(axdr.decode(resumed.get(8, CLOCK, 2))) == NOW


def test_openings_stay_ciphered_only_even_if_a_policy_opens_the_list():
    """A display's policy may widen the public list; the openings remain readable only
    in a ciphered association (read-write-denied), a hard floor."""
    server = meter_server()
    server.public_objects = frozenset(server.objects)
    with pytest.raises(DlmsLinkError, match="read-write-denied"):
        public(server).get(7, OPENINGS, 2)


def test_object_list_and_partners_follow_the_association():
    """Association LN attribute 2 (object_list, Blue Book §4.4.3) lists exactly what this
    client may read, read-only, with selectors 1 and 2 on profile buffers; attribute 3
    names the partners {client SAP, server SAP}."""
    server = meter_server()
    listed = axdr.decode(public(server).get(15, ASSOCIATION_LN, 2))
    assert {entry[2] for entry in listed} == PUBLIC_OBJECTS
    assoc = next(e for e in listed if e[2] == ASSOCIATION_LN)
    assert assoc[:2] == [15, 1] and assoc[3][1] == [[1, 1]]  # reply_to_HLS: access
    m = manager(server, b"MGMT0003")
    full = {e[2]: e for e in axdr.decode(m.get(15, ASSOCIATION_LN, 2))}
    assert set(full) == set(server.objects)
    attributes = {a[0]: a for a in full[OPENINGS][3][0]}
    assert attributes[2] == [2, 1, [1, 2]]  # buffer: read-only, range and entry selectors
    assert all(a[1] == 1 for e in full.values() for a in e[3][0])  # everything read-only
    assert axdr.decode(m.get(15, ASSOCIATION_LN, 3)) == [1, 1]
    assert axdr.decode(public(server).get(15, ASSOCIATION_LN, 3)) == [16, 1]
