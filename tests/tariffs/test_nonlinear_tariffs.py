"""Non-linear tariff kinds (tiered, inclining-block, polynomial): format, validation, pricing."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.crypto import ecdsa
from meterhub.model.timebase import day_starts
from meterhub.tariffs import (
    KIND_INCLINING_BLOCK,
    KIND_POLYNOMIAL,
    KIND_TIERED,
    NonLinearTariff,
    Tariff,
    TariffError,
    TierRow,
    dump_tariff,
    example_tariff,
    load_tariff,
    sign_tariff,
    tariff_from_dict,
    verify_tariff,
)
from meterhub.tariffs.nonlinear import example_nonlinear_tariff, tier_table

KINDS = [KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL]
SUPPLIER = ecdsa.generate_signing_key()


def one_line(fn: Any, *args: Any, match: str) -> str:
    with pytest.raises(TariffError) as info:
        fn(*args)
    msg = str(info.value)
    assert "\n" not in msg and msg, msg
    assert match in msg, msg
    return msg


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_sign_load_verify(kind: str) -> None:
    t = example_nonlinear_tariff(kind)
    d = t.to_dict()
    assert d["kind"] == kind
    assert tariff_from_dict(d) == t
    assert tariff_from_dict(copy.deepcopy(d)).digest() == t.digest()
    signed = sign_tariff(t, SUPPLIER)
    loaded = load_tariff(dump_tariff(signed))
    assert isinstance(loaded.tariff, NonLinearTariff)
    assert verify_tariff(loaded, SUPPLIER.public_key(), on=date(2027, 6, 1)) == t
    # Any change of the schedule changes the digest and breaks the signature.
    d2 = copy.deepcopy(d)
    if kind == KIND_TIERED:
        d2["bands"][0]["tiers"][1][2] += 1
    elif kind == KIND_POLYNOMIAL:
        d2["bands"][0]["coefficients"][2] += 1
    else:
        d2["blocks"][1][3] += 1
    t2 = tariff_from_dict(d2)
    assert t2.digest() != t.digest()
    forged = dataclasses.replace(loaded, tariff=t2)
    one_line(verify_tariff, forged, SUPPLIER.public_key(), match="does not verify")


def test_kinds_differ_in_digest_and_linear_parse_refuses_them() -> None:
    digests = {example_nonlinear_tariff(k).digest() for k in KINDS}
    assert len(digests) == 3
    one_line(Tariff.from_dict, example_nonlinear_tariff(KIND_TIERED).to_dict(), match="non-linear")
    d = example_tariff().to_dict()
    d["kind"] = "block-rate"
    one_line(tariff_from_dict, d, match="unsupported tariff kind 'block-rate'")
    assert tariff_from_dict(example_tariff().to_dict()) == example_tariff()


def _tiered() -> dict[str, Any]:
    return example_nonlinear_tariff(KIND_TIERED).to_dict()


def _set_rows(rows: list[list[int]]) -> Any:
    def f(d: dict[str, Any]) -> None:
        d["bands"][0]["tiers"] = rows

    return f


BAD_TIERED = [
    ("gap", _set_rows([[0, 100, 1, 0], [101, 4096, 1, 100]]), "gap or overlap"),
    ("overlap", _set_rows([[0, 100, 1, 0], [99, 4096, 1, 100]]), "gap or overlap"),
    ("not-from-zero", _set_rows([[1, 4096, 1, 0]]), "gap or overlap"),
    ("empty-row", _set_rows([[0, 0, 1, 0], [0, 4096, 1, 0]]), "must exceed c_min"),
    ("short", _set_rows([[0, 100, 1, 0], [100, 4000, 1, 100]]), "partition [0, 4096)"),
    ("too-long", _set_rows([[0, 100, 1, 0], [100, 5000, 1, 100]]), "partition [0, 4096)"),
    ("no-rows", _set_rows([]), "at least one row"),
    ("three-columns", _set_rows([[0, 4096, 1]]), "expected [c_min, c_max, F1, F2]"),
    ("negative", _set_rows([[0, 4096, -1, 0]]), "negative"),
    ("float", _set_rows([[0, 4096, 1.5, 0]]), "expected an integer"),
    ("bool", _set_rows([[0, 4096, True, 0]]), "expected an integer"),
    ("overflow", _set_rows([[0, 4096, 2**50, 0]]), "exceeds"),
    ("too-many", _set_rows([[i, i + 1, 1, 0] for i in range(17)]), "more than 16"),
    ("price-field", lambda d: d["bands"][0].__setitem__("price", 3), "unknown field 'price'"),
    ("no-tiers", lambda d: d["bands"][0].pop("tiers"), "missing field 'tiers'"),
    ("no-m-max", lambda d: d.pop("m_max"), "missing field 'm_max'"),
    ("m-max-zero", lambda d: d.__setitem__("m_max", 0), "below the minimum 1"),
    ("m-max-huge", lambda d: d.__setitem__("m_max", 2**33), "exceeds the maximum"),
    ("blocks-in-tiered", lambda d: d.__setitem__("blocks", [[0, 10, 1, 0]]), "unknown field 'blocks'"),
    ("tou-check-still-applies", lambda d: d["bands"].pop(0), "no band covers"),
]


@pytest.mark.parametrize(("name", "mutate", "match"), BAD_TIERED, ids=[b[0] for b in BAD_TIERED])
def test_tiered_validation_one_line(name: str, mutate: Any, match: str) -> None:
    d = _tiered()
    mutate(d)
    one_line(tariff_from_dict, d, match=match)


BAD_OTHER = [
    (KIND_POLYNOMIAL, lambda d: d["bands"][0].__setitem__("coefficients", [1, 2]), "expected [a0, a1, a2]"),
    (KIND_POLYNOMIAL, lambda d: d["bands"][0].__setitem__("coefficients", [1, 2, 2**40]), "exceeds"),
    (KIND_POLYNOMIAL, lambda d: d["bands"][0].__setitem__("coefficients", "123"), "expected a list"),
    (KIND_POLYNOMIAL, lambda d: d["bands"][0].__setitem__("tiers", []), "unknown field 'tiers'"),
    (KIND_INCLINING_BLOCK, lambda d: d.pop("blocks"), "missing field 'blocks'"),
    (KIND_INCLINING_BLOCK, lambda d: d.__setitem__("blocks", []), "non-empty list"),
    (KIND_INCLINING_BLOCK, lambda d: d["blocks"].insert(1, [150000, 150000, 0, 0]), "must exceed"),
    (KIND_INCLINING_BLOCK, lambda d: d["blocks"][1].__setitem__(0, 150001), "gap or overlap"),
    (KIND_INCLINING_BLOCK, lambda d: d["blocks"][-1].__setitem__(1, 2**49), "exceeds the maximum"),
    (KIND_INCLINING_BLOCK, lambda d: d["bands"][0].pop("price"), "missing field 'price'"),
]


@pytest.mark.parametrize(("kind", "mutate", "match"), BAD_OTHER)
def test_other_kinds_validation_one_line(kind: str, mutate: Any, match: str) -> None:
    d = example_nonlinear_tariff(kind).to_dict()
    mutate(d)
    one_line(tariff_from_dict, d, match=match)


def test_constructor_checks() -> None:
    tou = example_tariff()
    one_line(lambda: NonLinearTariff(kind=KIND_TIERED, base=tou, m_max=10, tiers=()), match="tables for")
    zeroed = example_nonlinear_tariff(KIND_TIERED).base
    rows = (TierRow(0, 10, 1, 0),)
    # A tiered band keeps no linear price: the example TOU skeleton has prices.
    one_line(
        lambda: NonLinearTariff(kind=KIND_TIERED, base=tou, m_max=10, tiers=(rows,) * len(tou.bands)),
        match="has no linear price",
    )
    t = NonLinearTariff(kind=KIND_TIERED, base=zeroed, m_max=10, tiers=(rows,) * len(zeroed.bands))
    assert t.interval_price(0, 9) == 9
    one_line(lambda: t.interval_price(0, 10), match="outside [0, 10)")
    one_line(lambda: NonLinearTariff(kind="flat", base=zeroed, m_max=10), match="not a non-linear kind")


def test_linear_prices_refused_loudly() -> None:
    # Linear billing code must fail rather than bill zero under a non-linear tariff.
    starts = day_starts(date(2027, 1, 4), "Europe/Berlin", 15)
    for kind in KINDS:
        t = example_nonlinear_tariff(kind)
        one_line(t.prices_for, starts, match="no linear prices")
    t = example_nonlinear_tariff(KIND_INCLINING_BLOCK)
    assert t.linear_prices_for(starts) == example_tariff().prices_for(starts)
    one_line(example_nonlinear_tariff(KIND_TIERED).linear_prices_for, starts, match="no linear prices")


def test_band_indices_follow_time_of_use() -> None:
    t = example_nonlinear_tariff(KIND_TIERED)
    starts = day_starts(date(2027, 1, 4), "Europe/Berlin", 15)  # a Monday in winter
    names = [t.base.bands[i].name for i in t.band_indices_for(starts)]
    assert names[0] == "winter-night" and names[17 * 4] == "winter-peak"
    assert names == [t.band_at(s).name for s in starts]


BOUNDS = (0, 100, 250, 400, 4096)
ROWS = tier_table(BOUNDS, (3, 4, 5, 6))


def test_tier_table_is_continuous() -> None:
    assert [r.as_tuple() for r in ROWS] == [
        (0, 100, 3, 0), (100, 250, 4, 300), (250, 400, 5, 900), (400, 4096, 6, 1650)
    ]
    with pytest.raises(TariffError):
        tier_table((0, 10), (1, 2))


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.sampled_from([0, 99, 100, 249, 250, 399, 400, 4095]), st.integers(0, 4095)))
def test_tier_price_edges(m: int) -> None:
    zeroed = example_nonlinear_tariff(KIND_TIERED).base
    t = NonLinearTariff(kind=KIND_TIERED, base=zeroed, m_max=4096, tiers=(ROWS,) * len(zeroed.bands))
    row = next(r for r in ROWS if r.c_min <= m < r.c_max)
    assert t.interval_price(0, m) == (m - row.c_min) * row.f1 + row.f2
    # Continuous table: the price equals the piecewise integral of the slopes.
    assert t.interval_price(0, m) == sum(
        (min(m, r.c_max) - r.c_min) * r.f1 for r in ROWS if r.c_min < m
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4095), min_size=96, max_size=96))
def test_energy_charge_exact(readings: list[int]) -> None:
    starts = day_starts(date(2027, 1, 4), "Europe/Berlin", 15)
    for kind in KINDS:
        t = example_nonlinear_tariff(kind)
        if kind == KIND_INCLINING_BLOCK:
            prices = t.linear_prices_for(starts)
            total = sum(readings)
            blk = next(r for r in t.blocks if r.contains(total))
            want = sum(p * m for p, m in zip(prices, readings, strict=True)) + blk.price(total)
            assert t.energy_charge(prices, readings) == want
        else:
            bands = t.band_indices_for(starts)
            got = t.energy_charge(bands, readings)
            if kind == KIND_POLYNOMIAL:
                want = 0
                for b, m in zip(bands, readings, strict=True):
                    a0, a1, a2 = t.coefficients[b]
                    want += a0 + a1 * m + a2 * m * m
            else:
                want = sum(
                    next(r for r in t.tiers[b] if r.contains(m)).price(m)
                    for b, m in zip(bands, readings, strict=True)
                )
            assert got == want
            assert isinstance(got, int)


def test_block_price_edges() -> None:
    t = example_nonlinear_tariff(KIND_INCLINING_BLOCK)
    assert t.block_price(0) == 0
    assert t.block_price(149_999) == 0
    assert t.block_price(150_000) == 0
    assert t.block_price(150_001) == 30
    assert t.block_price(400_000) == 250_000 * 30
    one_line(t.block_price, t.total_max, match="outside the block table")
