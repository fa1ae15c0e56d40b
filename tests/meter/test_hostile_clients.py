"""Hostile clients and servers (issue 9): slow and idle peers against the meter's DLMS
server, ``meter read`` against peers that are no meter, and CLI input that must be
refused before anything is allocated or written. Loopback only, ephemeral ports,
every test bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.meter.admission import Admission
from meterhub.meter.device import Meter
from meterhub.meter.dlms_server import DlmsTcpServer, MeterFeed
from meterhub.meter.serve import ServeError, read_public
from meterhub.protocols.dlms.security import Suite0Keys
from meterhub.protocols.dlms.server import DlmsServer

NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
LOGGER = "meterhub.meter.dlms_server"
# The first bytes of a wrapper frame (version 1, client 16 -> server 1, 64 bytes)
# as a slow client would send them, one at a time.
SLOW_FRAME = b"\x00\x01\x00\x10\x00\x01\x00\x40" + b"\x60" * 64


def _feed() -> MeterFeed:
    feed = MeterFeed(Meter("mtr-hostile", ecdsa.generate_signing_key()), clock=lambda: NOW)
    feed.record_day(date(2026, 3, 1), [(k * 37) % 400 for k in range(96)])
    return feed


def _run(coro, timeout: float):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# ------------------------------------------------------------- DLMS server


async def _slow_client(port: int, stop: asyncio.Event, period: float, stats: dict[str, int]) -> None:
    """Connect, send one byte of a frame every ``period`` seconds; reconnect when dropped."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(period)
            continue
        stats["connects"] += 1
        try:
            for i in range(len(SLOW_FRAME)):
                if stop.is_set():
                    break
                writer.write(SLOW_FRAME[i : i + 1])
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), period) == b"":
                        break  # dropped by the server
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        stats["dropped"] += 1
        await asyncio.sleep(period)


def test_200_slow_connections_do_not_keep_meter_read_out(caplog):
    """200 connections trickling one byte every 2 s (and reconnecting when dropped)
    from the same address as the real reader: ``meter read`` still succeeds, more
    than once, while they keep trying."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    feed = _feed()

    async def body() -> list[float]:
        # The real reader reads the register, so it needs the management association
        # (the public client gets id and clock only; docs/dlms.md).
        keys = Suite0Keys.generate()
        server = DlmsTcpServer(DlmsServer(feed, max_pdu_size=512, keys=keys), "127.0.0.1", 0)
        await server.start()
        stop = asyncio.Event()
        stats = {"connects": 0, "dropped": 0}
        slow = [asyncio.create_task(_slow_client(server.port, stop, 2.0, stats)) for _ in range(200)]
        try:
            await asyncio.sleep(3.0)  # every waiting place is held by a slow client by now
            assert server.admission.waiting == 64 and server.admission.members == 0
            took = []
            for _ in range(3):
                t0 = time.monotonic()
                r = await asyncio.to_thread(read_public, "127.0.0.1", server.port, timeout=5.0, quiet=True, keys=keys)
                took.append(time.monotonic() - t0)
                assert r.meter_id == "mtr-hostile" and r.energy_wh == feed.energy_wh
                await asyncio.sleep(1.0)
            assert stats["connects"] > 200  # they kept coming back
            return took
        finally:
            stop.set()
            await server.close()
            await asyncio.gather(*slow, return_exceptions=True)

    took = _run(body(), 60)
    assert max(took) < 5.0
    text = caplog.text
    assert "dropped, no complete frame in" in text
    for rec in caplog.records:
        assert "\n" not in rec.getMessage()
        assert rec.levelno in (logging.INFO, logging.WARNING)


@pytest.mark.parametrize("framing", ["wrapper", "hdlc"])
def test_frame_deadline_does_not_restart_on_every_byte(caplog, framing):
    """One byte every 0.3 s keeps an idle timeout of 30 s alive forever; the frame
    deadline (1 s from the first byte) ends the connection anyway. (For HDLC the
    bytes are a frame start with a long length field.)"""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> float:
        server = DlmsTcpServer(DlmsServer(_feed()), "127.0.0.1", 0, idle_timeout=30, frame_timeout=1.0,
                               framing=framing)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            t0 = time.monotonic()
            try:
                frame = SLOW_FRAME if framing == "wrapper" else b"\x7e\xa7\xff" + b"\x00" * 64
                for i in range(len(frame)):
                    writer.write(frame[i : i + 1])
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                            break
            except ConnectionError:
                pass
            writer.close()
            return time.monotonic() - t0

    elapsed = _run(body(), 20)
    assert elapsed < 3.0
    assert "refused: frame not complete within 1 s" in caplog.text
    assert any(r.levelno == logging.WARNING and "frame not complete" in r.getMessage() for r in caplog.records)


def _aarq_frame() -> bytes:
    """A public-client AARQ in a wrapper frame, as dlms-cosem sends it."""
    from dlms_cosem.protocol.acse import ApplicationAssociationRequest, UserInformation
    from dlms_cosem.protocol.xdlms import Conformance, InitiateRequest

    aarq = ApplicationAssociationRequest(
        user_information=UserInformation(
            InitiateRequest(
                proposed_conformance=Conformance(get=True, block_transfer_with_get_or_read=True),
                client_max_receive_pdu_size=1024,
            )
        ),
    )
    apdu = aarq.to_bytes()
    return b"\x00\x01\x00\x10\x00\x01" + len(apdu).to_bytes(2, "big") + apdu


async def _eof(reader: asyncio.StreamReader, timeout: float) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await asyncio.wait_for(reader.read(4096), timeout):
            data += chunk
    return data


def test_busy_members_are_kept_and_the_newcomer_refused(caplog):
    """Two associated clients that keep sending requests hold the two member slots; a
    third that completes a request is refused, not given a busy client's slot."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> bytes:
        server = DlmsTcpServer(DlmsServer(_feed()), "127.0.0.1", 0, max_connections=2, evict_after=60)
        async with server:
            held = []
            for _ in range(2):
                r, w = await asyncio.open_connection("127.0.0.1", server.port)
                w.write(_aarq_frame())
                assert (await asyncio.wait_for(r.read(4096), 5))[8] == 0x61  # AARE
                held.append((r, w))
            assert server.admission.members == 2
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_aarq_frame())
            data = await _eof(reader, 5)
            assert server.admission.members == 2
            for _, w in [*held, (reader, writer)]:
                w.close()
            return data

    assert _run(body(), 20) == b""
    assert "refused: 2 busy connections in total" in caplog.text
    connected = [r for r in caplog.records if r.getMessage().endswith("open)")]
    assert len(connected) == 3 and all(r.levelno == logging.INFO for r in connected)


