"""SML type-length encoding (SML 1.04, "Type-Length-Field" and the
simple data types).

A TL byte is ``m ttt llll``: ``m`` says another TL byte follows, ``ttt`` is the type
(000 octet string, 100 boolean, 101 signed integer, 110 unsigned integer, 111 list)
and ``llll`` the low nibble of the length.  Follow-on TL bytes are ``m 000 llll``.
For scalars the length counts the TL bytes themselves; for lists it counts elements.
``0x01`` (an empty octet string) marks an absent OPTIONAL element and ``0x00`` is
``EndOfSmlMsg``.  Integers may be sent shortened (fewer bytes than their type), as
libsml's ``parse_unsigned32_fewer_bytes`` capture shows; signed ones sign-extend.
"""

from __future__ import annotations

from .errors import (
    SMLEncodeError,
    SMLLengthError,
    SMLStructureError,
    SMLTruncatedError,
    SMLTypeError,
    SMLUnknownTagError,
)

__all__ = [
    "INT_TYPES",
    "T_BOOL",
    "T_INT",
    "T_LIST",
    "T_OCTETS",
    "T_UINT",
    "Reader",
    "Writer",
]

T_OCTETS = 0
T_BOOL = 4
T_INT = 5
T_UINT = 6
T_LIST = 7
_KNOWN_TYPES = frozenset((T_OCTETS, T_BOOL, T_INT, T_UINT, T_LIST))
_TYPE_NAMES = {0: "octet string", 4: "boolean", 5: "integer", 6: "unsigned", 7: "list"}

# integer type names of SML_Value: name -> (signed, bytes)
INT_TYPES: dict[str, tuple[bool, int]] = {
    "i8": (True, 1), "i16": (True, 2), "i32": (True, 4), "i64": (True, 8),
    "u8": (False, 1), "u16": (False, 2), "u32": (False, 4), "u64": (False, 8),
}  # fmt: skip
# a shortened integer of n data bytes belongs to the smallest standard width >= n
_WIDTH_OF_LEN = {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 8: 8}
_MAX_TL_BYTES = 4  # 16**4 - 1 bytes is far beyond any SML file; longer TLs are garbage


class Reader:
    """Cursor over one buffer; every method raises only :class:`SMLError` subclasses."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    # -- raw TL ------------------------------------------------------------
    def peek(self) -> int:
        if self.pos >= self.end:
            raise SMLTruncatedError(f"input ends at offset {self.pos}, element expected")
        return self.buf[self.pos]

    def tl(self) -> tuple[int, int]:
        """Consume a TL field; return (type, data length) or (T_LIST, element count)."""
        buf, pos, end = self.buf, self.pos, self.end
        if pos >= end:
            raise SMLTruncatedError(f"input ends at offset {pos}, TL field expected")
        b = buf[pos]
        typ = (b >> 4) & 0x7
        length = b & 0x0F
        n = 1
        while b & 0x80:
            if pos + n >= end:
                raise SMLTruncatedError(f"TL field at offset {pos} is cut off")
            if n >= _MAX_TL_BYTES:
                raise SMLLengthError(f"TL field at offset {pos} longer than {_MAX_TL_BYTES} bytes")
            b = buf[pos + n]
            if b & 0x70:
                raise SMLLengthError(
                    f"TL continuation byte {b:#04x} at offset {pos + n} has type bits"
                )
            length = (length << 4) | (b & 0x0F)
            n += 1
        if typ not in _KNOWN_TYPES:
            raise SMLUnknownTagError(
                f"unknown SML type {typ:#x} in TL byte {buf[pos]:#04x} at offset {pos}"
            )
        if typ != T_LIST:
            if length < n:
                raise SMLLengthError(
                    f"TL at offset {pos} announces length {length} < its own {n} bytes"
                )
            length -= n
            if pos + n + length > end:
                raise SMLTruncatedError(
                    f"element at offset {pos} needs {length} data bytes, {end - pos - n} left"
                )
        self.pos = pos + n
        return typ, length

    def _expect(self, want: int, got: int, what: str) -> None:
        if got != want:
            raise SMLTypeError(f"{what}: expected {_TYPE_NAMES[want]}, got {_TYPE_NAMES[got]}")

    def absent(self) -> bool:
        """Consume and return True if the next element is the OPTIONAL marker 0x01."""
        if self.pos < self.end and self.buf[self.pos] == 0x01:
            self.pos += 1
            return True
        return False

    # -- scalars -------------------------------------------------------------
    def octets(self, what: str) -> bytes:
        typ, n = self.tl()
        self._expect(T_OCTETS, typ, what)
        start = self.pos
        self.pos = start + n
        return bytes(self.buf[start : start + n])

    def opt_octets(self, what: str) -> bytes | None:
        return None if self.absent() else self.octets(what)

    def _int_body(self, n: int, signed: bool, max_bytes: int, what: str) -> int:
        if n == 0 or n > max_bytes:
            raise SMLLengthError(f"{what}: integer of {n} bytes (1..{max_bytes} allowed)")
        start = self.pos
        self.pos = start + n
        return int.from_bytes(self.buf[start : start + n], "big", signed=signed)

    def uint(self, max_bytes: int, what: str) -> int:
        typ, n = self.tl()
        self._expect(T_UINT, typ, what)
        return self._int_body(n, False, max_bytes, what)

    def opt_uint(self, max_bytes: int, what: str) -> int | None:
        return None if self.absent() else self.uint(max_bytes, what)

    def sint(self, max_bytes: int, what: str) -> int:
        typ, n = self.tl()
        self._expect(T_INT, typ, what)
        return self._int_body(n, True, max_bytes, what)

    def opt_sint(self, max_bytes: int, what: str) -> int | None:
        return None if self.absent() else self.sint(max_bytes, what)

    def boolean(self, what: str) -> bool:
        typ, n = self.tl()
        self._expect(T_BOOL, typ, what)
        if n != 1:
            raise SMLLengthError(f"{what}: boolean of {n} bytes (1 required)")
        self.pos += 1
        return self.buf[self.pos - 1] != 0  # SML Boolean: 0x00 is FALSE, anything else TRUE

    def opt_boolean(self, what: str) -> bool | None:
        return None if self.absent() else self.boolean(what)

    def scalar_value(self, what: str) -> tuple[bool | bytes | int, str | None]:
        """Read SML_Value's scalar alternatives; return (value, int type name or None)."""
        typ, n = self.tl()
        start = self.pos
        if typ == T_OCTETS:
            self.pos = start + n
            return bytes(self.buf[start : start + n]), None
        if typ == T_BOOL:
            if n != 1:
                raise SMLLengthError(f"{what}: boolean of {n} bytes (1 required)")
            self.pos = start + 1
            return self.buf[start] != 0, None
        if typ in (T_INT, T_UINT):
            signed = typ == T_INT
            value = self._int_body(n, signed, 8, what)
            return value, f"{'i' if signed else 'u'}{_WIDTH_OF_LEN[n] * 8}"
        raise SMLTypeError(f"{what}: a list is not a scalar SML_Value")

    # -- structure -----------------------------------------------------------
    def list_of(self, count: int | None, what: str) -> int:
        """Consume a list TL; check its element count if ``count`` is given."""
        typ, n = self.tl()
        self._expect(T_LIST, typ, what)
        if count is not None and n != count:
            raise SMLStructureError(f"{what}: list of {n} elements, {count} required")
        # each element takes at least one byte: cheap guard against absurd counts
        if n > self.end - self.pos:
            raise SMLTruncatedError(
                f"{what}: list of {n} elements cannot fit {self.end - self.pos} bytes"
            )
        return n

    def opt_list_of(self, count: int | None, what: str) -> int | None:
        return None if self.absent() else self.list_of(count, what)

    def skip(self, depth: int = 0) -> None:
        """Skip one element of any type (used to capture opaque sub-trees verbatim)."""
        if depth > 64:
            raise SMLStructureError("elements nested deeper than 64 levels")
        typ, n = self.tl()
        if typ == T_LIST:
            for _ in range(n):
                self.skip(depth + 1)
        else:
            self.pos += n

    def raw_element(self, what: str) -> bytes:
        """Return the encoded bytes of the next element, unparsed."""
        start = self.pos
        self.skip()
        return bytes(self.buf[start : self.pos])


