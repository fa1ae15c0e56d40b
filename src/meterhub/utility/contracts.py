"""Contracts with start and end dates, and billing periods split at every change.

A metering point (MaLo) is supplied under one contract at a time; a supplier
switch, a move-in or a move-out ends one contract and (maybe) starts another on
a day boundary, and a tariff change takes effect on a day. :func:`split_period`
cuts a billing period at every such day, so that each segment has exactly one
contract and one tariff (BDEW GPKE: a supplier switch takes effect at 00:00 local
time of its day; the old supplier's last day is the day before). Each supplier
is then billed, and receives, only its own segments (:func:`segments_for`); days
no contract covers (vacancy after a move-out) are reported, not billed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from ..model.ids import check_contract_id, check_metering_point

__all__ = ["Contract", "TariffPeriod", "Segment", "split_period", "segments_for"]


@dataclass(frozen=True, slots=True)
class Contract:
    """``supplier`` supplies ``metering_point`` from ``start`` to ``end`` (inclusive
    local days; ``None``: open-ended)."""

    contract_id: str
    supplier: str
    metering_point: str
    start: date
    end: date | None = None

    def __post_init__(self) -> None:
        check_contract_id(self.contract_id)
        check_metering_point(self.metering_point)
        if self.end is not None and self.end < self.start:
            raise ValueError(f"contract {self.contract_id} ends before it starts")

    def covers(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True, slots=True)
class TariffPeriod:
    """Tariff ``tariff_id`` version ``version`` applies to ``contract_id`` from ``start``
    until the next :class:`TariffPeriod` of that contract."""

    contract_id: str
    start: date
    tariff_id: str
    version: int


@dataclass(frozen=True, slots=True)
class Segment:
    """Days ``period_from..period_to`` under one contract and one tariff."""

    period_from: date
    period_to: date
    contract: Contract
    tariff_id: str
    tariff_version: int


def split_period(
    period_from: date,
    period_to: date,
    contracts: Sequence[Contract],
    tariffs: Sequence[TariffPeriod],
) -> tuple[list[Segment], list[tuple[date, date]]]:
    """The segments of ``period_from..period_to`` (one contract, one tariff each, in day
    order) and the runs of days no contract covers. Raises :class:`ValueError` when two
    contracts of one metering point overlap or a covered day has no tariff."""
    if period_to < period_from:
        raise ValueError("period ends before it starts")
    by_mp: dict[str, list[Contract]] = {}
    for c in contracts:
        by_mp.setdefault(c.metering_point, []).append(c)
    for cs in by_mp.values():
        cs.sort(key=lambda c: c.start)
        for a, b in zip(cs, cs[1:], strict=False):
            if a.end is None or a.end >= b.start:
                raise ValueError(f"contracts {a.contract_id} and {b.contract_id} overlap from {b.start}")
    segments: list[Segment] = []
    vacant: list[tuple[date, date]] = []
    day = period_from
    while day <= period_to:
        owner = [c for c in contracts if c.covers(day)]
        if len(owner) > 1:
            raise ValueError(f"{len(owner)} contracts on {day}")
        key = (owner[0], _tariff_on(owner[0], day, tariffs)) if owner else None
        last = segments[-1] if segments else None
        if key is None:
            if vacant and vacant[-1][1] + timedelta(days=1) == day:
                vacant[-1] = (vacant[-1][0], day)
            else:
                vacant.append((day, day))
        elif (
            last is not None
            and last.period_to + timedelta(days=1) == day
            and (last.contract, (last.tariff_id, last.tariff_version)) == key
        ):
            segments[-1] = Segment(last.period_from, day, last.contract, last.tariff_id, last.tariff_version)
        else:
            segments.append(Segment(day, day, key[0], key[1][0], key[1][1]))
        day += timedelta(days=1)
    return segments, vacant


def _tariff_on(contract: Contract, day: date, tariffs: Sequence[TariffPeriod]) -> tuple[str, int]:
    mine = [t for t in tariffs if t.contract_id == contract.contract_id and t.start <= day]
    if not mine:
        raise ValueError(f"contract {contract.contract_id} has no tariff on {day}")
    t = max(mine, key=lambda t: t.start)
    return t.tariff_id, t.version


def segments_for(supplier: str, segments: Sequence[Segment]) -> list[Segment]:
    """Only ``supplier``'s own segments: what it is billed for and receives."""
    return [s for s in segments if s.contract.supplier == supplier]
