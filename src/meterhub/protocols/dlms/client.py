"""A small reading client (for ``meterhub meter read --dlms HOST:PORT``), built on
dlms-cosem's ``DlmsClient`` over the IEC 62056-47 wrapper.

Reads the clock as the public client (SAP 16), or, given suite-0 keys, clock, energy
register and load profile (GET with block transfer) as the management client (SAP 1,
HLS-GMAC): the public client's object list holds no readings (docs/dlms.md).
Blocking by design: it is a command-line reader; the meter side is asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dlms_cosem import cosem, utils
from dlms_cosem import enumerations as E
from dlms_cosem.client import DlmsClient
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.io import BlockingTcpIO, TcpTransport
from dlms_cosem.security import HighLevelSecurityGmacAuthentication, NoSecurityAuthentication

from ..endpoint import parse_endpoint
from . import axdr
from .security import Suite0Keys
from .server import MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, PUBLIC_CLIENT

__all__ = ["MeterReading", "read_meter", "parse_host_port"]

_CLOCK = cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
_ENERGY = cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2)
_SCALER = cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 3)
_PROFILE = cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2)


@dataclass
class MeterReading:
    clock: datetime
    energy_wh: int | None = None
    scaler: int | None = None
    unit: int | None = None
    profile: list[tuple[datetime, int]] = field(default_factory=list)


def parse_host_port(text: str, default_port: int = 4059) -> tuple[str, int]:
    """``"host:port"`` or ``"host"`` → ``(host, port)`` (:func:`meterhub.protocols.endpoint.parse_endpoint`)."""
    return parse_endpoint(text, default_port=default_port)


def read_meter(
    host: str,
    port: int = 4059,
    *,
    keys: Suite0Keys | None = None,
    system_title: bytes = b"MHCLI001",
    invocation_counter: int = 0,
    since: datetime | None = None,
    until: datetime | None = None,
    timeout: int = 10,
) -> MeterReading:
    """Associate, read, release. ``since``/``until`` restrict the profile by range."""
    io = BlockingTcpIO(host, port, timeout=timeout)
    if keys is None:
        client = DlmsClient(
            transport=TcpTransport(PUBLIC_CLIENT, MANAGEMENT_LOGICAL_DEVICE, io),
            authentication=NoSecurityAuthentication(),
        )
    else:
        client = DlmsClient(
            transport=TcpTransport(MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, io),
            authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
            encryption_key=keys.encryption_key,
            authentication_key=keys.authentication_key,
            client_system_title=system_title,
            client_initial_invocation_counter=invocation_counter,
        )
    access = None
    if since is not None and until is not None:
        access = RangeDescriptor(CaptureObject(_CLOCK), since, until)
    with client.session() as s:
        clock = utils.parse_as_dlms_data(s.get(_CLOCK))
        if keys is None:
            # Decode date-times ourselves: dlms-cosem reads a UTC clock as naive.
            return MeterReading(clock=axdr.decode_datetime(bytes(clock)))
        energy = utils.parse_as_dlms_data(s.get(_ENERGY))
        scaler, unit = utils.parse_as_dlms_data(s.get(_SCALER))
        rows = utils.parse_as_dlms_data(s.get(_PROFILE, access_descriptor=access))
    return MeterReading(
        clock=axdr.decode_datetime(bytes(clock)),
        energy_wh=int(energy),
        scaler=int(scaler),
        unit=int(unit),
        profile=[(axdr.decode_datetime(bytes(t)), int(v)) for t, v in rows],
    )
