"""The meter's COSEM objects and the data source they read from.

Interface classes follow the Blue Book (DLMS UA 1000-1 Ed. 15): Data (IC 1,
§4.3.1), Register (IC 3, §4.3.2), Profile generic (IC 7, §4.3.6), Clock
(IC 8, §4.5.1) and Association LN (IC 15, §4.4.3). OBIS codes follow Blue Book
§7 (IEC 62056-6-1); the manufacturer-specific objects use value group B = 128
(Blue Book §7.3.4.3 reserves B = 128..199 for manufacturer-specific use). Their
layouts are in docs/dlms.md.

Objects are sans-IO: ``get(attribute, selection)`` returns the encoded A-XDR
``Data`` or raises :class:`DataAccessError` with the ``Data-Access-Result`` the
server sends back (Green Book §9.3.6 / IEC 62056-5-3 ``Get-Data-Result``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from dlms_cosem.enumerations import DataAccessResult

from . import axdr
from .access import CaptureColumn, DataAccessError, EntrySelection, RangeSelection, Selection

__all__ = [
    "Obis",
    "CLOCK",
    "ENERGY_IMPORT",
    "LOAD_PROFILE",
    "ASSOCIATION_LN",
    "DEVICE_ID",
    "LOGICAL_DEVICE_NAME",
    "INVOCATION_COUNTER",
    "COMMITMENTS",
    "SIGNED_BATCHES",
    "METER_PUBLIC_KEY",
    "OPENINGS",
    "OPENING_VALUE",
    "OPENING_BLINDING",
    "COMMITMENT_INDEX",
    "COMMITMENT_VALUE",
    "BATCH_BODY",
    "BATCH_SIGNATURE",
    "UNIT_WH",
    "MeterDataSource",
    "InMemoryDataSource",
    "CosemObject",
    "DataObject",
    "Clock",
    "Register",
    "ProfileGeneric",
    "AssociationLN",
    "encode_object_list",
    "build_object_model",
]


def Obis(a: int, b: int, c: int, d: int, e: int, f: int = 255) -> bytes:  # noqa: N802
    """Six-octet logical name (Blue Book §4.1.8.2, ``logical_name``)."""
    return bytes([a, b, c, d, e, f])


CLOCK = Obis(0, 0, 1, 0, 0)
ENERGY_IMPORT = Obis(1, 0, 1, 8, 0)
LOAD_PROFILE = Obis(1, 0, 99, 1, 0)
ASSOCIATION_LN = Obis(0, 0, 40, 0, 0)
DEVICE_ID = Obis(0, 0, 96, 1, 0)
#: COSEM logical device name (Blue Book §4.1.8.2 / §7.3.4.1 "COSEM logical device name").
LOGICAL_DEVICE_NAME = Obis(0, 0, 42, 0, 0)
#: Invocation counter of the management association's security setup (Blue Book §7.5.x,
#: 0-b:43.1.e.255): read by a head-end as the public client before it associates.
INVOCATION_COUNTER = Obis(0, 0, 43, 1, 0)
# Manufacturer-specific (B = 128), docs/dlms.md "Manufacturer-specific objects".
COMMITMENTS = Obis(0, 128, 96, 1, 0)
COMMITMENT_INDEX = Obis(0, 128, 96, 1, 1)
COMMITMENT_VALUE = Obis(0, 128, 96, 1, 2)
SIGNED_BATCHES = Obis(0, 128, 96, 2, 0)
BATCH_BODY = Obis(0, 128, 96, 2, 1)
BATCH_SIGNATURE = Obis(0, 128, 96, 2, 2)
METER_PUBLIC_KEY = Obis(0, 128, 96, 3, 0)
OPENINGS = Obis(0, 128, 96, 4, 0)
OPENING_VALUE = Obis(0, 128, 96, 4, 1)
OPENING_BLINDING = Obis(0, 128, 96, 4, 2)

#: Blue Book §4.3.2 Table 4 (unit enumeration): 30 = Wh.
UNIT_WH = 30
IC_DATA, IC_REGISTER, IC_PROFILE_GENERIC, IC_CLOCK, IC_ASSOCIATION_LN = 1, 3, 7, 8, 15


@runtime_checkable
class MeterDataSource(Protocol):
    """What the DLMS server reads. Times are aware datetimes; energies integer Wh.

    ``start``/``end`` bound the rows inclusively when given; implementations may
    ignore them (the server filters again), they exist so that a large store can
    avoid loading everything.
    """

    meter_id: str
    public_key: bytes

    def now(self) -> datetime: ...

    def energy_total_wh(self) -> int: ...

    def load_profile(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Sequence[tuple[datetime, int]]:
        """Rows ``(capture time = interval end, cumulative import Wh)``, oldest first."""
        ...

    def commitments(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Sequence[tuple[datetime, int, bytes]]:
        """Rows ``(interval end, interval index, 33-byte Pedersen commitment)``."""
        ...

    def signed_batches(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Sequence[tuple[datetime, bytes, bytes]]:
        """Rows ``(day start, DailyBatch.to_bytes(), 64-byte signature)``."""
        ...


def _within(t: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or t >= start) and (end is None or t <= end)


@dataclass
class InMemoryDataSource:
    """A :class:`MeterDataSource` over plain lists; tests and the simulated meter fill it."""

    meter_id: str = "meterhub-0"
    public_key: bytes = b""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    energy_wh: int = 0
    profile_rows: list[tuple[datetime, int]] = field(default_factory=list)
    commitment_rows: list[tuple[datetime, int, bytes]] = field(default_factory=list)
    batch_rows: list[tuple[datetime, bytes, bytes]] = field(default_factory=list)
    #: ``(interval end, index, m Wh, r as 32 big-endian bytes)``: the home link only.
    opening_rows: list[tuple[datetime, int, int, bytes]] = field(default_factory=list)

    def now(self) -> datetime:
        return self.clock()

    def energy_total_wh(self) -> int:
        return self.energy_wh

    def load_profile(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[tuple[datetime, int]]:
        return [r for r in self.profile_rows if _within(r[0], start, end)]

    def commitments(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[tuple[datetime, int, bytes]]:
        return [r for r in self.commitment_rows if _within(r[0], start, end)]

    def signed_batches(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[tuple[datetime, bytes, bytes]]:
        return [r for r in self.batch_rows if _within(r[0], start, end)]

    def openings(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[tuple[datetime, int, int, bytes]]:
        """Optional part of the data source: present only on a meter that has a home link."""
        return [r for r in self.opening_rows if _within(r[0], start, end)]


# ------------------------------------------------------------------ objects


class CosemObject:
    """Base: an object answers GET on its attributes (attribute 1 is always logical_name)."""

    class_id: int = 0
    version: int = 0
    #: Readable only inside a ciphered (management) association: the openings.
    confidential: bool = False

    def __init__(self, logical_name: bytes) -> None:
        self.logical_name = logical_name

    def get(self, attribute: int, selection: Selection | None = None) -> bytes:
        if selection is not None:
            # Only profile buffers support selective access (Blue Book §4.3.6).
            raise DataAccessError(DataAccessResult.OTHER_REASON, "no selective access")
        if attribute == 1:
            return axdr.octet_string(self.logical_name)
        reader = self._attributes().get(attribute)
        if reader is None:
            raise DataAccessError(DataAccessResult.OBJECT_UNDEFINED, f"attribute {attribute}")
        return reader()

    def _attributes(self) -> dict[int, Callable[[], bytes]]:
        return {}

    def attribute_ids(self) -> list[int]:
        """The attributes this object serves (for the association's object_list)."""
        return sorted({1, *self._attributes()})

    def access_selectors(self, attribute: int) -> list[int]:
        """Selective-access selectors an attribute accepts (none but a profile's buffer)."""
        return []


class DataObject(CosemObject):
    """Data (IC 1, Blue Book §4.3.1): attribute 2 ``value``."""

    class_id = IC_DATA

    def __init__(self, logical_name: bytes, value: Callable[[], bytes]) -> None:
        super().__init__(logical_name)
        self._value = value

    def _attributes(self) -> dict[int, Callable[[], bytes]]:
        return {2: self._value}


class Clock(CosemObject):
    """Clock (IC 8, Blue Book §4.5.1): 2 time, 3 time_zone, 4 status, 8 dst enabled, 9 clock_base."""

    class_id = IC_CLOCK

    def __init__(self, logical_name: bytes, now: Callable[[], datetime]) -> None:
        super().__init__(logical_name)
        self._now = now

    def _attributes(self) -> dict[int, Callable[[], bytes]]:
        def time_zone() -> bytes:
            # time_zone: deviation of local *standard* time from UTC, in minutes, with
            # the date-time sign convention (UTC = local + deviation).
            now = self._now()
            off = now.utcoffset()
            if off is None:
                return axdr.long(axdr.DEVIATION_NOT_SPECIFIED)
            std = off - (now.dst() or timedelta(0))
            return axdr.long(-int(std.total_seconds() // 60))

        return {
            2: lambda: axdr.octet_string(axdr.encode_datetime(self._now())),
            3: time_zone,
            4: lambda: axdr.unsigned(0x80 if self._now().dst() else 0x00),
            8: lambda: axdr.boolean(True),
            9: lambda: axdr.enum(1),  # clock_base 1 = internal crystal
        }


class Register(CosemObject):
    """Register (IC 3, Blue Book §4.3.2): 2 value, 3 scaler_unit {scaler, unit}."""

    class_id = IC_REGISTER

    def __init__(
        self, logical_name: bytes, value: Callable[[], int], scaler: int = 0, unit: int = UNIT_WH
    ) -> None:
        super().__init__(logical_name)
        self._value = value
        self.scaler = scaler
        self.unit = unit

    def _attributes(self) -> dict[int, Callable[[], bytes]]:
        return {
            2: lambda: axdr.long64_unsigned(self._value()),
            3: lambda: axdr.structure([axdr.integer(self.scaler), axdr.enum(self.unit)]),
        }


#: One buffer row, a cell per capture column: each cell is whatever its column's encoder
#: takes (a datetime, an int, bytes), so the range filter compares cells dynamically
#: and answers type-unmatched when a bound does not fit its column.
ProfileRow = tuple[Any, ...]


class ProfileGeneric(CosemObject):
    """Profile generic (IC 7, Blue Book §4.3.6), read-only.

    2 buffer (selective access by range, selector 1, and by entry, selector 2),
    3 capture_objects, 4 capture_period, 5 sort_method (1 = FIFO), 6 sort_object,
    7 entries_in_use, 8 profile_entries.
    """

    class_id = IC_PROFILE_GENERIC
    version = 1

    def __init__(
        self,
        logical_name: bytes,
        columns: Sequence[CaptureColumn],
        encoders: Sequence[Callable[[object], bytes]],
        rows: Callable[[datetime | None, datetime | None], Sequence[ProfileRow]],
        capture_period: int,
    ) -> None:
        super().__init__(logical_name)
        if len(columns) != len(encoders):
            raise ValueError("one encoder per capture column")
        self.columns = tuple(columns)
        self.encoders = tuple(encoders)
        self._rows = rows
        self.capture_period = capture_period

    def get(self, attribute: int, selection: Selection | None = None) -> bytes:
        if attribute == 2:
            return self.buffer(selection)
        return super().get(attribute, selection)

    def attribute_ids(self) -> list[int]:
        return sorted({1, 2, *self._attributes()})

    def access_selectors(self, attribute: int) -> list[int]:
        return [1, 2] if attribute == 2 else []

    def _attributes(self) -> dict[int, Callable[[], bytes]]:
        entries = lambda: axdr.double_long_unsigned(len(self._rows(None, None)))  # noqa: E731
        return {
            3: lambda: axdr.array([c.encode() for c in self.columns]),
            4: lambda: axdr.double_long_unsigned(self.capture_period),
            5: lambda: axdr.enum(1),
            6: lambda: CaptureColumn(0, bytes(6), 0, 0).encode(),
            7: entries,
            8: entries,
        }

    def buffer(self, selection: Selection | None) -> bytes:
        """Encode the buffer, an array of structures, one per row (Blue Book §4.3.6)."""
        cols = list(range(len(self.columns)))
        if isinstance(selection, RangeSelection):
            try:
                key = self.columns.index(selection.restricting)
            except ValueError:
                raise DataAccessError(
                    DataAccessResult.OBJECT_UNAVAILABLE, "restricting object is not captured"
                ) from None
            lo, hi = selection.from_value, selection.to_value
            if isinstance(lo, datetime) and isinstance(hi, datetime):
                rows = self._rows(lo, hi)
            else:
                rows = self._rows(None, None)
            try:
                rows = [r for r in rows if lo <= r[key] <= hi]
            except TypeError:
                raise DataAccessError(
                    DataAccessResult.TYPE_UNMATCHED, "range bounds do not match the column"
                ) from None
            if selection.selected:
                try:
                    cols = [self.columns.index(c) for c in selection.selected]
                except ValueError:
                    raise DataAccessError(
                        DataAccessResult.OBJECT_UNAVAILABLE, "selected value not captured"
                    ) from None
        elif isinstance(selection, EntrySelection):
            rows = list(self._rows(None, None))
            s = selection
            last_row = len(rows) if s.to_entry == 0 else min(s.to_entry, len(rows))
            last_col = len(self.columns) if s.to_value == 0 else s.to_value
            if s.from_entry < 1 or s.from_value < 1 or last_col > len(self.columns):
                raise DataAccessError(DataAccessResult.OBJECT_UNAVAILABLE, "entry out of range")
            if s.from_value > last_col:
                raise DataAccessError(DataAccessResult.OBJECT_UNAVAILABLE, "empty column range")
            rows = rows[s.from_entry - 1 : last_row]
            cols = list(range(s.from_value - 1, last_col))
        else:
            rows = self._rows(None, None)
        return axdr.array(
            [axdr.structure([self.encoders[i](row[i]) for i in cols]) for row in rows]
        )


class AssociationLN(CosemObject):
    """Association LN (IC 15, Blue Book §4.4.3). Attributes 2 ``object_list`` and 3
    ``associated_partners_id`` depend on who asks, so the association serves them
    (:func:`encode_object_list`); method 1 ``reply_to_HLS_authentication`` likewise."""

    class_id = IC_ASSOCIATION_LN
    version = 1

    def attribute_ids(self) -> list[int]:
        return [1, 2, 3]


#: Blue Book §4.4.3 access modes: attribute 1 = read-only; method (version >= 1) 1 = access.
READ_ONLY = 1
METHOD_ACCESS = 1


def encode_object_list(objects: Sequence[CosemObject]) -> bytes:
    """``object_list`` of an Association LN (Blue Book §4.4.3, attribute 2):

    ``array of structure { class_id long-unsigned, version unsigned, logical_name
    octet-string(6), access_rights structure { array of attribute_access_item
    {attribute_id integer, access_mode enum, access_selectors array of integer | null-data},
    array of method_access_item {method_id integer, access_mode enum} } }``.
    Every attribute here is read-only; the only method is reply_to_HLS_authentication."""
    entries = []
    for obj in objects:
        attributes = []
        for a in obj.attribute_ids():
            selectors = obj.access_selectors(a)
            attributes.append(
                axdr.structure(
                    [
                        axdr.integer(a),
                        axdr.enum(READ_ONLY),
                        axdr.array([axdr.integer(x) for x in selectors]) if selectors else axdr.null(),
                    ]
                )
            )
        methods = (
            [axdr.structure([axdr.integer(1), axdr.enum(METHOD_ACCESS)])]
            if isinstance(obj, AssociationLN)
            else []
        )
        entries.append(
            axdr.structure(
                [
                    axdr.long_unsigned(obj.class_id),
                    axdr.unsigned(obj.version),
                    axdr.octet_string(obj.logical_name),
                    axdr.structure([axdr.array(attributes), axdr.array(methods)]),
                ]
            )
        )
    return axdr.array(entries)


def _dt(value: object) -> bytes:
    assert isinstance(value, datetime)
    return axdr.octet_string(axdr.encode_datetime(value))


def logical_device_name(meter_id: str) -> bytes:
    """The 16-octet-at-most COSEM logical device name: the 3-letter manufacturer id
    "MHB" then the meter id (Blue Book §4.1.8.2), cut to 16 octets."""
    return (b"MHB" + meter_id.encode("utf-8"))[:16]


def build_object_model(
    source: MeterDataSource, invocation_counter: Callable[[], int] | None = None
) -> dict[bytes, CosemObject]:
    """The meter's object list, keyed by logical name. ``invocation_counter`` feeds
    the invocation counter object 0.0.43.1.0.255 (omitted without it)."""
    clock_col = CaptureColumn(IC_CLOCK, CLOCK, 2)
    energy_col = CaptureColumn(IC_REGISTER, ENERGY_IMPORT, 2)
    objects: list[CosemObject] = [
        AssociationLN(ASSOCIATION_LN),
        Clock(CLOCK, source.now),
        DataObject(DEVICE_ID, lambda: axdr.octet_string(source.meter_id.encode())),
        DataObject(LOGICAL_DEVICE_NAME, lambda: axdr.octet_string(logical_device_name(source.meter_id))),
        Register(ENERGY_IMPORT, source.energy_total_wh, scaler=0, unit=UNIT_WH),
        ProfileGeneric(
            LOAD_PROFILE,
            [clock_col, energy_col],
            [_dt, lambda v: axdr.long64_unsigned(int(v))],  # type: ignore[call-overload]
            source.load_profile,
            capture_period=900,
        ),
        ProfileGeneric(
            COMMITMENTS,
            [clock_col, CaptureColumn(IC_DATA, COMMITMENT_INDEX, 2), CaptureColumn(IC_DATA, COMMITMENT_VALUE, 2)],
            [_dt, lambda v: axdr.long64_unsigned(int(v)), axdr.octet_string],  # type: ignore[call-overload, list-item]
            source.commitments,
            capture_period=900,
        ),
        ProfileGeneric(
            SIGNED_BATCHES,
            [clock_col, CaptureColumn(IC_DATA, BATCH_BODY, 2), CaptureColumn(IC_DATA, BATCH_SIGNATURE, 2)],
            [_dt, axdr.octet_string, axdr.octet_string],  # type: ignore[list-item]
            source.signed_batches,
            capture_period=86400,
        ),
        DataObject(METER_PUBLIC_KEY, lambda: axdr.octet_string(source.public_key)),
    ]
    if invocation_counter is not None:
        counter = invocation_counter
        objects.append(DataObject(INVOCATION_COUNTER, lambda: axdr.double_long_unsigned(counter())))
    openings = getattr(source, "openings", None)
    if callable(openings):
        # The home link (meter -> hub) carries the openings (m_i, r_i); they reveal the
        # readings, so only a ciphered association may read them (docs/dlms.md).
        profile = ProfileGeneric(
            OPENINGS,
            [
                clock_col,
                CaptureColumn(IC_DATA, COMMITMENT_INDEX, 2),
                CaptureColumn(IC_DATA, OPENING_VALUE, 2),
                CaptureColumn(IC_DATA, OPENING_BLINDING, 2),
            ],
            [_dt, _u64, _u64, axdr.octet_string],  # type: ignore[list-item]
            openings,
            capture_period=900,
        )
        profile.confidential = True
        objects.append(profile)
    return {o.logical_name: o for o in objects}


def _u64(value: object) -> bytes:
    return axdr.long64_unsigned(int(value))  # type: ignore[call-overload]
