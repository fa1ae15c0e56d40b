"""The simulated meter as a DLMS/COSEM server over TCP (IEC 62056-47 wrapper, port 4059;
optionally HDLC framing, IEC 62056-46).

This is the I/O shell around the sans-IO core in :mod:`meterhub.protocols.dlms`:
it reassembles wrapper frames (Green Book 1000-2 Ed. 9 §7.3.3), hands each APDU
to the connection's :class:`~meterhub.protocols.dlms.server.ServerAssociation`
and writes the answer back. Each connection has its own association; a
malformed wrapper, a wrong destination wPort, a change of source wPort, a frame
that does not arrive whole within its deadline, or an idle peer closes that
connection only.

:class:`MeterFeed` adapts :class:`~meterhub.meter.device.Meter` to the server's
:class:`~meterhub.protocols.dlms.cosem.MeterDataSource`: each recorded day
appends load-profile rows, commitments and the signed batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from ..errors import MeterhubError
from ..model.formats.units import commitment_at
from ..protocols.dlms.cosem import InMemoryDataSource
from ..protocols.dlms.hdlc import HdlcServerLink
from ..protocols.dlms.push import encode_batch_notification
from ..protocols.dlms.server import MANAGEMENT_LOGICAL_DEVICE, DlmsServer
from ..protocols.dlms.wrapper import WrapperDecoder, WrapperError, WrapperFrame
from .admission import Admission, Slot
from .device import DayRecord, Meter

__all__ = ["DEFAULT_PORT", "MeterFeed", "DlmsTcpServer", "send_push"]

LOG = logging.getLogger(__name__)
DEFAULT_PORT = 4059  # IANA "dlms-cosem" port (IEC 62056-47)


class MeterFeed(InMemoryDataSource):
    """A :class:`MeterDataSource` filled by a :class:`Meter` day by day."""

    def __init__(self, meter: Meter, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(meter_id=meter.meter_id, public_key=meter.public_key_bytes)
        if clock is not None:
            self.clock = clock
        self.meter = meter
        self.tz = ZoneInfo(meter.tz)
        self.records: list[DayRecord] = []

    def record_day(self, day: date, readings_wh: Sequence[int]) -> DayRecord:
        """Let the meter commit and sign ``day``; publish its rows.

        Interval k of a local day starts at local midnight + k * interval, counted
        in UTC so that DST days (92 or 100 intervals) come out right.
        """
        record = self.meter.record_day(day, readings_wh)
        step = timedelta(minutes=self.meter.interval_minutes)
        start_utc = datetime.combine(day, time(0), self.tz).astimezone(ZoneInfo("UTC"))
        total = self.energy_wh
        for k, wh in enumerate(readings_wh):
            end = (start_utc + (k + 1) * step).astimezone(self.tz)
            total += wh
            self.profile_rows.append((end, total))
            c = commitment_at(record.commitments, k)
            self.commitment_rows.append((end, record.first_index + k, c))
            o = record.openings[k]
            self.opening_rows.append((end, record.first_index + k, o.m, o.r.to_bytes(32, "big")))
        self.energy_wh = total
        self.batch_rows.append(
            (start_utc.astimezone(self.tz), record.batch.batch.to_bytes(), record.batch.signature)
        )
        self.records.append(record)
        return record

    def notification(self, record: DayRecord, invoke_id: int, sent_at: datetime | None = None) -> bytes:
        """The DataNotification APDU pushing ``record``'s signed batch."""
        return encode_batch_notification(
            meter_id=self.meter_id,
            batch=record.batch.batch.to_bytes(),
            signature=record.batch.signature,
            commitments=record.commitments,
            invoke_id=invoke_id,
            sent_at=sent_at,
        )


