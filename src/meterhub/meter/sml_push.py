"""The simulated meter's SML push transport over TCP.

An eHZ meter pushes one SML transport-v1 file (SML 1.04) every few seconds on
its optical interface; an IR reader on a serial-to-TCP bridge turns that into a TCP
byte stream.  :class:`SmlPushServer` reproduces that stream: every connected client
gets the current file (from a callable) at a configurable cadence.  Bytes a client
sends are decoded as SML request files and answered (GetList.Req with the current
file; anything unparseable with SML_Attention.Res), never crashing the server.

The codec lives in :mod:`meterhub.protocols.sml`; this module only does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from meterhub.protocols.sml import (
    SmlStreamDecoder,
    attention_file,
    attention_for,
    handle_request,
)

__all__ = ["SmlPushServer"]

log = logging.getLogger(__name__)


class SmlPushServer:
    """Asyncio TCP server pushing SML files.

    ``file_source`` returns the bytes of the current file (e.g. a
    :func:`~meterhub.protocols.sml.build_meter_file` result).  At most ``max_clients``
    connections are served; ``profile_source`` (optional) answers GetProfileList.Req; a client that does not drain ``write_timeout`` seconds of
    output is dropped.  Use ``async with`` or ``start()``/``stop()``.
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
        write_timeout: float = 5.0,
        max_request_size: int = 16 * 1024,
        profile_source: Callable[[], bytes] | None = None,
    ) -> None:
        if cadence <= 0:
            raise ValueError("cadence must be positive")
        self._source = file_source
        self._profile_source = profile_source
        self._server_id = server_id
        self._host = host
        self._port = port
        self.cadence = cadence
        self.max_clients = max_clients
        self.write_timeout = write_timeout
        self.max_request_size = max_request_size
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.files_sent = 0
        self.requests_answered = 0

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self._host, self._port)

    async def stop(self) -> None:
        """Stop accepting, disconnect every client and wait for their tasks."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._clients)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmlPushServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self.max_clients:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        lock = asyncio.Lock()  # push and answers must not interleave inside a file
        pusher = asyncio.create_task(self._push_loop(writer, lock))
        listener = asyncio.create_task(self._read_loop(reader, writer, lock))
        try:
            await asyncio.wait({pusher, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (pusher, listener):
                t.cancel()
            await asyncio.gather(pusher, listener, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._clients.discard(task)

    async def _send(self, writer: asyncio.StreamWriter, lock: asyncio.Lock, data: bytes) -> None:
        async with lock:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.write_timeout)

    async def _push_loop(self, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        try:
            while True:
                try:
                    data = self._source()
                except Exception:  # a faulty source must not take the server down
                    log.exception("SML file source failed")
                else:
                    await self._send(writer, lock, data)
                    self.files_sent += 1
                await asyncio.sleep(self.cadence)
        except (OSError, TimeoutError):
            return  # client gone or not reading: drop it

    async def _read_loop(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lock: asyncio.Lock
    ) -> None:
        decoder = SmlStreamDecoder(max_file_size=self.max_request_size)
        seen_errors = 0
        try:
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                files = decoder.feed(chunk)
                replies: list[bytes] = []
                # one attention per request file the decoder had to drop
                new_errors = decoder.error_count - seen_errors
                seen_errors = decoder.error_count
                if new_errors:
                    for exc in list(decoder.errors)[-new_errors:]:
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
        except (OSError, TimeoutError):
            return
