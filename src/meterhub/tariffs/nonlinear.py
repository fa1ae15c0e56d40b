"""Non-linear tariffs: tiered per interval, inclining monthly blocks, polynomial.

Rial and Danezis, "Privacy-preserving smart metering", WPES 2011, section 4.2:
a price that depends on the amount drawn. Three kinds extend the signed
time-of-use format (``docs/tariffs.md``, ``docs/nonlinear.md``); seasons, day
types, bands and the daily standing charge work exactly as for time-of-use:

* ``tiered``: each band has rows ``[c_min, c_max, F1, F2]`` partitioning
  ``[0, m_max)``; an interval's price is ``(m - c_min)*F1 + F2`` for the row
  with ``c_min <= m < c_max``.
* ``inclining-block``: bands keep a linear ``price`` per Wh, and the period's
  total ``T = sum m_i`` falls into one of the ``blocks`` (same row form,
  partitioning ``[0, total_max)``), which adds ``(T - c_min)*F1 + F2``.
* ``polynomial``: each band has ``coefficients [a0, a1, a2]``; an interval's
  price is ``a0 + a1*m + a2*m^2``.

Every price is an exact integer in sub-units; validation bounds each one by
``2^53 - 1``. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from .fields import (
    _BAND_FIELDS,
    _TOP_FIELDS,
    _TOP_OPTIONAL,
    KIND_TIME_OF_USE,
    MAX_JSON_INT,
    TARIFF_DIGEST_CONTEXT,
    Band,
    TariffError,
    _check_int,
    _check_list,
    _check_object,
    _q,
    canonical_json,
)
from .model import Tariff

__all__ = [
    "KIND_TIERED",
    "KIND_INCLINING_BLOCK",
    "KIND_POLYNOMIAL",
    "NONLINEAR_KINDS",
    "SUPPORTED_KINDS",
    "MAX_ROWS",
    "MAX_READING",
    "TierRow",
    "NonLinearTariff",
    "tariff_from_dict",
    "tier_table",
    "example_nonlinear_tariff",
]

KIND_TIERED = "tiered"
KIND_INCLINING_BLOCK = "inclining-block"
KIND_POLYNOMIAL = "polynomial"
NONLINEAR_KINDS = (KIND_TIERED, KIND_INCLINING_BLOCK, KIND_POLYNOMIAL)
SUPPORTED_KINDS = (KIND_TIME_OF_USE, *NONLINEAR_KINDS)
#: Most rows in one tier or block table (each row is one branch of an OR proof).
MAX_ROWS = 16
#: Readings (Wh per interval) are at most 2^32 - 1 (the home link's u32).
MAX_READING = 1 << 32
#: Totals of a period stay below 2^48.
MAX_TOTAL = 1 << 48

_NL_TOP = {"m_max"}
_BLOCK_TOP = {"blocks"}
_BAND_KEY = {KIND_TIERED: "tiers", KIND_POLYNOMIAL: "coefficients"}


@dataclass(frozen=True, slots=True)
class TierRow:
    """``price = (m - c_min)*F1 + F2`` for ``c_min <= m < c_max`` (Rial & Danezis, section 4.2)."""

    c_min: int
    c_max: int
    f1: int
    f2: int

    def price(self, m: int) -> int:
        return (m - self.c_min) * self.f1 + self.f2

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.c_min, self.c_max, self.f1, self.f2)

    def contains(self, m: int) -> bool:
        return self.c_min <= m < self.c_max


def _check_rows(where: str, rows: Any, upper: int) -> tuple[TierRow, ...]:
    """Rows must partition ``[0, upper)`` in order, and every price fit in 2^53 - 1."""
    if isinstance(rows, tuple):
        rows = list(rows)
    _check_list(where, rows, MAX_ROWS)
    if not rows:
        raise TariffError(f"{where}: at least one row is required")
    out: list[TierRow] = []
    expect = 0
    for i, raw in enumerate(rows):
        w = f"{where}[{i}]"
        if isinstance(raw, TierRow):
            raw = list(raw.as_tuple())
        if isinstance(raw, tuple):
            raw = list(raw)
        if not isinstance(raw, list) or len(raw) != 4:
            raise TariffError(f"{w}: expected [c_min, c_max, F1, F2]")
        c_min, c_max, f1, f2 = (_check_int(f"{w}.{n}", v, 0) for n, v in zip(("c_min", "c_max", "F1", "F2"), raw, strict=True))
        if c_min != expect:
            raise TariffError(
                f"{w}: c_min {c_min} leaves a gap or overlap (expected {expect}); rows must partition [0, {upper})"
            )
        if c_max <= c_min:
            raise TariffError(f"{w}: c_max {c_max} must exceed c_min {c_min}")
        if (c_max - 1 - c_min) * f1 + f2 > MAX_JSON_INT:
            raise TariffError(f"{w}: the row's largest price exceeds {MAX_JSON_INT}")
        out.append(TierRow(c_min, c_max, f1, f2))
        expect = c_max
    if expect != upper:
        raise TariffError(f"{where}: rows end at {expect}, they must partition [0, {upper})")
    return tuple(out)


def _check_coefficients(where: str, coeffs: Any, m_max: int) -> tuple[int, int, int]:
    if isinstance(coeffs, tuple):
        coeffs = list(coeffs)
    _check_list(where, coeffs, 3)
    if len(coeffs) != 3:
        raise TariffError(f"{where}: expected [a0, a1, a2]")
    a0, a1, a2 = (_check_int(f"{where}[{i}]", v, 0) for i, v in enumerate(coeffs))
    top = m_max - 1
    if a0 + a1 * top + a2 * top * top > MAX_JSON_INT:
        raise TariffError(f"{where}: the price at m_max - 1 exceeds {MAX_JSON_INT}")
    return (a0, a1, a2)


@dataclass(frozen=True, kw_only=True)
class NonLinearTariff:
    """A validated non-linear tariff on top of a time-of-use skeleton ``base``.

    ``base`` carries id, version, currency, validity, seasons, bands, holidays and
    the standing charge. For ``tiered`` and ``polynomial`` its band prices must
    be 0 (the kind's schedule replaces them); for ``inclining-block`` they are
    the linear energy prices. ``tiers`` / ``coefficients`` are per band (same
    order as ``base.bands``); ``blocks`` partition ``[0, total_max)``.
    Readings lie in ``[0, m_max)``.
    """

    kind: str
    base: Tariff
    m_max: int
    tiers: tuple[tuple[TierRow, ...], ...] = ()
    coefficients: tuple[tuple[int, int, int], ...] = ()
    blocks: tuple[TierRow, ...] = ()
    # A copy of ``base`` whose band prices are the band positions (fast lookups).
    _index: Tariff = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in NONLINEAR_KINDS:
            raise TariffError(f"kind: {_q(self.kind)} is not a non-linear kind ({', '.join(NONLINEAR_KINDS)})")
        if not isinstance(self.base, Tariff):
            raise TariffError("base must be a time-of-use Tariff")
        _check_int("m_max", self.m_max, 1, MAX_READING)
        nb = len(self.base.bands)
        if self.kind == KIND_TIERED:
            if len(self.tiers) != nb:
                raise TariffError(f"tiers: {len(self.tiers)} tables for {nb} bands")
            object.__setattr__(
                self,
                "tiers",
                tuple(_check_rows(f"band {b.name!r}: tiers", t, self.m_max) for b, t in zip(self.base.bands, self.tiers, strict=True)),
            )
        elif self.tiers:
            raise TariffError(f"tiers: not part of a {self.kind} tariff")
        if self.kind == KIND_POLYNOMIAL:
            if len(self.coefficients) != nb:
                raise TariffError(f"coefficients: {len(self.coefficients)} entries for {nb} bands")
            object.__setattr__(
                self,
                "coefficients",
                tuple(
                    _check_coefficients(f"band {b.name!r}: coefficients", c, self.m_max)
                    for b, c in zip(self.base.bands, self.coefficients, strict=True)
                ),
            )
        elif self.coefficients:
            raise TariffError(f"coefficients: not part of a {self.kind} tariff")
        if self.kind == KIND_INCLINING_BLOCK:
            if not self.blocks:
                raise TariffError("blocks: at least one row is required")
            last = self.blocks[-1]
            total_max = last.c_max if isinstance(last, TierRow) else None
            if isinstance(last, list | tuple) and len(last) == 4:
                total_max = last[1]
            total_max = _check_int("blocks: last c_max", total_max, 1, MAX_TOTAL)
            object.__setattr__(self, "blocks", _check_rows("blocks", self.blocks, total_max))
        elif self.blocks:
            raise TariffError(f"blocks: not part of a {self.kind} tariff")
        if self.kind != KIND_INCLINING_BLOCK:
            for b in self.base.bands:
                if b.price != 0:
                    raise TariffError(f"band {b.name!r}: a {self.kind} band has no linear price (set 0)")
        bands = tuple(dataclasses.replace(b, price=i) for i, b in enumerate(self.base.bands))
        object.__setattr__(self, "_index", dataclasses.replace(self.base, bands=bands))

    # ------------------------------------------------------------- delegation
    @property
    def tariff_id(self) -> str:
        return self.base.tariff_id

    @property
    def valid_from(self) -> date:
        """The first day the tariff is in force (its time-of-use skeleton's)."""
        return self.base.valid_from

    @property
    def version(self) -> int:
        return self.base.version

    @property
    def currency(self) -> str:
        return self.base.currency

    @property
    def subunits_per_unit(self) -> int:
        return self.base.subunits_per_unit

    @property
    def standing_charge_per_day(self) -> int:
        return self.base.standing_charge_per_day

    @property
    def tz(self) -> str:
        return self.base.tz

    @property
    def interval_minutes(self) -> int:
        return self.base.interval_minutes

    @property
    def total_max(self) -> int:
        """Upper end (exclusive) of the block table (inclining-block only)."""
        return self.blocks[-1].c_max if self.blocks else 0

    def check_valid_on(self, day: date) -> None:
        self.base.check_valid_on(day)

    def band_at(self, start_utc: datetime) -> Band:
        return self.base.band_at(start_utc)

    def prices_for(self, starts: Sequence[datetime], interval_minutes: int | None = None) -> list[int]:
        """Refused: a non-linear tariff has no linear price per interval, so linear
        billing code fails loudly instead of billing 0 (see :meth:`linear_prices_for`)."""
        raise TariffError(f"a {self.kind} tariff has no linear prices; bill it with proofs (docs/nonlinear.md)")

    def day_prices(self, day: date, tz: str, interval_minutes: int) -> tuple[int, ...]:
        """Refused like :meth:`prices_for`."""
        raise TariffError(f"a {self.kind} tariff has no linear prices; bill it with proofs (docs/nonlinear.md)")

    def period_prices(self, first_day: date, n_days: int, tz: str, interval_minutes: int) -> list[int]:
        """Refused like :meth:`prices_for`."""
        raise TariffError(f"a {self.kind} tariff has no linear prices; bill it with proofs (docs/nonlinear.md)")

    def linear_prices_for(self, starts: Sequence[datetime], interval_minutes: int | None = None) -> list[int]:
        """The linear energy prices per interval of an inclining-block tariff."""
        if self.kind != KIND_INCLINING_BLOCK:
            raise TariffError(f"a {self.kind} tariff has no linear prices")
        return self.base.prices_for(starts, interval_minutes)

    def band_indices_for(self, starts: Sequence[datetime], interval_minutes: int | None = None) -> list[int]:
        """The band position (in ``base.bands``) of each interval (cached per day)."""
        return self._index.prices_for(starts, interval_minutes)

    # ---------------------------------------------------------------- pricing
    def interval_price(self, band: int, m: int) -> int:
        """Price of one interval of band position ``band`` with reading ``m`` (tiered, polynomial)."""
        if not 0 <= m < self.m_max:
            raise TariffError(f"reading {m} outside [0, {self.m_max})")
        if self.kind == KIND_TIERED:
            return next(r for r in self.tiers[band] if r.contains(m)).price(m)
        if self.kind == KIND_POLYNOMIAL:
            a0, a1, a2 = self.coefficients[band]
            return a0 + a1 * m + a2 * m * m
        raise TariffError("inclining-block tariffs have no per-interval price")

    def block_price(self, total: int) -> int:
        """Block charge for the period total ``T`` (inclining-block)."""
        row = next((r for r in self.blocks if r.contains(total)), None)
        if row is None:
            raise TariffError(f"total {total} outside the block table [0, {self.total_max})")
        return row.price(total)

    def energy_charge(self, bands_or_prices: Sequence[int], readings: Sequence[int]) -> int:
        """The exact energy charge in sub-units, the reference the proofs are checked against.
        ``bands_or_prices`` is :meth:`band_indices_for` (tiered, polynomial) or
        :meth:`linear_prices_for` (inclining-block)."""
        if len(bands_or_prices) != len(readings):
            raise TariffError("one band per reading is needed")
        if self.kind == KIND_INCLINING_BLOCK:
            linear = sum(t * m for t, m in zip(bands_or_prices, readings, strict=True))
            return linear + self.block_price(sum(readings))
        return sum(self.interval_price(b, m) for b, m in zip(bands_or_prices, readings, strict=True))

    # ---------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        d = self.base.to_dict()
        d["kind"] = self.kind
        d["m_max"] = self.m_max
        if self.kind == KIND_INCLINING_BLOCK:
            d["blocks"] = [list(r.as_tuple()) for r in self.blocks]
        else:
            key = _BAND_KEY[self.kind]
            if self.kind == KIND_TIERED:
                for bd, rows in zip(d["bands"], self.tiers, strict=True):
                    del bd["price"]
                    bd[key] = [list(r.as_tuple()) for r in rows]
            else:
                for bd, coeff in zip(d["bands"], self.coefficients, strict=True):
                    del bd["price"]
                    bd[key] = list(coeff)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> NonLinearTariff:
        """Strictly parse the JSON form of a non-linear tariff."""
        _check_object("tariff", d, _TOP_FIELDS | _NL_TOP | _BLOCK_TOP, set())
        kind = d.get("kind")
        if kind not in NONLINEAR_KINDS:
            raise TariffError(f"kind: unsupported tariff kind {_q(kind)} (supported: {', '.join(SUPPORTED_KINDS)})")
        extra = _BLOCK_TOP if kind == KIND_INCLINING_BLOCK else set()
        _check_object("tariff", d, _TOP_FIELDS | _NL_TOP | extra, (_TOP_FIELDS - _TOP_OPTIONAL) | _NL_TOP | extra)
        m_max = _check_int("m_max", d["m_max"], 1, MAX_READING)
        base = dict(d)
        base["kind"] = KIND_TIME_OF_USE
        base.pop("m_max")
        base.pop("blocks", None)
        sched: list[Any] = []
        if kind in _BAND_KEY:
            key = _BAND_KEY[kind]
            bands = _check_list("bands", d.get("bands"), 512)
            new_bands = []
            for i, b in enumerate(bands):
                _check_object(f"bands[{i}]", b, (_BAND_FIELDS - {"price"}) | {key}, (_BAND_FIELDS - {"price"}) | {key})
                nb = {k: v for k, v in b.items() if k != key}
                nb["price"] = 0
                new_bands.append(nb)
                sched.append(b[key])
            base["bands"] = new_bands
        tou = Tariff.from_dict(base)
        if kind == KIND_TIERED:
            tiers = tuple(_check_rows(f"bands[{i}].tiers", s, m_max) for i, s in enumerate(sched))
            return cls(kind=kind, base=tou, m_max=m_max, tiers=tiers)
        if kind == KIND_POLYNOMIAL:
            coeffs = tuple(_check_coefficients(f"bands[{i}].coefficients", s, m_max) for i, s in enumerate(sched))
            return cls(kind=kind, base=tou, m_max=m_max, coefficients=coeffs)
        raw = _check_list("blocks", d["blocks"], MAX_ROWS)
        if not raw or not isinstance(raw[-1], list) or len(raw[-1]) != 4:
            raise TariffError("blocks: expected a non-empty list of [c_min, c_max, F1, F2]")
        total_max = _check_int("blocks: last c_max", raw[-1][1], 1, MAX_TOTAL)
        return cls(kind=kind, base=tou, m_max=m_max, blocks=_check_rows("blocks", raw, total_max))

    def canonical_bytes(self) -> bytes:
        """Canonical encoding of :meth:`to_dict` (hashed and signed, as for time-of-use)."""
        return canonical_json(self.to_dict())

    def digest(self) -> bytes:
        """SHA-256 over the tariff digest context and the canonical encoding."""
        return hashlib.sha256(TARIFF_DIGEST_CONTEXT + self.canonical_bytes()).digest()


def tariff_from_dict(d: Any) -> Tariff | NonLinearTariff:
    """Parse any supported kind: ``time-of-use`` to :class:`Tariff`, the others
    to :class:`NonLinearTariff`; one-line :class:`TariffError` otherwise."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if isinstance(d, dict) and kind in NONLINEAR_KINDS:
        return NonLinearTariff.from_dict(d)
    return Tariff.from_dict(d)


def tier_table(boundaries: Sequence[int], slopes: Sequence[int]) -> tuple[TierRow, ...]:
    """A continuous tier table: rows ``[b_k, b_{k+1})`` with slope ``F1 = slopes[k]``
    and ``F2`` the price accumulated up to ``b_k`` (no jump at a boundary)."""
    if len(boundaries) != len(slopes) + 1:
        raise TariffError("need one slope per row (len(boundaries) = rows + 1)")
    rows = []
    acc = 0
    for k, f1 in enumerate(slopes):
        lo, hi = boundaries[k], boundaries[k + 1]
        rows.append(TierRow(lo, hi, f1, acc))
        acc += (hi - lo) * f1
    return tuple(rows)


def example_nonlinear_tariff(
    kind: str,
    year: int = 2027,
    *,
    m_max: int = 4096,
    boundaries: Sequence[int] = (0, 100, 250, 400),
    version: int = 1,
    tariff_id: str | None = None,
) -> NonLinearTariff:
    """The demo time-of-use skeleton (``example_tariff``) as a non-linear tariff.

    tiered: per band 4 rows ``boundaries + [m_max]`` with slopes rising from the
    band's price (in micro-EUR per Wh); polynomial: ``a0 = 0``, ``a1`` the band
    price, ``a2 = 1``; inclining-block: the band prices plus monthly blocks
    0-150 kWh (+0), 150-400 kWh (+30 per Wh), above (+60 per Wh) up to 2^40 Wh.
    """
    from .model import example_tariff

    tou = example_tariff(year, tariff_id=tariff_id or f"de-{kind}-{year}", version=version)
    if kind == KIND_INCLINING_BLOCK:
        blocks = tier_table((0, 150_000, 400_000, 1 << 40), (0, 30, 60))
        return NonLinearTariff(kind=kind, base=tou, m_max=m_max, blocks=blocks)
    zeroed = dataclasses.replace(tou, bands=tuple(dataclasses.replace(b, price=0) for b in tou.bands))
    if kind == KIND_TIERED:
        bounds = (*boundaries, m_max)
        tiers = tuple(
            tier_table(bounds, [b.price + 40 * k for k in range(len(bounds) - 1)]) for b in tou.bands
        )
        return NonLinearTariff(kind=kind, base=zeroed, m_max=m_max, tiers=tiers)
    if kind == KIND_POLYNOMIAL:
        coeffs = tuple((0, b.price, 1) for b in tou.bands)
        return NonLinearTariff(kind=kind, base=zeroed, m_max=m_max, coefficients=coeffs)
    raise TariffError(f"kind: unsupported tariff kind {_q(kind)}")
