"""Tests for meterhub.meter.csv_import: round trips, each error, and fuzzing."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.meter.csv_import import (
    MAX_WH,
    CsvImportError,
    read_readings_csv,
    write_readings_csv,
)
from meterhub.meter.load import simulate_load
from meterhub.model.timebase import ALLOWED_INTERVALS, is_on_grid, range_starts

HEADER = "timestamp,Wh\n"


def _read(text: str, **kwargs: object) -> tuple[list[dt.datetime], list[int]]:
    return read_readings_csv(io.StringIO(text), **kwargs)  # type: ignore[arg-type]


def _csv(rows: list[tuple[str, str]], header: str = HEADER) -> str:
    return header + "".join(f"{a},{b}\n" for a, b in rows)


# --------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("tz_out", [None, "Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("minutes", [1, 15, 60])
def test_round_trip_of_a_simulated_trace(tz_out: str | None, minutes: int) -> None:
    # Spans the autumn DST change, where local timestamps repeat 02:xx.
    trace = simulate_load("m", dt.date(2025, 10, 25), 3, interval_minutes=minutes, seed=3)
    buf = io.StringIO()
    write_readings_csv(buf, trace.starts, trace.readings_wh, tz=tz_out)
    starts, readings = _read(buf.getvalue())
    assert starts == trace.starts
    assert readings == trace.readings_wh
    assert all(s.utcoffset() == dt.timedelta(0) for s in starts)


def test_round_trip_via_path_and_binary_file(tmp_path: Path) -> None:
    trace = simulate_load("m", dt.date(2025, 3, 29), 2, seed=1)
    path = tmp_path / "r.csv"
    write_readings_csv(path, trace.starts, trace.readings_wh, tz="Europe/Berlin")
    assert read_readings_csv(path) == (trace.starts, trace.readings_wh)
    assert read_readings_csv(str(path), interval_minutes=15) == (trace.starts, trace.readings_wh)
    with path.open("rb") as fh:
        assert read_readings_csv(fh) == (trace.starts, trace.readings_wh)
        assert not fh.closed
    # A UTF-8 byte-order mark, as spreadsheet exports write it.
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_readings_csv(bom) == (trace.starts, trace.readings_wh)


def test_header_variants_and_extra_columns() -> None:
    text = "status,Wh,TimeStamp\nok,5,2025-01-01T00:00:00Z\nok, 7 ,2025-01-01T00:15:00+00:00\n\n"
    starts, readings = _read(text)
    assert readings == [5, 7]
    assert starts == [dt.datetime(2025, 1, 1, 0, 0, tzinfo=dt.UTC),
                      dt.datetime(2025, 1, 1, 0, 15, tzinfo=dt.UTC)]


def test_single_reading_defaults_to_quarter_hours() -> None:
    assert _read(_csv([("2025-01-01T00:15:00Z", "3")]))[1] == [3]
    with pytest.raises(CsvImportError, match="15-minute grid"):
        _read(_csv([("2025-01-01T00:05:00Z", "3")]))
    assert _read(_csv([("2025-01-01T00:05:00Z", "3")]), interval_minutes=5)[1] == [3]


def test_gaps_can_be_allowed() -> None:
    rows = [("2025-01-01T00:00:00Z", "1"), ("2025-01-01T00:15:00Z", "2"), ("2025-01-01T01:00:00Z", "3")]
    with pytest.raises(CsvImportError) as info:
        _read(_csv(rows))
    assert info.value.line == 4
    starts, _ = _read(_csv(rows), interval_minutes=15, allow_gaps=True)
    assert len(starts) == 3


def test_grid_follows_local_days() -> None:
    # Kathmandu is UTC+05:45: its hourly grid is not Berlin's.
    ok = _csv([("2025-01-01T00:00:00+05:45", "1"), ("2025-01-01T01:00:00+05:45", "1")])
    assert len(_read(ok, tz="Asia/Kathmandu")[0]) == 2
    with pytest.raises(CsvImportError, match="grid"):
        _read(ok, tz="Europe/Berlin")


# --------------------------------------------------------------------------
# Each error, with its line number


T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:15:00Z"
T2 = "2025-01-01T00:30:00Z"

ERRORS: list[tuple[str, str, int, str]] = [
    ("empty", "", 1, "header"),
    ("blank only", "\n\n", 1, "header"),
    ("no header", f"{T0},5\n{T1},6\n", 1, "header"),
    ("wrong header", "time,kWh\n", 1, "header"),
    ("duplicate column", "timestamp,Wh,wh\n", 1, "more than once"),
    ("header only", HEADER, 1, "no readings"),
    ("too few fields", HEADER + f"{T0},1\n{T1}\n", 3, "fields"),
    ("too many fields", HEADER + f"{T0},1,2\n", 2, "fields"),
    ("bad timestamp", HEADER + "yesterday,1\n", 2, "ISO 8601"),
    ("date only", HEADER + "2025-01-01,1\n", 2, "ISO 8601"),
    ("bad month", HEADER + "2025-13-01T00:00:00Z,1\n", 2, "ISO 8601"),
    ("naive", HEADER + f"{T0},1\n2025-01-01T00:15:00,1\n", 3, "offset"),
    ("out of range", HEADER + "1960-01-01T00:00:00Z,1\n", 2, "outside"),
    ("negative", HEADER + f"{T0},-4\n", 2, "negative"),
    ("decimal", HEADER + f"{T0},4.0\n", 2, "integer"),
    ("exponent", HEADER + f"{T0},1e3\n", 2, "integer"),
    ("empty Wh", HEADER + f"{T0},\n", 2, "integer"),
    ("unicode digits", HEADER + f"{T0},\u0663\n", 2, "integer"),
    ("too large", HEADER + f"{T0},{MAX_WH + 1}\n", 2, "maximum"),
    ("duplicate", HEADER + f"{T0},1\n{T1},1\n{T1},2\n", 4, "duplicate"),
    ("backwards", HEADER + f"{T0},1\n{T2},1\n{T1},2\n", 4, "earlier"),
    ("decreasing", HEADER + f"{T0},1\n{T1},1\n{T0},2\n", 4, "earlier"),
    ("off grid", HEADER + "2025-01-01T00:07:00Z,1\n2025-01-01T00:22:00Z,1\n", 2, "grid"),
    ("seconds", HEADER + f"{T0},1\n2025-01-01T00:15:30Z,1\n", 3, "infer"),
    ("odd interval", HEADER + f"{T0},1\n2025-01-01T00:45:00Z,1\n", 3, "infer"),
    ("gap", HEADER + f"{T0},1\n{T1},1\n2025-01-01T01:00:00Z,1\n", 4, "gap"),
    ("bad quoting", HEADER + f'{T0},1\n"{T1},1\n', 3, "malformed"),
    ("nul byte", HEADER + f"{T0},1\x00\n", 2, "integer"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_each_error_names_its_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(CsvImportError) as info:
        _read(text)
    message = str(info.value)
    assert info.value.line == line
    assert message.startswith(f"line {line}: ")
    assert fragment.lower() in message.lower()
    assert "\n" not in message and "\r" not in message
    assert isinstance(info.value, ValueError)


def test_explicit_interval_mismatch() -> None:
    text = _csv([(T0, "1"), ("2025-01-01T00:05:00Z", "1")])
    assert len(_read(text)[0]) == 2  # inferred as 5 minutes
    with pytest.raises(CsvImportError) as info:
        _read(text, interval_minutes=15)
    assert info.value.line == 3


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(CsvImportError, match="cannot read"):
        read_readings_csv(tmp_path / "missing.csv")
    with pytest.raises(CsvImportError, match="UTF-8") as info:
        read_readings_csv(io.BytesIO(b"timestamp,Wh\n\xff\xfe,1\n"))
    assert info.value.line == 2
    with (tmp_path / "w.csv").open("w") as write_only, pytest.raises(CsvImportError):
        read_readings_csv(write_only)
    with pytest.raises(ValueError):
        read_readings_csv(12345)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _read(HEADER, interval_minutes=7)


def test_writer_rejects_bad_input() -> None:
    t = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    for starts, readings in [([t], [1, 2]), ([dt.datetime(2025, 1, 1)], [1]), ([t], [-1]),
                             ([t], [1.5]), ([t], [MAX_WH + 1])]:
        with pytest.raises(ValueError):
            write_readings_csv(io.StringIO(), starts, readings)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Property-based


@st.composite
def series(draw: st.DrawFn) -> tuple[list[dt.datetime], list[int], int, str | None]:
    minutes = draw(st.sampled_from(ALLOWED_INTERVALS))
    day = draw(st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(2199, 12, 30)))
    starts = range_starts(day, 2, "Europe/Berlin", minutes)
    first = draw(st.integers(0, len(starts) - 1))
    count = draw(st.integers(1, min(60, len(starts) - first)))
    chosen = starts[first : first + count]
    readings = draw(st.lists(st.integers(0, MAX_WH), min_size=count, max_size=count))
    tz_out = draw(st.sampled_from([None, "Europe/Berlin", "Asia/Tokyo", "America/Los_Angeles"]))
    return chosen, readings, minutes, tz_out


@settings(max_examples=150, deadline=None)
@given(series())
def test_property_round_trip(data: tuple[list[dt.datetime], list[int], int, str | None]) -> None:
    starts, readings, minutes, tz_out = data
    buf = io.StringIO()
    write_readings_csv(buf, starts, readings, tz=tz_out)
    assert _read(buf.getvalue(), interval_minutes=minutes) == (starts, readings)
    if len(starts) > 1:
        assert _read(buf.getvalue()) == (starts, readings)


def _check_result(starts: list[dt.datetime], readings: list[int]) -> None:
    """What a successful read promises."""
    assert len(starts) == len(readings) >= 1
    assert all(type(r) is int and 0 <= r <= MAX_WH for r in readings)
    assert all(a < b for a, b in zip(starts, starts[1:], strict=False))
    assert all(s.utcoffset() == dt.timedelta(0) for s in starts)
    assert all(is_on_grid(s, "Europe/Berlin", 1) for s in starts)


_VALID = [
    "2025-03-30T00:00:00+01:00,10",
    "2025-03-30T00:15:00+01:00,11",
    "2025-03-30T00:30:00+01:00,12",
    "2025-03-30T00:45:00+01:00,13",
    "2025-03-30T01:00:00+01:00,14",
    "2025-03-30T01:15:00Z,15",
]

_JUNK = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", ",", ",,", "\"", "-1", "1.5", "2025-03-30T01:45:00+01:00", "Z", "\x00",
                     "2025-03-30T00:15:00+01:00", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
                     "2025-02-29T00:00:00Z", "2025-03-30T02:30:00+01:00", "99999999999999", " 7 "]),
)


@st.composite
def mangled(draw: st.DrawFn) -> str:
    lines = ["timestamp,Wh", *_VALID]
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "swap", "field", "dup"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == "replace" and lines:
            lines[i] = draw(_JUNK)
        elif op == "insert":
            lines.insert(i, draw(_JUNK))
        elif op == "delete" and lines:
            del lines[i]
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "field" and lines:
            parts = lines[i].split(",")
            k = draw(st.integers(0, len(parts) - 1))
            parts[k] = draw(_JUNK)
            lines[i] = ",".join(parts)
        elif op == "dup" and lines:
            lines.insert(i, lines[i])
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join(lines) + draw(st.sampled_from(["", sep]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mangled())
def test_property_mangled_rows_raise_only_csv_import_error(text: str) -> None:
    try:
        result = _read(text)
    except CsvImportError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        assert exc.line >= 1
        return
    _check_result(*result)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_property_arbitrary_text(text: str) -> None:
    try:
        result = _read(HEADER + text)
    except CsvImportError:
        return
    _check_result(*result)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes(blob: bytes) -> None:
    try:
        result = read_readings_csv(io.BytesIO(HEADER.encode() + blob))
    except CsvImportError:
        return
    _check_result(*result)