class DlmsTcpServer:
    """asyncio TCP server speaking the IEC 62056-47 wrapper (or HDLC) to many clients at once.

    Hostile peers (docs/dlms.md, "Hostile clients"): a request frame must arrive
    whole within ``frame_timeout`` seconds of its first byte (the clock does not
    restart on every byte, so trickling bytes does not keep a connection); between
    frames a connection may idle ``idle_timeout`` seconds; an answer the peer does
    not read within ``write_timeout`` seconds drops it (at most ``write_buffer`` bytes
    wait for the peer in the kernel and as much in asyncio). A new connection waits (at
    most ``max_waiting``, the oldest giving way) until it completes its first frame;
    then it becomes one of at most ``max_connections`` members, at most
    ``max_per_peer`` from one address, taking at a cap the slot of the member that
    has not completed a frame for the longest time (at least ``evict_after``
    seconds), see :class:`~meterhub.meter.admission.Admission`.
    Every accept, close and refusal is logged (``logging``, one line each).
    """

    def __init__(
        self,
        dlms: DlmsServer,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        idle_timeout: float = 120.0,
        frame_timeout: float = 10.0,
        write_timeout: float = 10.0,
        write_buffer: int = 64 * 1024,
        max_connections: int = 64,
        max_per_peer: int = 16,
        max_waiting: int = 64,
        evict_after: float = 1.0,
        framing: str = "wrapper",
        hdlc_physical_address: int | None = None,
    ) -> None:
        if framing not in ("wrapper", "hdlc"):
            raise ValueError("framing is 'wrapper' (IEC 62056-47) or 'hdlc' (IEC 62056-46)")
        for name, v in (("idle_timeout", idle_timeout), ("frame_timeout", frame_timeout),
                        ("write_timeout", write_timeout)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        self.framing = framing
        self.hdlc_physical_address = hdlc_physical_address
        self.dlms = dlms
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.write_timeout = write_timeout
        self.write_buffer = write_buffer
        self.admission = Admission(max_connections, max_per_peer, max_waiting=max_waiting, evict_after=evict_after)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    @property
    def max_connections(self) -> int:
        return self.admission.max_members

    @property
    def connection_count(self) -> int:
        return len(self.admission)

    async def start(self) -> DlmsTcpServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        # With port 0 the OS picked one; report the real port.
        self.port = self._server.sockets[0].getsockname()[1]
        LOG.info("DLMS listening on %s:%d (%s framing)", self.host, self.port, self.framing)
        return self

    async def close(self) -> None:
        """Stop accepting, close every connection and wait for their tasks."""
        if self._server is not None:
            self._closing = True
            self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None
            self._closing = False
            LOG.info("DLMS server on port %d closed (%d connection(s) ended)", self.port, len(tasks))

    async def __aenter__(self) -> DlmsTcpServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted just before close(): nobody would end it
            writer.transport.abort()
            return
        peer = _peer_name(writer)
        slot, evicted = self.admission.admit(peer[0], writer.transport.abort)
        for v in evicted:
            LOG.warning("DLMS %s: dropped, no complete frame in %.1f s, waiting place given to a new connection",
                        v.peer, v.stalled(self.admission.clock()))
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        # Bound what waits for the peer in the kernel and in asyncio, so that a peer
        # that does not read its answers meets the write deadline soon.
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.write_buffer)
        writer.transport.set_write_buffer_limits(high=self.write_buffer)
        LOG.info("DLMS %s:%d connected (%d open)", *peer, len(self.admission))
        reason = "closed by peer"
        try:
            reason = await self._session(reader, writer, slot)
        except asyncio.CancelledError:
            # This task is the connection's top level (asyncio.start_server made it):
            # end it normally so that shutdown does not log a cancelled callback.
            reason = "server shutting down"
        except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
            reason = "evicted" if slot.evicted else f"connection error ({type(exc).__name__})"
        except Exception as exc:  # never let one client take the server down
            reason = f"internal error ({type(exc).__name__}: {exc})"
            LOG.error("DLMS %s:%d: %s", *peer, reason)
        finally:
            self._tasks.discard(task)
            self.admission.release(slot)
            writer.transport.abort()
        if slot.evicted:
            reason = "evicted for a new connection"
        LOG.info("DLMS %s:%d closed: %s", *peer, reason)

    async def _receive(self, reader: asyncio.StreamReader, frame_started: float | None) -> bytes:
        """The next bytes, within the idle timeout (between frames) or what is left of
        the frame deadline (inside a frame). Raises :class:`_Deadline`."""
        if frame_started is None:
            limit, what = self.idle_timeout, f"idle for {self.idle_timeout:g} s"
        else:
            limit = frame_started + self.frame_timeout - monotonic()
            what = f"frame not complete within {self.frame_timeout:g} s"
        if limit <= 0:
            raise _Deadline(what)
        try:
            return await asyncio.wait_for(reader.read(4096), limit)
        except TimeoutError:
            raise _Deadline(what) from None

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.write_timeout)
        except TimeoutError:
            raise _Deadline(f"answer not read within {self.write_timeout:g} s") from None

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot) -> str:
        """Serve one connection; returns why it ended (for the log)."""
        peer = _peer_name(writer)
        try:
            if self.framing == "hdlc":
                return await self._hdlc_session(reader, writer, slot)
            return await self._wrapper_session(reader, writer, slot)
        except _Deadline as exc:
            LOG.warning("DLMS %s:%d refused: %s", *peer, exc)
            return str(exc)
        except _Busy as exc:
            LOG.warning("DLMS %s:%d refused: %s", *peer, exc)
            return str(exc)
        except WrapperError as exc:
            LOG.warning("DLMS %s:%d refused: bad frame: %s", *peer, exc)
            return f"bad frame: {exc}"

    async def _wrapper_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot) -> str:
        # A request may be at most our receive PDU size (announced in the AARE) plus
        # cipher overhead; anything longer is a broken or hostile peer.
        decoder = WrapperDecoder(max_apdu=self.dlms.max_pdu_size + 64)
        association = None
        frame_started: float | None = None
        while True:
            data = await self._receive(reader, frame_started)
            if not data:
                return "closed by peer"
            if frame_started is None:
                frame_started = monotonic()
            frames = decoder.feed(data)
            for frame in frames:
                self._progress(slot)
                if frame.destination != MANAGEMENT_LOGICAL_DEVICE:
                    # no such logical device: IEC 62056-47 discards; we hang up
                    raise WrapperError(f"no logical device {frame.destination}")
                if association is None:
                    association = self.dlms.association(frame.source)
                elif frame.source != association.client_sap:
                    raise WrapperError("a second client SAP on one connection")
                response = association.handle(frame.apdu)
                _log_refused_association(writer, frame.source, response)
                await self._send(writer, WrapperFrame(frame.destination, frame.source, response).to_bytes())
            if decoder.pending == 0:
                frame_started = None
            elif frames:
                frame_started = monotonic()  # the next frame started in this chunk

    async def _hdlc_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slot: Slot) -> str:
        """HDLC over TCP, as meters without the wrapper profile offer it (IEC 62056-46).

        In normal response mode every frame for us gets a reply, so "a frame is
        pending" means "bytes arrived since our last reply"."""
        link = HdlcServerLink(self.dlms, physical_address=self.hdlc_physical_address)
        frame_started: float | None = None
        while True:
            data = await self._receive(reader, frame_started)
            if not data:
                return "closed by peer"
            out = link.receive(data)
            if out:
                self._progress(slot)
                frame_started = None
                await self._send(writer, out)
            elif frame_started is None:
                frame_started = monotonic()


    def _progress(self, slot: Slot) -> None:
        """A complete frame: a waiting connection claims a member slot (or is refused)."""
        ok, evicted, why = self.admission.progress(slot)
        for v in evicted:
            LOG.warning("DLMS %s: dropped, idle for %.1f s, slot given to a connection that sent a request",
                        v.peer, v.stalled(self.admission.clock()))
        if not ok:
            raise _Busy(why)


