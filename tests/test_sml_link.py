"""The SML push only to the paired hub (issue 11) and its hostile clients (issue 9):
mutually authenticated TLS with identities derived from the home-link key, caps
where the oldest client gives way, handshake deadlines, slow readers dropped, and a
clean SIGTERM/SIGINT of ``meter serve`` with clients connected. Loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from smllib import SmlStreamReader

from meterhub.cli import main
from meterhub.links.sml import (
    open_sml_link,
    sml_client_context,
    sml_server_context,
    sml_tls_identity,
)
from meterhub.meter.sml_push import SmlPushServer
from meterhub.protocols.sml import (
    SmlStreamDecoder,
    build_meter_file,
    extract_values,
    make_server_id,
)

SID = make_server_id("MHB", 4711)
KEY = bytes(range(16))
LOGGER = "meterhub.meter.sml_push"


def _file() -> bytes:
    return build_meter_file(SID, 12345, 230)


def _run(coro, timeout: float):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def _files(reader: asyncio.StreamReader, n: int) -> list:
    dec = SmlStreamDecoder()
    files: list = []
    while len(files) < n:
        chunk = await reader.read(4096)
        assert chunk, "server closed early"
        files += dec.feed(chunk)
    return files


async def _eof(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything until the server closes (a reset counts as closed)."""
    data = b""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := await asyncio.wait_for(reader.read(4096), timeout):
            data += chunk
    return data


# ------------------------------------------------------------------ pairing


def test_identities_are_deterministic_and_distinct_per_role_and_key():
    assert sml_tls_identity(KEY, "meter") == sml_tls_identity(KEY, "meter")
    assert sml_tls_identity(KEY, "meter")[1] != sml_tls_identity(KEY, "hub")[1]
    assert sml_tls_identity(KEY, "hub")[1] != sml_tls_identity(bytes(16), "hub")[1]
    with pytest.raises(ValueError):
        sml_tls_identity(b"short", "hub")
    with pytest.raises(ValueError):
        sml_tls_identity(KEY, "utility")


@pytest.mark.interop
def test_paired_hub_reads_neighbours_get_nothing(caplog):
    """The paired hub gets the push over TLS 1.3 (smllib parses it); a neighbour on
    plain TCP, with TLS but no certificate, or with another home-link key gets no
    SML byte, and each refusal is logged as one WARNING line."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> None:
        server = SmlPushServer(_file, server_id=SID, cadence=0.05, ssl_context=sml_server_context(KEY),
                               handshake_timeout=1.0)
        async with server:
            port = server.port
            # the paired hub
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=sml_client_context(KEY),
                                                 server_hostname="")
            assert w.get_extra_info("ssl_object").version() == "TLSv1.3"
            files = await _files(r, 2)
            assert extract_values(files[0].messages)["1-0:1.8.0*255"][0] == 12345
            reader = SmlStreamReader()
            reader.add(files[0].raw)
            frame = reader.get_frame()
            assert frame is not None
            assert {e.obis.obis_code: e.get_value() for e in frame.get_obis()}["1-0:1.8.0*255"] == 12345
            w.close()
            # a neighbour speaking plain TCP (an SML request): nothing, closed
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"\x1b\x1b\x1b\x1b\x01\x01\x01\x01")
            data = await _eof(r, 5)
            assert b"\x1b\x1b\x1b\x1b" not in data
            w.close()
            # a neighbour that connects and says nothing: closed at the handshake deadline
            r, w = await asyncio.open_connection("127.0.0.1", port)
            assert await _eof(r, 5) == b""
            w.close()
            # TLS without a client certificate
            anon = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            anon.check_hostname, anon.verify_mode = False, ssl.CERT_NONE
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=anon, server_hostname="")
            assert await _eof(r, 5) == b""
            w.close()
            # another meter's hub: its certificate is not the paired one (and it rejects ours)
            with pytest.raises(ssl.SSLError):
                await asyncio.open_connection("127.0.0.1", port, ssl=sml_client_context(bytes(16)),
                                              server_hostname="")
            await asyncio.sleep(0.2)
            assert server.client_count == 0

    _run(body(), 30)
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert sum("TLS authentication failed, not the paired hub" in r.getMessage() for r in refusals) >= 2
    assert any("no TLS handshake within 1 s" in r.getMessage() for r in refusals)
    assert all(r.levelno == logging.WARNING and "\n" not in r.getMessage() for r in refusals)
    assert sum("connected as the paired hub" in r.getMessage() for r in caplog.records) == 1


def test_pending_handshakes_do_not_keep_the_hub_out(caplog):
    """40 neighbours that open a connection and never say hello: the hub still
    connects at once (the oldest pending handshake gives way)."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> float:
        server = SmlPushServer(_file, server_id=SID, cadence=0.05, ssl_context=sml_server_context(KEY),
                               handshake_timeout=30.0, max_handshakes=8)
        async with server:
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(40)]
            await asyncio.sleep(0.3)
            t0 = time.monotonic()
            r, w = await asyncio.open_connection("127.0.0.1", server.port, ssl=sml_client_context(KEY),
                                                 server_hostname="")
            await _files(r, 1)
            took = time.monotonic() - t0
            for _, iw in [*idle, (r, w)]:
                iw.close()
            return took

    assert _run(body(), 30) < 2.0
    assert "handshake dropped, place given to a new connection" in caplog.text


