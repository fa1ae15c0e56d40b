"""The simulated meter's SML push transport over TCP.

An eHZ meter pushes one SML transport-v1 file (SML 1.04) every few seconds on
its optical interface; an IR reader on a serial-to-TCP bridge turns that into a TCP
byte stream.  :class:`SmlPushServer` reproduces that stream: every connected client
gets the current file (from a callable) at a configurable cadence.  Bytes a client
sends are decoded as SML request files and answered (GetList.Req with the current
file; anything unparseable with SML_Attention.Res), never crashing the server.
The meter serves it over mutually authenticated TLS to its paired hub only
(:mod:`meterhub.links.sml`).

The codec lives in :mod:`meterhub.protocols.sml`; this module only does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
from collections.abc import Callable

from meterhub.protocols.sml import (
    SmlStreamDecoder,
    attention_file,
    attention_for,
    handle_request,
)

from ..errors import MeterhubError
from .admission import Admission, Slot

__all__ = ["SmlPushServer"]

log = logging.getLogger(__name__)


class SmlPushServer:
    """Asyncio TCP server pushing SML files.

    ``file_source`` returns the bytes of the current file (e.g. a
    :func:`~meterhub.protocols.sml.build_meter_file` result); ``profile_source``
    (optional) answers GetProfileList.Req. Use ``async with`` or ``start()``/``stop()``.

    With ``ssl_context`` (the meter's :func:`~meterhub.links.sml.sml_server_context`)
    a connection gets nothing before a TLS handshake that authenticates the paired
    hub, finished within ``handshake_timeout`` seconds; at most ``max_handshakes``
    handshakes run at once, a new one taking the place of the oldest.

    Hostile clients (docs/sml.md, "Hostile clients"): at most ``max_clients``
    clients, at most ``max_per_peer`` from one address; at a cap the oldest client
    gives way to the new one, so clients that never read cannot keep a reading
    client out. A client that lets more than ``write_buffer`` bytes pile up, or does
    not drain a write within ``write_timeout`` seconds, is dropped as a slow reader.
    Every accept, close and refusal is logged (``logging``, one line each).
    """

    def __init__(
        self,
        file_source: Callable[[], bytes],
        *,
        server_id: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        cadence: float = 1.0,
        max_clients: int = 16,
        max_per_peer: int = 4,
        write_timeout: float = 5.0,
        write_buffer: int = 16 * 1024,
        max_request_size: int = 16 * 1024,
        profile_source: Callable[[], bytes] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout: float = 5.0,
        max_handshakes: int = 16,
    ) -> None:
        for name, v in (("cadence", cadence), ("write_timeout", write_timeout),
                        ("handshake_timeout", handshake_timeout)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        self._source = file_source
        self._profile_source = profile_source
        self._server_id = server_id
        self._host = host
        self._port = port
        self.cadence = cadence
        self.write_timeout = write_timeout
        self.write_buffer = write_buffer
        self.max_request_size = max_request_size
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        # Waiting = in the TLS handshake; members = authenticated clients, the oldest
        # giving way (evict_after 0): only the paired hub can become one.
        self.clients = Admission(max_clients, max_per_peer, max_waiting=max_handshakes, evict_after=0.0)
        self._server: asyncio.Server | None = None
        self._port_bound = 0
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.files_sent = 0
        self.requests_answered = 0

    @property
    def max_clients(self) -> int:
        return self.clients.max_members

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def client_count(self) -> int:
        return self.clients.members

    async def start(self) -> None:
        self._closing = False
        self._server = await asyncio.start_server(self._on_client, self._host, self._port)
        self._port_bound = self.port
        log.info("SML push listening on %s:%d (%s)", self._host, self.port,
                 "TLS, paired hub only" if self.ssl_context else "plain TCP, anyone")

    async def stop(self) -> None:
        """Stop accepting, disconnect every client and wait for their tasks."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            port = self._port_bound
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None
            log.info("SML push server on port %d closed (%d connection(s) ended)", port, len(tasks))

    async def __aenter__(self) -> SmlPushServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:  # accepted just before stop(): nobody would end it
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        host, port = _peer_name(writer)
        reason = "closed by peer"
        try:
            reason = await self._connection(reader, writer, host, port)
        except asyncio.CancelledError:
            # This task is the connection's top level (asyncio.start_server made it):
            # end it normally so that shutdown does not log a cancelled callback.
            reason = "server shutting down"
        finally:
            self._tasks.discard(task)
            if writer.transport is not None:
                writer.transport.abort()
        if reason:
            log.info("SML %s:%d closed: %s", host, port, reason)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> str:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # keep little in the kernel, so a reader that stalls shows
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.write_buffer)
        slot, evicted = self.clients.admit(host, lambda: writer.transport.abort())
        for v in evicted:
            log.warning("SML %s: handshake dropped, place given to a new connection", v.peer)
        try:
            return await self._authenticated(reader, writer, host, port, slot)
        finally:
            self.clients.release(slot)

    async def _authenticated(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int, slot: Slot
    ) -> str:
        if self.ssl_context is not None:
            plain = writer.transport
            try:
                try:
                    await writer.start_tls(self.ssl_context, ssl_handshake_timeout=self.handshake_timeout)
                except AttributeError:
                    # asyncio 3.11 ends a handshake "successfully" with no transport when
                    # the connection is lost during it (peer gone, or evicted here), and
                    # then fails on that None inside StreamWriter.start_tls.
                    if writer.transport is not None:
                        raise
                if writer.transport is None:
                    # Give the writer back its closed transport so that it can be collected.
                    writer._transport = plain  # type: ignore[attr-defined]
                    raise ConnectionResetError("connection lost during the handshake")
            except ssl.SSLError as exc:
                log.warning("SML %s:%d refused: TLS authentication failed, not the paired hub (%s)",
                            host, port, exc.reason or exc)
                return ""
            except (OSError, TimeoutError) as exc:
                if slot.evicted:
                    why = "handshake slot given to a newer connection"
                elif isinstance(exc, ConnectionAbortedError | TimeoutError):  # asyncio's handshake timeout
                    why = f"no TLS handshake within {self.handshake_timeout:g} s"
                else:
                    why = f"connection lost during the TLS handshake ({type(exc).__name__})"
                log.warning("SML %s:%d refused: %s", host, port, why)
                return ""
        ok, evicted, _ = self.clients.progress(slot)
        for v in evicted:
            log.warning("SML %s: dropped, oldest client, slot given to a new connection", v.peer)
        if not ok:  # evicted while finishing the handshake
            return "evicted"
        writer.transport.set_write_buffer_limits(high=self.write_buffer)
        log.info("SML %s:%d connected%s (%d client(s))", host, port,
                 " as the paired hub" if self.ssl_context else "", self.clients.members)
        lock = asyncio.Lock()  # push and answers must not interleave inside a file
        pusher = asyncio.create_task(self._push_loop(writer, lock))
        listener = asyncio.create_task(self._read_loop(reader, writer, lock))
        try:
            done, _ = await asyncio.wait({pusher, listener}, return_when=asyncio.FIRST_COMPLETED)
            reasons = []
            for t in done:
                err = None if t.cancelled() else t.exception()
                if err is not None:  # a bug in one connection must not pass silently
                    log.error("SML %s:%d: internal error (%s: %s)", host, port, type(err).__name__, err)
                    reasons.append(f"internal error ({type(err).__name__})")
                elif not t.cancelled():
                    reasons.append(t.result())
            reason = next((r for r in reasons if r), "closed by peer")
            if slot.evicted:
                reason = "evicted"
            elif reason.startswith("slow reader"):
                log.warning("SML %s:%d dropped: %s", host, port, reason)
            return reason
        finally:
            for t in (pusher, listener):
                t.cancel()
            await asyncio.gather(pusher, listener, return_exceptions=True)

    async def _send(self, writer: asyncio.StreamWriter, lock: asyncio.Lock, data: bytes) -> None:
        async with lock:
            if writer.transport.get_write_buffer_size() > self.write_buffer:
                raise _SlowReader(f"slow reader: more than {self.write_buffer} bytes unread")
            writer.write(data)
            try:
                await asyncio.wait_for(writer.drain(), self.write_timeout)
            except TimeoutError:
                raise _SlowReader(f"slow reader: a write not drained within {self.write_timeout:g} s") from None

    async def _push_loop(self, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> str:
        try:
            while True:
                try:
                    data = self._source()
                except Exception as exc:  # a faulty source must not take the server down
                    log.error("SML file source failed: %s: %s", type(exc).__name__, exc)
                else:
                    await self._send(writer, lock, data)
                    self.files_sent += 1
                await asyncio.sleep(self.cadence)
        except _SlowReader as exc:
            return str(exc)
        except OSError as exc:
            return f"connection error ({type(exc).__name__})"

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lock: asyncio.Lock
    ) -> str:
        decoder = SmlStreamDecoder(max_file_size=self.max_request_size)
        seen_errors = 0
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    return "closed by peer"
                files = decoder.feed(chunk)
                replies: list[bytes] = []
                # one attention per request file the decoder had to drop
                new_errors = decoder.error_count - seen_errors
                seen_errors = decoder.error_count
                if new_errors:
                    for exc in list(decoder.errors)[-new_errors:]:
                        log.warning("SML bad request file: %s", exc)
                        replies.append(
                            attention_file(self._server_id, attention_for(exc), str(exc))
                        )
                for f in files:
                    replies.append(
                        handle_request(
                            f.raw,
                            server_id=self._server_id,
                            get_list=self._source,
                            get_profile=self._profile_source,
                        )
                    )
                for reply in replies:
                    await self._send(writer, lock, reply)
                    self.requests_answered += 1
        except _SlowReader as exc:
            return str(exc)
        except OSError as exc:
            return f"connection error ({type(exc).__name__})"


class _SlowReader(MeterhubError):
    """A client does not read what it is sent."""


def _peer_name(writer: asyncio.StreamWriter) -> tuple[str, int]:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return str(peer), 0
