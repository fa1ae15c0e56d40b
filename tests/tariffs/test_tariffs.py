"""Tests for meterhub.tariffs: model validation, lookups (DST included), signing, file parsing."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.easter import easter as dateutil_easter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from meterhub.crypto import ecdsa
from meterhub.tariffs import (
    Band,
    Season,
    SignedTariff,
    Tariff,
    TariffError,
    demo_supplier_key,
    dump_tariff,
    easter_sunday,
    example_signed_tariff,
    example_tariff,
    german_holidays,
    key_id,
    load_tariff,
    sign_tariff,
    verify_tariff,
)

BERLIN = ZoneInfo("Europe/Berlin")
SUPPLIER = ecdsa.generate_signing_key()
OTHER = ecdsa.generate_signing_key()
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def local(y: int, mo: int, d: int, h: int, mi: int = 0, fold: int = 0) -> datetime:
    """A Berlin wall-clock time as an aware UTC datetime."""
    return datetime(y, mo, d, h, mi, tzinfo=BERLIN, fold=fold).astimezone(UTC)


def raises_one_line(fn: Any, *args: Any, match: str, **kw: Any) -> TariffError:
    with pytest.raises(TariffError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert match in msg, msg
    return info.value


# ------------------------------------------------------------------ example tariff


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (local(2027, 1, 12, 17), 410),  # Tuesday in winter, weekday peak
        (local(2027, 1, 12, 16, 45), 320),  # just before the peak
        (local(2027, 1, 12, 20), 320),  # evening, after the peak
        (local(2027, 1, 12, 22), 240),  # night starts
        (local(2027, 1, 13, 5, 45), 240),  # night, wrapping past midnight
        (local(2027, 1, 9, 18), 280),  # Saturday: weekend day, no peak
        (local(2027, 3, 29, 18), 280),  # Easter Monday: a holiday overrides weekday
        (local(2027, 6, 15, 18), 380),  # Tuesday in summer, peak
        (local(2027, 6, 15, 2), 220),  # summer night
        (local(2027, 10, 1, 12), 320),  # first day of winter again
    ],
)
def test_example_prices(when: datetime, expected: int) -> None:
    t = example_tariff(2027)
    assert t.price_at(when) == expected
    assert t.band_at(when).price == expected
    assert t.prices_for([when]) == [expected]


def test_example_metadata() -> None:
    t = example_tariff(2027)
    assert (t.currency, t.subunits_per_unit, t.tz) == ("EUR", 1_000_000, "Europe/Berlin")
    assert (t.valid_from, t.valid_until) == (date(2027, 1, 1), date(2028, 1, 1))
    assert t.holidays == german_holidays(2027)
    assert date(2027, 3, 26) in t.holidays  # Good Friday 2027
    assert len(t.digest()) == 32
    assert hash(t) == hash(example_tariff(2027))
    assert pickle.loads(pickle.dumps(t)) == t
    assert copy.deepcopy(t).price_at(local(2027, 1, 12, 17)) == 410


@pytest.mark.parametrize("year", range(1900, 2201))
def test_easter_matches_dateutil(year: int) -> None:
    assert easter_sunday(year) == dateutil_easter(year)


def test_shipped_example_file_verifies_and_matches_example() -> None:
    signed = example_signed_tariff()
    assert verify_tariff(signed, demo_supplier_key().public_key()) == example_tariff(2027)
    raises_one_line(verify_tariff, signed, SUPPLIER.public_key(), match="not by the given")


def test_prices_for_cached_matches_price_at() -> None:
    t = example_tariff(2027)
    starts = [datetime(2027, 3, 1, tzinfo=UTC) + timedelta(minutes=15 * i) for i in range(2880)]
    cold = t.prices_for(starts)
    warm = t.prices_for(starts)
    assert cold == warm == [t.price_at(s) for s in starts]


# -------------------------------------------------------------------------- DST


def berlin_day_starts(day: date) -> list[datetime]:
    """All 15-minute UTC interval starts of a Berlin local day."""
    start = datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=BERLIN).astimezone(UTC)
    n = int((end - start).total_seconds()) // 900
    return [start + timedelta(minutes=15 * i) for i in range(n)]


def dst_tariff() -> Tariff:
    """A tariff with a band exactly on the 02:00-03:00 local hour that DST adds or removes."""
    all_days = frozenset({"weekday", "weekend", "holiday"})
    return Tariff(
        tariff_id="dst-test",
        version=1,
        currency="EUR",
        subunits_per_unit=1_000_000,
        valid_from=date(2027, 1, 1),
        valid_until=date(2028, 1, 1),
        standing_charge_per_day=0,
        seasons=(Season("all", 1, 1, 12, 31),),
        bands=(
            Band("early", 100, 0, 120, all_days, "all"),
            Band("dst-hour", 999, 120, 180, all_days, "all"),
            Band("rest", 200, 180, 1440, all_days, "all"),
        ),
    )


@pytest.mark.parametrize(
    ("day", "n_intervals", "n_dst_hour"),
    [(date(2027, 3, 28), 92, 0), (date(2027, 10, 31), 100, 8), (date(2027, 7, 1), 96, 4)],
)
def test_dst_days_use_local_time(day: date, n_intervals: int, n_dst_hour: int) -> None:
    t = dst_tariff()
    starts = berlin_day_starts(day)
    assert len(starts) == n_intervals
    prices = t.prices_for(starts)
    assert prices.count(999) == n_dst_hour
    for s, p in zip(starts, prices, strict=True):
        wall = s.astimezone(BERLIN)
        minute = wall.hour * 60 + wall.minute
        assert wall.date() == day
        assert p == (100 if minute < 120 else 999 if minute < 180 else 200)


@pytest.mark.parametrize("day", [date(2027, 3, 28), date(2027, 10, 31)])
def test_dst_days_example_tariff(day: date) -> None:
    """On DST days (both Sundays) the example tariff prices by local wall time."""
    t = example_tariff(2027)
    starts = berlin_day_starts(day)
    prices = t.prices_for(starts)
    night = 240  # both DST days are in the winter season
    for s, p in zip(starts, prices, strict=True):
        h = s.astimezone(BERLIN).hour
        assert p == (night if h < 6 or h >= 22 else 280)
    # Both UTC instants labelled 02:15 local on the fall-back day are night intervals.
    assert t.price_at(local(2027, 10, 31, 2, 15, fold=0)) == night
    assert t.price_at(local(2027, 10, 31, 2, 15, fold=1)) == night


# ------------------------------------------------------- random valid tariffs

MONTH_DAYS = [
    ((date(2000, 1, 1) + timedelta(days=i)).month, (date(2000, 1, 1) + timedelta(days=i)).day)
    for i in range(366)
]
ZONES = ["Europe/Berlin", "UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
DAY_TYPES = ("weekday", "weekend", "holiday")


@st.composite
def random_tariffs(draw: st.DrawFn) -> tuple[Tariff, list[int]]:
    """A random valid tariff, and the season cut points (indices into MONTH_DAYS)."""
    step = draw(st.sampled_from([5, 10, 15, 20, 30, 60]))
    slots = 1440 // step
    cuts = sorted(draw(st.sets(st.integers(0, 365), min_size=1, max_size=3)))
    seasons = []
    for i, c in enumerate(cuts):
        end = (cuts[(i + 1) % len(cuts)] - 1) % 366
        seasons.append(Season(f"s{i}", *MONTH_DAYS[c], *MONTH_DAYS[end]))
    bands: list[Band] = []
    for season in seasons:
        groups = draw(st.lists(st.integers(0, 2), min_size=3, max_size=3))
        for g in set(groups):
            types = frozenset(t for t, gg in zip(DAY_TYPES, groups, strict=True) if gg == g)
            bcuts = sorted(draw(st.sets(st.integers(0, slots - 1), min_size=1, max_size=4)))
            if len(bcuts) == 1:
                bcuts = [0]
            for j, c in enumerate(bcuts):
                nxt = bcuts[(j + 1) % len(bcuts)]
                end_minute = nxt * step if nxt > 0 else 1440
                price = draw(st.integers(0, 10**6))
                bands.append(
                    Band(
                        f"{season.name}-b{len(bands)}",
                        price,
                        c * step,
                        end_minute,
                        types,
                        season.name,
                    )
                )
    valid_from = draw(st.dates(date(2020, 1, 1), date(2035, 12, 31)))
    length = draw(st.integers(1, 800))
    offsets = draw(st.sets(st.integers(0, length - 1), max_size=10))
    return (
        Tariff(
            tariff_id=draw(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)),
            version=draw(st.integers(1, 2**31)),
            currency=draw(st.sampled_from(["EUR", "CHF", "GBP"])),
            subunits_per_unit=draw(st.sampled_from([100, 1_000_000, 10**9])),
            tz=draw(st.sampled_from(ZONES)),
            valid_from=valid_from,
            valid_until=valid_from + timedelta(days=length),
            standing_charge_per_day=draw(st.integers(0, 10**7)),
            seasons=tuple(seasons),
            bands=tuple(draw(st.permutations(bands))),
            holidays=frozenset(valid_from + timedelta(days=o) for o in offsets),
            interval_minutes=step,
        ),
        cuts,
    )


def oracle_price(t: Tariff, cuts: list[int], day: date, minute: int) -> int:
    """Independent reference lookup: cyclic ranges over the generator's cut points."""
    idx = MONTH_DAYS.index((day.month, day.day))
    season = next(
        f"s{i}"
        for i, c in enumerate(cuts)
        if (idx - c) % 366 < ((cuts[(i + 1) % len(cuts)] - c) % 366 or 366)
    )
    dtype = "holiday" if day in t.holidays else "weekend" if day.weekday() >= 5 else "weekday"
    hits = [
        b.price
        for b in t.bands
        if b.season == season
        and dtype in b.day_types
        and (minute - b.start_minute) % 1440 < ((b.end_minute - b.start_minute) % 1440 or 1440)
    ]
    assert len(hits) == 1
    return hits[0]


