"""Signed series: the price index and reference profiles (format, signatures, lookups, CSV)."""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterhub.crypto import ecdsa
from meterhub.model.timebase import range_starts
from meterhub.tariffs.price_index import (
    KIND_LOAD_PROFILE,
    KIND_PRICE_INDEX,
    Series,
    SeriesError,
    SignedSeries,
    demo_index_publisher_key,
    dump_series,
    example_price_index,
    index_from_csv,
    load_series,
    series_signing_message,
    sign_series,
    verify_series,
)
from meterhub.tariffs.profiles import (
    BDEW_PROFILES,
    bdew_profile,
    demo_profile_key,
    reference_profiles,
)

START = date(2027, 3, 27)  # the spring DST change falls on 2027-03-28


@pytest.fixture(scope="module")
def index() -> Series:
    return example_price_index(START, 3)


def test_example_index_is_realistic(index):
    # 3 local days around the DST change: 96 + 92 + 96 quarter hours.
    assert len(index.values) == 284
    eur_mwh = [v / 100 for v in index.values]
    assert 20 < sum(eur_mwh) / len(eur_mwh) < 150
    assert min(eur_mwh) < max(eur_mwh) - 30  # a daily shape, not a constant
    assert index.scale == 10**8 and index.kind == KIND_PRICE_INDEX


def test_round_trip_and_signature(index):
    key = demo_index_publisher_key()
    signed = sign_series(index, key)
    for raw in (dump_series(signed), dump_series(signed, compact=False)):
        back = load_series(raw)
        assert verify_series(back, key.public_key()) == index
        assert verify_series(back, ecdsa.public_bytes(key), kind=KIND_PRICE_INDEX) == index
    assert series_signing_message(index).startswith(b"meterhub/v1/price-index\x00")
    with pytest.raises(SeriesError, match="expected a load-profile"):
        verify_series(signed, key.public_key(), kind=KIND_LOAD_PROFILE)


def test_tampered_index_is_refused(index):
    key = demo_index_publisher_key()
    signed = sign_series(index, key)
    vals = list(index.values)
    vals[100] += 1
    forged = SignedSeries(dataclasses.replace(index, values=tuple(vals)), signed.key_id, signed.signature)
    with pytest.raises(SeriesError, match="does not verify"):
        verify_series(forged, key.public_key())
    for field, value in (("version", 2), ("series_id", "other"), ("expires", date(2030, 1, 1))):
        forged = SignedSeries(dataclasses.replace(index, **{field: value}), signed.key_id, signed.signature)
        with pytest.raises(SeriesError):
            verify_series(forged, key.public_key())
    with pytest.raises(SeriesError, match="another key"):
        verify_series(signed, ecdsa.generate_signing_key().public_key())
    # Profiles are signed under another domain-separation tag: a signature over the same
    # canonical bytes as a profile does not carry over.
    prof = dataclasses.replace(index, kind=KIND_LOAD_PROFILE, values=tuple(abs(v) for v in index.values))
    sp = sign_series(prof, key)
    with pytest.raises(SeriesError, match="does not verify"):
        verify_series(SignedSeries(dataclasses.replace(prof, kind=KIND_PRICE_INDEX), sp.key_id, sp.signature), key)


def test_unsigned_wrong_format_and_expired(index):
    signed = sign_series(index, demo_index_publisher_key())
    doc = json.loads(dump_series(signed))
    with pytest.raises(SeriesError, match="unsigned"):
        load_series(json.dumps({"series": doc["series"]}).encode())
    doc2 = json.loads(dump_series(signed))
    doc2["series"]["format"] = "meterhub-series/2"
    with pytest.raises(SeriesError, match="format"):
        load_series(json.dumps(doc2).encode())
    with pytest.raises(SeriesError, match="expired"):
        verify_series(signed, demo_index_publisher_key(), on=index.expires)
    assert verify_series(signed, demo_index_publisher_key(), on=index.expires - timedelta(days=1)) == index


def test_values_for_maps_meter_intervals(index):
    starts = range_starts(START, 3, "Europe/Berlin", 15)
    assert index.values_for(starts, 15) == list(index.values)
    five = range_starts(START, 1, "Europe/Berlin", 5)
    assert index.values_for(five, 5) == [v for v in index.values[:96] for _ in range(3)]
    with pytest.raises(SeriesError, match="cannot price"):
        index.values_for(range_starts(START, 1, "Europe/Berlin", 60), 60)
    with pytest.raises(SeriesError, match="does not cover"):
        index.values_for(range_starts(START + timedelta(days=3), 1, "Europe/Berlin", 15), 15)


