"""The blocking I/O driver of the DLMS client: the IEC 62056-47 wrapper over TCP.

:func:`wrapper_transport` turns a TCP connection into the ``transport(request) ->
response`` callable that the sans-IO :class:`~meterhub.protocols.dlms.client.DlmsLinkClient`
talks to (Green Book §7.3.3, wrapper framing with :class:`~.wrapper.WrapperDecoder`).
:func:`read_meter` is a small reader on top of both: it reads the clock as the public
client (SAP 16), or, given suite-0 keys, clock, energy register and load profile (GET
with block transfer) as the management client (SAP 1, HLS-GMAC): the public client's
object list holds no readings (docs/dlms.md). Blocking by design; the meter side is
asyncio (:mod:`meterhub.meter.dlms_server`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from . import axdr
from .addressing import MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, PUBLIC_CLIENT
from .client import DlmsLinkClient, DlmsLinkError, Transport, clock_range
from .cosem import CLOCK, ENERGY_IMPORT, IC_CLOCK, IC_PROFILE_GENERIC, IC_REGISTER, LOAD_PROFILE
from .security import InvocationCounter, Suite0Keys
from .wrapper import HEADER_LEN, WrapperDecoder, WrapperError, WrapperFrame

__all__ = ["MeterReading", "parse_host_port", "read_meter", "wrapper_transport"]

@dataclass
class MeterReading:
    """What :func:`read_meter` read: the clock, and with keys register and profile."""

    clock: datetime
    energy_wh: int | None = None
    scaler: int | None = None
    unit: int | None = None
    profile: list[tuple[datetime, int]] = field(default_factory=list)


def parse_host_port(text: str, default_port: int = 4059) -> tuple[str, int]:
    """``"host:port"`` or ``"host"`` → ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host, int(port)


def wrapper_transport(
    host: str, port: int, client_sap: int, *, timeout: float = 10.0, max_apdu: int = 0xFFFF
) -> tuple[Transport, Callable[[], None]]:
    """A blocking IEC 62056-47 wrapper transport over TCP (Green Book §7.3.3) and its closer.

    ``timeout`` bounds each request and its whole answer (not each ``recv``, which a
    peer trickling bytes could renew for ever); a missed deadline raises
    :class:`DlmsLinkError`."""
    sock = socket.create_connection((host, port), timeout=timeout)
    decoder = WrapperDecoder(max_apdu=max_apdu)
    pending: list[WrapperFrame] = []

    def send(apdu: bytes) -> bytes:
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        sock.sendall(WrapperFrame(client_sap, MANAGEMENT_LOGICAL_DEVICE, apdu).to_bytes())
        while not pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DlmsLinkError(f"no complete answer from the meter within {timeout:g} s")
            sock.settimeout(left)
            try:
                data = sock.recv(max(4096, HEADER_LEN))
            except TimeoutError:
                raise DlmsLinkError(f"no complete answer from the meter within {timeout:g} s") from None
            if not data:
                raise DlmsLinkError("the meter closed the connection")
            try:
                pending.extend(decoder.feed(data))
            except WrapperError as exc:
                raise DlmsLinkError(str(exc)) from None
        return pending.pop(0).apdu

    return send, sock.close


def _data(raw: bytes) -> object:
    try:
        return axdr.decode(raw)
    except axdr.AxdrError as exc:
        raise DlmsLinkError(f"answer is not A-XDR data: {exc}") from None


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
    """Associate, read, release. ``since``/``until`` restrict the profile by range
    (selector 1 on the clock column, Blue Book §4.3.6). Raises :class:`DlmsLinkError`."""
    client_sap = PUBLIC_CLIENT if keys is None else MANAGEMENT_CLIENT
    send, close = wrapper_transport(host, port, client_sap, timeout=timeout)
    try:
        client = DlmsLinkClient(
            send,
            keys=keys,
            system_title=system_title,
            counter=InvocationCounter(max(invocation_counter, 1)),
        )
        client.associate()
        clock = _data(client.get(IC_CLOCK, CLOCK, 2))
        if not isinstance(clock, bytes):
            raise DlmsLinkError("the clock is not an octet-string")
        reading = MeterReading(clock=axdr.decode_datetime(clock))
        if keys is not None:
            energy = _data(client.get(IC_REGISTER, ENERGY_IMPORT, 2))
            scaler_unit = _data(client.get(IC_REGISTER, ENERGY_IMPORT, 3))
            access = clock_range(since, until) if since is not None and until is not None else None
            rows = _data(client.get(IC_PROFILE_GENERIC, LOAD_PROFILE, 2, access))
            if not (isinstance(energy, int) and isinstance(scaler_unit, list) and isinstance(rows, list)):
                raise DlmsLinkError("register or profile has the wrong shape")
            reading.energy_wh = energy
            reading.scaler, reading.unit = int(scaler_unit[0]), int(scaler_unit[1])
            reading.profile = [(axdr.decode_datetime(bytes(t)), int(v)) for t, v in rows]
        client.release()
        return reading
    finally:
        close()
