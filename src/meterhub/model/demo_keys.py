"""Every PUBLICLY KNOWN demo key, derived in one place from a public label.

Each key is ``crypto.ecdsa.derive_signing_key(SHA-256(label))``; anyone can
recompute it, so these keys are for demos and tests only and must never sign
real tariffs, indices, profiles or applets. The labels are frozen byte for byte:
the shipped example tariff (``data/tariff-de-tou-2027.json``) and the demo's
signed files verify only under exactly these keys.
"""

from __future__ import annotations

import hashlib

from ..crypto import ecdsa

__all__ = [
    "DEMO_SECRET_PREFIX",
    "FEEDER_METER",
    "GRID_OPERATOR_GROUP",
    "INDEX_PUBLISHER",
    "MEMBER_CERTIFIER",
    "PROFILE_PUBLISHER",
    "SUPPLIER",
    "demo_secret",
    "demo_signing_key",
    "demo_vtn_key",
    "party_secret",
    "party_signing_key",
]

#: Labels of the named demo keys (one SHA-256 of the label is the key seed).
SUPPLIER = b"meterhub/v1/demo-supplier-key\x00NOT A SECRET"
INDEX_PUBLISHER = b"meterhub/v1/demo-index-publisher-key\x00NOT A SECRET"
PROFILE_PUBLISHER = b"meterhub/v1/demo-profile-key\x00NOT A SECRET"
GRID_OPERATOR_GROUP = b"meterhub/v1/demo-grid-operator-group-key\x00NOT A SECRET"
FEEDER_METER = b"meterhub/v1/demo-feeder-meter-key\x00NOT A SECRET"
#: The hub's card issuer, which certifies (meter id, aggregation key) of each hub (docs/fraud.md, phantoms).
MEMBER_CERTIFIER = b"meterhub/v1/demo-member-certifier-key\x00NOT A SECRET"
#: Prefix of the per-party demo secrets (SCP03 and DAP keys of the demo card's domains).
DEMO_SECRET_PREFIX = b"meterhub/v1/demo-key\x00NOT A SECRET\x00"


def demo_secret(label: bytes) -> bytes:
    """The 32-byte public seed of ``label`` (SHA-256)."""
    return hashlib.sha256(label).digest()


def demo_signing_key(label: bytes) -> ecdsa.SigningKey:
    """The P-256 demo key of ``label`` (one of the constants above)."""
    return ecdsa.derive_signing_key(demo_secret(label))


def party_secret(name: str) -> bytes:
    """The 32-byte demo secret of a card party's key (``"scp03/issuer"``, ``"dap/supplier"``...)."""
    return demo_secret(DEMO_SECRET_PREFIX + name.encode())


def party_signing_key(name: str) -> ecdsa.SigningKey:
    """The P-256 demo key of a card party (``"dap/" + party``)."""
    return ecdsa.derive_signing_key(party_secret(name))


def demo_vtn_key() -> ecdsa.SigningKey:
    """The demo DR program operator's (grid operator's) VTN event-signing P-256 key,
    from a public string (demo only, like the DAP keys: ``"dap/dr-vtn"``)."""
    return party_signing_key("dap/dr-vtn")
