"""Per-band arithmetic of time-of-use tariffs (docs/formats.md, "Bill statement v3";
docs/verification.md V26-V29): which band each interval lies in, and each band's
energy ``E_b = sum_{i in b} m_i`` and blinding ``R_b = sum_{i in b} r_i mod Q``.
The v3 prover and verifier (:mod:`meterhub.model.billing.time_of_use`) and the
billing applet's release policy (:func:`thin_bands`) share it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import date

from ...crypto.group import Q
from ...crypto.pedersen import Opening
from ...tariffs import Tariff
from ..formats.statements import BandEnergy

__all__ = ["band_counts", "band_indices", "band_sums", "thin_bands"]


@functools.lru_cache(maxsize=16)
def _band_tariff(tariff: Tariff) -> Tariff:
    """The tariff with each band's price replaced by its position, so that the
    tariff's own interval lookup (DST, holidays, finer and coarser meter grids)
    yields band positions. A coarser meter interval must lie in one band."""
    bands = tuple(dataclasses.replace(b, price=k) for k, b in enumerate(tariff.bands))
    return dataclasses.replace(tariff, bands=bands)


def band_indices(
    tariff: Tariff, first_day: date, n_days: int, tz: str, interval_minutes: int
) -> list[int]:
    """The band position of each metering interval of ``n_days`` local days from
    ``first_day``, in index order (raises :class:`meterhub.tariffs.TariffError`)."""
    return _band_tariff(tariff).period_prices(first_day, n_days, tz, interval_minutes)


def band_sums(tariff: Tariff, bands_of: Sequence[int], openings: Sequence[Opening]) -> tuple[BandEnergy, ...]:
    """``(E_b, R_b)`` for each band that occurs, ascending by band position."""
    if len(bands_of) != len(openings):
        raise ValueError(f"{len(bands_of)} band positions for {len(openings)} openings")
    energy: dict[int, int] = {}
    blind: dict[int, int] = {}
    for b, o in zip(bands_of, openings, strict=True):
        energy[b] = energy.get(b, 0) + o.m
        blind[b] = blind.get(b, 0) + o.r
    return tuple(
        BandEnergy(b, tariff.bands[b].name, energy[b], blind[b] % Q) for b in sorted(energy)
    )


def thin_bands(tariff: Tariff, first_day: date, n_days: int, tz: str, interval_minutes: int) -> list[str]:
    """Names of the bands that occur on fewer days of the period than its smaller
    calendar class (weekdays or weekend days, whichever is smaller and present).

    A band released alone must be as coarse as a real time-of-use register: the
    supplier signs the tariff, so holidays it lists or a season it starts on a chosen
    day would otherwise make a band of one half hour of one chosen day
    (docs/privacy.md, "Per-band energy and registers"). Raises
    :class:`meterhub.tariffs.TariffError` like :func:`band_indices`."""
    days = [date.fromordinal(first_day.toordinal() + k) for k in range(n_days)]
    classes = [c for c in (sum(d.weekday() < 5 for d in days), sum(d.weekday() >= 5 for d in days)) if c]
    floor = min(classes)
    seen: dict[int, int] = {}
    for d in days:
        for b in set(band_indices(tariff, d, 1, tz, interval_minutes)):
            seen[b] = seen.get(b, 0) + 1
    return [tariff.bands[b].name for b in sorted(seen) if seen[b] < floor]


def band_counts(bands_of: Sequence[int]) -> dict[int, int]:
    """How many intervals each band position has (for the range check, V27)."""
    out: dict[int, int] = {}
    for b in bands_of:
        out[b] = out.get(b, 0) + 1
    return out

