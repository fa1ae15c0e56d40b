"""The one strict JSON reader (meterhub.model.strictjson; docs/verification.md V03)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.hub.proving import statement_from_json
from meterhub.model import strictjson
from meterhub.model.errors import FormatError
from meterhub.model.formats.sealed import SealedDay
from meterhub.model.formats.statements import BillStatement
from meterhub.model.formats.upload import DayUpload
from meterhub.model.strictjson import StrictJSONError, loads, nesting_depth
from meterhub.tariffs import TariffError, load_tariff
from meterhub.tariffs.price_index import SeriesError, load_series
from meterhub.utility.forecasting import ProfileScores, SampleRelease
from meterhub.utility.settlement import SettlementStatement

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(_json_values)
@settings(max_examples=200, deadline=None)
def test_any_strict_document_round_trips(value):
    text = json.dumps(value)
    assert loads(text, "doc") == json.loads(text)
    assert loads(text.encode(), "doc") == json.loads(text)


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_parse_or_raise_strict_error(data):
    try:
        loads(data, "doc")
    except StrictJSONError as exc:
        assert "\n" not in str(exc)


@given(st.text(max_size=10), st.integers(), st.integers())
@settings(max_examples=100, deadline=None)
def test_duplicate_keys_are_refused_at_any_depth(key, a, b):
    for doc in (f'{{{json.dumps(key)}: {a}, {json.dumps(key)}: {b}}}', f'[{{"x": {{{json.dumps(key)}: 1, {json.dumps(key)}: 2}}}}]'):
        with pytest.raises(StrictJSONError, match="duplicate key"):
            loads(doc, "doc")


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(const):
    with pytest.raises(StrictJSONError, match="not allowed"):
        loads(f'{{"x": [1, {const}]}}', "doc")


@given(st.integers(min_value=1, max_value=200))
@settings(max_examples=50, deadline=None)
def test_depth_limit_is_exact(depth):
    doc = "[" * depth + "]" * depth
    assert nesting_depth(doc) == depth
    if depth <= strictjson.DEFAULT_MAX_DEPTH:
        loads(doc, "doc")
    else:
        with pytest.raises(StrictJSONError, match="levels deep"):
            loads(doc, "doc")


def test_brackets_inside_strings_do_not_count():
    doc = json.dumps({"a": "[[[[" * 100 + '\\"{{{' * 100})
    assert nesting_depth(doc) == 1
    assert loads(doc, "doc")["a"].startswith("[[[[")


def test_size_limit_is_checked_before_parsing():
    with pytest.raises(StrictJSONError, match="too large"):
        loads(b" " * 101 + b"{}", "doc", max_bytes=100)
    assert loads(b" " * 98 + b"{}", "doc", max_bytes=100) == {}


def test_errors_are_format_errors_and_name_the_document():
    with pytest.raises(FormatError, match="^bill statement is not JSON"):
        loads("{", "bill statement")
    with pytest.raises(StrictJSONError, match="byte-order mark"):
        loads("\ufeff{}", "doc")
    with pytest.raises(StrictJSONError, match="not UTF-8"):
        loads(b"\xff{}", "doc")


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "parse",
    [
        BillStatement.from_json,
        statement_from_json,
        lambda d: DayUpload.from_json(d.decode()),
        lambda d: SealedDay.from_json(d.decode()),
        SettlementStatement.from_json,
        ProfileScores.from_json,
        SampleRelease.from_json,
    ],
)
def test_every_boundary_reader_refuses_deep_and_duplicate_input(parse):
    with pytest.raises(FormatError, match="levels deep"):
        parse(DEEP)
    with pytest.raises(ValueError, match="duplicate key"):
        parse(b'{"format": "a", "format": "b"}')
    with pytest.raises(ValueError, match="not allowed"):
        parse(b'{"format": NaN}')


def test_tariff_and_series_readers_use_the_strict_reader():
    with pytest.raises(TariffError, match="malformed JSON.*levels deep"):
        load_tariff(b"[" * 1000 + b"]" * 1000)
    with pytest.raises(SeriesError, match="malformed JSON.*levels deep"):
        load_series(b"[" * 1000 + b"]" * 1000)
    with pytest.raises(SeriesError, match="duplicate key"):
        load_series(b'{"series": 1, "series": 2}')


def test_statement_with_duplicate_total_is_refused(history):
    d = json.loads(history.statement.to_json())
    text = history.statement.to_json()[:-1] + ',"total":999}'
    assert d["total"] != 999
    with pytest.raises(FormatError, match="duplicate key 'total'"):
        statement_from_json(text)


@given(st.binary(max_size=40))
@settings(max_examples=100, deadline=None)
def test_hex_fields_accept_exactly_lower_case_hex(raw):
    assert strictjson.hex_bytes(raw.hex(), "f") == raw
    assert strictjson.hex_bytes(raw.hex(), "f", len(raw)) == raw
    if any(c in "abcdef" for c in raw.hex()):
        with pytest.raises(StrictJSONError, match="lower-case hex"):
            strictjson.hex_bytes(raw.hex().upper(), "f")
    for bad in (" " + raw.hex(), raw.hex() + "0", "0x" + raw.hex(), raw.hex()[:2] + "_" + raw.hex()[2:]):
        with pytest.raises(StrictJSONError):
            strictjson.hex_bytes(bad, "f")
    with pytest.raises(StrictJSONError, match="must be"):
        strictjson.hex_bytes(raw.hex(), "f", len(raw) + 1)


@given(st.text(max_size=12))
@settings(max_examples=200, deadline=None)
def test_dates_are_exactly_yyyy_mm_dd(text):
    import re
    from datetime import date

    try:
        d = strictjson.iso_date(text, "day")
    except StrictJSONError:
        ok = re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is None
        if not ok:  # well-formed but not a calendar date
            with pytest.raises(ValueError):
                date.fromisoformat(text)
    else:
        assert d.isoformat() == text


def test_compact_and_week_dates_are_refused():
    for text in ("20270315", "2027-W11-1", "2027-03-15T00:00"):
        with pytest.raises(StrictJSONError, match="YYYY-MM-DD"):
            strictjson.iso_date(text, "day")
