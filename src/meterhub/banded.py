"""Bill statement v3: verified energy per tariff band, metering point and contract.

A v3 statement is a v1 statement (docs/formats.md, "Bill statement") plus

* ``metering_point`` (a German MaLo-ID or MeLo-ID, :mod:`meterhub.model.ids`) and
  ``contract_id``, the keys a billing system matches a bill on;
* ``bands``: for every band of the tariff that occurs in the period, the energy
  ``E_b = sum_{i in b} m_i`` (Wh) and its blinding ``R_b = sum_{i in b} r_i mod Q``,
  so that ``sum_{i in b} C_i == E_b*G + R_b*H`` (what a time-of-use meter shows as
  its 1.8.1, 1.8.2, ... registers).

The utility checks the bands against the commitments and, when the meter signs
its cumulative register in the daily batches (batch version 2), that
``sum_b E_b`` equals the register at the period's end minus the register at its
start (docs/verification.md V26-V29).

The statement is :class:`meterhub.model.formats.statements.BandedBillStatement`,
the band arithmetic :mod:`meterhub.model.billing.bands`; both are re-exported here
for existing imports.
"""

from __future__ import annotations

from .model.billing.bands import band_counts, band_indices, band_sums, thin_bands
from .model.formats.bill_parts import BILL_PARTS_FORMAT, MAX_PARTS, BillParts, statements_of
from .model.formats.statements import (
    MAX_BAND_ENTRIES,
    STATEMENT_V3_FORMAT,
    BandedBillStatement,
    BandEnergy,
)

__all__ = [
    "BILL_PARTS_FORMAT",
    "MAX_PARTS",
    "BillParts",
    "statements_of",
    "thin_bands",
    "MAX_BAND_ENTRIES",
    "STATEMENT_V3_FORMAT",
    "BandEnergy",
    "BandedBillStatement",
    "band_indices",
    "band_counts",
    "band_sums",
]
