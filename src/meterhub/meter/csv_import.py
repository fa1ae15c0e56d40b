"""Import (and export) real meter readings as CSV.

Format (RFC 4180 CSV, UTF-8, optional BOM): a required header row naming the
columns ``timestamp`` and ``Wh`` (case-insensitive, any order; further columns
are ignored), then one row per interval::

    timestamp,Wh
    2025-03-30T00:00:00+01:00,41
    2025-03-30T00:15:00Z,38

``timestamp`` is the interval *start* in ISO 8601 extended format with an
explicit UTC offset or ``Z`` (RFC 3339 profile; Python's
``datetime.fromisoformat``), ``Wh`` the energy in that interval as a
non-negative integer in ASCII digits.  Validation: every timestamp lies on the
interval grid of its local day (:mod:`meterhub.model.timebase`), timestamps
strictly increase (no duplicates), and, unless ``allow_gaps``, consecutive
readings are exactly one interval apart.  The first problem found is reported
as a :class:`CsvImportError` whose one-line message starts with ``line N:``.

This is the only module of :mod:`meterhub.meter` that touches files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from ..errors import MeterhubError
from ..model.timebase import (
    ALLOWED_INTERVALS,
    DEFAULT_TZ,
    UTC,
    check_interval,
    check_tz,
    is_on_grid,
)

__all__ = ["CsvImportError", "MAX_WH", "read_readings_csv", "write_readings_csv"]

# Readings are committed and later range-proved in a fixed bit width; 32 bits
# (4.29 GWh per interval) is far above any meter on a low-voltage connection.
MAX_WH = 2**32 - 1
_MIN_YEAR, _MAX_YEAR = 1970, 2200  # also keeps datetime arithmetic far from overflow
_DIGITS = re.compile(r"[0-9]{1,12}")


class CsvImportError(MeterhubError, ValueError):
    """A CSV file of readings is malformed; ``line`` is the 1-based line number (0 if none)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.reason = message
        super().__init__(f"line {line}: {message}" if line else message)


