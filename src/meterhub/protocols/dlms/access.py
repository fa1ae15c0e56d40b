"""Data access for COSEM attributes: Data-Access-Result errors and selective access.

:class:`DataAccessError` carries the ``Data-Access-Result`` a GET answers with
(Green Book 1000-2 Ed. 9 §9.3.6). The selective-access descriptors of Profile
generic (Blue Book DLMS UA 1000-1 Ed. 15 §4.3.6): ``range_descriptor`` (selector 1)
and ``entry_descriptor`` (selector 2), with the ``capture_object_definition`` both
name columns by; :func:`parse_selection` checks a decoded descriptor strictly. The
client uses :class:`CaptureColumn` to build the same descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from dlms_cosem.enumerations import DataAccessResult

from ...errors import MeterhubError
from . import axdr

__all__ = [
    "CaptureColumn",
    "DataAccessError",
    "EntrySelection",
    "RangeSelection",
    "Selection",
    "parse_selection",
]


class DataAccessError(MeterhubError):
    """An attribute cannot be read; carries the Data-Access-Result to return."""

    def __init__(self, result: DataAccessResult, message: str = "") -> None:
        super().__init__(message or result.name)
        self.result = result


@dataclass(frozen=True)
class CaptureColumn:
    """``capture_object_definition`` (Blue Book §4.3.6): class, LN, attribute, data index."""

    class_id: int
    logical_name: bytes
    attribute: int
    data_index: int = 0

    def encode(self) -> bytes:
        return axdr.structure(
            [
                axdr.long_unsigned(self.class_id),
                axdr.octet_string(self.logical_name),
                axdr.integer(self.attribute),
                axdr.long_unsigned(self.data_index),
            ]
        )

    @classmethod
    def from_value(cls, value: object) -> CaptureColumn:
        """From a decoded ``structure{long-unsigned, octet-string, integer, long-unsigned}``."""
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not isinstance(value[0], int)
            or not isinstance(value[1], bytes)
            or len(value[1]) != 6
            or not isinstance(value[2], int)
            or not isinstance(value[3], int)
        ):
            raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, "bad capture object")
        return cls(value[0], value[1], value[2], value[3])


@dataclass(frozen=True)
class RangeSelection:
    """``range_descriptor`` (selector 1, Blue Book §4.3.6): rows with from <= value <= to."""

    restricting: CaptureColumn
    from_value: object
    to_value: object
    selected: tuple[CaptureColumn, ...] = ()


@dataclass(frozen=True)
class EntrySelection:
    """``entry_descriptor`` (selector 2, Blue Book §4.3.6); 1-based, 0 means "to the last"."""

    from_entry: int
    to_entry: int
    from_value: int
    to_value: int


Selection = RangeSelection | EntrySelection


def parse_selection(selector: int, parameters: object) -> Selection:
    """Turn a decoded ``Selective-Access-Descriptor`` into a :data:`Selection`."""
    if selector == 1:
        if not isinstance(parameters, list) or len(parameters) != 4:
            raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, "range_descriptor shape")
        restricting = CaptureColumn.from_value(parameters[0])
        selected = parameters[3]
        if not isinstance(selected, list):
            raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, "selected_values")
        return RangeSelection(
            restricting,
            _range_bound(parameters[1]),
            _range_bound(parameters[2]),
            tuple(CaptureColumn.from_value(c) for c in selected),
        )
    if selector == 2:
        if (
            not isinstance(parameters, list)
            or len(parameters) != 4
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in parameters)
        ):
            raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, "entry_descriptor shape")
        return EntrySelection(*parameters)
    raise DataAccessError(DataAccessResult.OTHER_REASON, f"access selector {selector}")


def _range_bound(value: object) -> object:
    """A 12-octet date-time becomes an aware datetime; integers stay integers."""
    if isinstance(value, bytes):
        try:
            dt = axdr.decode_datetime(value)
        except axdr.AxdrError as exc:
            raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, str(exc)) from None
        # "Not specified" deviation: the meter's clock is UTC-based, read it as UTC.
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise DataAccessError(DataAccessResult.TYPE_UNMATCHED, "range bound type")