# ------------------------------------------------------------- slow readers


def _tiny_rcvbuf_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    return s


def test_clients_that_never_read_cannot_hold_every_slot(caplog):
    """16 clients that connect and never read fill every slot; a 17th that reads is
    still served (today: refused), and the slot comes from the oldest."""
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def body() -> None:
        # one address may hold every slot here, as 16 peers with 1 each would
        async with SmlPushServer(_file, server_id=SID, cadence=0.05, max_per_peer=16) as server:
            assert server.max_clients == 16
            silent = []
            for _ in range(16):
                s = _tiny_rcvbuf_socket()
                s.connect(("127.0.0.1", server.port))
                silent.append(s)
            await asyncio.sleep(0.3)
            assert server.client_count == 16
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            files = await asyncio.wait_for(_files(r, 3), 5)
            assert len(files) >= 3
            w.close()
            for s in silent:
                s.close()

    _run(body(), 30)
    assert "dropped, oldest client" in caplog.text


def test_a_client_that_stops_reading_is_dropped(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    big = build_meter_file(SID, 1, 1) * 20  # a few kB per push, as a profile file would be

    async def body() -> float:
        async with SmlPushServer(lambda: big, server_id=SID, cadence=0.005, write_timeout=0.5,
                                 write_buffer=4096) as server:
            s = _tiny_rcvbuf_socket()
            s.connect(("127.0.0.1", server.port))
            t0 = time.monotonic()
            while server.client_count or time.monotonic() - t0 < 0.2:
                assert time.monotonic() - t0 < 20, "slow reader never dropped"
                await asyncio.sleep(0.05)
            s.close()
            return time.monotonic() - t0

    _run(body(), 30)
    dropped = [r for r in caplog.records if "dropped: slow reader" in r.getMessage()]
    assert dropped and all(r.levelno == logging.WARNING for r in dropped)


# ------------------------------------------------------------ clean shutdown


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def meter_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("serve")
    assert main(["meter", "simulate", "--meter-id", "s1", "--days", "1", "--out", str(data)]) == 0
    return data


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_clients_connected_is_a_clean_exit(meter_dir, tmp_path, sig):
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterhub.cli", "meter", "serve", "--dlms", "0", "--sml", "0",
             "--sml-cadence", "0.05", "--meter-id", "s1", "--data-dir", str(meter_dir)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"DLMS on 127\.0\.0\.1:(\d+), SML on 127\.0\.0\.1:(\d+)", line)
        assert m, line
        dlms_port, sml_port = int(m.group(1)), int(m.group(2))
        key = bytes.fromhex((meter_dir / "s1.homelink.key").read_text().strip())
        with contextlib.ExitStack() as stack:
            dlms = stack.enter_context(socket.create_connection(("127.0.0.1", dlms_port), timeout=5))
            dlms.sendall(b"\x00\x01\x00\x10")  # half a wrapper header
            hub = stack.enter_context(open_sml_link("127.0.0.1", sml_port, key, timeout=5))
            assert hub.recv(4096)  # the push is flowing
            stack.enter_context(socket.create_connection(("127.0.0.1", sml_port), timeout=5))  # mid-handshake
            time.sleep(0.3)
            proc.send_signal(sig)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail("no clean stop within 20 s:\n" + log_path.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert rc == 0, text
    assert "Traceback" not in text and "Exception" not in text, text
    assert f"{sig.name} received, shutting down" in text
    assert "meter s1: stopped" in text
    assert re.search(r"SML 127\.0\.0\.1:\d+ closed: server shutting down", text), text
    assert re.search(r"DLMS 127\.0\.0\.1:\d+ closed: server shutting down", text), text
    for ln in text.splitlines():  # one event per line: time, level, source, message
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+: ", ln), ln


def test_log_level_option(meter_dir, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["meter", "serve", "--meter-id", "s1", "--data-dir", str(meter_dir), "--log-level", "loud"])
    assert exc.value.code == 2
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meterhub.cli", "meter", "serve", "--dlms", "0", "--meter-id", "s1",
             "--data-dir", str(meter_dir), "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
        )
    try:
        assert proc.stdout is not None
        port = int(re.search(r"DLMS on 127\.0\.0\.1:(\d+)", proc.stdout.readline()).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"\x00\x09\x00\x10\x00\x01\x00\x01\x00")  # wrapper version 9: refused
            s.recv(10)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert "WARNING meterhub.meter.dlms_server: DLMS 127.0.0.1:" in text and "bad frame" in text, text
    assert " INFO " not in text, text