def _show(text: str) -> str:
    """A cell for an error message: repr (so one line), cut to a readable length."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _parse_timestamp(text: str, line: int) -> dt.datetime:
    raw = text.strip()
    # fromisoformat also takes a bare date, which is not an interval start.
    if "T" not in raw.upper() and " " not in raw:
        raise CsvImportError(line, f"timestamp {_show(text)} is not an ISO 8601 date-time")
    try:
        stamp = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise CsvImportError(line, f"timestamp {_show(text)} is not an ISO 8601 date-time") from None
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise CsvImportError(line, f"timestamp {_show(text)} has no UTC offset (add 'Z' or '+01:00')")
    if not _MIN_YEAR <= stamp.year <= _MAX_YEAR:
        raise CsvImportError(line, f"timestamp {_show(text)} is outside years {_MIN_YEAR}..{_MAX_YEAR}")
    return stamp.astimezone(UTC)


def _parse_wh(text: str, line: int) -> int:
    raw = text.strip()
    if not _DIGITS.fullmatch(raw):
        if raw.startswith("-") and _DIGITS.fullmatch(raw[1:]):
            raise CsvImportError(line, f"Wh {_show(text)} is negative")
        raise CsvImportError(line, f"Wh {_show(text)} is not a non-negative integer")
    value = int(raw)
    if value > MAX_WH:
        raise CsvImportError(line, f"Wh {value} exceeds the maximum {MAX_WH}")
    return value


def _header_columns(row: list[str], line: int) -> tuple[int, int]:
    names = [cell.strip().lstrip("\ufeff").strip().lower() for cell in row]
    for wanted in ("timestamp", "wh"):
        count = names.count(wanted)
        if count == 0:
            raise CsvImportError(
                line, f"header must name columns 'timestamp' and 'Wh', got {','.join(row)!r}"[:200]
            )
        if count > 1:
            raise CsvImportError(line, f"header names column {wanted!r} more than once")
    return names.index("timestamp"), names.index("wh")


def _rows(stream: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of non-blank rows; csv/decoding errors become CsvImportError."""
    reader = csv.reader(stream, strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CsvImportError(reader.line_num, f"malformed CSV ({exc})") from None
        except UnicodeDecodeError:
            raise CsvImportError(reader.line_num + 1, "file is not valid UTF-8") from None
        if not row or all(not cell.strip() for cell in row):
            continue  # blank lines, e.g. a trailing newline
        yield reader.line_num, row


def _parse(
    stream: IO[str], interval_minutes: int | None, tz: str, allow_gaps: bool
) -> tuple[list[dt.datetime], list[int]]:
    rows = _rows(stream)
    first = next(rows, None)
    if first is None:
        raise CsvImportError(1, "empty file; a header 'timestamp,Wh' is required")
    header_line, header = first
    ts_col, wh_col = _header_columns(header, header_line)
    width = len(header)

    interval = interval_minutes
    starts: list[dt.datetime] = []
    readings: list[int] = []
    lines: list[int] = []

    def grid_check(stamp: dt.datetime, line: int, minutes: int) -> None:
        if not is_on_grid(stamp, tz, minutes):
            raise CsvImportError(
                line, f"timestamp {stamp.isoformat()} is not on the {minutes}-minute grid in {tz}"
            )

    for line, row in rows:
        if len(row) != width:
            raise CsvImportError(line, f"expected {width} fields, got {len(row)}")
        stamp = _parse_timestamp(row[ts_col], line)
        wh = _parse_wh(row[wh_col], line)
        if starts:
            prev = starts[-1]
            if stamp == prev:
                raise CsvImportError(line, f"duplicate timestamp {stamp.isoformat()} (line {lines[-1]})")
            if stamp < prev:
                raise CsvImportError(
                    line, f"timestamp {stamp.isoformat()} is earlier than line {lines[-1]}"
                )
            step_min = (stamp - prev) / dt.timedelta(minutes=1)
            if interval is None:
                # Infer from the first two readings, then check the first one too.
                if step_min not in ALLOWED_INTERVALS:
                    raise CsvImportError(
                        line,
                        f"cannot infer the interval: readings are {step_min:g} min apart, "
                        f"allowed {ALLOWED_INTERVALS}",
                    )
                interval = int(step_min)
                grid_check(prev, lines[-1], interval)
            if not allow_gaps and step_min != interval:
                raise CsvImportError(
                    line, f"gap of {step_min:g} min after line {lines[-1]} (interval {interval} min)"
                )
        if interval is not None:
            grid_check(stamp, line, interval)
        starts.append(stamp)
        readings.append(wh)
        lines.append(line)

    if not starts:
        raise CsvImportError(header_line, "no readings after the header")
    if interval is None:  # a single reading: default interval
        grid_check(starts[0], lines[0], 15)
    return starts, readings


def read_readings_csv(
    path_or_file: str | os.PathLike[str] | IO[str] | IO[bytes],
    *,
    interval_minutes: int | None = None,
    tz: str = DEFAULT_TZ,
    allow_gaps: bool = False,
) -> tuple[list[dt.datetime], list[int]]:
    """Read and validate readings; return (aware UTC interval starts, Wh).

    ``path_or_file`` is a path or an open text/binary file.  With
    ``interval_minutes=None`` the interval is inferred from the first two
    readings (15 minutes for a single reading); pass it explicitly when gaps
    are allowed.  ``tz`` defines where local days, hence the grid, begin.
    Raises :class:`CsvImportError` (a ``ValueError``) for any bad input,
    including unreadable files, and ``ValueError`` for bad arguments.
    """
    if interval_minutes is not None:
        check_interval(interval_minutes)
    check_tz(tz)
    if hasattr(path_or_file, "read"):
        handle: Any = path_or_file
        try:
            probe = handle.read(0)
            if isinstance(probe, bytes):
                return _parse(_decode(handle.read()), interval_minutes, tz, allow_gaps)
            return _parse(handle, interval_minutes, tz, allow_gaps)
        except OSError as exc:  # e.g. a file opened for writing only
            raise CsvImportError(0, f"cannot read file: {exc}") from None
    if not isinstance(path_or_file, str | os.PathLike):
        raise ValueError(f"expected a path or an open file, got {type(path_or_file).__name__}")
    try:
        with open(path_or_file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CsvImportError(0, f"cannot read {os.fspath(path_or_file)!r}: {exc.strerror or exc}") from None
    return _parse(_decode(data), interval_minutes, tz, allow_gaps)


def _decode(data: bytes) -> io.StringIO:
    """UTF-8 (BOM allowed) to text; a decoding error names its line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CsvImportError(line, "file is not valid UTF-8") from None
    return io.StringIO(text, newline="")


def _format(stamp: dt.datetime, tz: str | None) -> str:
    if tz is None:
        return stamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
    from zoneinfo import ZoneInfo

    return stamp.astimezone(ZoneInfo(tz)).isoformat()


def write_readings_csv(
    path_or_file: str | os.PathLike[str] | IO[str],
    starts: Sequence[dt.datetime],
    readings_wh: Iterable[int],
    *,
    tz: str | None = None,
) -> None:
    """Write readings in the format :func:`read_readings_csv` reads.

    Timestamps are written in UTC with ``Z``, or as local time with its offset
    when ``tz`` is given (unambiguous across the autumn repeated hour).
    Raises ``ValueError`` on inconsistent input; nothing is validated against
    a grid here.
    """
    values = list(readings_wh)
    if len(values) != len(starts):
        raise ValueError(f"{len(starts)} starts but {len(values)} readings")
    if tz is not None:
        check_tz(tz)
    for stamp, wh in zip(starts, values, strict=True):
        if not isinstance(stamp, dt.datetime) or stamp.utcoffset() is None:
            raise ValueError(f"start {stamp!r} is not an aware datetime")
        if isinstance(wh, bool) or not isinstance(wh, int) or not 0 <= wh <= MAX_WH:
            raise ValueError(f"reading {wh!r} is not an integer in [0, {MAX_WH}]")
    lines = ["timestamp,Wh"] + [f"{_format(s, tz)},{w}" for s, w in zip(starts, values, strict=True)]
    payload = "\r\n".join(lines) + "\r\n"  # RFC 4180 line breaks
    if hasattr(path_or_file, "write"):
        path_or_file.write(payload)  # type: ignore[union-attr]
        return
    with open(path_or_file, "w", encoding="utf-8", newline="") as out:
        out.write(payload)
