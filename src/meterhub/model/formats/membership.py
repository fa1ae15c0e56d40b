"""Member certificates of private aggregation: who vouches that a group member is a real hub.

A grid operator that lists keys it holds for all but one member of a group learns that
household's hourly readings (phantom members, docs/fraud.md). A group member is
therefore listed in the group registry with a certificate over ``(meter id, hub
aggregation key)`` from a party other than the grid operator, which the customer pins at
provisioning as ``member-cert/<recipient>`` (:class:`meterhub.card.guard.Pinned`): the
hub's card issuer, whose security domain reads the aggregation applet's X25519 key on
the card of the hub serving that meter. The guard checks every member of a registry
block against it (:meth:`meterhub.model.group_registry.RegistryView.check_extension`).
A certifier that colludes with the grid operator can still certify phantoms: it is the
trust assumption this check rests on.

Layout (all integers big-endian, ``str8`` as in :mod:`.aggregation`)::

    "MHMC" || u8 version (1) || str8 meter id || 32-byte X25519 hub key
           || 64-byte ECDSA P-256 signature r || s (low S)

signed over ``MEMBER_CERT_DST || everything before the signature``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from ...crypto import ecdsa
from ..demo_keys import MEMBER_CERTIFIER, demo_signing_key
from ..errors import FormatError
from .aggregation import GroupDefinition, GroupMember, _Reader, _str8

__all__ = [
    "MEMBER_CERT_DST",
    "MEMBER_CERT_VERSION",
    "MemberCertificate",
    "certify_members",
    "demo_certificates",
    "demo_directory",
    "demo_member_certifier_key",
]

MEMBER_CERT_DST = b"meterhub/v1/aggregation-member-certificate\x00"
MEMBER_CERT_VERSION = 1
_MAGIC = b"MHMC"


@dataclass(frozen=True)
class MemberCertificate:
    """The certifier's statement "meter ``meter_id`` is served by the hub whose
    aggregation applet holds X25519 key ``hub_key``"; ``signature`` empty until
    :meth:`signed`."""

    meter_id: str
    hub_key: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _str8(self.meter_id)
        if len(self.hub_key) != 32:
            raise FormatError("member certificate: the hub key is 32 bytes")
        if self.signature and len(self.signature) != 64:
            raise FormatError("member certificate: signature must be 64 bytes")

    def body(self) -> bytes:
        return _MAGIC + bytes([MEMBER_CERT_VERSION]) + _str8(self.meter_id) + bytes(self.hub_key)

    def signed(self, key: ecdsa.SigningKey) -> MemberCertificate:
        return replace(self, signature=ecdsa.sign(key, MEMBER_CERT_DST + self.body()))

    def verify(self, key: ecdsa.VerifyingKey) -> bool:
        """Low-S only: a certificate has one encoding, so it has one byte string in a block."""
        return len(self.signature) == 64 and ecdsa.verify(key, MEMBER_CERT_DST + self.body(), self.signature,
                                                          low_s=True)

    def binds(self, meter_id: str, hub_key: bytes) -> bool:
        return self.meter_id == meter_id and self.hub_key == bytes(hub_key)

    def to_bytes(self) -> bytes:
        if not self.signature:
            raise FormatError("member certificate: not signed")
        return self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> MemberCertificate:
        r = _Reader(data, "member certificate")
        if r.take(len(_MAGIC)) != _MAGIC:
            raise FormatError("member certificate: not a member certificate")
        version = r.u8()
        if version != MEMBER_CERT_VERSION:
            raise FormatError(f"member certificate: version {version}, not {MEMBER_CERT_VERSION}")
        meter_id = r.str8("meter id")
        key = r.take(32)
        sig = r.take(64)
        r.end()
        return cls(meter_id, key, sig)


def demo_member_certifier_key() -> ecdsa.SigningKey:
    """The PUBLICLY KNOWN P-256 key of the demo card issuer that certifies group members
    (derived from a public string; the demo customers pin it as
    ``member-cert/grid-operator``). Demo and tests only."""
    return demo_signing_key(MEMBER_CERTIFIER)


def certify_members(key: ecdsa.SigningKey, members: Iterable[GroupMember]) -> list[MemberCertificate]:
    """The certifier's side: one certificate per distinct ``(meter id, hub key)`` of
    ``members``, which the certifier has checked belong together (the card issuer reads
    the key from the card of the hub serving that meter; the demo trusts its own setup)."""
    pairs = sorted({(m.meter_id, bytes(m.hub_key)) for m in members})
    return [MemberCertificate(mid, k).signed(key) for mid, k in pairs]


def demo_certificates(groups: Iterable[GroupDefinition]) -> list[MemberCertificate]:
    """The demo card issuer's certificates for every member of ``groups`` (demo and tests:
    it certifies whatever it is given, so it vouches only for the setups that call it)."""
    return certify_members(demo_member_certifier_key(), (m for g in groups for m in g.members))


def demo_directory(meter_id: str, hub_key: bytes) -> MemberCertificate:
    """A directory of the demo card issuer for :class:`meterhub.utility.fraud.GroupRegistry`
    (demo and tests): it certifies any pair it is asked for, so it stands for an issuer
    that vouches for every hub of the setup, or for one colluding with the grid operator."""
    return MemberCertificate(meter_id, bytes(hub_key)).signed(demo_member_certifier_key())
