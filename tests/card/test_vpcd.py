"""The vsmartcard vpcd wire protocol and transport loops (meterhub.card.vpcd).

Framing follows vsmartcard ``vpcd.c``/``vicc.py``: a 2-byte big-endian length, then the
payload; one-byte payloads are control commands (00 off, 01 on, 02 reset, 04 get ATR).
The loops are tested against a tiny fake vpcd listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.card import Card
from meterhub.card.vpcd import (
    MAX_PAYLOAD,
    VPCD_CTRL_ATR,
    VPCD_CTRL_OFF,
    VPCD_CTRL_ON,
    VPCD_CTRL_RESET,
    Backoff,
    FrameDecoder,
    VpcdClient,
    VpcdError,
    encode_frame,
    handle_message,
    iter_frames,
    parse_endpoint,
    serve_async,
)

payloads = st.binary(max_size=600)


# --- framing -----------------------------------------------------------------------------


@given(st.lists(payloads, max_size=8), st.lists(st.integers(1, 700), max_size=20))
def test_frames_roundtrip_under_any_chunking(msgs: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(m) for m in msgs)
    dec = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    for c in cuts:
        out += dec.feed(wire[pos : pos + c])
        pos += c
    out += dec.feed(wire[pos:])
    assert out == msgs
    assert dec.pending == 0


@given(payloads)
def test_frame_is_length_then_payload(p: bytes) -> None:
    f = encode_frame(p)
    assert f[:2] == len(p).to_bytes(2, "big") and f[2:] == p
    assert list(iter_frames(f)) == [p]


@given(payloads, st.integers(1, 600))
def test_partial_frame_is_held_not_returned(p: bytes, cut: int) -> None:
    f = encode_frame(p)
    cut = min(cut, len(f) - 1)
    dec = FrameDecoder()
    assert dec.feed(f[:cut]) == []
    assert dec.pending == cut
    with pytest.raises(VpcdError):
        list(iter_frames(f[:cut]))


def test_largest_payload_and_one_more() -> None:
    big = bytes(MAX_PAYLOAD)
    assert FrameDecoder().feed(encode_frame(big)) == [big]
    with pytest.raises(VpcdError):
        encode_frame(bytes(MAX_PAYLOAD + 1))


def test_endpoints() -> None:
    assert parse_endpoint("127.0.0.1:35963") == ("127.0.0.1", 35963)
    assert parse_endpoint("localhost") == ("localhost", 35963)
    assert parse_endpoint(":35964") == ("127.0.0.1", 35964)
    assert parse_endpoint("[::1]:4000") == ("::1", 4000)
    for bad in ("h:x", "h:0", "h:70000", "[::1"):
        with pytest.raises(VpcdError):
            parse_endpoint(bad)


# --- messages against the real card OS -------------------------------------------------


def test_control_messages_drive_the_card() -> None:
    card = Card(None)
    assert handle_message(card, bytes([VPCD_CTRL_ON])) is None
    assert card.powered
    assert handle_message(card, bytes([VPCD_CTRL_ATR])) == card.atr
    assert handle_message(card, bytes.fromhex("00A4040005A000000001")) == b"\x6a\x82"
    assert handle_message(card, bytes([VPCD_CTRL_RESET])) is None
    assert card.powered
    assert handle_message(card, bytes([VPCD_CTRL_OFF])) is None
    assert not card.powered
    assert handle_message(card, bytes.fromhex("00A4040005A000000001")) == b"\x6f\x00"
    assert handle_message(card, b"\x07") is None  # unknown control byte: ignored
    assert handle_message(card, b"") is None


@given(st.binary(min_size=2, max_size=300))
def test_any_apdu_bytes_get_a_status_word(raw: bytes) -> None:
    card = Card(None)
    card.power_on()
    answer = handle_message(card, raw)
    assert answer is not None and len(answer) >= 2


# --- a fake vpcd -----------------------------------------------------------------------


class FakeVpcd:
    """The reader side of vpcd: listens, and lets the test drive each connection."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(10)
        self.port = self.srv.getsockname()[1]

    def accept(self) -> socket.socket:
        conn, _ = self.srv.accept()
        conn.settimeout(10)
        return conn

    @staticmethod
    def send(conn: socket.socket, payload: bytes) -> None:
        conn.sendall(encode_frame(payload))

    @staticmethod
    def recv(conn: socket.socket) -> bytes:
        def exactly(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                assert chunk, "card closed the connection"
                buf += chunk
            return buf

        return exactly(int.from_bytes(exactly(2), "big"))

    def close(self) -> None:
        self.srv.close()


@pytest.fixture
def vpcd():
    fake = FakeVpcd()
    yield fake
    fake.close()


def _session(fake: FakeVpcd, card: Card) -> None:
    conn = fake.accept()
    try:
        fake.send(conn, bytes([VPCD_CTRL_ON]))
        fake.send(conn, bytes([VPCD_CTRL_ATR]))
        assert fake.recv(conn) == card.atr
        # one write carrying two APDUs: both answered, in order
        conn.sendall(
            encode_frame(bytes.fromhex("00A4040005A000000001"))
            + encode_frame(b"\x00\xc0\x00\x00\x00")
        )
        assert fake.recv(conn) == b"\x6a\x82"
        assert fake.recv(conn) == b"\x69\x85"  # GET RESPONSE with nothing pending
        fake.send(conn, b"\x12")  # unknown control byte: no answer, connection stays up
        fake.send(conn, b"\x80")  # 1-byte payload is a control byte, never an APDU
        fake.send(conn, b"\x00\x00")  # 2 bytes: a (malformed) APDU, answered
        assert fake.recv(conn) == b"\x67\x00"
    finally:
        conn.close()


def test_blocking_client_serves_and_reconnects(vpcd: FakeVpcd) -> None:
    card = Card(None)
    client = VpcdClient(
        card,
        "127.0.0.1",
        vpcd.port,
        backoff=Backoff(0.01, 0.05),
        poll_interval=0.05,
        max_connections=2,
    )
    t = client.start()
    _session(vpcd, card)
    _session(vpcd, card)  # after the reader went away, the card comes back
    t.join(10)
    assert not t.is_alive() and client.connections == 2
    assert not card.powered  # a lost reader is a removed card


def test_blocking_client_stop_while_connected(vpcd: FakeVpcd) -> None:
    card = Card(None)
    client = VpcdClient(card, "127.0.0.1", vpcd.port, poll_interval=0.05)
    t = client.start()
    conn = vpcd.accept()
    try:
        vpcd.send(conn, bytes([VPCD_CTRL_ON]))
        vpcd.send(conn, bytes([VPCD_CTRL_ATR]))
        assert vpcd.recv(conn) == card.atr
        assert client.connected.is_set()
        client.stop()
        t.join(10)
        assert not t.is_alive()
        assert conn.recv(10) == b""  # the card side closed its socket
    finally:
        conn.close()
    assert client.connections == 1 and not card.powered


def test_blocking_client_stops_while_nobody_listens() -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = VpcdClient(Card(None), "127.0.0.1", port, backoff=Backoff(0.01, 0.02))
    t = client.start()
    client.stop()
    t.join(10)
    assert not t.is_alive()
    assert client.connections == 0


def test_blocking_client_max_connections(vpcd: FakeVpcd) -> None:
    card = Card(None)
    client = VpcdClient(card, "127.0.0.1", vpcd.port, poll_interval=0.05, max_connections=1)
    t = client.start()
    _session(vpcd, card)
    t.join(10)
    assert not t.is_alive() and client.connections == 1


def test_asyncio_client_serves_and_reconnects(vpcd: FakeVpcd) -> None:
    card = Card(None)

    async def main() -> int:
        task = asyncio.create_task(
            serve_async(
                card, "127.0.0.1", vpcd.port, backoff=Backoff(0.01, 0.05), max_connections=2
            )
        )

        def reader_side() -> None:
            _session(vpcd, card)
            _session(vpcd, card)

        await asyncio.to_thread(reader_side)
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == 2
    assert not card.powered


def test_asyncio_client_stops_while_nobody_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> int:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await asyncio.wait_for(
            serve_async(Card(None), "127.0.0.1", port, stop=stop, backoff=Backoff(0.01, 0.02)), 10
        )

    assert asyncio.run(main()) == 0


def test_asyncio_client_stop_while_connected(vpcd: FakeVpcd) -> None:
    card = Card(None)

    async def main() -> tuple[int, bytes]:
        stop = asyncio.Event()
        task = asyncio.create_task(serve_async(card, "127.0.0.1", vpcd.port, stop=stop))

        def reader_side() -> socket.socket:
            conn = vpcd.accept()
            vpcd.send(conn, bytes([VPCD_CTRL_ATR]))
            assert vpcd.recv(conn) == card.atr
            return conn

        conn = await asyncio.to_thread(reader_side)
        try:
            stop.set()
            n = await asyncio.wait_for(task, 10)
            eof = await asyncio.to_thread(conn.recv, 10)
        finally:
            conn.close()
        return n, eof

    assert asyncio.run(main()) == (1, b"")


# --- the `meterhub hub serve` entry point ------------------------------------------------


def test_hub_serve_rejects_a_bad_endpoint(tmp_path, capsys) -> None:
    from meterhub.cli import main

    assert main(["hub", "serve", "--vpcd", "localhost:notaport", "--data-dir", str(tmp_path)]) == 2
    assert "bad port" in capsys.readouterr().err


def test_hub_serve_rejects_a_data_dir_that_is_not_a_card(tmp_path, capsys) -> None:
    from meterhub.cli import main
    from meterhub.hub.serve import CARD_FILE

    (tmp_path / CARD_FILE).write_bytes(b"this is not SQLite" * 100)
    assert main(["hub", "serve", "--vpcd", "127.0.0.1:1", "--data-dir", str(tmp_path)]) == 2
    assert "not a meterhub card store" in capsys.readouterr().err


def test_hub_card_is_provisioned_once_and_reopened(tmp_path) -> None:
    from meterhub.card.gp import ISD_AID
    from meterhub.hub.serve import DAP_KEY_FILE, TEST_KEYS, build_hub_card
    from meterhub.utility.tsm import TSM

    card = build_hub_card(tmp_path, dev=True)
    pem = (tmp_path / DAP_KEY_FILE).read_bytes()
    assert (tmp_path / DAP_KEY_FILE).stat().st_mode & 0o077 == 0  # the issuer's DAP key: private
    card.power_on()
    assert [e.aid for e in TSM(card, TEST_KEYS).open().registry().issuer_sd] == [ISD_AID]
    card.close()
    again = build_hub_card(tmp_path, dev=True)  # a restart: same card, same DAP key, no re-provisioning
    assert (tmp_path / DAP_KEY_FILE).read_bytes() == pem
    again.power_on()
    assert TSM(again, TEST_KEYS).open().client.scp.sequence_counter == 2
    again.close()


def test_hub_serve_stops_on_request(tmp_path, vpcd: FakeVpcd) -> None:
    from meterhub.hub.serve import serve

    stop, ready = threading.Event(), threading.Event()
    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.append(
            serve(tmp_path, f"127.0.0.1:{vpcd.port}", stop=stop, ready=ready)
        )
    )
    t.start()
    conn = vpcd.accept()
    try:
        vpcd.send(conn, bytes([VPCD_CTRL_ON]))
        vpcd.send(conn, bytes.fromhex("00A4040008A00000015100000000"))
        assert vpcd.recv(conn)[-2:] == b"\x90\x00"  # the ISD answers through vpcd framing
        assert ready.is_set()
        stop.set()
        t.join(10)
        assert not t.is_alive() and result == [0]
    finally:
        conn.close()


