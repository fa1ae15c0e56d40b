"""DataNotification push of a day's signed batch, decoded by gurux-dlms (GPL, a test
oracle only: it is never imported by src/meterhub)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from dlms_cosem.protocol import xdlms
from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import InterfaceType, Security
from gurux_dlms.GXCiphering import GXCiphering

from meterhub.crypto import ecdsa
from meterhub.meter.device import DailyBatch, Meter
from meterhub.meter.dlms_server import MeterFeed, send_push
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.push import decode_batch_body
from meterhub.protocols.dlms.security import Suite0Keys
from meterhub.protocols.dlms.server import DlmsServer
from meterhub.protocols.dlms.wrapper import WrapperDecoder, WrapperFrame

SENT = datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)


def recorded_feed() -> MeterFeed:
    feed = MeterFeed(Meter("mtr-push", ecdsa.generate_signing_key()))
    feed.record_day(date(2026, 3, 1), [k % 50 for k in range(96)])
    return feed


def gurux_notification(frame: bytes, keys: Suite0Keys | None = None, server_title: bytes = b""):
    client = GXDLMSClient(True, 102, 1, interfaceType=InterfaceType.WRAPPER)
    if keys is not None:
        client.settings.cipher = GXCiphering(bytearray(b"GURUXCLI"))
        client.settings.cipher.security = Security.AUTHENTICATION_ENCRYPTION
        client.settings.cipher.blockCipherKey = bytearray(keys.encryption_key)
        client.settings.cipher.authenticationKey = bytearray(keys.authentication_key)
        client.settings.sourceSystemTitle = bytearray(server_title)
    reply, notify = GXReplyData(), GXReplyData()
    client.getData(GXByteBuffer(frame), reply, notify)
    assert notify.complete
    return notify


def check_values(values, feed: MeterFeed) -> None:
    record = feed.records[0]
    mid, body, sig, comms = (bytes(v) for v in values)
    assert mid.decode() == "mtr-push"
    assert DailyBatch.from_bytes(body) == record.batch.batch
    assert ecdsa.verify(ecdsa.load_verifying_key(feed.public_key), record.batch.batch.signed_message(), sig)
    assert comms == record.commitments and len(comms) == 96 * 33


def test_gurux_decodes_plain_notification_with_date_time():
    feed = recorded_feed()
    apdu = feed.notification(feed.records[0], invoke_id=7, sent_at=SENT)
    notify = gurux_notification(WrapperFrame(1, 102, apdu).to_bytes())
    check_values(notify.value, feed)
    assert notify.time.value.replace(tzinfo=UTC) == SENT.replace(tzinfo=UTC)
    # Pin: dlms_cosem's encoder marks the date-time with 0x01, not the octet-string length.
    theirs_encoded = xdlms.DataNotification(
        xdlms.data_notification.LongInvokeIdAndPriority(7), SENT, b"\x00"
    ).to_bytes()
    assert theirs_encoded[5] == 0x01 and apdu[5] == 0x0C
    # dlms-cosem reads it too; its date-time comes back naive for a zero deviation.
    theirs = xdlms.DataNotification.from_bytes(apdu)
    assert theirs.long_invoke_id_and_priority.long_invoke_id == 7
    assert decode_batch_body(theirs.body)[1] == feed.records[0].batch.batch.to_bytes()


def test_gurux_decrypts_suite0_notification():
    feed = recorded_feed()
    keys = Suite0Keys.generate()
    server = DlmsServer(feed, keys=keys)
    protected = server.protect(feed.notification(feed.records[0], invoke_id=1))
    assert len(protected) > 3000  # long-form lengths throughout
    notify = gurux_notification(WrapperFrame(1, 102, protected).to_bytes(), keys, server.system_title)
    check_values(notify.value, feed)


def test_gurux_rejects_notification_under_the_wrong_key():
    feed = recorded_feed()
    server = DlmsServer(feed, keys=Suite0Keys.generate())
    protected = server.protect(feed.notification(feed.records[0], invoke_id=1))
    frame = WrapperFrame(1, 102, protected).to_bytes()
    try:
        notify = gurux_notification(frame, Suite0Keys.generate(), server.system_title)
    except Exception:  # gurux raises its own exception types on a failed tag check
        return
    # About one run in 75 gurux swallows the failed check and hands back a complete but
    # empty notification; what must never happen is that the wrong key yields the data.
    assert notify.value is None


def test_decode_batch_body_rejects_other_shapes():
    with pytest.raises(axdr.AxdrError):
        decode_batch_body(axdr.structure([axdr.octet_string(b"x")]))
    with pytest.raises(axdr.AxdrError):
        decode_batch_body(b"\x02\x04\x09")


def test_send_push_over_tcp_reaches_a_listener():
    feed = recorded_feed()
    apdu = feed.notification(feed.records[0], invoke_id=3)

    async def scenario() -> list[WrapperFrame]:
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = WrapperDecoder()
            frames: list[WrapperFrame] = []
            while not frames:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                frames = decoder.feed(chunk)
            got.set_result(frames)
            writer.close()

        listener = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        await send_push("127.0.0.1", port, apdu)
        frames = await asyncio.wait_for(got, 5)
        listener.close()
        await listener.wait_closed()
        return frames

    frames = asyncio.run(scenario())
    assert len(frames) == 1 and frames[0].apdu == apdu and (frames[0].source, frames[0].destination) == (1, 102)
    check_values(gurux_notification(frames[0].to_bytes()).value, feed)
