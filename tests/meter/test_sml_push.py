"""The meter's SML push transport over TCP on 127.0.0.1 (ephemeral ports)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable

import pytest

from meterhub.meter.sml_push import SmlPushServer
from meterhub.protocols.sml import (
    ATTENTION,
    AttentionResponse,
    CloseRequest,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    OpenRequest,
    SmlFile,
    SmlMessage,
    SmlStreamDecoder,
    build_meter_file,
    build_profile_file,
    encode_file,
    extract_profile,
    extract_values,
    make_server_id,
)

SID = make_server_id("MHB", 4711)


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    async def main() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    asyncio.run(main())


class Source:
    """Energy grows by one Wh per file, so order and freshness are visible."""

    def __init__(self) -> None:
        self.counter = itertools.count(1000)

    def __call__(self) -> bytes:
        return build_meter_file(SID, next(self.counter), 230)


async def read_files(reader: asyncio.StreamReader, n: int) -> list[SmlFile]:
    dec = SmlStreamDecoder()
    files: list[SmlFile] = []
    while len(files) < n:
        chunk = await reader.read(1024)
        assert chunk, "server closed early"
        files += dec.feed(chunk)
    assert dec.error_count == 0
    return files


def energy(f: SmlFile) -> int:
    value = extract_values(f.messages)["1-0:1.8.0*255"][0]
    assert isinstance(value, int)
    return value


def test_pushes_to_every_client_at_cadence() -> None:
    async def body() -> None:
        async with SmlPushServer(Source(), server_id=SID, cadence=0.05) as server:
            assert server.port > 0
            conns = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            results = await asyncio.gather(*(read_files(r, 3) for r, _ in conns))
            elapsed = loop.time() - t0
            for files in results:
                values = [energy(f) for f in files]
                assert values == sorted(values) and len(set(values)) == 3
            assert elapsed >= 0.05  # three files need at least two cadence periods
            assert server.files_sent >= 6
            for _, w in conns:
                w.close()

    run(body)


def _request(body: object) -> bytes:
    return encode_file(
        [
            SmlMessage(b"q1", OpenRequest(b"cli", b"f1")),
            SmlMessage(b"q2", body),  # type: ignore[arg-type]
            SmlMessage(b"q3", CloseRequest()),
        ]
    )


async def _files_until(reader: asyncio.StreamReader, pred: Callable[[SmlFile], bool]) -> SmlFile:
    dec = SmlStreamDecoder()
    while True:
        chunk = await reader.read(1024)
        assert chunk, "server closed early"
        for f in dec.feed(chunk):
            if pred(f):
                return f


def _attention(f: SmlFile) -> bytes | None:
    for m in f.messages:
        if isinstance(m.body, AttentionResponse):
            return m.body.attention_no
    return None


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # a CRC-corrupted request file: the last byte of the file CRC flipped
        (_request(GetListRequest(b"cli"))[:-1] + b"\x00", ATTENTION["crc_error"]),
        # a well-formed file whose only request is not one the meter serves
        (_request(OpenRequest(b"cli", b"x")), ATTENTION["unexpected_message"]),
        # a request for another server
        (
            encode_file(
                [
                    SmlMessage(b"q1", OpenRequest(b"cli", b"f1", server_id=b"other")),
                    SmlMessage(b"q2", GetListRequest(b"cli")),
                    SmlMessage(b"q3", CloseRequest()),
                ]
            ),
            ATTENTION["no_server_id"],
        ),
    ],
)
def test_bad_requests_get_attention(request_bytes: bytes, expected: bytes) -> None:
    async def body() -> None:
        async with SmlPushServer(Source(), server_id=SID, cadence=30) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"noise" + request_bytes)
            await writer.drain()
            f = await _files_until(reader, lambda f: _attention(f) is not None)
            assert _attention(f) == expected
            # the connection keeps working: a good request gets the meter file
            writer.write(_request(GetListRequest(b"cli", SID)))
            await writer.drain()
            f = await _files_until(
                reader, lambda f: isinstance(f.messages[1].body, GetListResponse)
            )
            assert energy(f) >= 1000
            writer.close()

    run(body)


def test_client_limit_gives_the_slot_to_the_newest_and_clean_stop() -> None:
    """At the cap the oldest client gives way (a client that never reads cannot keep a
    new one out); stop() ends everyone."""

    async def body() -> None:
        server = SmlPushServer(Source(), server_id=SID, cadence=0.05, max_clients=1)
        await server.start()
        r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
        await read_files(r1, 1)
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
        await read_files(r2, 2)  # the new client is served ...
        with contextlib.suppress(ConnectionError):  # ... and the old one was dropped
            while await asyncio.wait_for(r1.read(4096), 2.0):
                pass
        assert server.client_count == 1
        await server.stop()
        assert server.client_count == 0
        with contextlib.suppress(ConnectionError):
            rest = await asyncio.wait_for(r2.read(), 2.0)  # reaches EOF after stop
            assert isinstance(rest, bytes)
        for w in (w1, w2):
            w.close()
        with pytest.raises(RuntimeError):
            _ = server.port

    run(body)


def test_faulty_source_does_not_stop_the_server() -> None:
    calls = itertools.count()

    def flaky() -> bytes:
        if next(calls) % 2 == 0:
            raise RuntimeError("sensor glitch")
        return build_meter_file(SID, 5, 5)

    async def body() -> None:
        async with SmlPushServer(flaky, server_id=SID, cadence=0.02) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            files = await read_files(reader, 2)
            assert [energy(f) for f in files] == [5, 5]
            writer.close()

    run(body)


def test_rejects_bad_cadence() -> None:
    with pytest.raises(ValueError):
        SmlPushServer(Source(), server_id=SID, cadence=0)


def test_profile_request_gets_load_profile() -> None:
    rows = [(1_800_000_000 + 900 * i, i) for i in range(96)]

    async def body() -> None:
        server = SmlPushServer(
            Source(),
            server_id=SID,
            cadence=30,
            profile_source=lambda: build_profile_file(SID, rows),
        )
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_request(GetProfileListRequest((bytes.fromhex("0100630100ff"),), SID)))
            await writer.drain()
            f = await _files_until(
                reader, lambda f: isinstance(f.messages[1].body, GetProfileListResponse)
            )
            assert [(t, v) for t, v, _ in extract_profile(f.messages)] == rows
            writer.close()

    run(body)
