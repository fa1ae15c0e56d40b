"""Connect a :class:`~meterhub.card.Card` to the vsmartcard ``vpcd`` driver of pcscd.

The vsmartcard project (https://frankmorgner.github.io/vsmartcard/virtualsmartcard/api.html)
ships ``vpcd``, an IFD handler for pcscd that shows a virtual reader to every PC/SC
application. The card side (the "vicc"; here the hub) talks to it over TCP:

* by default ``vpcd`` *listens* (``/etc/reader.conf.d/vpcd``: ``DEVICENAME /dev/null:0x8C7B``,
  port 35963 for the first reader, +1 per further slot) and the vicc connects as a client;
* every message in either direction is a 2-byte big-endian length followed by that many bytes
  (vsmartcard ``vpcd.c`` ``sendToVICC``/``recvFromVICC``; ``vicc.py`` ``__sendToVPCD``);
* a one-byte payload from vpcd is a control command: ``00`` power off, ``01`` power on,
  ``02`` reset, ``04`` get ATR. Only get ATR is answered (with the ATR bytes); the other three
  get no answer (``vicc.py`` ``run``);
* any longer payload is a C-APDU and is answered with exactly one R-APDU (TPDU-free: pcscd
  exchanges whole APDUs with the virtual reader).

The wire format is handled by pure functions (:func:`encode_frame`, :class:`FrameDecoder`,
:func:`handle_message`); :class:`VpcdClient` (threads) and :func:`serve_async` (asyncio) are
thin transport loops around them, with reconnect/backoff and a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import MeterhubError
from ..protocols.endpoint import EndpointError
from ..protocols.endpoint import parse_endpoint as _parse_endpoint

__all__ = [
    "Backoff",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_PAYLOAD",
    "VPCD_CTRL_ATR",
    "VPCD_CTRL_OFF",
    "VPCD_CTRL_ON",
    "VPCD_CTRL_RESET",
    "FrameDecoder",
    "VpcdCard",
    "VpcdClient",
    "VpcdError",
    "encode_frame",
    "handle_message",
    "iter_frames",
    "parse_endpoint",
    "serve_async",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
#: vpcd's first slot listens on 0x8C7B (vsmartcard ``vpcd.h`` ``VPCDPORT``).
DEFAULT_PORT = 35963
#: The length prefix is two bytes, so no payload can exceed 65535 bytes.
MAX_PAYLOAD = 0xFFFF

# Control bytes (vsmartcard ``vpcd.h``: VPCD_CTRL_OFF/ON/RESET/ATR).
VPCD_CTRL_OFF = 0x00
VPCD_CTRL_ON = 0x01
VPCD_CTRL_RESET = 0x02
VPCD_CTRL_ATR = 0x04

#: Answer to a C-APDU whose R-APDU cannot be framed (ISO/IEC 7816-4 §5.6: no precise diagnosis).
_SW_UNKNOWN = b"\x6f\x00"


class VpcdError(MeterhubError, ValueError):
    """Input that the vpcd protocol cannot carry (a payload over 65535 bytes, a bad endpoint)."""


class VpcdCard(Protocol):
    """What the vpcd side needs from a card (:class:`meterhub.card.Card` fits)."""

    atr: bytes

    def power_on(self) -> bytes: ...

    def reset(self) -> bytes: ...

    def power_off(self) -> None: ...

    def transmit(self, capdu: bytes) -> bytes: ...


# --- sans-IO framing -----------------------------------------------------------------------


def encode_frame(payload: bytes) -> bytes:
    """Frame one message: 2-byte big-endian length, then the payload (vpcd wire format)."""
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise VpcdError(f"vpcd payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return len(payload).to_bytes(2, "big") + payload


class FrameDecoder:
    """Incremental decoder: feed received bytes, get whole payloads back.

    Memory stays bounded: at most one partial frame (65535 + 2 bytes) is ever buffered
    beyond the bytes of complete frames handed out by :meth:`feed`.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every payload now complete, in order."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 2:
            n = int.from_bytes(self._buf[:2], "big")
            if len(self._buf) < 2 + n:
                break
            out.append(bytes(self._buf[2 : 2 + n]))
            del self._buf[: 2 + n]
        return out

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet make a whole frame."""
        return len(self._buf)


def iter_frames(data: bytes) -> Iterator[bytes]:
    """Decode a complete byte string of frames; a trailing partial frame is an error."""
    dec = FrameDecoder()
    yield from dec.feed(data)
    if dec.pending:
        raise VpcdError(f"{dec.pending} trailing bytes do not make a whole frame")


def handle_message(card: VpcdCard, payload: bytes) -> bytes | None:
    """Act on one vpcd message; return the payload to send back, or ``None`` for no answer.

    One byte is a control command (power off/on/reset: no answer; get ATR: the ATR); more
    bytes are a C-APDU, answered with the card's R-APDU. An empty or unknown control
    message is logged and ignored, as ``vicc.py`` does.
    """
    if len(payload) == 1:
        ctrl = payload[0]
        if ctrl == VPCD_CTRL_OFF:
            card.power_off()
        elif ctrl == VPCD_CTRL_ON:
            card.power_on()
        elif ctrl == VPCD_CTRL_RESET:
            card.reset()
        elif ctrl == VPCD_CTRL_ATR:
            return bytes(card.atr)
        else:
            log.warning("vpcd: unknown control byte %02X ignored", ctrl)
        return None
    if not payload:
        log.warning("vpcd: empty message ignored")
        return None
    rapdu = bytes(card.transmit(payload))
    if len(rapdu) > MAX_PAYLOAD:
        log.error("vpcd: R-APDU of %d bytes cannot be framed; answering 6F00", len(rapdu))
        return _SW_UNKNOWN
    return rapdu


def parse_endpoint(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` (``[v6]:PORT`` for IPv6) → ``(host, port)``
    (:func:`meterhub.protocols.endpoint.parse_endpoint`); raises :class:`VpcdError`."""
    try:
        return _parse_endpoint(text, default_host=DEFAULT_HOST, default_port=default_port)
    except EndpointError as exc:
        raise VpcdError(str(exc)) from None