class Writer:
    """Append-only encoder; a bytearray keeps concatenation linear."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self.out)

    def tl(self, typ: int, length: int) -> None:
        """Write a TL for ``length`` data bytes (or ``length`` list elements)."""
        if typ == T_LIST:
            n = 1
            while length >= 16**n:
                n += 1
            total = length
        else:
            n = 1
            while length + n >= 16**n:
                n += 1
            total = length + n
        if n > _MAX_TL_BYTES:  # the decoder refuses longer TL fields, so never emit one
            raise SMLEncodeError(f"element of {length} bytes/elements is too long for SML")
        out = self.out
        for i in range(n):
            nibble = (total >> (4 * (n - 1 - i))) & 0x0F
            more = 0x80 if i < n - 1 else 0
            out.append(more | ((typ << 4) if i == 0 else 0) | nibble)

    def absent(self) -> None:
        self.out.append(0x01)

    def octets(self, value: bytes) -> None:
        self.tl(T_OCTETS, len(value))
        self.out += value

    def opt_octets(self, value: bytes | None) -> None:
        if value is None:
            self.out.append(0x01)
        else:
            self.octets(value)

    def integer(self, value: int, type_name: str) -> None:
        """Write ``value`` at the full width of ``type_name`` (e.g. "u32", "i8")."""
        try:
            signed, size = INT_TYPES[type_name]
        except KeyError:
            raise SMLEncodeError(f"unknown integer type {type_name!r}") from None
        try:
            data = value.to_bytes(size, "big", signed=signed)
        except OverflowError:
            raise SMLEncodeError(f"{value} does not fit SML type {type_name}") from None
        self.out.append(((T_INT if signed else T_UINT) << 4) | (size + 1))
        self.out += data

    def opt_integer(self, value: int | None, type_name: str) -> None:
        if value is None:
            self.out.append(0x01)
        else:
            self.integer(value, type_name)

    def boolean(self, value: bool) -> None:
        self.out += b"\x42\xff" if value else b"\x42\x00"

    def list_of(self, count: int) -> None:
        self.tl(T_LIST, count)

    def raw(self, data: bytes) -> None:
        self.out += data


def smallest_int_type(value: int) -> str:
    """Smallest standard SML integer type holding ``value`` (unsigned when >= 0)."""
    if value >= 0:
        for bits in (8, 16, 32, 64):
            if value < 1 << bits:
                return f"u{bits}"
    else:
        for bits in (8, 16, 32, 64):
            if value >= -(1 << (bits - 1)):
                return f"i{bits}"
    raise SMLEncodeError(f"{value} does not fit a 64-bit SML integer")