def test_hub_serve_refuses_an_unresolvable_host(tmp_path, capsys):
    from meterhub.cli import main

    assert main(["hub", "serve", "--vpcd", "nohost.invalid:35963", "--data-dir", str(tmp_path)]) == 2
    assert "cannot resolve" in capsys.readouterr().err


def test_hub_serve_banner_names_the_connected_endpoint(tmp_path, vpcd: FakeVpcd, capsys) -> None:
    """The banner comes from the connected socket: the vpcd address and port actually
    reached and the hub's own local port, and no reader name that the port does not have
    (the old banner always claimed 'Virtual PCD 00 00', the reader of port 35963)."""
    from meterhub.hub.serve import serve

    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: serve(tmp_path, f"localhost:{vpcd.port}", stop=stop, ready=ready))
    t.start()
    conn = vpcd.accept()
    try:
        vpcd.send(conn, bytes([VPCD_CTRL_ATR]))
        vpcd.recv(conn)  # answered, so the connect banner has been printed
        hub_port = conn.getpeername()[1]
    finally:
        stop.set()
        t.join(10)
        conn.close()
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "connected to vpcd" in ln)
    assert f"connected to vpcd at 127.0.0.1:{vpcd.port} from 127.0.0.1:{hub_port}" in line
    assert "Virtual PCD" not in err


def test_reader_hint_follows_the_stock_vpcd_slots() -> None:
    from meterhub.hub.serve import reader_hint

    assert reader_hint(35963) == " (reader 'Virtual PCD 00 00')"
    assert reader_hint(35964) == " (reader 'Virtual PCD 00 01')"
    assert reader_hint(35962) == reader_hint(35965) == reader_hint(40000) == ""


def test_hub_serve_refuses_port_0_in_one_line(tmp_path, capsys) -> None:
    """vpcd listens and the hub connects, so there is no port to pick: 0 is a usage error."""
    from meterhub.cli import main

    assert main(["hub", "serve", "--vpcd", "127.0.0.1:0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "port out of range" in err and len(err.strip().splitlines()) == 1
