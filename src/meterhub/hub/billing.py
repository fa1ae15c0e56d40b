"""Time-of-use billing from openings (docs/architecture.md, data flow step 4).

For a billing period with per-interval prices ``t_i`` (sub-units per Wh) the
hub releases ``bill = sum t_i*m_i`` and ``R = sum t_i*r_i mod Q``. By the
homomorphism of Pedersen commitments, ``sum t_i*C_i = bill*G + R*H``, which
the utility checks without learning any ``m_i``.

The code lives with its verifier in :mod:`meterhub.model.billing.time_of_use`;
it is re-exported here for existing imports.
"""

from __future__ import annotations

from ..model.billing.time_of_use import (
    banded_statement,
    bill_statement,
    linear_bill,
    statement_from_sums,
)

__all__ = ["linear_bill", "bill_statement", "statement_from_sums", "banded_statement"]