@FUZZ
@given(random_tariffs(), st.data())
def test_random_tariff_prices_match_bands(
    tc: tuple[Tariff, list[int]], data: st.DataObject
) -> None:
    t, cuts = tc
    zone = ZoneInfo(t.tz)
    days = (t.valid_until - t.valid_from).days
    day = t.valid_from + timedelta(days=data.draw(st.integers(0, days - 1)))
    slot = data.draw(st.integers(0, 1440 // t.interval_minutes - 1))
    minute = slot * t.interval_minutes
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    utc = wall.astimezone(UTC)
    back = utc.astimezone(zone)
    assume(back.replace(tzinfo=None) == wall.replace(tzinfo=None))  # skip non-existent wall times
    expected = oracle_price(t, cuts, day, minute)
    assert t.price_at(utc) == expected
    assert t.band_at(utc).price == expected
    assert t.prices_for([utc, utc]) == [expected, expected]


@FUZZ
@given(random_tariffs())
def test_random_tariff_round_trips(tc: tuple[Tariff, list[int]]) -> None:
    t, _ = tc
    again = Tariff.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again == t and again.digest() == t.digest()
    signed = sign_tariff(t, SUPPLIER)
    loaded = load_tariff(dump_tariff(signed))
    assert loaded == signed
    assert verify_tariff(loaded, SUPPLIER.public_key()) == t


# ------------------------------------------------------------- invalid tariffs


def base() -> dict[str, Any]:
    return example_tariff(2027).to_dict()


def band_named(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(b for b in d["bands"] if b["name"] == name)


def _walk(d: Any, path: str) -> tuple[Any, Any]:
    """Follow a dotted path (list items by index or by their "name"); return (parent, key)."""
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[_key(node, p)]
    return node, _key(node, last)


def _key(node: Any, p: str) -> Any:
    if isinstance(node, list):
        return int(p) if p.isdigit() else next(i for i, b in enumerate(node) if b["name"] == p)
    return p


def _set(path: str, value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        parent, key = _walk(d, path)
        parent[key] = value

    return mutate


def _del(path: str) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        parent, key = _walk(d, path)
        del parent[key]

    return mutate


def _drop_band(name: str) -> Any:
    return lambda d: d["bands"].remove(band_named(d, name))


def _off_grid(d: dict[str, Any]) -> None:
    band_named(d, "winter-day")["end"] = "17:05"
    band_named(d, "winter-peak")["start"] = "17:05"


def _no_holiday_night(d: dict[str, Any]) -> None:
    band_named(d, "winter-night")["day_types"] = ["weekday", "weekend"]


INVALID = [
    (
        "overlap",
        _set("bands.winter-peak.start", "16:00"),
        "overlap in season 'winter' on weekday at 16:00",
    ),
    ("gap", _drop_band("summer-evening"), "no band covers season 'summer' on weekday at 20:00"),
    ("gap-holiday", _no_holiday_night, "no band covers season 'winter' on holiday at 00:00"),
    ("off-grid", _off_grid, "not on the 15-minute interval grid"),
    ("negative-price", _set("bands.winter-day.price", -1), "-1 is negative"),
    ("negative-standing", _set("standing_charge_per_day", -5), "-5 is negative"),
    ("float-price", _set("bands.winter-day.price", 3.5), "expected an integer, got float"),
    ("bool-price", _set("bands.winter-day.price", True), "expected an integer, got bool"),
    ("str-version", _set("version", "1"), "version: expected an integer, got str"),
    ("zero-version", _set("version", 0), "below the minimum 1"),
    ("huge-price", _set("bands.winter-day.price", 2**60), "exceeds the maximum"),
    ("unknown-top", _set("discount", 5), "tariff: unknown field 'discount'"),
    ("unknown-band", _set("bands.winter-day.colour", "red"), "unknown field 'colour'"),
    ("unknown-season", _set("seasons.0.weather", "cold"), "unknown field 'weather'"),
    ("missing-field", _del("currency"), "missing field 'currency'"),
    ("missing-band-field", _del("bands.0.price"), "bands[0]: missing field 'price'"),
    ("missing-kind", _del("kind"), "missing field 'kind'"),
    ("other-kind", _set("kind", "block-rate"), "unsupported tariff kind 'block-rate'"),
    ("bands-not-list", _set("bands", {}), "bands: expected a list, got dict"),
    ("holidays-str", _set("holidays", "2027-01-01"), "holidays: expected a list"),
    ("day-types-str", _set("bands.winter-day.day_types", "weekday"), "expected a list"),
    (
        "day-type-unknown",
        _set("bands.winter-day.day_types", ["workday"]),
        "unknown day type 'workday'",
    ),
    (
        "day-type-dup",
        _set("bands.winter-day.day_types", ["weekday", "weekday"]),
        "duplicate day type",
    ),
    ("day-types-empty", _set("bands.winter-day.day_types", []), "day_types is empty"),
    ("bad-date", _set("valid_from", "2027-13-01"), "not a calendar date"),
    ("bad-date-form", _set("valid_from", "20270101"), "not a date YYYY-MM-DD"),
    ("bad-time", _set("bands.winter-day.start", "25:00"), "not a time HH:MM"),
    ("start-24", _set("bands.winter-day.start", "24:00"), "not a time HH:MM in 00:00..23:59"),
    ("end-midnight", _set("bands.winter-day.end", "00:00"), "write midnight as '24:00'"),
    ("empty-window", _set("bands.winter-day.end", "06:00"), "empty time window"),
    ("bad-month-day", _set("seasons.0.start", "02-30"), "not a month-day MM-DD"),
    (
        "season-overlap",
        _set("seasons.0.start", "09-01"),
        "seasons 'winter' and 'summer' overlap on 09-01",
    ),
    ("season-gap", _set("seasons.0.start", "10-02"), "no season covers 10-01"),
    ("season-dup", _set("seasons.1.name", "winter"), "duplicate season name 'winter'"),
    ("unknown-band-season", _set("bands.winter-day.season", "spring"), "unknown season 'spring'"),
    ("window-empty", _set("valid_until", "2027-01-01"), "validity window is empty"),
    ("holiday-outside", _set("holidays.0", "2026-12-25"), "holiday 2026-12-25 lies outside"),
    ("holiday-dup", _set("holidays.1", "2027-01-01"), "holidays: duplicate date"),
    ("tz-unknown", _set("timezone", "Mars/Olympus_Mons"), "unknown time zone"),
    ("tz-path", _set("timezone", "../../etc/passwd"), "not an IANA time zone name"),
    ("tz-type", _set("timezone", 1), "timezone: expected a string"),
    ("currency", _set("currency", "eur"), "not an ISO 4217 code"),
    ("interval", _set("interval_minutes", 7), "does not divide an hour"),
    ("interval-zero", _set("interval_minutes", 0), "below the minimum 1"),
    ("tariff-id", _set("tariff_id", "de tou"), "not a valid name"),
    ("no-bands", _set("bands", []), "at least one band"),
    ("no-seasons", _set("seasons", []), "at least one season"),
    ("subunits", _set("subunits_per_unit", 0), "below the minimum 1"),
]


@pytest.mark.parametrize(("mutate", "match"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_tariffs_rejected(mutate: Any, match: str) -> None:
    d = base()
    mutate(d)
    raises_one_line(Tariff.from_dict, d, match=match)
    # ... and the same through the file reader.
    doc = json.loads(dump_tariff(sign_tariff(example_tariff(2027), SUPPLIER)))
    doc["tariff"] = d
    raises_one_line(load_tariff, json.dumps(doc).encode(), match=match)


def test_base_is_valid_and_defaults_apply() -> None:
    d = base()
    assert Tariff.from_dict(d) == example_tariff(2027)
    for optional in ("timezone", "interval_minutes", "holidays"):
        del d[optional]
    t = Tariff.from_dict(d)
    assert (t.tz, t.interval_minutes, t.holidays) == ("Europe/Berlin", 15, frozenset())


@pytest.mark.parametrize("value", [None, [], "tariff", 3])
def test_tariff_must_be_object(value: Any) -> None:
    raises_one_line(Tariff.from_dict, value, match="tariff: expected an object")


def test_direct_construction_is_validated() -> None:
    all_days = frozenset({"weekday", "weekend", "holiday"})
    raises_one_line(Band, "x", -3, 0, 1440, all_days, "s", match="is negative")
    raises_one_line(Band, "x", 3, 0, 1440, "weekday", "s", match="collection of day types")
    raises_one_line(Band, "x", 3, 0, 1440, [["weekday"]], "s", match="collection of day types")
    raises_one_line(Season, "s", 2, 30, 3, 1, match="not a month-day")
    t = example_tariff(2027)
    raises_one_line(
        Tariff,
        **{**vars_of(t), "holidays": [datetime(2027, 1, 1)]},
        match="expected dates",
    )


def vars_of(t: Tariff) -> dict[str, Any]:
    names = [
        "tariff_id", "version", "currency", "subunits_per_unit", "tz", "valid_from",
        "valid_until", "standing_charge_per_day", "seasons", "bands", "holidays",
        "interval_minutes",
    ]  # fmt: skip
    return {n: getattr(t, n) for n in names}


# ---------------------------------------------------------- validity and lookups


def test_validity_window() -> None:
    t = example_tariff(2027)
    t.check_valid_on(date(2027, 1, 1))
    t.check_valid_on(date(2027, 12, 31))
    raises_one_line(t.check_valid_on, date(2026, 12, 31), match="not yet valid on 2026-12-31")
    raises_one_line(t.check_valid_on, date(2028, 1, 1), match="has expired on 2028-01-01")
    # Interval starts are judged by their local date: 23:00 UTC on 31 Dec is 1 Jan in Berlin.
    raises_one_line(t.price_at, datetime(2027, 12, 31, 23, tzinfo=UTC), match="has expired")
    assert t.price_at(datetime(2026, 12, 31, 23, tzinfo=UTC)) == 240
    raises_one_line(
        t.prices_for, [datetime(2026, 12, 31, 22, 45, tzinfo=UTC)], match="not yet valid"
    )


@pytest.mark.parametrize(
    ("start", "match"),
    [
        (datetime(2027, 5, 5, 12), "is naive"),
        (datetime(2027, 5, 5, 12, 7, tzinfo=UTC), "not on the 15-minute interval grid"),
        (datetime(2027, 5, 5, 12, 0, 30, tzinfo=UTC), "not on the 15-minute interval grid"),
        (date(2027, 5, 5), "must be a datetime"),
        ("2027-05-05T12:00Z", "must be a datetime"),
    ],
)
def test_bad_interval_starts(start: Any, match: str) -> None:
    t = example_tariff(2027)
    raises_one_line(t.price_at, start, match=match)
    raises_one_line(t.band_at, start, match=match)
    raises_one_line(t.prices_for, [datetime(2027, 5, 5, tzinfo=UTC), start], match=match)


# -------------------------------------------------------------------- signatures


def signed_example() -> SignedTariff:
    return sign_tariff(example_tariff(2027), SUPPLIER)


def test_sign_verify_round_trip() -> None:
    s = signed_example()
    assert s.key_id == key_id(SUPPLIER.public_key()) == key_id(ecdsa.public_bytes(SUPPLIER))
    assert len(s.signature) == 64
    loaded = load_tariff(dump_tariff(s))
    assert loaded == s
    assert verify_tariff(loaded, SUPPLIER.public_key()) == example_tariff(2027)
    assert verify_tariff(loaded, ecdsa.public_bytes(SUPPLIER), on=date(2027, 6, 1)) == s.tariff


def test_load_from_path(tmp_path: Any) -> None:
    p = tmp_path / "tariff-x.json"
    signed = signed_example()
    p.write_bytes(dump_tariff(signed))
    assert load_tariff(p) == load_tariff(str(p)) == signed
    raises_one_line(load_tariff, tmp_path / "missing.json", match="cannot read tariff file")
    raises_one_line(load_tariff, 42, match="expected a path or bytes")


def test_verify_on_checks_validity() -> None:
    s = signed_example()
    raises_one_line(verify_tariff, s, SUPPLIER.public_key(), on=date(2028, 3, 1), match="expired")
    raises_one_line(
        verify_tariff, s, SUPPLIER.public_key(), on=date(2026, 3, 1), match="not yet valid"
    )


def test_signature_covers_parsed_content_not_layout() -> None:
    """Defaults left out, holidays and day types reordered: same tariff, same signature."""
    doc = json.loads(dump_tariff(signed_example()))
    t = doc["tariff"]
    del t["timezone"], t["interval_minutes"]
    t["holidays"].reverse()
    for band in t["bands"]:
        band["day_types"].reverse()
    signed = load_tariff(json.dumps(doc, separators=(",", ":")).encode())
    assert verify_tariff(signed, SUPPLIER.public_key()) == example_tariff(2027)


def test_wrong_key_rejected() -> None:
    s = signed_example()
    raises_one_line(verify_tariff, s, OTHER.public_key(), match="not by the given supplier key")
    # An attacker who signs with their own key but claims the supplier's key id.
    forged = SignedTariff(s.tariff, s.key_id, sign_tariff(s.tariff, OTHER).signature)
    raises_one_line(
        verify_tariff, forged, SUPPLIER.public_key(), match="tariff signature does not verify"
    )
    raises_one_line(verify_tariff, s, b"\x04" + b"\x00" * 64, match="not a valid P-256 point")
    raises_one_line(verify_tariff, s, "key", match="must be an ECDSA P-256 public key")


def leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in leaf_paths(v, (*prefix, i))]
    return [prefix]


def tweak(value: Any) -> Any:
    if isinstance(value, int):
        return value + 1
    if value[:2].isdigit() and ":" in value:  # a time: move by one hour
        return f"{(int(value[:2]) + 1) % 24:02d}{value[2:]}"
    if value[:4].isdigit() and len(value) == 10:  # a date: one day later
        return (date.fromisoformat(value) + timedelta(days=1)).isoformat()
    return {"weekday": "weekend", "weekend": "holiday", "holiday": "weekday"}.get(
        value, value + "x"
    )


TARIFF_LEAVES = leaf_paths(example_tariff(2027).to_dict())


@pytest.mark.parametrize("path", TARIFF_LEAVES, ids=lambda p: ".".join(map(str, p)))
def test_tamper_any_field_rejected(path: tuple[Any, ...]) -> None:
    doc = json.loads(dump_tariff(signed_example()))
    node = doc["tariff"]
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = tweak(node[path[-1]])
    data = json.dumps(doc).encode()
    # Either the edit breaks validity (load fails) or the signature catches it.
    with pytest.raises(TariffError):
        verify_tariff(load_tariff(data), SUPPLIER.public_key())


@pytest.mark.parametrize(
    "mutate",
    [
        _set("version", 2),
        _set("tariff_id", "de-tou-2027b"),
        _set("bands.winter-peak.price", 400),
        _set("standing_charge_per_day", 1),
        _set("timezone", "Europe/Paris"),
        _set("valid_until", "2028-06-01"),
        _set("currency", "CHF"),
        _set("subunits_per_unit", 100),
        _del("holidays.0"),
        _set("bands.winter-peak.name", "winter-rush"),
    ],
)
def test_semantic_tamper_reaches_signature_check(mutate: Any) -> None:
    doc = json.loads(dump_tariff(signed_example()))
    mutate(doc["tariff"])
    loaded = load_tariff(json.dumps(doc).encode())  # still a valid tariff ...
    raises_one_line(
        verify_tariff, loaded, SUPPLIER.public_key(), match="tariff signature does not verify"
    )


@FUZZ
@given(st.integers(0, 63), st.integers(1, 255))
def test_signature_bit_flips_rejected(pos: int, mask: int) -> None:
    s = signed_example()
    sig = bytearray(s.signature)
    sig[pos] ^= mask
    bad = SignedTariff(s.tariff, s.key_id, bytes(sig))
    raises_one_line(verify_tariff, bad, SUPPLIER.public_key(), match="does not verify")


def test_digest_and_signature_are_domain_separated() -> None:
    t = example_tariff(2027)
    import hashlib

    assert t.digest() != hashlib.sha256(t.canonical_bytes()).digest()
    assert t.digest() != example_tariff(2027, version=2).digest()
    # The raw canonical encoding alone is not what was signed.
    s = sign_tariff(t, SUPPLIER)
    assert not ecdsa.verify(SUPPLIER.public_key(), t.canonical_bytes(), s.signature)


def test_canonical_encoding_form() -> None:
    c = example_tariff(2027).canonical_bytes()
    assert b" " not in c and b"\n" not in c
    assert c == json.dumps(json.loads(c), sort_keys=True, separators=(",", ":")).encode()
    assert c.startswith(b'{"bands":[')


# -------------------------------------------------------------- file-level errors


GOOD_FILE = dump_tariff(sign_tariff(example_tariff(2027), SUPPLIER))


def _file_with(change: Any) -> bytes:
    doc = json.loads(GOOD_FILE)
    change(doc)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "malformed JSON"),
        (b"{", "malformed JSON"),
        (GOOD_FILE[:-20], "malformed JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"tariff": 1, "tariff": 2}', "duplicate key 'tariff'"),
        (b'{"x": NaN}', "NaN is not allowed"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed JSON"),
        (b"1" * 5000, "malformed JSON"),
        (b" " * (1 << 20) + b"{}", "too large"),
        (b"[]", "tariff file: expected an object"),
        (b"{}", "missing field 'signature'"),
        (_file_with(lambda d: d.update(comment="hi")), "tariff file: unknown field 'comment'"),
        (_file_with(lambda d: d["signature"].update(algorithm="rsa")), "unsupported 'rsa'"),
        (_file_with(lambda d: d["signature"].update(key_id="AB" * 32)), "64 lowercase hex"),
        (_file_with(lambda d: d["signature"].update(value="00" * 63)), "128 lowercase hex"),
        (_file_with(lambda d: d["signature"].pop("value")), "signature: missing field 'value'"),
        (_file_with(lambda d: d["signature"].update(extra=1)), "signature: unknown field 'extra'"),
    ],
)
def test_file_errors(data: bytes, match: str) -> None:
    raises_one_line(load_tariff, data, match=match)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(GOOD_FILE)), st.integers(0, 255), st.sampled_from("rid")),
        min_size=1,
        max_size=8,
    )
)
def test_mutated_files_only_raise_tariff_error(edits: list[tuple[int, int, str]]) -> None:
    data = bytearray(GOOD_FILE)
    for pos, byte, op in edits:
        pos = min(pos, len(data))
        if op == "r" and pos < len(data):
            data[pos] = byte
        elif op == "i":
            data.insert(pos, byte)
        elif pos < len(data):
            del data[pos]
    try:
        signed = load_tariff(bytes(data))
    except TariffError as e:
        assert "\n" not in str(e)
        return
    try:
        verify_tariff(signed, SUPPLIER.public_key())
    except TariffError:
        return
    # Only content-preserving edits (e.g. whitespace) may still verify.
    assert signed.tariff == example_tariff(2027)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_tariff_error(data: bytes) -> None:
    with pytest.raises(TariffError):
        load_tariff(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.data())
