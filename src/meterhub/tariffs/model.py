"""Time-of-use tariff model: seasons, day types, priced bands, strict validation.

Everything here is pure (no I/O). A :class:`Tariff` can only exist in a valid
state: construction runs every check, and :meth:`Tariff.from_dict` adds strict
type checks for data read from a file. Prices are integer sub-units per Wh, so
a bill ``sum(price_i * wh_i)`` is exact and matches the committed readings.

See ``docs/tariffs.md`` for the file format.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from ..model.holidays import easter_sunday, german_holidays
from .fields import (
    _ALL_MONTH_DAYS,
    _CURRENCY_RE,
    _TOP_FIELDS,
    _TOP_OPTIONAL,
    DAY_TYPES,
    DEFAULT_INTERVAL_MINUTES,
    DEFAULT_TZ,
    KIND_TIME_OF_USE,
    MAX_BANDS,
    MAX_HOLIDAYS,
    MAX_SEASONS,
    MINUTES_PER_DAY,
    TARIFF_DIGEST_CONTEXT,
    Band,
    Season,
    TariffError,
    _as_collection,
    _as_tuple,
    _band_from,
    _check_int,
    _check_list,
    _check_name,
    _check_object,
    _check_str,
    _fmt_md,
    _fmt_minute,
    _load_zone,
    _parse_date,
    _q,
    _season_from,
    canonical_json,
)

__all__ = [
    "DAY_TYPES",
    "DEFAULT_TZ",
    "KIND_TIME_OF_USE",
    "TARIFF_DIGEST_CONTEXT",
    "Band",
    "Season",
    "Tariff",
    "TariffError",
    "canonical_json",
    "easter_sunday",
    "example_tariff",
    "german_holidays",
]


@dataclass(frozen=True, kw_only=True)
class Tariff:
    """A validated time-of-use tariff.

    Prices are integer sub-units per Wh (``subunits_per_unit`` sub-units make
    one ``currency`` unit). Validity is ``valid_from <= local day < valid_until``.
    Interval starts are looked up in local time of ``tz``.
    """

    tariff_id: str
    version: int
    currency: str
    subunits_per_unit: int
    tz: str = DEFAULT_TZ
    valid_from: date
    valid_until: date
    standing_charge_per_day: int
    seasons: tuple[Season, ...]
    bands: tuple[Band, ...]
    holidays: frozenset[date] = frozenset()
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES

    # Lookup tables, derived from the fields above; excluded from eq/hash/repr.
    _zone: ZoneInfo = field(init=False, repr=False, compare=False, hash=False)
    _slot_tables: dict[tuple[int, str], tuple[Band, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _day_cache: dict[date, tuple[tuple[Band, ...], tuple[int, ...]]] = field(
        init=False, repr=False, compare=False, hash=False
    )
    _day_price_cache: dict[tuple[date, str, int], tuple[int, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    kind: ClassVar[str] = KIND_TIME_OF_USE

    # ---------------------------------------------------------------- validation

    def __post_init__(self) -> None:
        _check_name("tariff_id", self.tariff_id)
        _check_int("version", self.version, 1)
        if not (isinstance(self.currency, str) and _CURRENCY_RE.fullmatch(self.currency)):
            raise TariffError(f"currency: {_q(self.currency)} is not an ISO 4217 code like 'EUR'")
        _check_int("subunits_per_unit", self.subunits_per_unit, 1)
        _check_int("standing_charge_per_day", self.standing_charge_per_day, 0)
        object.__setattr__(self, "_zone", _load_zone(self.tz))
        _check_int("interval_minutes", self.interval_minutes, 1, 60)
        if 60 % self.interval_minutes:
            raise TariffError(f"interval_minutes: {self.interval_minutes} does not divide an hour")
        for label, value in (("valid_from", self.valid_from), ("valid_until", self.valid_until)):
            if not isinstance(value, date) or isinstance(value, datetime):
                raise TariffError(f"{label}: expected a date, got {type(value).__name__}")
        if self.valid_until <= self.valid_from:
            raise TariffError(
                f"validity window is empty: valid_until {self.valid_until} "
                f"is not after valid_from {self.valid_from}"
            )

        seasons = _as_tuple("seasons", self.seasons, Season, MAX_SEASONS)
        bands = _as_tuple("bands", self.bands, Band, MAX_BANDS)
        object.__setattr__(self, "seasons", seasons)
        object.__setattr__(self, "bands", bands)
        holidays = _as_collection("holidays", self.holidays, MAX_HOLIDAYS)
        for h in holidays:
            if not isinstance(h, date) or isinstance(h, datetime):
                raise TariffError(f"holidays: expected dates, got {type(h).__name__}")
            if not self.valid_from <= h < self.valid_until:
                raise TariffError(f"holiday {h} lies outside the validity window")
        object.__setattr__(self, "holidays", frozenset(holidays))

        self._check_seasons()
        object.__setattr__(self, "_slot_tables", self._build_slot_tables())
        object.__setattr__(self, "_day_cache", {})
        object.__setattr__(self, "_day_price_cache", {})

    def _check_seasons(self) -> None:
        if not self.seasons:
            raise TariffError("seasons: at least one season is required")
        names = [s.name for s in self.seasons]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise TariffError(f"seasons: duplicate season name {dup!r}")
        # Every month-day (02-29 included) must belong to exactly one season.
        for month, day in _ALL_MONTH_DAYS:
            owners = [s.name for s in self.seasons if s.contains(month, day)]
            if len(owners) > 1:
                raise TariffError(
                    f"seasons {owners[0]!r} and {owners[1]!r} overlap on {_fmt_md(month, day)}"
                )
            if not owners:
                raise TariffError(f"no season covers {_fmt_md(month, day)}")

    def _build_slot_tables(self) -> dict[tuple[int, str], tuple[Band, ...]]:
        """Check bands tile every (season, day type, grid slot) exactly once; return the tiling."""
        step = self.interval_minutes
        slots = MINUTES_PER_DAY // step
        season_index = {s.name: i for i, s in enumerate(self.seasons)}
        if not self.bands:
            raise TariffError("bands: at least one band is required")
        for b in self.bands:
            if b.season not in season_index:
                raise TariffError(f"band {b.name!r}: unknown season {b.season!r}")
            for label, minute in (("start", b.start_minute), ("end", b.end_minute)):
                if minute % step:
                    raise TariffError(
                        f"band {b.name!r}: {label} {_fmt_minute(minute)} is not on "
                        f"the {step}-minute interval grid"
                    )
        tables: dict[tuple[int, str], list[Band | None]] = {
            (i, t): [None] * slots for i in range(len(self.seasons)) for t in DAY_TYPES
        }
        for b in self.bands:
            first, last = b.start_minute // step, b.end_minute // step
            covered = range(first, last) if not b.wraps else [*range(first, slots), *range(last)]
            for t in DAY_TYPES:
                if t not in b.day_types:
                    continue
                table = tables[(season_index[b.season], t)]
                for slot in covered:
                    other = table[slot]
                    if other is not None:
                        raise TariffError(
                            f"bands {other.name!r} and {b.name!r} overlap in season "
                            f"{b.season!r} on {t} at {_fmt_minute(slot * step)}"
                        )
                    table[slot] = b
        result: dict[tuple[int, str], tuple[Band, ...]] = {}
        for (si, t), table in tables.items():
            for slot, entry in enumerate(table):
                if entry is None:
                    raise TariffError(
                        f"no band covers season {self.seasons[si].name!r} on {t} "
                        f"at {_fmt_minute(slot * step)}"
                    )
            result[(si, t)] = tuple(b for b in table if b is not None)
        return result

    # ------------------------------------------------------------------- lookup

    def season_of(self, day: date) -> Season:
        """The season a local calendar day belongs to."""
        for s in self.seasons:
            if s.contains(day.month, day.day):
                return s
        raise AssertionError("unreachable: seasons are checked to cover the year")

    def day_type(self, day: date) -> str:
        """'holiday' if listed (overrides the rest), else 'weekend' for Sat/Sun, else 'weekday'."""
        if day in self.holidays:
            return "holiday"
        return "weekend" if day.weekday() >= 5 else "weekday"

    def check_valid_on(self, day: date) -> None:
        """Raise :class:`TariffError` unless ``valid_from <= day < valid_until``."""
        if isinstance(day, datetime) or not isinstance(day, date):
            raise TariffError(f"expected a date, got {type(day).__name__}")
        if day < self.valid_from:
            raise TariffError(
                f"tariff {self.tariff_id} v{self.version} is not yet valid on {day} "
                f"(valid from {self.valid_from})"
            )
        if day >= self.valid_until:
            raise TariffError(
                f"tariff {self.tariff_id} v{self.version} has expired on {day} "
                f"(valid until {self.valid_until}, exclusive)"
            )

    def _day(self, day: date) -> tuple[tuple[Band, ...], tuple[int, ...]]:
        """Bands and prices per grid slot of a local day (cached)."""
        hit = self._day_cache.get(day)
        if hit is not None:
            return hit
        self.check_valid_on(day)
        season = self.season_of(day)
        si = self.seasons.index(season)
        bands = self._slot_tables[(si, self.day_type(day))]
        entry = (bands, tuple(b.price for b in bands))
        self._day_cache[day] = entry
        return entry

    def _locate(self, start: Any) -> tuple[date, int]:
        """(local date, grid slot) of an interval start; strict about its form."""
        if not isinstance(start, datetime):
            raise TariffError(f"interval start must be a datetime, got {type(start).__name__}")
        if start.tzinfo is None or start.utcoffset() is None:
            raise TariffError(f"interval start {start.isoformat()} is naive; give a UTC time")
        local = start.astimezone(self._zone)
        minute = local.hour * 60 + local.minute
        if minute % self.interval_minutes or local.second or local.microsecond:
            raise TariffError(
                f"interval start {local.isoformat()} is not on the "
                f"{self.interval_minutes}-minute interval grid"
            )
        return local.date(), minute // self.interval_minutes

    def band_at(self, start_utc: datetime) -> Band:
        """The band of the interval starting at ``start_utc`` (looked up in local time)."""
        day, slot = self._locate(start_utc)
        return self._day(day)[0][slot]

    def price_at(self, start_utc: datetime) -> int:
        """Price (sub-units per Wh) of the interval starting at ``start_utc``."""
        day, slot = self._locate(start_utc)
        return self._day(day)[1][slot]

    def prices_for(
        self, starts: Sequence[datetime], interval_minutes: int | None = None
    ) -> list[int]:
        """Prices for many interval starts; per-day tables are cached, so this is fast.

        ``interval_minutes`` is the meter's interval when it differs from the
        tariff's grid: a finer meter interval takes the price of the grid slot
        it lies in; a coarser one must not straddle a band boundary (its price
        would be ambiguous), else :class:`TariffError`.
        """
        step = self.interval_minutes
        if interval_minutes is not None and interval_minutes != step:
            return self._prices_other_grid(starts, interval_minutes)
        zone, cache = self._zone, self._day_cache
        out: list[int] = []
        append = out.append
        for s in starts:
            # Fast path for the common case (aware datetime on the grid, known day).
            if type(s) is datetime and s.tzinfo is not None:
                local = s.astimezone(zone)
                minute = local.hour * 60 + local.minute
                if not (minute % step or local.second or local.microsecond):
                    hit = cache.get(local.date())
                    if hit is not None:
                        append(hit[1][minute // step])
                        continue
            day, slot = self._locate(s)
            append(self._day(day)[1][slot])
        return out

    def day_prices(self, day: date, tz: str, interval_minutes: int) -> tuple[int, ...]:
        """Prices of every metering interval of the local day ``day`` of a meter in
        ``tz`` with ``interval_minutes`` intervals, in index order (cached per day).

        The same as :meth:`prices_for` over that day's interval starts. On an
        ordinary day in the tariff's own zone the k-th interval starts at local
        minute ``k * interval``, so the price table is read directly without any
        time-zone arithmetic; daylight-saving days and other zones take the
        general path.
        """
        key = (day, tz, interval_minutes)
        hit = self._day_price_cache.get(key)
        if hit is not None:
            return hit
        from ..model.timebase import day_starts  # the meter's grid, DST included

        starts = day_starts(day, tz, interval_minutes)
        step = self.interval_minutes
        if (
            tz == self.tz
            and len(starts) * interval_minutes == 1440
            and interval_minutes <= step
            and step % interval_minutes == 0
        ):
            slots = self._day(day)[1]
            prices = tuple(slots[(k * interval_minutes) // step] for k in range(len(starts)))
        else:
            prices = tuple(self.prices_for(starts, interval_minutes))
        self._day_price_cache[key] = prices
        return prices

    def period_prices(
        self, first_day: date, n_days: int, tz: str, interval_minutes: int
    ) -> list[int]:
        """:meth:`day_prices` of ``n_days`` consecutive local days, concatenated."""
        out: list[int] = []
        for k in range(n_days):
            out.extend(self.day_prices(first_day + timedelta(days=k), tz, interval_minutes))
        return out

    def _prices_other_grid(self, starts: Sequence[datetime], meter_minutes: int) -> list[int]:
        step = self.interval_minutes
        if isinstance(meter_minutes, bool) or not isinstance(meter_minutes, int) or meter_minutes < 1:
            raise TariffError(f"meter interval must be a positive number of minutes, got {meter_minutes!r}")
        if meter_minutes < step and step % meter_minutes == 0:
            floored = []
            for s in starts:
                if not isinstance(s, datetime) or s.tzinfo is None:
                    raise TariffError("interval starts must be aware datetimes")
                local = s.astimezone(self._zone)
                floored.append(s - timedelta(minutes=(local.hour * 60 + local.minute) % step))
            return self.prices_for(floored)
        if meter_minutes > step and meter_minutes % step == 0:
            k = meter_minutes // step
            subs = [s + timedelta(minutes=step * j) for s in starts for j in range(k)]
            sub_prices = self.prices_for(subs)
            out = []
            for n, s in enumerate(starts):
                chunk = sub_prices[n * k : (n + 1) * k]
                if min(chunk) != max(chunk):
                    raise TariffError(
                        f"the {meter_minutes}-minute interval starting {s.isoformat()} straddles "
                        "a tariff band boundary"
                    )
                out.append(chunk[0])
            return out
        raise TariffError(
            f"a {meter_minutes}-minute meter interval does not fit the tariff's {step}-minute grid"
        )

    # ------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (the ``"tariff"`` object of a tariff file)."""
        return {
            "kind": KIND_TIME_OF_USE,
            "tariff_id": self.tariff_id,
            "version": self.version,
            "currency": self.currency,
            "subunits_per_unit": self.subunits_per_unit,
            "timezone": self.tz,
            "interval_minutes": self.interval_minutes,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "standing_charge_per_day": self.standing_charge_per_day,
            "seasons": [s.to_dict() for s in self.seasons],
            "bands": [b.to_dict() for b in self.bands],
            "holidays": [h.isoformat() for h in sorted(self.holidays)],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Tariff:
        """Strictly parse the JSON form; raises :class:`TariffError` on anything off."""
        if isinstance(d, dict) and d.get("kind") in ("tiered", "inclining-block", "polynomial"):
            raise TariffError(f"kind: {_q(d['kind'])} is non-linear; parse it with tariff_from_dict")
        _check_object("tariff", d, _TOP_FIELDS, _TOP_FIELDS - _TOP_OPTIONAL)
        kind = d["kind"]
        if kind != KIND_TIME_OF_USE:
            raise TariffError(
                f"kind: unsupported tariff kind {_q(kind)} "
                "(supported: time-of-use, tiered, inclining-block, polynomial)"
            )
        seasons_raw = _check_list("seasons", d["seasons"], MAX_SEASONS)
        bands_raw = _check_list("bands", d["bands"], MAX_BANDS)
        holidays_raw = _check_list("holidays", d.get("holidays", []), MAX_HOLIDAYS)
        seasons = tuple(_season_from(f"seasons[{i}]", s) for i, s in enumerate(seasons_raw))
        bands = tuple(_band_from(f"bands[{i}]", b) for i, b in enumerate(bands_raw))
        holidays = [_parse_date(f"holidays[{i}]", h) for i, h in enumerate(holidays_raw)]
        if len(set(holidays)) != len(holidays):
            raise TariffError("holidays: duplicate date")
        tz = d.get("timezone", DEFAULT_TZ)
        if not isinstance(tz, str):
            raise TariffError(f"timezone: expected a string, got {type(tz).__name__}")
        return cls(
            tariff_id=_check_name("tariff_id", d["tariff_id"]),
            version=_check_int("version", d["version"], 1),
            currency=_check_str("currency", d["currency"]),
            subunits_per_unit=_check_int("subunits_per_unit", d["subunits_per_unit"], 1),
            tz=tz,
            interval_minutes=_check_int(
                "interval_minutes", d.get("interval_minutes", DEFAULT_INTERVAL_MINUTES), 1, 60
            ),
            valid_from=_parse_date("valid_from", d["valid_from"]),
            valid_until=_parse_date("valid_until", d["valid_until"]),
            standing_charge_per_day=_check_int(
                "standing_charge_per_day", d["standing_charge_per_day"], 0
            ),
            seasons=seasons,
            bands=bands,
            holidays=frozenset(holidays),
        )

    def canonical_bytes(self) -> bytes:
        """The canonical encoding of :meth:`to_dict` (what is hashed and signed)."""
        return canonical_json(self.to_dict())

    def digest(self) -> bytes:
        """SHA-256 over a domain-separation prefix and the canonical encoding (32 bytes)."""
        return self._digest

    @functools.cached_property
    def _digest(self) -> bytes:
        # Every field is frozen (tuples, a frozenset, frozen seasons and bands): the digest
        # is computed once, not per statement that quotes it (the bill checks compare it).
        return hashlib.sha256(TARIFF_DIGEST_CONTEXT + self.canonical_bytes()).digest()


# ------------------------------------------------------------------- examples


def example_tariff(
    year: int = 2027,
    *,
    tariff_id: str | None = None,
    version: int = 1,
    tz: str = DEFAULT_TZ,
) -> Tariff:
    """A realistic German-style time-of-use tariff in micro-EUR per Wh, valid for ``year``.

    Winter (10-01..03-31): night 22-06 240, day 320, weekday peak 17-20 410,
    weekend/holiday day 280. Summer (04-01..09-30) is a little cheaper.
    Standing charge 400,000 uEUR (0.40 EUR) per day.
    """
    all_days = frozenset(DAY_TYPES)
    weekday = frozenset({"weekday"})
    off = frozenset({"weekend", "holiday"})
    h = 60
    bands: list[Band] = []
    for season, night, day, peak, weekend_day in (
        ("winter", 240, 320, 410, 280),
        ("summer", 220, 300, 380, 260),
    ):
        bands += [
            Band(f"{season}-night", night, 22 * h, 6 * h, all_days, season),
            Band(f"{season}-day", day, 6 * h, 17 * h, weekday, season),
            Band(f"{season}-peak", peak, 17 * h, 20 * h, weekday, season),
            Band(f"{season}-evening", day, 20 * h, 22 * h, weekday, season),
            Band(f"{season}-weekend-day", weekend_day, 6 * h, 22 * h, off, season),
        ]
    return Tariff(
        tariff_id=tariff_id or f"de-tou-{year}",
        version=version,
        currency="EUR",
        subunits_per_unit=1_000_000,
        tz=tz,
        valid_from=date(year, 1, 1),
        valid_until=date(year + 1, 1, 1),
        standing_charge_per_day=400_000,
        seasons=(Season("winter", 10, 1, 3, 31), Season("summer", 4, 1, 9, 30)),
        bands=tuple(bands),
        holidays=german_holidays(year),
    )
