"""BER-TLV data objects (ISO/IEC 7816-4:2020 §5.2 "Data objects"; ISO/IEC 8825-1 §8.1).

Strict codec for interindustry BER-TLV:

* Tag field (8825-1 §8.1.2): class b8-b7, constructed b6, number in b5-b1;
  b5-b1 = 11111 announces subsequent bytes, b8 = 1 on all but the last.
  ISO/IEC 7816-4 limits tag fields to three bytes and makes ``00``-``1E``
  and ``80`` invalid as second byte (no leading zero bits, 8825-1
  §8.1.2.4.2 c; numbers below 31 use the one-byte form, §8.1.2.2). EMV-style
  tags such as ``9F02`` or ``BF0C`` are therefore refused.
* Length field (8825-1 §8.1.3; 7816-4 §5.2): definite only. ``00``-``7F``
  short form; ``81``-``84`` then 1..4 bytes. The indefinite form ``80`` and
  ``85``-``FF`` are refused, and so are non-minimal long forms (so a parse
  always re-encodes to the same bytes).
* ``00`` and ``FF`` are not valid first tag bytes; 7816-4 §5.2 lets them pad
  between objects, which :func:`parse` skips only when ``allow_padding`` is set.

Errors raise :class:`TLVError`, an :class:`ISOException` with ``6A80`` (wrong
data), so a card that parses a command body answers correctly by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .sw import SW, ISOException

__all__ = [
    "TLV",
    "TLVError",
    "parse",
    "parse_one",
    "encode",
    "encode_tag",
    "encode_length",
    "find",
    "find_all",
]

MAX_TAG_BYTES = 3
MAX_LENGTH = 0xFFFFFFFF
MAX_DEPTH = 32  # nesting bound: keeps hostile input from exhausting the stack


class TLVError(ISOException):
    """Malformed BER-TLV; carries SW ``6A80`` (ISO/IEC 7816-4 §5.6: incorrect data)."""

    def __init__(self, message: str) -> None:
        super().__init__(SW.WRONG_DATA, message)


def _read_tag(buf: bytes, off: int) -> tuple[int, int]:
    """Return (tag as big-endian int of its bytes, next offset)."""
    if off >= len(buf):
        raise TLVError("missing tag")
    first = buf[off]
    if first in (0x00, 0xFF):
        raise TLVError(f"invalid first tag byte {first:02X}")
    off += 1
    tag = first
    if first & 0x1F != 0x1F:
        return tag, off
    count = 1
    while True:
        if off >= len(buf):
            raise TLVError("truncated tag")
        b = buf[off]
        if count == 1 and b == 0x80:
            raise TLVError("tag number with leading zero bits")
        if count == 1 and b < 0x1F:
            raise TLVError("tag number below 31 in the long form")
        tag = (tag << 8) | b
        off += 1
        count += 1
        if count > MAX_TAG_BYTES:
            raise TLVError("tag field longer than three bytes")
        if not b & 0x80:
            return tag, off
        if count == MAX_TAG_BYTES:
            raise TLVError("tag field longer than three bytes")


def encode_tag(tag: int) -> bytes:
    """Tag bytes for ``tag`` (the tag is given as the int of its bytes, e.g. ``0x9F7F``)."""
    if tag <= 0:
        raise ValueError("tag must be positive")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    try:
        parsed, end = _read_tag(raw, 0)
    except TLVError as exc:
        raise ValueError(f"not a valid BER-TLV tag: {tag:X} ({exc})") from None
    if end != len(raw) or parsed != tag:
        raise ValueError(f"not a valid BER-TLV tag: {tag:X}")
    return raw


def encode_length(n: int) -> bytes:
    """Minimal definite length (ISO/IEC 8825-1 §8.1.3)."""
    if n < 0 or n > MAX_LENGTH:
        raise ValueError("length out of range")
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _read_length(buf: bytes, off: int) -> tuple[int, int]:
    if off >= len(buf):
        raise TLVError("missing length")
    first = buf[off]
    off += 1
    if first < 0x80:
        return first, off
    if first == 0x80:
        raise TLVError("indefinite length is not allowed")
    k = first & 0x7F
    if k > 4:
        raise TLVError("length field longer than five bytes")
    if off + k > len(buf):
        raise TLVError("truncated length")
    n = int.from_bytes(buf[off : off + k], "big")
    if encode_length(n) != buf[off - 1 : off + k]:
        raise TLVError("non-minimal length encoding")
    return n, off + k


@dataclass(frozen=True, slots=True)
class TLV:
    """One BER-TLV data object; ``value`` holds the raw value field."""

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        encode_tag(self.tag)  # validates
        object.__setattr__(self, "value", bytes(self.value))

    @property
    def tag_bytes(self) -> bytes:
        return encode_tag(self.tag)

    @property
    def constructed(self) -> bool:
        """b6 of the first tag byte (ISO/IEC 8825-1 §8.1.2.5)."""
        return bool(self.tag_bytes[0] & 0x20)

    @property
    def tag_class(self) -> int:
        """0 universal, 1 application, 2 context-specific, 3 private."""
        return self.tag_bytes[0] >> 6

    def children(self) -> list[TLV]:
        """Parse the value of a constructed object (strict)."""
        if not self.constructed:
            raise TLVError(f"tag {self.tag:X} is primitive")
        return parse(self.value)

    def find(self, tag: int) -> TLV | None:
        """First direct child with ``tag``."""
        return find(self.children(), tag)

    def to_bytes(self) -> bytes:
        return self.tag_bytes + encode_length(len(self.value)) + self.value

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @classmethod
    def build(cls, tag: int, children: Iterable[TLV]) -> TLV:
        """A constructed object from children."""
        obj = cls(tag, encode(children))
        if not obj.constructed:
            raise ValueError(f"tag {tag:X} is primitive")
        return obj


def parse_one(buf: bytes, offset: int = 0, *, _depth: int = 0) -> tuple[TLV, int]:
    """Parse one object at ``offset``; return it and the offset after it.

    Constructed objects are checked recursively (up to ``MAX_DEPTH`` levels)
    so that malformed nesting is caught here rather than later.
    """
    if _depth > MAX_DEPTH:
        raise TLVError("BER-TLV nested too deeply")
    buf = bytes(buf)
    tag, off = _read_tag(buf, offset)
    n, off = _read_length(buf, off)
    if off + n > len(buf):
        raise TLVError("value runs past the end of the data")
    obj = TLV(tag, buf[off : off + n])
    if obj.constructed:
        list(_iter(obj.value, False, _depth + 1))
    return obj, off + n


def _iter(buf: bytes, allow_padding: bool, depth: int = 0) -> Iterator[TLV]:
    off = 0
    while off < len(buf):
        if allow_padding and buf[off] in (0x00, 0xFF):
            off += 1
            continue
        obj, off = parse_one(buf, off, _depth=depth)
        yield obj


def parse(buf: bytes, *, allow_padding: bool = False) -> list[TLV]:
    """Parse a concatenation of BER-TLV objects (possibly empty)."""
    return list(_iter(bytes(buf), allow_padding))


def encode(objs: Iterable[TLV]) -> bytes:
    """Concatenate encoded objects."""
    return b"".join(o.to_bytes() for o in objs)


def find(objs: Iterable[TLV], tag: int) -> TLV | None:
    """First object with ``tag`` (no recursion)."""
    for o in objs:
        if o.tag == tag:
            return o
    return None


def find_all(objs: Iterable[TLV], tag: int) -> list[TLV]:
    """All objects with ``tag`` (no recursion)."""
    return [o for o in objs if o.tag == tag]
