"""Protocol encodings of one day: DLMS/COSEM and SML against JSON, in the same run.

Two payloads, each encoded and decoded as one frame:

* **load profile**: one local day, 96 rows (interval end, cumulative Wh);
* **commitments**: one day's 96 x 33-byte commitments with their indices and the
  signed daily batch (``DailyBatch`` + 64-byte signature).

Encodings (docs/dlms.md, docs/sml.md, docs/formats.md):

* DLMS: Get-Response-Normal carrying the A-XDR ``buffer`` of the profile generic
  object (1.0.99.1.0.255; for commitments 0.128.96.1.0.255 plus the day's row of
  0.128.96.2.0.255), and the DataNotification push of the batch; decoding includes
  every date-time (Blue Book §4.1.6.1);
* SML: a transport-v1 file (CRCs included) with one SML_GetProfileList.Res per row;
  for commitments the batch and signature follow in an SML_GetList.Res (layout in
  docs/sml.md, "Commitments in SML");
* JSON: the same data as ``json`` text: the profile as ``[{"t": ISO time, "wh": n}]``,
  the commitments as the ``ID.uploads.jsonl`` line (docs/formats.md) via ``DayUpload``.

Each figure is frames per second (one frame = one day), the median of ``REPEAT``
runs, and its ratio to JSON for the same payload and direction (> 1: faster than
JSON). All codecs of a payload are timed alternately, one call each per round.

Run (one core): taskset -c 0 .venv/bin/python benchmarks/bench_protocols.py
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from _bench import alternate, header, row
from meterhub.crypto import ecdsa
from meterhub.meter.device import DailyBatch, Meter
from meterhub.model.formats.units import decode_records, encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.protocols.dlms import axdr
from meterhub.protocols.dlms.apdu import encode_get_response_normal
from meterhub.protocols.dlms.cosem import (
    COMMITMENTS,
    LOAD_PROFILE,
    SIGNED_BATCHES,
    InMemoryDataSource,
    build_object_model,
)
from meterhub.protocols.dlms.push import decode_batch_body, encode_batch_notification
from meterhub.protocols.sml import (
    GetListResponse,
    GetProfileListResponse,
    ListEntry,
    OpenResponse,
    PeriodEntry,
    SmlMessage,
    SmlTime,
    build_profile_file,
    encode_file,
    extract_profile,
    make_server_id,
    obis,
    parse_file,
)
from meterhub.protocols.sml.messages import CloseResponse

DAY = date(2027, 4, 1)
TZ = ZoneInfo("Europe/Berlin")
SID = make_server_id("MHB", 12345678)
INVOKE = 0xC1
REPEAT = 200

# SML carriage of the commitments (docs/sml.md, "Commitments in SML").
SML_COMMITMENTS = obis("0-128:96.1.0*255")
SML_INDEX = obis("0-128:96.1.1*255")
SML_COMMITMENT = obis("0-128:96.1.2*255")
SML_BATCHES = obis("0-128:96.2.0*255")
SML_BATCH = obis("0-128:96.2.1*255")
SML_SIGNATURE = obis("0-128:96.2.2*255")
UNIT_COUNT = 255  # DLMS unit table: 255 = count (no unit)


def make_day():
    rng = random.Random(7)
    readings = [rng.choice([0, rng.randint(0, 60), rng.randint(60, 900)]) for _ in range(96)]
    meter = Meter("bench", ecdsa.generate_signing_key())
    rec = meter.record_day(DAY, readings)
    start = datetime(2027, 4, 1, tzinfo=TZ)
    ends = [(start + timedelta(minutes=15 * (k + 1))).astimezone(TZ) for k in range(96)]
    total, profile = 0, []
    for t, wh in zip(ends, readings, strict=True):
        total += wh
        profile.append((t, total))
    comm_rows = [(t, k, rec.commitments[33 * k : 33 * k + 33]) for k, t in enumerate(ends)]
    batch_row = (start, rec.batch.batch.to_bytes(), rec.batch.signature)
    return rec, profile, comm_rows, batch_row, readings


# ------------------------------------------------------------------- DLMS


def dlms_codecs(profile, comm_rows, batch_row, rec):
    src = InMemoryDataSource(meter_id="bench", profile_rows=profile, commitment_rows=comm_rows, batch_rows=[batch_row])
    objects = build_object_model(src)
    lp, cm, sb = objects[LOAD_PROFILE], objects[COMMITMENTS], objects[SIGNED_BATCHES]

    def enc_profile() -> bytes:
        return encode_get_response_normal(INVOKE, lp.get(2))  # type: ignore[attr-defined]

    def dec_profile(apdu: bytes) -> list:
        if apdu[:4] != bytes([0xC4, 1, INVOKE, 0]):
            raise ValueError("not a Get-Response-Normal with data")
        return [(axdr.decode_datetime(t), v) for t, v in axdr.decode(apdu[4:])]  # type: ignore[union-attr]

    def enc_comm() -> tuple[bytes, bytes]:
        return encode_get_response_normal(INVOKE, cm.get(2)), encode_get_response_normal(INVOKE, sb.get(2))

    def dec_comm(frames: tuple[bytes, bytes]) -> tuple:
        rows = [(axdr.decode_datetime(t), i, c) for t, i, c in axdr.decode(frames[0][4:])]  # type: ignore[union-attr]
        ((t, b, s),) = axdr.decode(frames[1][4:])  # type: ignore[misc]
        return rows, axdr.decode_datetime(t), DailyBatch.from_bytes(b), s

    def enc_push() -> bytes:
        return encode_batch_notification(
            meter_id="bench", batch=rec.batch.batch.to_bytes(), signature=rec.batch.signature,
            commitments=rec.commitments, invoke_id=1,
        )

    def dec_push(apdu: bytes) -> tuple:
        # Data-Notification: tag, long-invoke-id (4), date-time (0x00 absent), body
        if apdu[0] != 0x0F or apdu[5] != 0:
            raise ValueError("not a Data-Notification without date-time")
        mid, batch, sig, comms = decode_batch_body(apdu[6:])
        return mid, DailyBatch.from_bytes(batch), sig, [comms[k : k + 33] for k in range(0, len(comms), 33)]

    return (enc_profile, dec_profile), (enc_comm, dec_comm), (enc_push, dec_push)


# -------------------------------------------------------------------- SML


def sml_codecs(profile, comm_rows, batch_row, readings):
    rows = [(int(t.timestamp()), wh) for (t, _), wh in zip(profile, readings, strict=True)]

    def enc_profile() -> bytes:
        return build_profile_file(SID, rows)

    def dec_profile(data: bytes) -> list:
        return [(datetime.fromtimestamp(t, TZ), v) for t, v, _ in extract_profile(parse_file(data))]

    act = SmlTime.timestamp(int(comm_rows[-1][0].timestamp()))

    def enc_comm() -> bytes:
        msgs = [SmlMessage(b"MC\x00\x00", OpenResponse(b"MC", SID))]
        for k, (t, i, c) in enumerate(comm_rows):
            entries = (PeriodEntry(SML_INDEX, UNIT_COUNT, 0, i, None, "u64"), PeriodEntry(SML_COMMITMENT, UNIT_COUNT, 0, c))
            body = GetProfileListResponse(SID, act, 900, (SML_COMMITMENTS,), SmlTime.timestamp(int(t.timestamp())), 0, entries)
            msgs.append(SmlMessage(b"MC" + (k + 1).to_bytes(2, "big"), body))
        _, b, s = batch_row
        batch = GetListResponse(SID, (ListEntry(SML_BATCH, b), ListEntry(SML_SIGNATURE, s)), list_name=SML_BATCHES, act_sensor_time=act)
        msgs.append(SmlMessage(b"MC\xff\xfe", batch))
        msgs.append(SmlMessage(b"MC\xff\xff", CloseResponse()))
        return encode_file(msgs)

    def dec_comm(data: bytes) -> tuple:
        rows, batch, sig = [], None, None
        for m in parse_file(data):
            if isinstance(m.body, GetProfileListResponse):
                idx, com = m.body.period_list
                rows.append((datetime.fromtimestamp(m.body.val_time.value, TZ), idx.value, com.value))
            elif isinstance(m.body, GetListResponse):
                entries = {e.obj_name: e.value for e in m.body.val_list}
                batch, sig = DailyBatch.from_bytes(entries[SML_BATCH]), entries[SML_SIGNATURE]
        return rows, batch, sig

    return (enc_profile, dec_profile), (enc_comm, dec_comm)


# ------------------------------------------------------------------- JSON


def json_codecs(profile, rec):
    def enc_profile() -> bytes:
        return json.dumps([{"t": t.isoformat(), "wh": v} for t, v in profile], separators=(",", ":")).encode()

    def dec_profile(data: bytes) -> list:
        return [(datetime.fromisoformat(r["t"]), r["wh"]) for r in json.loads(data)]

    upload = DayUpload(rec.batch, encode_records(rec.first_index, rec.commitments))

    def enc_comm() -> bytes:
        return upload.to_json().encode()

    def dec_comm(data: bytes) -> tuple:
        up = DayUpload.from_json(data.decode())
        return up, decode_records(up.records)  # indices and commitments, as the others give

    return (enc_profile, dec_profile), (enc_comm, dec_comm)


def _size(frame: bytes | tuple[bytes, ...]) -> int:
    return sum(map(len, frame)) if isinstance(frame, tuple) else len(frame)


def measure(codecs: list[tuple[Callable[[], object], Callable[[object], object]]]) -> list[tuple[float, float, int]]:
    """Frames per second (encode, decode) and frame size of each codec, all timed alternately."""
    variants: dict[str, Callable[[], object]] = {}
    sizes = []
    for k, (enc, dec) in enumerate(codecs):
        frame = enc()
        dec(frame)  # decodes what it encoded
        sizes.append(_size(frame))  # type: ignore[arg-type]
        variants[f"enc{k}"] = enc
        variants[f"dec{k}"] = lambda dec=dec, frame=frame: dec(frame)
    r = alternate(variants, runs=REPEAT, warmup=20)
    return [(1 / r[f"enc{k}"].median, 1 / r[f"dec{k}"].median, sizes[k]) for k in range(len(codecs))]


def report(title: str, cases: list[tuple[str, tuple]], baseline: tuple) -> None:
    (be, bd, bsize), *figures = measure([baseline, *(codec for _, codec in cases)])
    print(f"-- {title} (medians of {REPEAT} runs, all codecs alternating)")
    for (label, _), (fe, fd, size) in zip(cases, figures, strict=True):
        row(f"{label}: encode", f"{fe:,.0f} fr/s", f"{fe / be:.3g}x JSON; {size:,} bytes ({size / bsize:.2f}x JSON)")
        row(f"{label}: decode", f"{fd:,.0f} fr/s", f"{fd / bd:.3g}x JSON")
    row("JSON (same data): encode", f"{be:,.0f} fr/s", f"{bsize:,} bytes")
    row("JSON (same data): decode", f"{bd:,.0f} fr/s")


def main() -> int:
    header("protocol encodings of one day (96 intervals), frames per second")
    rec, profile, comm_rows, batch_row, readings = make_day()
    (dp, dc, dpush) = dlms_codecs(profile, comm_rows, batch_row, rec)
    (sp, sc) = sml_codecs(profile, comm_rows, batch_row, readings)
    (jp, jc) = json_codecs(profile, rec)
    # Sanity: every codec carries the same data.
    assert [v for _, v in dp[1](dp[0]())] == [v for _, v in profile]
    assert [v for _, v in sp[1](sp[0]())] == readings
    assert [c for _, _, c in dc[1](dc[0]())[0]] == [c for _, _, c in sc[1](sc[0]())[0]] == [c for *_, c in comm_rows]
    report("load profile, 96 rows", [("DLMS Get-Response buffer (A-XDR)", dp), ("SML profile file", sp)], jp)
    report(
        "commitments, 96 x 33 bytes + signed batch",
        [("DLMS Get-Response buffers (A-XDR)", dc), ("DLMS DataNotification push", dpush), ("SML profile file + GetList", sc)],
        jc,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
