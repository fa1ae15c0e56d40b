"""Interop: implementations nobody here wrote parse meterhub's SML files to the same
values.  pysml (MIT) and smllib (GPL; a test oracle only, never imported by meterhub)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sml import SmlBase, SmlSequence
from smllib import SmlStreamReader
from smllib.crc import x25 as smllib_x25

from meterhub.protocols.sml import (
    build_meter_file,
    build_profile_file,
    crc16_x25_wire,
    format_server_id,
    make_server_id,
    parse_file,
)

SID = make_server_id("MHB", 12345678)


def _pysml(data: bytes) -> list:
    end, frame = SmlBase.find_frame(data)
    assert frame is not None and end == len(data)
    return [msg["messageBody"] for msg in frame]


def _pysml_values(data: bytes) -> dict:
    bodies = _pysml(data)
    return {e["objName"]: e for e in bodies[1]["valList"]}


@pytest.mark.interop
@given(
    st.integers(0, 2**63 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.none() | st.integers(1, 2**32 - 1),
    st.none() | st.binary(min_size=1, max_size=64),
)
def test_pysml_reads_meter_file(
    energy: int, power: int, act: int | None, sig: bytes | None
) -> None:
    data = build_meter_file(SID, energy, power, act_time=act, signature=sig)
    bodies = _pysml(data)
    assert bodies[0]["serverId"] == format_server_id(SID) == "1 MHB00 1234 5678"
    get_list = bodies[1]
    assert get_list["serverId"] == "1 MHB00 1234 5678"
    values = {e["objName"]: e for e in get_list["valList"]}
    # pysml applies the scaler (0 here) and maps unit codes to names
    assert values["1-0:1.8.0*255"]["value"] == energy
    assert values["1-0:1.8.0*255"]["unit"] == "Wh"
    assert values["1-0:16.7.0*255"]["value"] == power
    assert values["1-0:16.7.0*255"]["unit"] == "W"
    assert values["1-0:96.1.0*255"]["value"] == "1 MHB00 1234 5678"
    assert get_list.get("listSignature") == sig
    if act is not None:
        assert int(get_list["actSensorTime"].timestamp()) == act


@pytest.mark.interop
@given(
    st.integers(0, 2**63 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.none() | st.binary(min_size=1, max_size=64),
)
def test_smllib_reads_meter_file(energy: int, power: int, sig: bytes | None) -> None:
    data = build_meter_file(SID, energy, power, signature=sig)
    reader = SmlStreamReader()
    reader.add(data)
    frame = reader.get_frame()  # checks the file CRC
    assert frame is not None
    msgs = frame.parse_frame()
    assert [type(m.message_body).__name__ for m in msgs] == [
        "SmlOpenResponse",
        "SmlGetListResponse",
        "SmlCloseResponse",
    ]
    get_list = msgs[1].message_body
    assert bytes.fromhex(get_list.server_id) == SID
    assert get_list.list_signature == (None if sig is None else sig.hex())
    values = {e.obis.obis_code: e for e in get_list.val_list}
    assert (values["1-0:1.8.0*255"].get_value(), values["1-0:1.8.0*255"].unit) == (energy, 30)
    assert (values["1-0:16.7.0*255"].get_value(), values["1-0:16.7.0*255"].unit) == (power, 27)
    # smllib does not check message CRCs: recompute each with smllib's CRC function
    for theirs, ours in zip(msgs, parse_file(data), strict=True):
        encoded = ours.to_bytes()
        assert (
            theirs.crc16
            == smllib_x25.get_crc(encoded[:-4])
            == int.from_bytes(encoded[-3:-1], "big")
        )


@pytest.mark.interop
def test_message_crcs_agree_with_smllib_crc() -> None:
    data = build_meter_file(SID, 1, 2, signature=b"\x1b" * 8)
    assert smllib_x25.get_crc(data[:-2]) == int.from_bytes(data[-2:], "big")
    assert crc16_x25_wire(data[:-2]) == smllib_x25.get_crc(data[:-2])


@pytest.mark.interop
def test_pysml_reads_profile_file() -> None:
    rows = [(1_800_000_000 + 900 * i, 10 * i) for i in range(96)]
    sigs = [bytes([i]) * 4 for i in range(96)]
    data = build_profile_file(SID, rows, 900, sigs)
    bodies = _pysml(data)  # pysml checks every message CRC and the file CRC
    assert len(bodies) == 98
    assert bodies[0]["serverId"] == "1 MHB00 1234 5678"
    # pysml has no class for SML_GetProfileList.Res and returns the raw choice
    for (t, wh), sig, raw in zip(rows, sigs, bodies[1:-1], strict=True):
        tag, body = raw
        assert tag.value == 0x0401
        fields = body.value
        assert fields[0].value == SID
        assert fields[2].value == 900  # regPeriod
        assert [x.value for x in fields[4].value] == [2, t]  # valTime timestamp
        (period,) = fields[6].value
        name, unit, scaler, value, value_sig = (x.value for x in period.value)
        assert (SmlSequence.decode_obis(name), unit, scaler, value, value_sig) == (
            "1-0:1.29.0*255",
            30,
            0,
            wh,
            sig,
        )


@pytest.mark.interop
@pytest.mark.parametrize("energy", [0, 1, 10**9, 2**63 - 1])
def test_both_oracles_agree(energy: int) -> None:
    data = build_meter_file(SID, energy, -5)
    reader = SmlStreamReader()
    reader.add(data)
    smllib_values = {e.obis.obis_code: e.get_value() for e in reader.get_frame().get_obis()}
    pysml_values = {k: v.get("value") for k, v in _pysml_values(data).items()}
    assert smllib_values["1-0:1.8.0*255"] == pysml_values["1-0:1.8.0*255"] == energy
    assert smllib_values["1-0:16.7.0*255"] == pysml_values["1-0:16.7.0*255"] == -5
