"""The simulated meter as a DLMS/COSEM server over TCP (IEC 62056-47 wrapper, port 4059;
optionally HDLC framing, IEC 62056-46).

This is the I/O shell around the sans-IO core in :mod:`meterhub.protocols.dlms`:
it reassembles wrapper frames (Green Book 1000-2 Ed. 9 §7.3.3), hands each APDU
to the connection's :class:`~meterhub.protocols.dlms.server.ServerAssociation`
and writes the answer back. Each connection has its own association; a
malformed wrapper, a wrong destination wPort, a change of source wPort, or an
idle peer closes that connection only.

:class:`MeterFeed` adapts :class:`~meterhub.meter.device.Meter` to the server's
:class:`~meterhub.protocols.dlms.cosem.MeterDataSource`: each recorded day
appends load-profile rows, commitments and the signed batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..protocols.dlms.cosem import InMemoryDataSource
from ..protocols.dlms.hdlc import HdlcServerLink
from ..protocols.dlms.push import encode_batch_notification
from ..protocols.dlms.server import MANAGEMENT_LOGICAL_DEVICE, DlmsServer
from ..protocols.dlms.wrapper import WrapperDecoder, WrapperError, WrapperFrame
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
            c = record.commitments[33 * k : 33 * k + 33]
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
    """asyncio TCP server speaking the IEC 62056-47 wrapper to many clients at once."""

    def __init__(
        self,
        dlms: DlmsServer,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        idle_timeout: float = 120.0,
        max_connections: int = 64,
        framing: str = "wrapper",
        hdlc_physical_address: int | None = None,
    ) -> None:
        if framing not in ("wrapper", "hdlc"):
            raise ValueError("framing is 'wrapper' (IEC 62056-47) or 'hdlc' (IEC 62056-46)")
        self.framing = framing
        self.hdlc_physical_address = hdlc_physical_address
        self.dlms = dlms
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> DlmsTcpServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        # With port 0 the OS picked one; report the real port.
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

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
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if len(self._tasks) > self.max_connections:
                return
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # never let one client take the server down
            LOG.exception("DLMS connection failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.framing == "hdlc":
            await self._hdlc_session(reader, writer)
            return
        # A request may be at most our receive PDU size (announced in the AARE) plus
        # cipher overhead; anything longer is a broken or hostile peer.
        decoder = WrapperDecoder(max_apdu=self.dlms.max_pdu_size + 64)
        association = None
        while True:
            data = await asyncio.wait_for(reader.read(4096), self.idle_timeout)
            if not data:
                return
            try:
                frames = decoder.feed(data)
            except WrapperError as exc:
                LOG.info("closing DLMS connection: %s", exc)
                return
            for frame in frames:
                if frame.destination != MANAGEMENT_LOGICAL_DEVICE:
                    return  # no such logical device: IEC 62056-47 discards; we hang up
                if association is None:
                    association = self.dlms.association(frame.source)
                elif frame.source != association.client_sap:
                    return  # one client SAP per connection
                response = association.handle(frame.apdu)
                writer.write(WrapperFrame(frame.destination, frame.source, response).to_bytes())
                await writer.drain()


    async def _hdlc_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HDLC over TCP, as meters without the wrapper profile offer it (IEC 62056-46)."""
        link = HdlcServerLink(self.dlms, physical_address=self.hdlc_physical_address)
        while True:
            data = await asyncio.wait_for(reader.read(4096), self.idle_timeout)
            if not data:
                return
            out = link.receive(data)
            if out:
                writer.write(out)
                await writer.drain()


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
