"""DataNotification push of a day's signed batch (Green Book 1000-2 Ed. 9 §9.3.10,
DataNotification service; Blue Book §4.4.8, Push setup IC 40).

The notification body is the ``structure`` the push object list of the
manufacturer-specific push setup 0.128.25.9.0.255 describes (docs/dlms.md):

    structure {
        octet-string  meter id (UTF-8)                     -- Data 0.0.96.1.0.255, attr 2
        octet-string  DailyBatch.to_bytes()                -- 0.128.96.2.1.255, attr 2
        octet-string  ECDSA P-256 signature r||s (64)      -- 0.128.96.2.2.255, attr 2
        octet-string  the day's commitments, 33 bytes each -- 0.128.96.1.2.255, attr 2
    }

The APDU header is ``dlms_cosem``'s ``DataNotification``; the body is encoded by
:mod:`.axdr` because the commitments exceed the one-byte length its data
classes can write.
"""

from __future__ import annotations

from datetime import datetime

from dlms_cosem.protocol.xdlms import DataNotification
from dlms_cosem.protocol.xdlms.data_notification import LongInvokeIdAndPriority

from . import axdr
from .cosem import Obis

__all__ = ["PUSH_SETUP", "encode_batch_notification", "decode_batch_body"]

PUSH_SETUP = Obis(0, 128, 25, 9, 0)


def encode_batch_notification(
    *,
    meter_id: str,
    batch: bytes,
    signature: bytes,
    commitments: bytes,
    invoke_id: int,
    sent_at: datetime | None = None,
) -> bytes:
    """The DataNotification APDU (tag 0x0F) carrying one day's batch."""
    if not 0 <= invoke_id < 1 << 24:
        raise ValueError("long-invoke-id is 24 bits")
    body = axdr.structure(
        [
            axdr.octet_string(meter_id.encode()),
            axdr.octet_string(batch),
            axdr.octet_string(signature),
            axdr.octet_string(commitments),
        ]
    )
    apdu: bytes = DataNotification(# dlms_cosem ships no type information
        long_invoke_id_and_priority=LongInvokeIdAndPriority(invoke_id),
        date_time=None,
        body=body,
    ).to_bytes()
    if sent_at is not None:
        # date-time is an A-XDR OCTET STRING (Green Book §9.5 Data-Notification), so a
        # present value is length 0x0C + 12 octets. dlms_cosem writes a 0x01 "present"
        # flag instead (gurux rejects that); its decoder accepts either.
        apdu = apdu[:5] + b"\x0c" + axdr.encode_datetime(sent_at) + apdu[6:]
    return apdu


def decode_batch_body(body: bytes) -> tuple[str, bytes, bytes, bytes]:
    """Inverse of the body layout: ``(meter_id, batch, signature, commitments)``."""
    value = axdr.decode(body)
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, bytes) for v in value)
    ):
        raise axdr.AxdrError("not a meterhub batch notification body")
    mid, batch, sig, comms = value
    try:
        meter_id = mid.decode()
    except UnicodeDecodeError:
        raise axdr.AxdrError("meter id is not UTF-8") from None
    return meter_id, batch, sig, comms
