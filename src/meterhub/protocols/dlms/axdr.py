"""A-XDR encoding of COSEM ``Data`` (IEC 62056-6-2, Green Book 1000-2 Ed. 9 §9.5).

meterhub encodes its own ``Data`` values instead of using ``dlms_cosem``'s
``BaseDlmsData.to_bytes``: that one writes the length of a variable-length type
as a single byte, so octet strings of 128 bytes or more come out wrong (A-XDR
lengths >= 128 need the ``0x8N`` long form, Green Book §9.5). Decoding is also
ours, bounded and typed, because the decoder runs on bytes from the network.

The date-time codec follows Blue Book 1000-1 §4.1.6.1. ``dlms_cosem.time``
decodes a deviation of 0 as a *naive* datetime (its ``utc_offset_minutes``
treats 0 as "not specified"); :func:`decode_datetime` returns UTC there and a
naive datetime only for the real "not specified" value ``0x8000``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from ...errors import MeterhubError

__all__ = [
    "AxdrError",
    "Tag",
    "encode_length",
    "decode_length",
    "null",
    "array",
    "structure",
    "boolean",
    "octet_string",
    "visible_string",
    "integer",
    "long",
    "unsigned",
    "long_unsigned",
    "double_long",
    "double_long_unsigned",
    "long64",
    "long64_unsigned",
    "enum",
    "decode",
    "decode_one",
    "encode_datetime",
    "decode_datetime",
    "DEVIATION_NOT_SPECIFIED",
]


class AxdrError(MeterhubError, ValueError):
    """Bytes that are not a well-formed A-XDR ``Data`` value."""


class Tag:
    """Data type tags, Blue Book §4.1.5 (CHOICE of ``Data``)."""

    NULL = 0
    ARRAY = 1
    STRUCTURE = 2
    BOOLEAN = 3
    BIT_STRING = 4
    DOUBLE_LONG = 5
    DOUBLE_LONG_UNSIGNED = 6
    OCTET_STRING = 9
    VISIBLE_STRING = 10
    UTF8_STRING = 12
    INTEGER = 15
    LONG = 16
    UNSIGNED = 17
    LONG_UNSIGNED = 18
    LONG64 = 20
    LONG64_UNSIGNED = 21
    ENUM = 22
    DATE_TIME = 25
    DATE = 26
    TIME = 27


# (byte width, signed) of the fixed-length integer types.
_INT_TYPES: dict[int, tuple[int, bool]] = {
    Tag.DOUBLE_LONG: (4, True),
    Tag.DOUBLE_LONG_UNSIGNED: (4, False),
    Tag.INTEGER: (1, True),
    Tag.LONG: (2, True),
    Tag.UNSIGNED: (1, False),
    Tag.LONG_UNSIGNED: (2, False),
    Tag.LONG64: (8, True),
    Tag.LONG64_UNSIGNED: (8, False),
    Tag.ENUM: (1, False),
}
_FIXED_OCTETS = {Tag.DATE_TIME: 12, Tag.DATE: 5, Tag.TIME: 4}

#: Nesting limit for arrays/structures when decoding untrusted bytes.
MAX_DEPTH = 16


def encode_length(n: int) -> bytes:
    """A-XDR length/quantity: one byte below 128, else ``0x80|k`` and k big-endian bytes."""
    if n < 0:
        raise ValueError("length must be non-negative")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def decode_length(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a length at ``pos``; return ``(length, next_pos)``."""
    if pos >= len(buf):
        raise AxdrError("truncated length")
    first = buf[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    k = first & 0x7F
    # Four length bytes already allow 4 GiB; more is never legitimate here.
    if k == 0 or k > 4 or pos + k > len(buf):
        raise AxdrError("bad or truncated long-form length")
    return int.from_bytes(buf[pos : pos + k], "big"), pos + k


def _int(tag: int, value: int) -> bytes:
    width, signed = _INT_TYPES[tag]
    try:
        return bytes([tag]) + value.to_bytes(width, "big", signed=signed)
    except OverflowError:
        raise ValueError(f"{value} does not fit data type {tag}") from None


def null() -> bytes:
    return b"\x00"


def array(items: Sequence[bytes]) -> bytes:
    """``array`` of already encoded elements (all of one type, Blue Book §4.1.5)."""
    return bytes([Tag.ARRAY]) + encode_length(len(items)) + b"".join(items)


def structure(items: Sequence[bytes]) -> bytes:
    return bytes([Tag.STRUCTURE]) + encode_length(len(items)) + b"".join(items)


def boolean(value: bool) -> bytes:
    return bytes([Tag.BOOLEAN, 0xFF if value else 0x00])


def octet_string(value: bytes) -> bytes:
    return bytes([Tag.OCTET_STRING]) + encode_length(len(value)) + bytes(value)


def visible_string(value: str) -> bytes:
    raw = value.encode("ascii")
    return bytes([Tag.VISIBLE_STRING]) + encode_length(len(raw)) + raw


def integer(v: int) -> bytes:
    return _int(Tag.INTEGER, v)


def long(v: int) -> bytes:
    return _int(Tag.LONG, v)


def unsigned(v: int) -> bytes:
    return _int(Tag.UNSIGNED, v)


def long_unsigned(v: int) -> bytes:
    return _int(Tag.LONG_UNSIGNED, v)


def double_long(v: int) -> bytes:
    return _int(Tag.DOUBLE_LONG, v)


def double_long_unsigned(v: int) -> bytes:
    return _int(Tag.DOUBLE_LONG_UNSIGNED, v)


def long64(v: int) -> bytes:
    return _int(Tag.LONG64, v)


def long64_unsigned(v: int) -> bytes:
    return _int(Tag.LONG64_UNSIGNED, v)


def enum(v: int) -> bytes:
    return _int(Tag.ENUM, v)


def decode_one(buf: bytes, pos: int = 0, _depth: int = 0) -> tuple[object, int]:
    """Decode one ``Data`` at ``pos``; return ``(python_value, next_pos)``.

    Arrays and structures become lists, strings bytes/str, integers int,
    booleans bool, null-data None. Raises :class:`AxdrError`, never reads past
    the buffer and never recurses deeper than :data:`MAX_DEPTH`.
    """
    if pos >= len(buf):
        raise AxdrError("truncated data: missing tag")
    tag = buf[pos]
    pos += 1
    if tag == Tag.NULL:
        return None, pos
    if tag in (Tag.ARRAY, Tag.STRUCTURE):
        if _depth >= MAX_DEPTH:
            raise AxdrError("data nested too deeply")
        n, pos = decode_length(buf, pos)
        # Every element takes at least one byte: reject counts that cannot fit.
        if n > len(buf) - pos:
            raise AxdrError("element count exceeds the remaining bytes")
        items = []
        for _ in range(n):
            item, pos = decode_one(buf, pos, _depth + 1)
            items.append(item)
        return items, pos
    if tag == Tag.BOOLEAN:
        if pos + 1 > len(buf):
            raise AxdrError("truncated boolean")
        return buf[pos] != 0, pos + 1
    if tag in _INT_TYPES:
        width, signed = _INT_TYPES[tag]
        if pos + width > len(buf):
            raise AxdrError("truncated integer")
        return int.from_bytes(buf[pos : pos + width], "big", signed=signed), pos + width
    if tag in (Tag.OCTET_STRING, Tag.VISIBLE_STRING, Tag.UTF8_STRING):
        n, pos = decode_length(buf, pos)
        if pos + n > len(buf):
            raise AxdrError("truncated string")
        raw = bytes(buf[pos : pos + n])
        if tag == Tag.OCTET_STRING:
            return raw, pos + n
        try:
            return raw.decode("ascii" if tag == Tag.VISIBLE_STRING else "utf-8"), pos + n
        except UnicodeDecodeError:
            raise AxdrError("string is not valid text") from None
    if tag == Tag.BIT_STRING:
        nbits, pos = decode_length(buf, pos)
        n = (nbits + 7) // 8
        if pos + n > len(buf):
            raise AxdrError("truncated bit-string")
        return bytes(buf[pos : pos + n]), pos + n
    if tag in _FIXED_OCTETS:
        n = _FIXED_OCTETS[tag]
        if pos + n > len(buf):
            raise AxdrError("truncated date/time")
        return bytes(buf[pos : pos + n]), pos + n
    raise AxdrError(f"unknown or unsupported data tag {tag}")


def decode(buf: bytes) -> object:
    """Decode exactly one ``Data`` filling ``buf``."""
    value, end = decode_one(buf, 0)
    if end != len(buf):
        raise AxdrError(f"{len(buf) - end} trailing bytes after data")
    return value


#: Blue Book §4.1.6.1: deviation 0x8000 means "not specified".
DEVIATION_NOT_SPECIFIED = -0x8000


def encode_datetime(dt: datetime) -> bytes:
    """The 12-octet ``date-time`` of Blue Book §4.1.6.1.

    ``deviation`` is minutes from *local time to UTC* (UTC = local + deviation),
    so UTC+01:00 is -60. A naive datetime gets "not specified" (0x8000). The
    clock-status bit 7 flags daylight saving time.
    """
    if dt.tzinfo is None or dt.utcoffset() is None:
        deviation = DEVIATION_NOT_SPECIFIED
        dst = False
    else:
        offset = dt.utcoffset()
        assert offset is not None
        deviation = -int(offset.total_seconds() // 60)
        dst = bool(dt.dst())
    return (
        dt.year.to_bytes(2, "big")
        + bytes([dt.month, dt.day, dt.isoweekday(), dt.hour, dt.minute, dt.second])
        + bytes([dt.microsecond // 10000])
        + deviation.to_bytes(2, "big", signed=True)
        + bytes([0x80 if dst else 0x00])
    )


def decode_datetime(raw: bytes) -> datetime:
    """Decode a 12-octet ``date-time`` (Blue Book §4.1.6.1) into a datetime.

    A deviation of 0 is UTC (an aware datetime; the ``dlms_cosem`` bug returns a
    naive one); 0x8000 "not specified" gives a naive datetime. Wildcards
    (0xFF/0xFFFF fields) are not a point in time and are rejected.
    """
    if len(raw) != 12:
        raise AxdrError(f"date-time is 12 octets, got {len(raw)}")
    year = int.from_bytes(raw[0:2], "big")
    month, day, _wd, hour, minute, second, hundredths = raw[2:9]
    deviation = int.from_bytes(raw[9:11], "big", signed=True)
    if year == 0xFFFF or 0xFF in (month, day, hour, minute, second):
        raise AxdrError("date-time with wildcard fields is not a point in time")
    hundredths = 0 if hundredths == 0xFF else hundredths
    if hundredths > 99:
        raise AxdrError("hundredths out of range")
    if deviation == DEVIATION_NOT_SPECIFIED:
        tz = None
    elif -840 <= deviation <= 720:  # UTC+14 .. UTC-12
        tz = UTC if deviation == 0 else timezone(timedelta(minutes=-deviation))
    else:
        raise AxdrError(f"deviation {deviation} out of range")
    try:
        return datetime(year, month, day, hour, minute, second, hundredths * 10000, tzinfo=tz)
    except ValueError as exc:
        raise AxdrError(f"invalid date-time: {exc}") from None
