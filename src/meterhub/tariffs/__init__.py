"""meterhub.tariffs: signed time-of-use tariffs with exact integer prices.

A supplier publishes a :class:`Tariff` as a JSON file signed with ECDSA P-256
(see ``docs/tariffs.md``); hubs and the utility load it strictly, verify the
signature against the supplier key, and look prices up per interval.
"""

from meterhub.tariffs.model import (
    DAY_TYPES,
    DEFAULT_TZ,
    KIND_TIME_OF_USE,
    TARIFF_DIGEST_CONTEXT,
    Band,
    Season,
    Tariff,
    TariffError,
    canonical_json,
    easter_sunday,
    example_tariff,
    german_holidays,
)
from meterhub.tariffs.nonlinear import (
    KIND_INCLINING_BLOCK,
    KIND_POLYNOMIAL,
    KIND_TIERED,
    NONLINEAR_KINDS,
    NonLinearTariff,
    TierRow,
    tariff_from_dict,
)
from meterhub.tariffs.signing import (
    SIGNATURE_ALGORITHM,
    TARIFF_SIGNING_CONTEXT,
    SignedTariff,
    demo_supplier_key,
    dump_tariff,
    example_signed_tariff,
    key_id,
    load_tariff,
    sign_tariff,
    signing_message,
    verify_tariff,
)

__all__ = [
    "KIND_INCLINING_BLOCK",
    "KIND_POLYNOMIAL",
    "KIND_TIERED",
    "NONLINEAR_KINDS",
    "NonLinearTariff",
    "TierRow",
    "tariff_from_dict",
    "DAY_TYPES",
    "DEFAULT_TZ",
    "KIND_TIME_OF_USE",
    "SIGNATURE_ALGORITHM",
    "TARIFF_DIGEST_CONTEXT",
    "TARIFF_SIGNING_CONTEXT",
    "Band",
    "Season",
    "SignedTariff",
    "Tariff",
    "TariffError",
    "canonical_json",
    "demo_supplier_key",
    "dump_tariff",
    "easter_sunday",
    "example_signed_tariff",
    "example_tariff",
    "german_holidays",
    "key_id",
    "load_tariff",
    "sign_tariff",
    "signing_message",
    "verify_tariff",
]
