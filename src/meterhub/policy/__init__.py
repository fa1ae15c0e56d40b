"""The customer's release policy and the release log (docs/privacy.md).

Shared model layer: imports only :mod:`meterhub.crypto` and :mod:`meterhub.tariffs`.
The card's privacy guard (:mod:`meterhub.card.guard`) enforces it; the customer's CLI
signs it; an auditor checks the log with :func:`verify_release_log`.
"""

from .log import (
    AGGREGATE_KINDS,
    LOG_FORMAT,
    LogEntry,
    LogError,
    chain_hash,
    verify_release_log,
)
from .model import (
    DEFAULT_POLICY,
    HARD_LIMITS,
    KINDS,
    POLICY_FORMAT,
    RECIPIENTS,
    Cycle,
    PolicyError,
    PolicyViolation,
    ReleasePolicy,
    SignedPolicy,
    check_pair_support,
    check_profile,
    check_support,
    check_tariff,
    default_policy,
    dump_policy,
    load_policy,
    refusal_reason,
    sign_policy,
    verify_policy,
)

__all__ = [
    "AGGREGATE_KINDS",
    "DEFAULT_POLICY",
    "HARD_LIMITS",
    "KINDS",
    "LOG_FORMAT",
    "POLICY_FORMAT",
    "RECIPIENTS",
    "Cycle",
    "LogEntry",
    "LogError",
    "PolicyError",
    "PolicyViolation",
    "ReleasePolicy",
    "SignedPolicy",
    "chain_hash",
    "check_pair_support",
    "check_profile",
    "check_support",
    "check_tariff",
    "default_policy",
    "dump_policy",
    "load_policy",
    "refusal_reason",
    "sign_policy",
    "verify_policy",
    "verify_release_log",
]
