"""The application identifiers (AIDs) of meterhub's card packages, modules and applets.

Proprietary AIDs under RID F0 4D 48 ("MH"); category F per ISO/IEC 7816-5 is
unregistered. The hub installs and selects applets under these AIDs, and the utility's
verifiers bind each released statement to the applet AID that produced it, so the plan
lives in the model layer that both import (docs/architecture.md, "Layers").
"""

from __future__ import annotations

__all__ = [
    "AGGREGATION_APP_AID",
    "AGGREGATION_MODULE_AID",
    "AGGREGATION_PACKAGE_AID",
    "BILLING_APP_AID",
    "BILLING_MODULE_AID",
    "BILLING_PACKAGE_AID",
    "DR_APP_AID",
    "DR_MODULE_AID",
    "DR_PACKAGE_AID",
    "EXPORT_APP_AID",
    "EXPORT_MODULE_AID",
    "EXPORT_PACKAGE_AID",
    "GRID_OPERATOR_SD_AID",
    "PROFILING_APP_AID",
    "PROFILING_MODULE_AID",
    "PROFILING_PACKAGE_AID",
    "SETTLEMENT_APP_AID",
    "SETTLEMENT_MODULE_AID",
    "SETTLEMENT_PACKAGE_AID",
    "SUPPLIER_SD_AID",
    "THIRD_PARTY_SD_AID",
]

# The data recipients' supplementary security domains ("SD").
SUPPLIER_SD_AID = "F04D480053440001"
GRID_OPERATOR_SD_AID = "F04D480053440002"
THIRD_PARTY_SD_AID = "F04D480053440003"
# Billing ("BL", under the supplier's SD).
BILLING_PACKAGE_AID = "F04D4800424C"
BILLING_MODULE_AID = "F04D4800424C01"
BILLING_APP_AID = "F04D4800424C0101"
# Settlement ("ST", under the supplier's SD) and profiling ("PR", under the forecasting party's SD).
SETTLEMENT_PACKAGE_AID = "F04D48005354"
SETTLEMENT_MODULE_AID = "F04D4800535401"
SETTLEMENT_APP_AID = "F04D480053540101"
PROFILING_PACKAGE_AID = "F04D48005052"
PROFILING_MODULE_AID = "F04D4800505201"
PROFILING_APP_AID = "F04D480050520101"
# Consented export ("EX", under the recipient's SD that the customer's consent names).
EXPORT_PACKAGE_AID = "F04D48004558"
EXPORT_MODULE_AID = "F04D4800455801"
EXPORT_APP_AID = "F04D480045580101"
# Demand response ("DR", under the grid operator's, the DR program operator's, SD).
DR_PACKAGE_AID = "F04D48004452"
DR_MODULE_AID = "F04D4800445201"
DR_APP_AID = "F04D480044520101"
# Aggregation for fraud detection ("AG", under the grid operator's SD).
AGGREGATION_PACKAGE_AID = "F04D48004147"
AGGREGATION_MODULE_AID = "F04D4800414701"
AGGREGATION_APP_AID = "F04D480041470101"
