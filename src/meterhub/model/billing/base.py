"""The billing engine's interface: what a tariff kind's prover and verifier need.

Each tariff kind (docs/tariffs.md, docs/nonlinear.md) is one :class:`BillingKind`
whose :meth:`~BillingKind.prove` (the hub and the billing applet) and
:meth:`~BillingKind.verify` (the utility) sit side by side in one module of
:mod:`meterhub.model.billing`, so a change to a proof changes both at once.

* The prover gets a :class:`BillJob`: the period, the tariff and the openings
  ``(m_i, r_i)`` in index order (and, optionally, the meter's commitments).
* The verifier gets a :class:`BillCheck`: the tariff, the interval starts of the
  period's days and the meter-signed commitments, after the utility has checked
  the period itself (signatures, chain, coverage, standing charge and total:
  :func:`meterhub.utility.verifier.check_period`). It raises
  :class:`~meterhub.model.errors.Rejected` with the first failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from ...crypto.group import PointArray
from ...crypto.pedersen import Commitment, Opening
from ..errors import Rejected
from ..formats.statements import AnyBillStatement

__all__ = ["BillCheck", "BillJob", "BillTariff", "BillingKind", "check_energy_bound"]


class BillTariff(Protocol):
    """What every tariff kind offers the billing engine (both
    :class:`meterhub.tariffs.Tariff` and :class:`meterhub.tariffs.NonLinearTariff`)."""

    @property
    def tariff_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def subunits_per_unit(self) -> int: ...
    @property
    def standing_charge_per_day(self) -> int: ...
    @property
    def tz(self) -> str: ...
    @property
    def interval_minutes(self) -> int: ...
    @property
    def valid_from(self) -> date: ...
    def digest(self) -> bytes: ...
    def check_valid_on(self, day: date) -> None: ...


@dataclass(frozen=True, slots=True)
class BillJob:
    """What the prover needs for one period of whole local days (``period_to`` inclusive).

    ``openings`` are the period's readings in index order; ``commitments`` the
    meter's ``C_i`` (recomputed from the openings where a proof needs them and they
    are omitted). ``tz`` and ``interval_minutes`` are the meter's time base (default:
    the tariff's). ``metering_point`` and ``contract_id`` ask a time-of-use tariff for
    the per-band v3 statement; ``reading_range`` asks a non-linear one for the
    per-day reading-range proofs."""

    meter_id: str
    tariff: BillTariff
    period_from: date
    period_to: date
    first_index: int
    openings: Sequence[Opening]
    tz: str | None = None
    interval_minutes: int | None = None
    commitments: Sequence[Commitment] | None = None
    reading_range: bool = False
    metering_point: str | None = None
    contract_id: str | None = None

    @property
    def n_days(self) -> int:
        return (self.period_to - self.period_from).days + 1

    @property
    def time_base(self) -> tuple[str, int]:
        """``(tz, interval minutes)`` of the readings."""
        return self.tz or self.tariff.tz, self.interval_minutes or self.tariff.interval_minutes


@dataclass(frozen=True, slots=True)
class BillCheck:
    """What the verifier needs once the period itself is checked.

    ``tz`` and ``interval_minutes`` are the meter's time base, ``starts`` the interval starts of each day (from
    :func:`meterhub.utility.verifier.check_period`); ``c33`` the period's
    meter-signed commitments concatenated in index order, ``c65`` optionally the
    same points uncompressed (they decode faster). ``registers`` is the
    meter-signed register at the period's start and end when every batch carries
    one (V29). ``metering_point``/``contract_id`` are the utility's own assignment
    for a v3 statement (V26). ``points`` optionally the same commitments already
    parsed (the utility's per-customer-month :class:`~meterhub.crypto.group.PointArray`,
    shared with its other checks of the period); ``group_sums`` optionally ``(g, sums)``
    with the sums of each ``g`` consecutive of those points (the hourly sums the
    settlement and score checks use), for prices constant over each group."""

    tariff: BillTariff
    tz: str
    interval_minutes: int
    starts: Sequence[Sequence[datetime]]
    c33: bytes
    c65: bytes | None = None
    require_reading_range: bool = False
    registers: tuple[int, int] | None = None
    metering_point: str | None = None
    contract_id: str | None = None
    points: PointArray | None = None
    group_sums: tuple[int, PointArray] | None = None

    @property
    def flat_starts(self) -> list[datetime]:
        return [s for day in self.starts for s in day]


class BillingKind(Protocol):
    """One tariff kind's prover and verifier (module docstring)."""

    #: The tariff ``kind`` values this engine bills.
    kinds: tuple[str, ...]
    #: The statement classes it issues and accepts.
    statement_types: tuple[type, ...]

    def prove(self, job: BillJob) -> AnyBillStatement:
        """The statement for ``job``; ``ValueError``/``TariffError`` if the readings
        or the period lie outside the tariff."""
        ...

    def verify(self, statement: AnyBillStatement, check: BillCheck) -> None:
        """Raise :class:`Rejected` with the first failure of the kind's own checks."""
        ...


def check_energy_bound(energy: int, bound: int, what: str = "energy charge") -> None:
    """V17: a released figure lies in ``[0, bound]``, the largest value honest readings
    (each at most :data:`meterhub.model.formats.units.MAX_READING_WH`) can give,
    before any group equation is checked, so that ``figure + Q`` (the same point) is refused."""
    if not 0 <= energy <= bound:
        raise Rejected(f"{what} {energy} out of range (at most {bound} for this period)")