def test_negative_values_only_in_an_index(index):
    assert dataclasses.replace(index, values=(-5, 3)).values == (-5, 3)
    with pytest.raises(SeriesError, match="values"):
        dataclasses.replace(index, kind=KIND_LOAD_PROFILE, values=(-5, 3))


def test_csv_import():
    t0 = datetime(2027, 3, 26, 23, 0, tzinfo=UTC)
    lines = ["start,price_eur_mwh"] + [f"{(t0 + timedelta(minutes=15 * k)).isoformat()},{80 + k * 0.01:.2f}" for k in range(8)]
    s = index_from_csv("\n".join(lines), series_id="epex", version=4)
    assert s.start == t0 and s.interval_minutes == 15 and s.values == tuple(8000 + k for k in range(8))
    with pytest.raises(SeriesError, match="contiguous"):
        index_from_csv("\n".join(lines[:3] + lines[4:]), series_id="epex", version=1)
    with pytest.raises(SeriesError, match="cannot parse"):
        index_from_csv(lines[1] + "\n" + lines[2] + "\nfoo,bar", series_id="epex", version=1)


def test_bdew_profiles():
    profiles = reference_profiles(START, 3)
    assert [p.series.series_id for p in profiles] == [f"bdew-{n}" for n in BDEW_PROFILES] + ["u-night"]
    for p in profiles:
        assert len(p.series.values) == 71  # 24 + 23 + 24 local hours
        verify_series(p, demo_profile_key(), kind=KIND_LOAD_PROFILE)
    def day(name: str, d: date) -> int:
        return sum(bdew_profile(name, d, 1).values)

    sunday, wednesday = date(2027, 3, 21), date(2027, 3, 24)
    # G1 (workdays 8-18) draws far less on a Sunday than on a Wednesday; H0 does not drop.
    assert day("g1", sunday) < 0.6 * day("g1", wednesday)
    assert day("h0", sunday) > 0.8 * day("h0", wednesday)


@given(st.binary(max_size=400))
def test_loader_only_raises_series_error(data):
    try:
        load_series(data)
    except SeriesError:
        pass


_FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.text(max_size=12),
                          st.lists(st.integers(-10, 10), max_size=3))


@given(st.sampled_from(sorted(Series.__dataclass_fields__) + ["format"]), _FIELD_VALUES)
def test_mutated_fields_are_refused_or_fail_the_signature(field, value):
    idx = example_price_index(START, 1)
    signed = sign_series(idx, demo_index_publisher_key())
    doc = json.loads(dump_series(signed))
    if doc["series"].get(field) == value:
        return
    doc["series"][field] = value
    try:
        back = load_series(json.dumps(doc).encode())
    except SeriesError:
        return
    with pytest.raises(SeriesError):
        verify_series(back, demo_index_publisher_key())


@functools.cache
def _one_day_index() -> Series:
    return example_price_index(START, 1)


class _Int(int):
    """An int subclass: accepted by the value check like a plain int."""


_ODD_VALUES = st.one_of(
    st.integers(min_value=-(1 << 41), max_value=1 << 41),
    st.booleans(),
    st.floats(allow_nan=False, width=32),
    st.integers(min_value=-3, max_value=3).map(_Int),
    st.just("1"),
    st.none(),
)


@given(
    st.lists(st.one_of(st.integers(min_value=-5, max_value=5), _ODD_VALUES), min_size=1, max_size=12),
    st.sampled_from([KIND_PRICE_INDEX, KIND_LOAD_PROFILE]),
)
def test_value_check_names_the_same_first_bad_value_as_checking_each_in_turn(values, kind):
    """The C-level fast path of the value check (``_check_values``) accepts and refuses
    exactly what ``_int`` on every value in turn does, with the same message."""
    from meterhub.tariffs.price_index import MAX_ABS_VALUE, _int

    base = _one_day_index()
    lo = 0 if kind == KIND_LOAD_PROFILE else -MAX_ABS_VALUE
    expected = None
    try:
        for k, v in enumerate(values):
            _int(f"values[{k}]", v, lo, MAX_ABS_VALUE)
    except SeriesError as exc:
        expected = str(exc)
    try:
        s = dataclasses.replace(base, kind=kind, values=tuple(values))
    except SeriesError as exc:
        assert str(exc) == expected
    else:
        assert expected is None and s.values == tuple(values)