def test_an_idle_member_gives_way_to_a_client_with_a_request(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> None:
        server = DlmsTcpServer(DlmsServer(_feed()), "127.0.0.1", 0, max_connections=1, evict_after=0.2)
        async with server:
            r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
            w1.write(_aarq_frame())
            await asyncio.wait_for(r1.read(4096), 5)
            await asyncio.sleep(0.4)  # idle past evict_after
            r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
            w2.write(_aarq_frame())
            assert (await asyncio.wait_for(r2.read(4096), 5))[8] == 0x61
            assert await _eof(r1, 5) == b""  # the idle one was dropped
            for w in (w1, w2):
                w.close()

    _run(body(), 20)
    assert "dropped, idle for" in caplog.text and "closed: evicted for a new connection" in caplog.text


def test_admission_tiers():
    now = [0.0]
    adm = Admission(2, 2, max_waiting=2, evict_after=1.0, clock=lambda: now[0])
    aborted: list[str] = []

    def conn(name: str, peer: str = "p"):
        return adm.admit(peer, lambda: aborted.append(name))

    a, _ = conn("a")
    b, _ = conn("b")
    c, ev = conn("c")  # the waiting tier is full: the oldest waiting (a) gives way
    assert ev == [a] and aborted == ["a"] and adm.waiting == 2 and adm.members == 0
    assert adm.progress(b)[0] and adm.progress(c)[0] and adm.members == 2
    now[0] = 0.5
    d, _ = conn("d")
    ok, ev, why = adm.progress(d)  # both members progressed within 1 s: refused
    assert not ok and ev == [] and "2 busy connections from this peer" in why
    now[0] = 2.0
    adm.progress(c)  # c completed a request just now; b has been idle 2 s
    ok, ev, _ = adm.progress(d)
    assert ok and ev == [b] and aborted == ["a", "b"] and adm.members == 2 and adm.waiting == 0
    adm.release(b)  # idempotent after eviction
    e, _ = conn("e", peer="q")  # another peer: only the total cap applies
    now[0] = 3.5
    ok, ev, _ = adm.progress(e)
    assert ok and ev == [c] and adm.members_from("q") == 1
    assert len(adm) == 2


def test_a_flood_from_one_address_pushes_out_its_own_waiting_connections_first():
    adm = Admission(4, 4, max_waiting=4, clock=lambda: 0.0)
    legit, _ = adm.admit("hub", lambda: None)
    flood = [adm.admit("neighbour", lambda: None) for _ in range(50)]
    assert not legit.evicted and all(ev == [] or ev[0].peer == "neighbour" for _, ev in flood)
    assert adm.progress(legit)[0]


# ---------------------------------------------------------------- meter read


@contextlib.contextmanager
def _http_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def test_meter_read_of_an_http_server_is_quick_and_cheap(capsys):
    with _http_server() as port:
        t0, c0 = time.monotonic(), time.process_time()
        rc = main(["meter", "read", "--dlms", f"127.0.0.1:{port}", "--timeout", "3"])
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("meterhub: error:") and len(err.strip().splitlines()) == 1, err
    assert wall < 4.0 and cpu < 1.5, (wall, cpu)


@contextlib.contextmanager
def _trickling_peer(byte: bytes = b"\x00", period: float = 0.2) -> Iterator[int]:
    """A peer that answers anything with one byte every ``period`` seconds, forever."""
    stop = threading.Event()
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        srv.settimeout(0.2)
        conns = []
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conns.append(srv.accept()[0])
            for c in conns:
                with contextlib.suppress(OSError):
                    c.send(byte)
            stop.wait(period)
        for c in conns:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        srv.close()


def test_meter_read_timeout_is_a_total_deadline():
    """A peer that keeps sending a byte now and then never triggers a per-read timeout;
    the total deadline still ends the read."""
    with _trickling_peer(period=0.5) as port:  # a wrapper header takes 4 s to arrive
        t0 = time.monotonic()
        with pytest.raises(ServeError, match="within 2 s"):
            read_public("127.0.0.1", port, timeout=2.0, quiet=True)
        assert time.monotonic() - t0 < 3.0


def test_meter_read_of_a_garbage_peer_is_one_line(capsys):
    with _trickling_peer(b"\xff" * 512, period=0.05) as port:
        t0 = time.monotonic()
        rc = main(["meter", "read", "--dlms", f"127.0.0.1:{port}", "--timeout", "2"])
        assert time.monotonic() - t0 < 3.0
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------- CLI input


@pytest.mark.parametrize(
    "argv",
    [
        ["meter", "serve", "--meter-id", "m", "--sml-cadence", "nan"],
        ["meter", "serve", "--meter-id", "m", "--sml-cadence", "inf"],
        ["meter", "serve", "--meter-id", "m", "--annual-kwh", "nan"],
        ["meter", "simulate", "--meter-id", "m", "--out", "x", "--annual-kwh", "inf"],
        ["meter", "simulate", "--meter-id", "m", "--out", "x", "--annual-kwh=-inf"],
        ["meter", "read", "--dlms", "127.0.0.1:1", "--timeout", "nan"],
        ["meter", "read", "--dlms", "127.0.0.1:1", "--timeout", "infinity"],
        ["demo", "--business-share", "nan"],
        ["demo", "--business-share", "NaN"],
    ],
)
def test_non_finite_float_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not a finite number" in err and len(err.strip().splitlines()) == 1, err


def test_every_float_option_is_checked_for_finiteness():
    """No option in the parser is a bare ``float``: each goes through the checked type."""
    from meterhub.cli import build_parser

    def actions(parser):
        for a in parser._actions:
            yield a
            if hasattr(a, "choices") and isinstance(a.choices, dict):
                for sub in a.choices.values():
                    yield from actions(sub)

    assert not [a.option_strings for a in actions(build_parser()) if a.type is float]


@pytest.mark.parametrize("mid", ["../../evil", "/etc/passwd", "a/b", "..", ".hidden", "a\nb", "x" * 65, ""])
def test_path_like_meter_ids_are_refused(mid, tmp_path, capsys):
    out = tmp_path / "a" / "b"
    with pytest.raises(SystemExit) as exc:
        main(["meter", "simulate", "--meter-id", mid, "--days", "1", "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not a meter id" in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize(
    ("argv", "bound"),
    [
        (["demo", "--households", "1001"], "[1, 1000]"),
        (["demo", "--households", "100000000"], "[1, 1000]"),
        (["demo", "--days", "367"], "[1, 366]"),
        (["meter", "simulate", "--meter-id", "m", "--out", "x", "--days", "3661"], "[1, 3660]"),
        (["meter", "serve", "--meter-id", "m", "--days", "100000"], "[1, 3660]"),
    ],
)
def test_size_options_have_upper_bounds(argv, bound, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and time.monotonic() - t0 < 2.0
    err = capsys.readouterr().err
    assert bound in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_readings_are_bounded_before_simulating(tmp_path, capsys):
    """3660 days at 1-minute intervals would be 5.3 million readings (about 600 MB
    before any output): refused at once, nothing written."""
    t0 = time.monotonic()
    rc = main(["meter", "simulate", "--meter-id", "m", "--days", "3660", "--interval", "1", "--out", str(tmp_path / "o")])
    assert rc == 2 and time.monotonic() - t0 < 2.0
    err = capsys.readouterr().err
    assert "5270400 readings; at most 400000" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_bounds_are_in_the_help(capsys):
    for argv, needle in ((["demo", "--help"], "at most 1000"), (["demo", "--help"], "at most 366"),
                         (["meter", "simulate", "--help"], "at most 3660")):
        with pytest.raises(SystemExit):
            main(argv)
        assert needle in capsys.readouterr().out


# ------------------------------------------------------- admission properties

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("admit"), st.sampled_from("abc")),
        st.tuples(st.just("progress"), st.integers(0, 40)),
        st.tuples(st.just("release"), st.integers(0, 40)),
        st.tuples(st.just("tick"), st.floats(0, 3, allow_nan=False)),
    ),
    max_size=80,
)


@given(ops=_OPS, max_members=st.integers(1, 4), per_peer=st.integers(1, 4), max_waiting=st.integers(1, 4),
       evict_after=st.sampled_from([0.0, 0.5, 2.0]))
def test_admission_invariants(ops, max_members, per_peer, max_waiting, evict_after):
    """For any sequence of connects, requests, closes and time: caps hold, every
    eviction aborts exactly once, only a waiting connection that made progress
    evicts a member, and only a member idle for ``evict_after``, the most idle one."""
    now = [0.0]
    adm = Admission(max_members, per_peer, max_waiting=max_waiting, evict_after=evict_after, clock=lambda: now[0])
    slots: list = []
    aborts: dict[int, int] = {}
    for op, arg in ops:
        if op == "admit":
            i = len(slots)
            aborts[i] = 0
            slot, evicted = adm.admit(arg, lambda i=i: aborts.__setitem__(i, aborts[i] + 1))
            slots.append(slot)
            assert all(not v.member for v in evicted) and len(evicted) <= 1
        elif op == "progress" and slots:
            slot = slots[arg % len(slots)]
            if slot.evicted or not (slot in adm._members or slot in adm._waiting):
                continue
            was_member = slot.member
            idle = {id(m): m.stalled(now[0]) for m in adm._members}
            ok, evicted, why = adm.progress(slot)
            if was_member:
                assert ok and not evicted
            for v in evicted:
                assert idle[id(v)] >= evict_after
                # no member of the same peer left behind was idle longer
                assert all(idle.get(id(m), 0.0) <= idle[id(v)] for m in adm._members if m.peer == v.peer)
            if not ok:
                assert why and not slot.member
        elif op == "release" and slots:
            adm.release(slots[arg % len(slots)])
        elif op == "tick":
            now[0] += arg
        assert adm.members <= max_members and adm.waiting <= max_waiting
        assert all(adm.members_from(p) <= per_peer for p in "abc")
        for i, s in enumerate(slots):
            assert aborts[i] == (1 if s.evicted else 0)
            if s.evicted:
                assert s not in adm._members and s not in adm._waiting


def test_hub_link_transport_deadline_covers_the_whole_answer():
    """The hub's wrapper transport gives each request one deadline: a meter (or
    impostor) trickling bytes cannot hold the hub."""
    from meterhub.protocols.dlms.client import DlmsLinkError
    from meterhub.protocols.dlms.tcp import wrapper_transport

    with _trickling_peer(b"\x00", period=0.1) as port:
        send, close = wrapper_transport("127.0.0.1", port, 1, timeout=1.0)
        try:
            t0 = time.monotonic()
            with pytest.raises(DlmsLinkError, match="within 1 s"):
                send(b"\x60\x00")
            assert time.monotonic() - t0 < 2.0
        finally:
            close()


def test_a_client_that_does_not_read_its_answers_is_dropped(caplog):
    """Requests keep coming, answers are never read: the write deadline drops it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    get_clock = bytes.fromhex("c001c1" "0008" "0000010000ff" "02" "00")  # GET.request-normal, clock attr 2
    frame = b"\x00\x01\x00\x10\x00\x01" + len(get_clock).to_bytes(2, "big") + get_clock

    def flood(port: int) -> str:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(_aarq_frame())
            t0 = time.monotonic()
            while time.monotonic() - t0 < 15:
                s.sendall(frame * 200)
        except (ConnectionError, TimeoutError) as exc:
            return type(exc).__name__
        finally:
            s.close()
        return "never dropped"

    async def body() -> str:
        server = DlmsTcpServer(DlmsServer(_feed()), "127.0.0.1", 0, write_timeout=0.5)
        async with server:
            return await asyncio.to_thread(flood, server.port)

    # Up to three floods: once in four clean-clone CI runs the flooding client gave up
    # (its own 5 s send timeout) before the server logged its deadline, and the server
    # saw the client's reset instead (not reproduced in 15 runs since). Without the write
    # deadline every attempt ends that way, so the test still fails then.
    logs = []
    for _attempt in range(3):
        caplog.clear()
        outcome = _run(body(), 40)
        assert outcome != "never dropped"
        logs.append(caplog.text)
        if any(r.levelno == logging.WARNING and "refused: answer not read within 0.5 s" in r.getMessage()
               for r in caplog.records):
            break
    else:
        raise AssertionError("no write deadline in three floods:\n" + "\n---\n".join(logs))


@pytest.mark.interop
def test_refused_associations_are_logged(caplog):
    """A management client with the wrong keys: the AARE refuses it, and the server
    logs one WARNING line with the ACSE diagnostic."""
    from dlms_cosem.client import DlmsClient
    from dlms_cosem.exceptions import DlmsClientException
    from dlms_cosem.io import BlockingTcpIO, TcpTransport
    from dlms_cosem.security import HighLevelSecurityGmacAuthentication

    from meterhub.protocols.dlms.security import Suite0Keys

    caplog.set_level(logging.INFO, logger=LOGGER)
    wrong = Suite0Keys.generate()

    def associate(port: int) -> None:
        client = DlmsClient(
            transport=TcpTransport(1, 1, BlockingTcpIO("127.0.0.1", port, timeout=5)),
            authentication=HighLevelSecurityGmacAuthentication(challenge_length=32),
            encryption_key=wrong.encryption_key,
            authentication_key=wrong.authentication_key,
            client_system_title=b"EVILHUB1",
        )
        client.connect()
        try:
            with pytest.raises(DlmsClientException):
                client.associate()
        finally:
            client.disconnect()

    async def body() -> None:
        async with DlmsTcpServer(DlmsServer(_feed(), keys=Suite0Keys.generate()), "127.0.0.1", 0) as server:
            await asyncio.to_thread(associate, server.port)
            await asyncio.sleep(0.1)

    _run(body(), 20)
    refused = [r for r in caplog.records if "refused: association of client SAP 1 rejected" in r.getMessage()]
    assert len(refused) == 1 and refused[0].levelno == logging.WARNING, caplog.text


def test_aare_refusal_reads_result_and_diagnostic():
    from meterhub.meter.dlms_server import aare_refusal

    # AARE: application-context-name, result rejected-permanent (1), diagnostic
    # acse-service-user authentication-failure (13)
    aare = bytes.fromhex("611aa109060760857405080101a203020101a305a10302010d" "be00")
    aare = aare[:1] + bytes([len(aare) - 2]) + aare[2:]
    assert aare_refusal(aare) == "rejected-permanent (service-user authentication-failure)"
    accepted = bytes.fromhex("6110a109060760857405080101a203020100")
    assert aare_refusal(accepted) is None
    assert aare_refusal(b"\xc4\x01\xc1\x00") is None and aare_refusal(b"\x61") is None