def test_random_json_in_tariff_fields_only_raise_tariff_error(data: st.DataObject) -> None:
    d = base()
    paths = leaf_paths(d) + [("bands",), ("seasons",), ("holidays",), ("bands", 0), ("seasons", 0)]
    path = data.draw(st.sampled_from(paths))
    node: Any = d
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = data.draw(JSON_VALUES)
    try:
        t = Tariff.from_dict(copy.deepcopy(d))
    except TariffError as e:
        assert "\n" not in str(e)
        return
    assert t.to_dict() == Tariff.from_dict(t.to_dict()).to_dict()


@pytest.mark.parametrize("interval", [1, 5, 15, 30, 60])
@pytest.mark.parametrize("day", [date(2027, 3, 28), date(2027, 10, 31), date(2027, 6, 15), date(2027, 12, 24)])
def test_day_prices_equal_prices_for_the_day_starts(day: date, interval: int) -> None:
    from meterhub.model.timebase import day_starts

    t = example_tariff(2027)
    for tz in ("Europe/Berlin", "Europe/London"):
        starts = day_starts(day, tz, interval)
        try:
            want = tuple(t.prices_for(starts, interval))
        except TariffError:
            with pytest.raises(TariffError):
                t.day_prices(day, tz, interval)
            continue
        assert t.day_prices(day, tz, interval) == want
        assert t.day_prices(day, tz, interval) == want  # cached


def test_cached_digest_is_the_digest_of_the_current_fields() -> None:
    """The digest is computed once per (frozen) tariff: equal to a fresh computation,
    and a changed copy (``dataclasses.replace``) gets its own."""
    import dataclasses
    import hashlib

    from meterhub.tariffs.model import TARIFF_DIGEST_CONTEXT

    t = example_tariff(2027)
    fresh = hashlib.sha256(TARIFF_DIGEST_CONTEXT + t.canonical_bytes()).digest()
    assert t.digest() == fresh and t.digest() == fresh
    other = dataclasses.replace(t, standing_charge_per_day=t.standing_charge_per_day + 1)
    assert other.digest() == hashlib.sha256(TARIFF_DIGEST_CONTEXT + other.canonical_bytes()).digest()
    assert other.digest() != t.digest()
    assert pickle.loads(pickle.dumps(t)).digest() == fresh
