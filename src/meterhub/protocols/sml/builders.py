"""High-level SML files of meterhub's simulated meter.

The push file follows what German eHZ meters send on their optical interface (a
public SML file, SML 1.04 / FNN Lastenheft EDL): ``SML_PublicOpen.Res``, one
``SML_GetList.Res`` and ``SML_PublicClose.Res``.  The load-profile file carries one
``SML_GetProfileList.Res`` per capture period between open and close.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .errors import SMLEncodeError
from .messages import (
    CloseResponse,
    GetListResponse,
    GetProfileListResponse,
    OpenResponse,
    SmlMessage,
)
from .transport import encode_file
from .values import ListEntry, PeriodEntry, SmlTime, SmlValue, obis, obis_to_str

__all__ = [
    "LIST_NAME",
    "OBIS_DEVICE_ID",
    "OBIS_ENERGY_IMPORT",
    "OBIS_ENERGY_INTERVAL",
    "OBIS_LOAD_PROFILE",
    "OBIS_POWER",
    "UNIT_W",
    "UNIT_WH",
    "build_meter_file",
    "build_profile_file",
    "extract_profile",
    "extract_values",
]

OBIS_ENERGY_IMPORT = obis("1-0:1.8.0*255")  # active energy import, total register
OBIS_POWER = obis("1-0:16.7.0*255")  # instantaneous active power, sum of phases
OBIS_DEVICE_ID = obis("1-0:96.1.0*255")  # device identification (the server id)
OBIS_ENERGY_INTERVAL = obis("1-0:1.29.0*255")  # active energy import of the last period
OBIS_LOAD_PROFILE = obis("1-0:99.1.0*255")  # load profile 1 (parameterTreePath)
LIST_NAME = bytes.fromhex("0100620affff")  # list name eHZ meters use for their push list
UNIT_WH = 30  # DLMS/COSEM unit code (IEC 62056-62): watt hour
UNIT_W = 27  # watt


def _tid(prefix: bytes, n: int) -> bytes:
    return prefix + n.to_bytes(2, "big")


def build_meter_file(
    server_id: bytes,
    energy_wh: int,
    power_w: int,
    *,
    transaction_prefix: bytes = b"MH",
    act_time: int | None = None,
    signature: bytes | None = None,
) -> bytes:
    """One push file: OpenRes, GetListRes (1-0:96.1.0 server id, 1-0:1.8.0 energy in Wh
    (unit 30, scaler 0, Unsigned64), 1-0:16.7.0 power in W (unit 27, scaler 0, Integer32),
    ``signature`` in listSignature, ``act_time`` (Unix seconds) as actSensorTime
    timestamp), CloseRes.  Transaction ids are ``transaction_prefix`` + a 2-byte index.
    """
    if energy_wh < 0:
        raise SMLEncodeError("energy register cannot be negative")
    entries = (
        ListEntry(OBIS_DEVICE_ID, server_id),
        ListEntry(OBIS_ENERGY_IMPORT, energy_wh, unit=UNIT_WH, scaler=0, value_type="u64"),
        ListEntry(OBIS_POWER, power_w, unit=UNIT_W, scaler=0, value_type="i32"),
    )
    sensor_time = None if act_time is None else SmlTime.timestamp(act_time)
    messages = [
        SmlMessage(_tid(transaction_prefix, 1), OpenResponse(transaction_prefix, server_id)),
        SmlMessage(
            _tid(transaction_prefix, 2),
            GetListResponse(
                server_id,
                entries,
                list_name=LIST_NAME,
                act_sensor_time=sensor_time,
                list_signature=signature,
            ),
        ),
        SmlMessage(_tid(transaction_prefix, 3), CloseResponse()),
    ]
    return encode_file(messages)


def build_profile_file(
    server_id: bytes,
    rows: Sequence[tuple[int, int]],
    period_seconds: int = 900,
    signatures: Sequence[bytes | None] | None = None,
    *,
    transaction_prefix: bytes = b"MP",
    act_time: int | None = None,
    obj_name: bytes = OBIS_ENERGY_INTERVAL,
) -> bytes:
    """A load-profile file: OpenRes, one GetProfileListRes per ``(unix_time, wh)`` row
    (parameterTreePath 1-0:99.1.0*255, regPeriod ``period_seconds``, valTime the row
    time, period entry ``obj_name`` (default 1-0:1.29.0*255, interval energy) in Wh with
    the row's signature as valueSignature), CloseRes.  ``act_time`` defaults to the
    last row's time.
    """
    if signatures is not None and len(signatures) != len(rows):
        raise SMLEncodeError(f"{len(signatures)} signatures for {len(rows)} rows")
    if act_time is None:
        act_time = rows[-1][0] if rows else 0
    act = SmlTime.timestamp(act_time)
    path = (OBIS_LOAD_PROFILE,)
    messages = [
        SmlMessage(_tid(transaction_prefix, 0), OpenResponse(transaction_prefix, server_id))
    ]
    for i, (t, wh) in enumerate(rows):
        sig = None if signatures is None else signatures[i]
        entry = PeriodEntry(obj_name, UNIT_WH, 0, wh, sig, "u64" if wh >= 0 else "i64")
        body = GetProfileListResponse(
            server_id, act, period_seconds, path, SmlTime.timestamp(t), 0, (entry,)
        )
        messages.append(SmlMessage(_tid(transaction_prefix, i + 1), body))
    messages.append(SmlMessage(_tid(transaction_prefix, len(rows) + 1), CloseResponse()))
    return encode_file(messages)


def extract_values(
    messages: Iterable[SmlMessage],
) -> dict[str, tuple[SmlValue | None, int, int | None]]:
    """Map "A-B:C.D.E*F" to (raw value, scaler, unit) for every GetList.Res entry.

    The scaler defaults to 0 when absent; the physical value is ``value * 10**scaler``.
    """
    out: dict[str, tuple[SmlValue | None, int, int | None]] = {}
    for msg in messages:
        if isinstance(msg.body, GetListResponse):
            for e in msg.body.val_list:
                out[obis_to_str(e.obj_name)] = (e.value, e.scaler or 0, e.unit)
    return out


def extract_profile(
    messages: Iterable[SmlMessage], obj_name: bytes = OBIS_ENERGY_INTERVAL
) -> list[tuple[int, SmlValue | None, bytes | None]]:
    """(valTime, value, valueSignature) of every ``obj_name`` period entry, in order."""
    out: list[tuple[int, SmlValue | None, bytes | None]] = []
    for msg in messages:
        if isinstance(msg.body, GetProfileListResponse):
            for e in msg.body.period_list:
                if e.obj_name == obj_name:
                    out.append((msg.body.val_time.value, e.value, e.value_signature))
    return out
