"""``meterhub meter serve`` and ``meterhub meter read``: the simulated meter on the network.

The meter's recorded days (its store's outbox under ``--data-dir``) are served

* over DLMS/COSEM with the IEC 62056-47 wrapper (Green Book 1000-2 Ed. 9 §7.3.3,
  port 4059 by default) by :class:`~meterhub.meter.dlms_server.DlmsTcpServer`:
  the public client (SAP 16) reads clock, energy register and load profile; the
  management client (SAP 1, HLS-GMAC, security suite 0) is keyed with the
  meter-hub home-link key (:func:`home_link_suite0_keys`) and may also read the
  openings (docs/dlms.md);
* optionally as SML 1.04 push files (:class:`~meterhub.meter.sml_push.SmlPushServer`),
  over TLS to the paired hub only (:mod:`meterhub.links.sml`).

The home-link key schedule, the system titles and the persistent invocation
counters live here because they belong to the meter's configuration; the hub's
end of the link (:mod:`meterhub.hub.homelink`) mirrors them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ..crypto.pedersen import Opening
from ..errors import MeterhubError
from ..links.dlms import (
    StoredInvocationCounter,
    StoredReplayGuard,
    home_link_suite0_keys,
    meter_system_title,
)
from ..model.errors import FormatError
from ..model.formats.sealed import open_sealed_openings
from ..model.formats.units import commitment_at, decode_records
from ..model.formats.upload import DayUpload
from ..model.timebase import local_midnight_utc
from ..protocols.dlms.cosem import InMemoryDataSource
from ..protocols.dlms.security import Suite0Keys
from ..protocols.dlms.server import DlmsServer
from ..protocols.endpoint import EndpointError
from ..protocols.endpoint import parse_endpoint as _parse_endpoint

LOG = logging.getLogger(__name__)

__all__ = [
    "ServeError",
    "StoreFeed",
    "meter_dlms_server",
    "sml_server_id",
    "run_serve",
    "parse_endpoint",
    "PublicReading",
    "DeadlineTcpIO",
    "read_public",
    "reader_keys",
]


class ServeError(MeterhubError):
    """A configuration or network problem, reported as one line by the CLI."""


# --------------------------------------------------------------- data source


@dataclass
class StoreFeed(InMemoryDataSource):
    """A :class:`~meterhub.protocols.dlms.cosem.MeterDataSource` over the meter's
    recorded days (``DayUpload`` + openings), as stored in its outbox.

    Row times are interval *ends*; interval k of a local day ends at local
    midnight + (k+1) x interval, counted in elapsed time (so DST days have 92 or
    100 rows), shown in the meter's zone.
    """

    tz: str = "Europe/Berlin"
    interval_minutes: int = 15
    #: ``(interval end, Wh in the interval)`` for SML's load-profile file.
    interval_rows: list[tuple[datetime, int]] = field(default_factory=list)
    days: int = 0

    def add_day(self, upload: DayUpload, openings: Sequence[Opening]) -> None:
        """Publish one recorded day; raises :class:`FormatError` if the parts disagree."""
        b = upload.batch.batch
        indices, blob = decode_records(upload.records)
        if not (len(indices) == len(openings) == b.count):
            raise FormatError(f"day {b.day}: {b.count} intervals, {len(indices)} records, {len(openings)} openings")
        zone = ZoneInfo(self.tz)
        start = local_midnight_utc(b.day, self.tz)
        step = timedelta(minutes=b.interval_minutes)
        total = self.energy_wh
        for k, (i, o) in enumerate(zip(indices, openings, strict=True)):
            end = (start + (k + 1) * step).astimezone(zone)
            total += o.m
            self.profile_rows.append((end, total))
            self.interval_rows.append((end, o.m))
            self.commitment_rows.append((end, i, commitment_at(blob, k)))
            self.opening_rows.append((end, i, o.m, o.r.to_bytes(32, "big")))
        self.batch_rows.append((start.astimezone(zone), b.to_bytes(), upload.batch.signature))
        self.energy_wh = total
        self.days += 1

    def clear(self) -> None:
        """Forget the published rows (the cumulative register keeps counting)."""
        for rows in (self.profile_rows, self.interval_rows, self.commitment_rows, self.opening_rows, self.batch_rows):
            rows.clear()

    @classmethod
    def from_store(cls, store, meter_id: str, clock: Callable[[], datetime] | None = None) -> StoreFeed:
        """Every day in ``store``'s outbox (a :class:`~meterhub.meter.store.MeterStore`);
        the meter opens its own sealed copies with its home-link key."""
        info = store.info(meter_id)
        feed = cls(
            meter_id=meter_id,
            public_key=info.public_key,
            tz=info.tz,
            interval_minutes=info.interval_minutes,
        )
        if clock is not None:
            feed.clock = clock
        for upload, sealed in store.outbox(meter_id):
            feed.add_day(upload, open_sealed_openings(info.home_link_key, sealed))
        return feed


def meter_dlms_server(
    feed: StoreFeed,
    home_link_key: bytes,
    conn: sqlite3.Connection,
    *,
    autosave: bool = False,
    max_pdu_size: int = 1024,
) -> DlmsServer:
    """The meter's DLMS server core keyed for the home link, with its invocation
    counters persisted in ``conn`` (the meter's own database)."""
    title = meter_system_title(feed.meter_id)
    server = DlmsServer(
        feed, system_title=title, keys=home_link_suite0_keys(home_link_key), max_pdu_size=max_pdu_size
    )
    owner = f"meter:{feed.meter_id}"
    server.counter = StoredInvocationCounter(conn, owner, title)
    server.replay = StoredReplayGuard(conn, owner, autosave=autosave)
    return server


def sml_server_id(meter_id: str) -> bytes:
    """The 10-byte SML server id (docs/sml.md): FLAG "MHB", serial from the meter id."""
    from ..protocols.sml import make_server_id

    serial = int.from_bytes(hashlib.sha256(meter_id.encode()).digest()[:4], "big") % 100_000_000
    return make_server_id("MHB", serial)


# ------------------------------------------------------------------- serving


def _sml_sources(feed: StoreFeed) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    from ..protocols.sml import build_meter_file, build_profile_file

    sid = sml_server_id(feed.meter_id)
    last_end, last_wh = feed.interval_rows[-1]
    power_w = last_wh * 60 // feed.interval_minutes  # mean power of the last interval
    # The last recorded day, as (Unix time of the interval end, Wh) rows.
    day_rows = [(int(t.timestamp()), wh) for t, wh in feed.interval_rows[-(24 * 60 // feed.interval_minutes) :]]
    meter_file = build_meter_file(sid, feed.energy_wh, power_w, act_time=int(last_end.timestamp()))
    profile_file = build_profile_file(sid, day_rows, period_seconds=60 * feed.interval_minutes)
    return (lambda: meter_file), (lambda: profile_file)


async def _serve(
    feed: StoreFeed,
    dlms: DlmsServer,
    host: str,
    dlms_port: int,
    sml_port: int | None,
    cadence: float,
    announce: Callable[[str], None],
    stop: asyncio.Event | None = None,
    home_link_key: bytes | None = None,
) -> None:
    from ..links.sml import sml_server_context
    from .dlms_server import DlmsTcpServer
    from .sml_push import SmlPushServer

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    caught: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        caught.append(sig.name)
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    tcp = DlmsTcpServer(dlms, host, dlms_port)
    sml: SmlPushServer | None = None
    try:
        await tcp.start()
        parts = [f"DLMS on {host}:{tcp.port}"]
        if sml_port is not None:
            if home_link_key is None:
                raise ServeError("the SML push needs the home-link key of the paired hub")
            meter_file, profile_file = _sml_sources(feed)
            sml = SmlPushServer(
                meter_file,
                server_id=sml_server_id(feed.meter_id),
                host=host,
                port=sml_port,
                cadence=cadence,
                profile_source=profile_file,
                ssl_context=sml_server_context(home_link_key),
            )
            await sml.start()
            parts.append(f"SML on {host}:{sml.port}")
        announce(f"meter {feed.meter_id}: " + ", ".join(parts) + f"; {feed.days} day(s), {feed.energy_wh} Wh")
        await stop.wait()
        LOG.info("meter %s: %s received, shutting down", feed.meter_id, caught[0] if caught else "stop")
    finally:
        if sml is not None:
            await sml.stop()
        await tcp.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
    LOG.info("meter %s: stopped", feed.meter_id)


def run_serve(
    data_dir: str | Path,
    meter_id: str,
    *,
    host: str = "127.0.0.1",
    dlms_port: int = 4059,
    sml_port: int | None = None,
    cadence: float = 1.0,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``meter_id``'s recorded days until SIGINT/SIGTERM (a clean stop: every
    connection is closed, the store is closed, the call returns). The SML push is
    served over TLS to the paired hub only (:mod:`meterhub.links.sml`). Raises
    :class:`ServeError`."""
    from .store import MeterStore

    if not (math.isfinite(cadence) and cadence > 0):
        raise ServeError("--sml-cadence must be a positive number of seconds")
    path = Path(data_dir) / "meter.sqlite"
    if not path.exists():
        raise ServeError(f"no meter store at {path}; pass --days to simulate some days")
    store = MeterStore(path)
    try:
        try:
            info = store.info(meter_id)
            feed = StoreFeed.from_store(store, meter_id, clock=lambda: datetime.now(ZoneInfo(info.tz)))
        except KeyError:
            raise ServeError(f"meter {meter_id} is not in {path}; pass --days to simulate some days") from None
        except FormatError as exc:
            raise ServeError(f"{path}: {exc}") from None
        if feed.days == 0:
            raise ServeError(f"meter {meter_id} has no recorded days; pass --days to simulate some")
        dlms = meter_dlms_server(feed, info.home_link_key, store.conn, autosave=True)
        try:
            asyncio.run(
                _serve(feed, dlms, host, dlms_port, sml_port, cadence, announce, home_link_key=info.home_link_key)
            )
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    finally:
        store.close()


# ------------------------------------------------------------------- reading


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) → ``(host, port)``
    (:func:`meterhub.protocols.endpoint.parse_endpoint`); raises :class:`ServeError`."""
    try:
        return _parse_endpoint(text)
    except EndpointError as exc:
        msg = str(exc)
        raise ServeError(msg if "HOST:PORT" in msg else f"{msg} (expected HOST:PORT)") from None


@dataclass
class PublicReading:
    """What ``meter read`` reads: the public client (SAP 16) gets the meter id and
    clock; the register (and profile) need the management association, so they are
    None without keys (docs/dlms.md, "What each association sees")."""

    meter_id: str
    clock: datetime
    energy_wh: int | None = None
    scaler: int | None = None
    unit: int | None = None
    profile: list[tuple[datetime, int]] = field(default_factory=list)


def reader_keys(path: str | Path) -> Suite0Keys:
    """Suite-0 keys for ``meter read --key-file``: the file holds the 16-byte home-link
    key in hex (``ID.homelink.key``, written by ``meter simulate``); raises :class:`ServeError`."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ServeError(f"{path}: not a home-link key file ({exc})") from None
    if len(key) != 16:
        raise ServeError(f"{path}: a home-link key is 16 bytes, not {len(key)}")
    return home_link_suite0_keys(key)


#: The system title ``meter read`` uses as a management client (3-letter id + 5 octets).
READER_SYSTEM_TITLE = b"MHCREAD1"
class PeerClosed(MeterhubError, ConnectionError):
    """The peer closed the connection in the middle of an answer."""


class DeadlineTcpIO:
    """A dlms-cosem ``IoImplementation`` (connect/send/recv over TCP) with one deadline
    for everything: each socket operation may use only what is left of it, and a peer
    that closes the connection ends the read at once (dlms-cosem's own
    ``BlockingTcpIO`` restarts its timeout on every ``recv`` and spins on end of file)."""

    def __init__(self, host: str, port: int, deadline: float) -> None:
        self.host, self.port, self.deadline = host, port, deadline
        self.sock: socket.socket | None = None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline reached")
        return left

    def connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self._left())

    def disconnect(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise PeerClosed("not connected")
        return self.sock

    def send(self, data: bytes) -> None:
        sock = self._socket()
        sock.settimeout(self._left())
        sock.sendall(data)

    def recv(self, amount: int = 1) -> bytes:
        sock = self._socket()
        data = bytearray()
        while len(data) < amount:
            sock.settimeout(self._left())
            chunk = sock.recv(amount - len(data))
            if not chunk:
                raise PeerClosed("connection closed by the peer")
            data += chunk
        return bytes(data)

    def recv_until(self, end: bytes) -> bytes:
        data = b""
        while not data.endswith(end):
            data += self.recv(1)
        return data


def _describe(exc: BaseException, host: str, port: int, timeout: float) -> str:
    """One line for a failed read; dlms-cosem may wrap socket errors in its own."""
    cause: BaseException | None = exc
    for _ in range(5):  # walk a short cause chain to the socket error
        if cause is None or isinstance(cause, OSError):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ConnectionRefusedError):
        return f"connection to {host}:{port} refused"
    if isinstance(cause, TimeoutError):
        return f"no answer from {host}:{port} within {timeout:g} s"
    if isinstance(cause, PeerClosed):
        return f"{host}:{port} closed the connection without a DLMS answer"
    if isinstance(cause, OSError):
        return f"cannot reach {host}:{port}: {cause.strerror or cause}"
    text = f"{host}:{port} did not answer as a DLMS meter ({type(exc).__name__}: {exc})"
    return text.splitlines()[0] if text.strip() else text


def read_public(
    host: str,
    port: int,
    *,
    profile: bool = False,
    timeout: float = 10.0,
    quiet: bool = False,
    keys: Suite0Keys | None = None,
) -> PublicReading:
    """Read the meter as dlms-cosem's ``DlmsClient`` (public client, wrapper over TCP).

    The public client reads the meter id, the clock and the invocation counter object.
    With ``keys`` a second association follows as the management client (SAP 1,
    HLS-GMAC, suite 0, system title :data:`READER_SYSTEM_TITLE`) starting one above
    that counter, as head-ends do, and reads the energy register and, with ``profile``,
    the load profile. Without keys, asking for the profile is a :class:`ServeError`.

    ``timeout`` is a total deadline for the whole read (connect, associate, every
    GET, release, both associations). Every failure (refused, deadline, a refused
    association, a bad answer, a peer that closes) raises :class:`ServeError` with one
    line. ``quiet`` turns dlms-cosem's frame logging (structlog, global) down to
    warnings, for the command line. The client runs in a worker thread joined with the
    same deadline (plus a short grace), so nothing inside dlms-cosem can hold the caller
    longer.
    """
    from dlms_cosem import cosem, utils
    from dlms_cosem import enumerations as E  # noqa: N812
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.exceptions import DlmsClientException
    from dlms_cosem.io import TcpTransport
    from dlms_cosem.security import HighLevelSecurityGmacAuthentication, NoSecurityAuthentication

    from ..protocols.dlms import axdr
    from ..protocols.dlms.server import MANAGEMENT_CLIENT, MANAGEMENT_LOGICAL_DEVICE, PUBLIC_CLIENT

    if profile and keys is None:
        raise ServeError("the load profile needs the management association: pass --key-file")

    if not (math.isfinite(timeout) and timeout > 0):
        raise ServeError("the timeout must be a positive number of seconds")
    deadline = time.monotonic() + timeout
    if quiet:
        # dlms-cosem logs every frame through structlog (to stdout by default).
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    attrs = {
        "id": cosem.CosemAttribute(E.CosemInterface.DATA, cosem.Obis(0, 0, 96, 1, 0), 2),
        "clock": cosem.CosemAttribute(E.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2),
        "counter": cosem.CosemAttribute(E.CosemInterface.DATA, cosem.Obis(0, 0, 43, 1, 0), 2),
    }
    managed = {
        "energy": cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2),
        "scaler": cosem.CosemAttribute(E.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 3),
        "profile": cosem.CosemAttribute(E.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2),
    }
    result: dict[str, object] = {}

    def work() -> None:
        try:
            client = DlmsClient(
                transport=TcpTransport(
                    PUBLIC_CLIENT, MANAGEMENT_LOGICAL_DEVICE, DeadlineTcpIO(host, port, deadline)
                ),
                authentication=NoSecurityAuthentication(),
            )
            with client.session() as s:
                raw = {k: s.get(a) for k, a in attrs.items()}
            mid = utils.parse_as_dlms_data(raw["id"])
            reading = PublicReading(
                meter_id=bytes(mid).decode("utf-8", "replace"),
                clock=axdr.decode_datetime(bytes(utils.parse_as_dlms_data(raw["clock"]))),
            )
            if keys is not None:
                manager = DlmsClient(
                    transport=TcpTransport(
                        MANAGEMENT_CLIENT,
                        MANAGEMENT_LOGICAL_DEVICE,
                        DeadlineTcpIO(host, port, deadline),
                    ),
                    authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
                    encryption_key=keys.encryption_key,
                    authentication_key=keys.authentication_key,
                    client_system_title=READER_SYSTEM_TITLE,
                    client_initial_invocation_counter=int(utils.parse_as_dlms_data(raw["counter"])) + 1,
                )
                manager.connect()
                try:
                    manager.associate()
                except DlmsClientException as exc:
                    # The glo-initiateRequest did not decipher: AARE rejected-permanent.
                    result["error"] = f"{host}:{port} refused the management association (wrong home-link key?): {exc}"
                    return
                finally:
                    if "error" in result:
                        manager.disconnect()
                raw = {k: manager.get(a) for k, a in managed.items() if k != "profile" or profile}
                manager.release_association()
                manager.disconnect()
                scaler, unit = utils.parse_as_dlms_data(raw["scaler"])
                rows = utils.parse_as_dlms_data(raw["profile"]) if profile else []
                reading.energy_wh = int(utils.parse_as_dlms_data(raw["energy"]))
                reading.scaler, reading.unit = int(scaler), int(unit)
                reading.profile = [(axdr.decode_datetime(bytes(t)), int(v)) for t, v in rows]
            result["reading"] = reading
        except Exception as exc:  # dlms-cosem raises many types on bad or refused answers
            result["error"] = _describe(exc, host, port, timeout)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    # Every socket operation stops at the deadline; the grace covers decoding.
    thread.join(max(0.0, deadline - time.monotonic()) + 2.0)
    if thread.is_alive():
        raise ServeError(f"reading {host}:{port} did not finish in time")
    if "error" in result:
        raise ServeError(str(result["error"]))
    reading = result["reading"]
    assert isinstance(reading, PublicReading)
    return reading
