"""The parts of a time-of-use tariff and their strict checks: the constants and caps,
:class:`Season` and :class:`Band`, the canonical JSON encoding (RFC 8785 for tariffs), and
the field parsers :meth:`meterhub.tariffs.model.Tariff.from_dict` reads a file with
(``docs/tariffs.md``). Everything here is pure (no I/O).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import MeterhubError

KIND_TIME_OF_USE = "time-of-use"
DEFAULT_TZ = "Europe/Berlin"
DEFAULT_INTERVAL_MINUTES = 15
DAY_TYPES = ("weekday", "weekend", "holiday")
MINUTES_PER_DAY = 24 * 60

# Domain separation: a tariff digest must never collide with any other hash
# input in the system (signatures use their own context, see signing.py).
TARIFF_DIGEST_CONTEXT = b"meterhub/v1/tariff-digest\x00"

# Largest integer every JSON implementation represents exactly (IEEE double).
MAX_JSON_INT = 2**53 - 1
# Caps that keep validation cheap on hostile input.
MAX_SEASONS = 32
MAX_BANDS = 512
MAX_HOLIDAYS = 4096

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_TZ_RE = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH_DAY_RE = re.compile(r"([0-9]{2})-([0-9]{2})")
_TIME_RE = re.compile(r"([0-9]{2}):([0-9]{2})")

_TOP_FIELDS = {
    "kind",
    "tariff_id",
    "version",
    "currency",
    "subunits_per_unit",
    "timezone",
    "interval_minutes",
    "valid_from",
    "valid_until",
    "standing_charge_per_day",
    "seasons",
    "bands",
    "holidays",
}
_TOP_OPTIONAL = {"timezone", "interval_minutes", "holidays"}
_SEASON_FIELDS = {"name", "start", "end"}
_BAND_FIELDS = {"name", "season", "day_types", "start", "end", "price"}


class TariffError(MeterhubError, ValueError):
    """An invalid, unverifiable or inapplicable tariff; the message is one line."""

    def __init__(self, message: str) -> None:
        # One line, always: messages end up in logs and CLI output.
        super().__init__(" ".join(str(message).split()))


def _q(value: Any) -> str:
    """Short, single-line rendering of untrusted input for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    # bool is a subclass of int, but ``true`` is not a price.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(where: str, value: Any, lo: int, hi: int = MAX_JSON_INT) -> int:
    if not _is_int(value):
        raise TariffError(f"{where}: expected an integer, got {type(value).__name__}")
    if value < lo:
        if lo == 0:
            raise TariffError(f"{where}: {value} is negative")
        raise TariffError(f"{where}: {value} is below the minimum {lo}")
    if value > hi:
        raise TariffError(f"{where}: {value} exceeds the maximum {hi}")
    return value


def _check_name(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TariffError(f"{where}: expected a string, got {type(value).__name__}")
    if not _NAME_RE.fullmatch(value):
        raise TariffError(
            f"{where}: {_q(value)} is not a valid name (1-64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit)"
        )
    return value


def _fmt_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _fmt_md(month: int, day: int) -> str:
    return f"{month:02d}-{day:02d}"


def _md_ok(month: int, day: int) -> bool:
    try:
        date(2000, month, day)  # a leap year, so 02-29 is a valid month-day
    except ValueError:
        return False
    return True


# Every month-day of a leap year, in calendar order (366 entries).
_ALL_MONTH_DAYS: tuple[tuple[int, int], ...] = tuple(
    ((date(2000, 1, 1) + timedelta(days=i)).month, (date(2000, 1, 1) + timedelta(days=i)).day)
    for i in range(366)
)


@dataclass(frozen=True)
class Season:
    """A named range of month-days, both ends inclusive; wraps the year end if start > end."""

    name: str
    start_month: int
    start_day: int
    end_month: int
    end_day: int

    def __post_init__(self) -> None:
        _check_name("season name", self.name)
        for label, m, d in (
            ("start", self.start_month, self.start_day),
            ("end", self.end_month, self.end_day),
        ):
            if not (_is_int(m) and _is_int(d) and _md_ok(m, d)):
                raise TariffError(f"season {self.name!r}: {label} {_q((m, d))} is not a month-day")

    def contains(self, month: int, day: int) -> bool:
        """Whether the month-day falls in this season (inclusive, wrapping)."""
        md = (month, day)
        lo = (self.start_month, self.start_day)
        hi = (self.end_month, self.end_day)
        if lo <= hi:
            return lo <= md <= hi
        return md >= lo or md <= hi

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "start": _fmt_md(self.start_month, self.start_day),
            "end": _fmt_md(self.end_month, self.end_day),
        }


