"""SML data structures below the message level (SML 1.04 / TR-03109-1 Anlage IV).

``SML_Time``, ``SML_ListEntry`` (used by SML_GetList.Res),
``SML_PeriodEntry`` (used by SML_GetProfileList.Res), ``SML_Value`` and OBIS and
server-id helpers.  Each class is an immutable dataclass with ``encode``/``decode``
against :mod:`.tl` and convenience ``to_bytes``/``from_bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from .errors import SMLEncodeError, SMLStructureError, SMLTypeError, SMLUnknownTagError
from .tl import INT_TYPES, T_LIST, T_UINT, Reader, Writer, smallest_int_type

__all__ = [
    "ListEntry",
    "PeriodEntry",
    "SmlTime",
    "SmlValue",
    "format_server_id",
    "make_server_id",
    "obis",
    "obis_to_str",
]


def obis(code: str) -> bytes:
    """Parse "A-B:C.D.E*F" (IEC 62056-61 notation) into the 6-byte objName of SML."""
    try:
        ab, rest = code.split(":")
        a, b = ab.split("-")
        cde, f = rest.split("*")
        c, d, e = cde.split(".")
        return bytes(int(x) for x in (a, b, c, d, e, f))
    except ValueError:
        raise SMLEncodeError(f"not an OBIS code: {code!r}") from None


def obis_to_str(name: bytes) -> str:
    """Format a 6-byte objName as "A-B:C.D.E*F"; other lengths as hex."""
    if len(name) != 6:
        return name.hex()
    return "{}-{}:{}.{}.{}*{}".format(*name)


def make_server_id(manufacturer: str, serial: int, *, block: int = 0, medium: int = 1) -> bytes:
    """Build the 10-byte server id used by German eHZ meters (DIN 43863-5 device id).

    Layout: ``0x0A`` (id type), medium (1 = electricity), three ASCII letters of the
    FLAG manufacturer code, one byte fabrication block, four bytes serial number
    (big endian).  pysml renders it as "1 XYZ00 1234 5678".
    """
    code = manufacturer.encode("ascii", "strict")
    if len(code) != 3 or not code.isalpha():
        raise SMLEncodeError(f"manufacturer code must be 3 letters, got {manufacturer!r}")
    if not (0 <= serial < 1 << 32 and 0 <= block < 256 and 0 <= medium < 16):
        raise SMLEncodeError("server id field out of range")
    return bytes((0x0A, medium)) + code.upper() + bytes((block,)) + serial.to_bytes(4, "big")


def format_server_id(server_id: bytes) -> str:
    """Render a DIN 43863-5 server id as "1 XYZ00 1234 5678", anything else as hex."""
    if len(server_id) == 10 and server_id[0] in (0x09, 0x0A):
        serial = int.from_bytes(server_id[6:], "big")
        maker = server_id[2:5].decode("latin-1")
        return (
            f"{server_id[1]:X} {maker}{server_id[5]:02X} {serial // 10000:04d} {serial % 10000:04d}"
        )
    return server_id.hex()


@dataclass(frozen=True, slots=True)
class SmlTime:
    """SML_Time CHOICE (SML 1.04): secIndex [1], timestamp [2], localTimestamp [3].

    ``value`` is the seconds index or the UTC Unix timestamp; for a local timestamp
    ``local_offset`` and ``season_offset`` are minutes (Integer16).
    """

    SEC_INDEX: ClassVar[int] = 1
    TIMESTAMP: ClassVar[int] = 2
    LOCAL_TIMESTAMP: ClassVar[int] = 3

    kind: int
    value: int
    local_offset: int | None = None
    season_offset: int | None = None

    @classmethod
    def sec_index(cls, seconds: int) -> SmlTime:
        return cls(cls.SEC_INDEX, seconds)

    @classmethod
    def timestamp(cls, unix_time: int) -> SmlTime:
        return cls(cls.TIMESTAMP, unix_time)

    def encode(self, w: Writer) -> None:
        w.list_of(2)
        w.integer(self.kind, "u8")
        if self.kind in (self.SEC_INDEX, self.TIMESTAMP):
            w.integer(self.value, "u32")
        elif self.kind == self.LOCAL_TIMESTAMP:
            if self.local_offset is None or self.season_offset is None:
                raise SMLEncodeError("SML_TimestampLocal needs local and season offsets")
            w.list_of(3)
            w.integer(self.value, "u32")
            w.integer(self.local_offset, "i16")
            w.integer(self.season_offset, "i16")
        else:
            raise SMLEncodeError(f"unknown SML_Time tag {self.kind}")

    @classmethod
    def decode(cls, r: Reader) -> SmlTime:
        # Holley DTZ541 meters send a bare Unsigned32 seconds index instead of the
        # CHOICE (smllib's Frame2 capture; libsml has the same workaround)
        if (r.peek() >> 4) & 0x7 == T_UINT:
            return cls(cls.SEC_INDEX, r.uint(4, "SML_Time secIndex"))
        r.list_of(2, "SML_Time")
        kind = r.uint(1, "SML_Time tag")
        if kind in (cls.SEC_INDEX, cls.TIMESTAMP):
            return cls(kind, r.uint(4, "SML_Time value"))
        if kind == cls.LOCAL_TIMESTAMP:
            r.list_of(3, "SML_TimestampLocal")
            ts = r.uint(4, "SML_TimestampLocal.timestamp")
            return cls(kind, ts, r.sint(2, "localOffset"), r.sint(2, "seasonTimeOffset"))
        raise SMLUnknownTagError(f"unknown SML_Time tag {kind}")

    @classmethod
    def decode_opt(cls, r: Reader) -> SmlTime | None:
        return None if r.absent() else cls.decode(r)


def encode_opt_time(w: Writer, t: SmlTime | None) -> None:
    if t is None:
        w.absent()
    else:
        t.encode(w)


SmlValue = bool | bytes | int | SmlTime
"""SML_Value (SML 1.04): Boolean, Octet String, Integer8..64, Unsigned8..64, or (1.04
SML_ListType) an SML_Time."""

_LIST_TYPE_TIME = 1  # SML_ListType CHOICE tag smlTime (SML 1.04)


def _encode_value(w: Writer, value: SmlValue | None, value_type: str | None) -> None:
    if value is None:
        w.absent()
    elif isinstance(value, bool):  # before int: bool is an int subclass
        w.boolean(value)
    elif isinstance(value, int):
        w.integer(value, value_type or smallest_int_type(value))
    elif isinstance(value, bytes | bytearray):
        w.octets(bytes(value))
    elif isinstance(value, SmlTime):
        w.list_of(2)
        w.integer(_LIST_TYPE_TIME, "u8")
        value.encode(w)
    else:
        raise SMLEncodeError(f"cannot encode {type(value).__name__} as SML_Value")


def _decode_value(r: Reader, what: str) -> tuple[SmlValue | None, str | None]:
    if r.absent():
        return None, None
    if (r.peek() >> 4) & 0x7 == T_LIST:
        r.list_of(2, f"{what} SML_ListType")
        tag = r.uint(1, "SML_ListType tag")
        if tag != _LIST_TYPE_TIME:
            raise SMLUnknownTagError(f"{what}: unsupported SML_ListType tag {tag}")
        return SmlTime.decode(r), None
    return r.scalar_value(what)


def _check_value_type(value: SmlValue | None, value_type: str | None) -> None:
    if value_type is None:
        return
    if value_type not in INT_TYPES:
        raise SMLEncodeError(f"unknown integer type {value_type!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise SMLEncodeError(f"value_type {value_type} given for a non-integer value")


@dataclass(frozen=True, slots=True)
class ListEntry:
    """SML_ListEntry (SML 1.04, in SML_GetList.Res valList).

    ``value_type`` names the integer encoding ("u64", "i32", ...) for integer values;
    ``None`` picks the smallest standard type.  The decoder fills it from the wire.
    """

    obj_name: bytes
    value: SmlValue | None
    status: int | None = None
    val_time: SmlTime | None = None
    unit: int | None = None
    scaler: int | None = None
    value_signature: bytes | None = None
    value_type: str | None = None

    def encode(self, w: Writer) -> None:
        _check_value_type(self.value, self.value_type)
        w.list_of(7)
        w.octets(self.obj_name)
        # SML_Status is a CHOICE of Unsigned8..64: use the smallest that fits
        w.opt_integer(self.status, "u8" if self.status is None else _utype(self.status))
        encode_opt_time(w, self.val_time)
        w.opt_integer(self.unit, "u8")
        w.opt_integer(self.scaler, "i8")
        _encode_value(w, self.value, self.value_type)
        w.opt_octets(self.value_signature)

    @classmethod
    def decode(cls, r: Reader) -> ListEntry:
        r.list_of(7, "SML_ListEntry")
        obj_name = r.octets("objName")
        status = r.opt_uint(8, "status")
        val_time = SmlTime.decode_opt(r)
        unit = r.opt_uint(1, "unit")
        scaler = r.opt_sint(1, "scaler")
        value, value_type = _decode_value(r, "value")
        sig = r.opt_octets("valueSignature")
        return cls(obj_name, value, status, val_time, unit, scaler, sig, value_type)

    @property
    def obis(self) -> str:
        return obis_to_str(self.obj_name)


@dataclass(frozen=True, slots=True)
class PeriodEntry:
    """SML_PeriodEntry (SML 1.04, in SML_GetProfileList.Res period_List):
    objName, unit, scaler, value, valueSignature (only the last is OPTIONAL)."""

    obj_name: bytes
    unit: int
    scaler: int
    value: SmlValue | None
    value_signature: bytes | None = None
    value_type: str | None = None

    def encode(self, w: Writer) -> None:
        _check_value_type(self.value, self.value_type)
        w.list_of(5)
        w.octets(self.obj_name)
        w.integer(self.unit, "u8")
        w.integer(self.scaler, "i8")
        _encode_value(w, self.value, self.value_type)
        w.opt_octets(self.value_signature)

    @classmethod
    def decode(cls, r: Reader) -> PeriodEntry:
        r.list_of(5, "SML_PeriodEntry")
        obj_name = r.octets("objName")
        unit = r.uint(1, "unit")
        scaler = r.sint(1, "scaler")
        value, value_type = _decode_value(r, "value")
        sig = r.opt_octets("valueSignature")
        return cls(obj_name, unit, scaler, value, sig, value_type)

    @property
    def obis(self) -> str:
        return obis_to_str(self.obj_name)


def _utype(value: int) -> str:
    t = smallest_int_type(value)
    if t[0] != "u":
        raise SMLEncodeError(f"status must be unsigned, got {value}")
    return t


_Entry = TypeVar("_Entry", "ListEntry", "PeriodEntry")


def decode_list(r: Reader, item: type[_Entry], what: str) -> list[_Entry]:
    """Decode a SEQUENCE OF ``item`` (list TL then that many entries)."""
    n = r.list_of(None, what)
    return [item.decode(r) for _ in range(n)]


def check_end(r: Reader, what: str) -> None:
    if r.pos != r.end:
        raise SMLStructureError(f"{r.end - r.pos} bytes trail {what}")


def ensure_type(cond: bool, msg: str) -> None:
    if not cond:
        raise SMLTypeError(msg)