# ACSE associate-source-diagnostic, acse-service-user (ISO/IEC 8650-1; Green Book
# 1000-2 Ed. 9 §9.3.2, the values a DLMS server uses).
_ACSE_USER_DIAGNOSTIC = {
    0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
    11: "authentication-mechanism-name-not-recognised", 12: "authentication-mechanism-name-required",
    13: "authentication-failure", 14: "authentication-required",
}
_AARE, _AARE_RESULT, _AARE_DIAGNOSTIC = 0x61, 0xA2, 0xA3


def aare_refusal(apdu: bytes) -> str | None:
    """For an AARE that rejects the association, ``"rejected-permanent
    (authentication-failure)"``-like text; None for anything else (an accepted AARE,
    another APDU, or bytes that do not parse: this only feeds the log)."""
    if len(apdu) < 2 or apdu[0] != _AARE or apdu[1] & 0x80:
        return None  # meterhub's AAREs fit the short length form
    result = diagnostic = None
    pos, end = 2, min(len(apdu), 2 + apdu[1])
    while pos + 2 <= end:
        tag, length = apdu[pos], apdu[pos + 1]
        value = apdu[pos + 2 : pos + 2 + length]
        if length & 0x80 or len(value) != length:
            return None
        if tag == _AARE_RESULT and value[:2] == b"\x02\x01" and len(value) == 3:
            result = value[2]
        elif tag == _AARE_DIAGNOSTIC and len(value) == 5 and value[2:4] == b"\x02\x01":
            source = "service-user" if value[0] == 0xA1 else "service-provider"
            name = _ACSE_USER_DIAGNOSTIC.get(value[4], str(value[4])) if source == "service-user" else str(value[4])
            diagnostic = f"{source} {name}"
        pos += 2 + length
    if result not in (1, 2):
        return None
    text = "rejected-permanent" if result == 1 else "rejected-transient"
    return f"{text} ({diagnostic})" if diagnostic else text


def _log_refused_association(writer: asyncio.StreamWriter, client_sap: int, response: bytes) -> None:
    refusal = aare_refusal(response)
    if refusal is not None:
        LOG.warning("DLMS %s:%d refused: association of client SAP %d %s",
                    *_peer_name(writer), client_sap, refusal)


class _Busy(MeterhubError):
    """Every member slot is busy (the message says which cap)."""


class _Deadline(MeterhubError):
    """A connection missed a deadline (the message says which)."""


def _peer_name(writer: asyncio.StreamWriter) -> tuple[str, int]:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return str(peer), 0


async def send_push(
    host: str,
    port: int,
    apdu: bytes,
    *,
    source_wport: int = MANAGEMENT_LOGICAL_DEVICE,
    destination_wport: int = 102,
    timeout: float = 10.0,
) -> None:
    """Deliver one unconfirmed push APDU (e.g. a DataNotification) over TCP with the wrapper."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(WrapperFrame(source_wport, destination_wport, apdu).to_bytes())
        await asyncio.wait_for(writer.drain(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