def test_identity_loads_without_memfd(monkeypatch):
    """Where there is no anonymous memory file, the key goes through a private
    temporary directory, which is gone afterwards."""
    import tempfile

    import meterhub.links.sml as link

    monkeypatch.delattr(link.os, "memfd_create", raising=False)
    made: list[str] = []
    real = tempfile.TemporaryDirectory

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            made.append(self.name)

    monkeypatch.setattr(link.tempfile, "TemporaryDirectory", Recording)
    ctx = link.sml_server_context(KEY)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and made and not Path(made[0]).exists()


def test_an_internal_error_in_one_connection_is_logged_and_ends_only_it(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    from meterhub.protocols.sml import (
        CloseRequest,
        GetListRequest,
        OpenRequest,
        SmlMessage,
        encode_file,
    )

    calls = [0]

    def source() -> bytes:
        calls[0] += 1
        if calls[0] > 1:  # the GetList answer path calls the source again: fails
            raise KeyError("broken store")
        return _file()

    request = encode_file([SmlMessage(b"q1", OpenRequest(b"c", b"f")), SmlMessage(b"q2", GetListRequest(b"c")),
                           SmlMessage(b"q3", CloseRequest())])

    async def body() -> None:
        async with SmlPushServer(source, server_id=SID, cadence=30) as server:
            r, w = await asyncio.open_connection("127.0.0.1", server.port)
            await _files(r, 1)
            w.write(request)
            await _eof(r, 5)
            w.close()
            calls[0] = 0
            r, w = await asyncio.open_connection("127.0.0.1", server.port)  # the server still serves
            await _files(r, 1)
            w.close()

    _run(body(), 20)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "internal error (KeyError" in errors[0].getMessage()