@dataclass(frozen=True)
class Band:
    """A price for a daily time window, on some day types, in one season.

    ``start_minute`` is in 0..1439 and ``end_minute`` in 1..1440 (exclusive);
    if ``end_minute <= start_minute`` the band wraps midnight, e.g. 22:00-06:00.
    ``price`` is in sub-units per Wh.
    """

    name: str
    price: int
    start_minute: int
    end_minute: int
    day_types: frozenset[str]
    season: str

    def __post_init__(self) -> None:
        _check_name("band name", self.name)
        where = f"band {self.name!r}"
        _check_int(f"{where}: price", self.price, 0)
        _check_int(f"{where}: start", self.start_minute, 0, MINUTES_PER_DAY - 1)
        _check_int(f"{where}: end", self.end_minute, 1, MINUTES_PER_DAY)
        if self.start_minute == self.end_minute:
            raise TariffError(f"{where}: empty time window (start == end)")
        if isinstance(self.day_types, str) or not isinstance(self.day_types, Iterable):
            raise TariffError(f"{where}: day_types must be a collection of day types")
        try:
            types = frozenset(self.day_types)
        except TypeError:
            raise TariffError(f"{where}: day_types must be a collection of day types") from None
        if not types:
            raise TariffError(f"{where}: day_types is empty")
        unknown = types - set(DAY_TYPES)
        if unknown:
            raise TariffError(
                f"{where}: unknown day type {_q(sorted(map(str, unknown))[0])} "
                f"(expected {', '.join(DAY_TYPES)})"
            )
        object.__setattr__(self, "day_types", types)
        _check_name(f"{where}: season", self.season)

    @property
    def wraps(self) -> bool:
        """True if the window crosses midnight."""
        return self.end_minute <= self.start_minute

    def covers_minute(self, minute: int) -> bool:
        """Whether local minute-of-day ``minute`` lies in the window."""
        if self.wraps:
            return minute >= self.start_minute or minute < self.end_minute
        return self.start_minute <= minute < self.end_minute

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "season": self.season,
            "day_types": [t for t in DAY_TYPES if t in self.day_types],
            "start": _fmt_minute(self.start_minute),
            "end": _fmt_minute(self.end_minute),
            "price": self.price,
        }


def canonical_json(obj: Any) -> bytes:
    """The canonical encoding: sorted keys, no whitespace, UTF-8.

    Tariff strings are restricted to printable ASCII, so for tariffs this
    coincides with RFC 8785 (JCS) and is easy to reproduce in other languages.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# --------------------------------------------------------------------- helpers


def _load_zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str):
        raise TariffError(f"timezone: expected a string, got {type(name).__name__}")
    if len(name) > 64 or not _TZ_RE.fullmatch(name):
        raise TariffError(f"timezone: {_q(name)} is not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise TariffError(f"timezone: unknown time zone {_q(name)}") from None


def _as_tuple(where: str, value: Any, kind: type, cap: int) -> tuple[Any, ...]:
    items = tuple(_as_collection(where, value, cap))
    for item in items:
        if not isinstance(item, kind):
            raise TariffError(f"{where}: expected {kind.__name__} items, got {type(item).__name__}")
    return items


def _as_collection(where: str, value: Any, cap: int) -> Collection[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TariffError(f"{where}: expected a collection, got {type(value).__name__}")
    items = value if isinstance(value, (tuple, list, frozenset, set)) else tuple(value)
    if len(items) > cap:
        raise TariffError(f"{where}: more than {cap} entries")
    return items


def _check_object(where: str, value: Any, allowed: set[str], required: set[str]) -> None:
    if not isinstance(value, dict):
        raise TariffError(f"{where}: expected an object, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise TariffError(f"{where}: unknown field {_q(key)}")
    for key in sorted(required):
        if key not in value:
            raise TariffError(f"{where}: missing field {key!r}")


def _check_list(where: str, value: Any, cap: int) -> list[Any]:
    if not isinstance(value, list):
        raise TariffError(f"{where}: expected a list, got {type(value).__name__}")
    if len(value) > cap:
        raise TariffError(f"{where}: more than {cap} entries")
    return value


def _check_str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TariffError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _parse_date(where: str, value: Any) -> date:
    _check_str(where, value)
    if not _DATE_RE.fullmatch(value):
        raise TariffError(f"{where}: {_q(value)} is not a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise TariffError(f"{where}: {_q(value)} is not a calendar date") from None


def _parse_month_day(where: str, value: Any) -> tuple[int, int]:
    _check_str(where, value)
    m = _MONTH_DAY_RE.fullmatch(value)
    if not m or not _md_ok(int(m[1]), int(m[2])):
        raise TariffError(f"{where}: {_q(value)} is not a month-day MM-DD")
    return int(m[1]), int(m[2])


def _parse_time(where: str, value: Any, *, is_end: bool) -> int:
    _check_str(where, value)
    m = _TIME_RE.fullmatch(value)
    if m:
        minute = int(m[1]) * 60 + int(m[2])
        if int(m[2]) < 60 and (minute < MINUTES_PER_DAY or (is_end and minute == MINUTES_PER_DAY)):
            return minute
    allowed = "00:00..24:00" if is_end else "00:00..23:59"
    raise TariffError(f"{where}: {_q(value)} is not a time HH:MM in {allowed}")


def _season_from(where: str, d: Any) -> Season:
    _check_object(where, d, _SEASON_FIELDS, _SEASON_FIELDS)
    name = _check_name(f"{where}.name", d["name"])
    sm, sd = _parse_month_day(f"{where}.start", d["start"])
    em, ed = _parse_month_day(f"{where}.end", d["end"])
    return Season(name, sm, sd, em, ed)


def _band_from(where: str, d: Any) -> Band:
    _check_object(where, d, _BAND_FIELDS, _BAND_FIELDS)
    name = _check_name(f"{where}.name", d["name"])
    types = _check_list(f"{where}.day_types", d["day_types"], len(DAY_TYPES))
    for t in types:
        if t not in DAY_TYPES:
            raise TariffError(
                f"{where}.day_types: unknown day type {_q(t)} (expected {', '.join(DAY_TYPES)})"
            )
    if len(set(types)) != len(types):
        raise TariffError(f"{where}.day_types: duplicate day type")
    start = _parse_time(f"{where}.start", d["start"], is_end=False)
    end = _parse_time(f"{where}.end", d["end"], is_end=True)
    if end == 0:
        # "00:00" as an end is spelt "24:00"; one spelling keeps the encoding canonical.
        raise TariffError(f"{where}.end: write midnight as '24:00'")
    return Band(
        name=name,
        price=_check_int(f"{where}.price", d["price"], 0),
        start_minute=start,
        end_minute=end,
        day_types=frozenset(types),
        season=_check_name(f"{where}.season", d["season"]),
    )