# --- blocking transport ------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential reconnect delay: ``initial``, doubling, capped at ``maximum`` seconds."""

    initial: float = 0.1
    maximum: float = 5.0

    def delays(self) -> Iterator[float]:
        d = self.initial
        while True:
            yield d
            d = min(d * 2, self.maximum)


class VpcdClient:
    """Serve ``card`` to vpcd at ``host:port`` from a blocking loop.

    :meth:`run` connects, answers messages until the connection drops, powers the card
    off (a lost reader is a removed card), and reconnects with exponential backoff until
    :meth:`stop` is called. ``max_connections`` (default: unlimited) ends :meth:`run`
    after that many sessions, for tests and one-shot use. All socket operations use
    ``poll_interval`` timeouts, so :meth:`stop` takes effect within that time.
    """

    def __init__(
        self,
        card: VpcdCard,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        backoff: Backoff | None = None,
        poll_interval: float = 0.2,
        connect_timeout: float = 2.0,
        max_connections: int | None = None,
        on_connect: Callable[[socket.socket], None] | None = None,
    ) -> None:
        self.card = card
        self.on_connect = on_connect  # told of each connected socket (e.g. to name its port)
        self.host, self.port = host, port
        self.backoff = backoff or Backoff()
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.connections = 0  # sessions established so far
        self.connected = threading.Event()  # set while a session is up
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- control
    def stop(self) -> None:
        """Ask the loop to end; it closes its socket within ``poll_interval``."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> threading.Thread:
        """Run :meth:`run` in a daemon thread and return it."""
        t = threading.Thread(target=self.run, name=f"vpcd-{self.host}:{self.port}", daemon=True)
        self._thread = t
        t.start()
        return t

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> VpcdClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.join(5.0)

    # -- loop
    def run(self) -> None:
        """Connect, serve, reconnect; return after :meth:`stop` or ``max_connections``."""
        delays = self.backoff.delays()
        while not self._stop.is_set():
            if self.max_connections is not None and self.connections >= self.max_connections:
                return
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as exc:
                delay = next(delays)
                log.debug(
                    "vpcd %s:%d unreachable (%s); retry in %.1fs", self.host, self.port, exc, delay
                )
                self._stop.wait(delay)
                continue
            delays = self.backoff.delays()  # a successful connect resets the backoff
            self.connections += 1
            log.info("vpcd: connected to %s:%d", self.host, self.port)
            try:
                if self.on_connect is not None:
                    self.on_connect(sock)
                self._serve(sock)
            except OSError as exc:
                log.info("vpcd: connection lost (%s)", exc)
            finally:
                self.connected.clear()
                with contextlib.suppress(OSError):
                    sock.close()
                self.card.power_off()  # the reader lost its card
            if not self._stop.is_set():
                self._stop.wait(self.backoff.initial)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(self.poll_interval)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set()
        dec = FrameDecoder()
        while not self._stop.is_set():
            try:
                chunk = sock.recv(65536 + 2)
            except TimeoutError:
                continue
            if not chunk:
                log.info("vpcd: peer closed the connection")
                return
            for payload in dec.feed(chunk):
                answer = handle_message(self.card, payload)
                if answer is not None:
                    sock.settimeout(max(self.poll_interval, 5.0))
                    sock.sendall(encode_frame(answer))
                    sock.settimeout(self.poll_interval)


# --- asyncio transport -------------------------------------------------------------------


async def serve_async(
    card: VpcdCard,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
    max_connections: int | None = None,
    connect_timeout: float = 2.0,
) -> int:
    """asyncio twin of :meth:`VpcdClient.run`; returns the number of sessions served.

    Ends when ``stop`` is set (or the task is cancelled) or after ``max_connections``.
    """
    stop = stop or asyncio.Event()
    backoff = backoff or Backoff()
    delays = backoff.delays()
    sessions = 0

    async def wait_stop(delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    while not stop.is_set() and (max_connections is None or sessions < max_connections):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), connect_timeout
            )
        except (OSError, TimeoutError):
            await wait_stop(next(delays))
            continue
        delays = backoff.delays()
        sessions += 1
        try:
            while not stop.is_set():
                head = await _read_or_stop(reader, 2, stop)
                if head is None:
                    break
                payload = await _read_or_stop(reader, int.from_bytes(head, "big"), stop)
                if payload is None:
                    break
                answer = handle_message(card, payload)
                if answer is not None:
                    writer.write(encode_frame(answer))
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            card.power_off()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return sessions


async def _read_or_stop(reader: asyncio.StreamReader, n: int, stop: asyncio.Event) -> bytes | None:
    """readexactly(n), or None when ``stop`` is set first or the peer closes."""
    if n == 0:
        return b""
    read = asyncio.ensure_future(reader.readexactly(n))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if read in done:
        try:
            return read.result()
        except asyncio.IncompleteReadError:
            return None
    read.cancel()
    with contextlib.suppress(asyncio.CancelledError, asyncio.IncompleteReadError):
        await read
    return None
