"""Installing the privacy guard at provisioning (:mod:`meterhub.card.guard`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ...crypto import ecdsa
from ...policy import dump_policy
from ...policy.model import SignedPolicy
from ...protocols.iso7816.aid import AID
from ..registry import AppletRecord
from .common import GUARD_AID, GUARD_CLASS, Pinned


def provision_guard(
    card: Any,
    *,
    customer_key: ecdsa.VerifyingKey | bytes,
    pinned: Pinned,
    recipients: dict[str, str],
    policy: SignedPolicy,
    isd_aid: AID | bytes | str | None = None,
) -> AppletRecord:
    """Install the guard at provisioning (directly, like the ISD: no recipient's SD is
    involved). ``recipients`` maps security-domain AIDs (hex) to recipient names."""
    point = customer_key if isinstance(customer_key, bytes) else ecdsa.public_bytes(customer_key)
    params = json.dumps(
        {
            "customer": point.hex(),
            "pinned": {role: [k.hex() for k in keys] for role, keys in pinned.roles().items()},
            "recipients": dict(recipients),
            "policy": dump_policy(policy).decode(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return card.registry.install_applet(GUARD_CLASS, GUARD_AID, sd_aid=isd_aid, params=params)


def pinned_points(keys: Iterable[Any]) -> tuple[bytes, ...]:
    return tuple(k if isinstance(k, bytes) else ecdsa.public_bytes(k) for k in keys)
