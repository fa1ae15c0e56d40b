"""The privacy guard's fixed names, its pinned keys and the output gate
(:mod:`meterhub.card.guard`, "Output gate"; ISO/IEC 7816-4 §7.4 for the plain FCI).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from ...model.formats.aggregation import GroupPolicy
from ...policy import KINDS
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.sw import SW, ISOException
from ...protocols.iso7816.tlv import TLV
from ..registry import PRIV_SECURITY_DOMAIN, AppletRecord
from ..runtime import Runtime
from ..vault import vault_record_ok

log = logging.getLogger(__name__)

GUARD_AID = "F04D480047520001"
GUARD_CLASS = "meterhub.card.guard/1"
CHUNK = 224  # as the applets' outbox: one short R-APDU with R-ENC and R-MAC
_ROLES = ("price-index", "load-profile")
GROUP_POLICY = GroupPolicy()


@dataclass(frozen=True)
class Pinned:
    """Publisher keys fixed at provisioning (SEC 1 points)."""

    price_index: tuple[bytes, ...]
    load_profile: tuple[bytes, ...]
    tariff: dict[str, tuple[bytes, ...]]  # recipient -> tariff signers
    own_profile: dict[str, tuple[bytes, ...]] | None = None  # recipient -> its own profile signer
    group: dict[str, tuple[bytes, ...]] | None = None  # recipient -> its aggregation-group signer
    dr_event: dict[str, tuple[bytes, ...]] | None = None  # recipient -> its OpenADR VTN's event key
    # recipient -> who certifies its groups' members (meter id, hub key): not the recipient
    # itself, e.g. the hub's card issuer (docs/fraud.md, phantom members)
    member_cert: dict[str, tuple[bytes, ...]] | None = None

    def roles(self) -> dict[str, tuple[bytes, ...]]:
        out = {"price-index": self.price_index, "load-profile": self.load_profile}
        out.update({f"tariff/{k}": v for k, v in self.tariff.items()})
        out.update({f"load-profile/{k}": v for k, v in (self.own_profile or {}).items()})
        out.update({f"group/{k}": v for k, v in (self.group or {}).items()})
        out.update({f"dr-event/{k}": v for k, v in (self.dr_event or {}).items()})
        out.update({f"member-cert/{k}": v for k, v in (self.member_cert or {}).items()})
        return out


def _issue(runtime: Runtime, aid: AID, data: bytes) -> bytes:
    issued = getattr(runtime, "guard_issued", None)
    if issued is None:
        issued = runtime.guard_issued = {}  # type: ignore[attr-defined]
    issued[aid] = bytes(data)
    return bytes(data)


def clear_issued(runtime: Runtime, aid: AID) -> None:
    """Forget what the guard issued to ``aid`` (before each command it processes)."""
    issued = getattr(runtime, "guard_issued", None)
    if issued:
        issued.pop(aid, None)


def _plain_fci(aid: AID) -> bytes:
    """The FCI of an applet without proprietary objects (``Applet.fci``, ISO/IEC 7816-4
    §7.4): ``6F { 84 AID, A5 {} }``, which says nothing about readings."""
    return TLV.build(0x6F, [TLV(0x84, aid.raw), TLV.build(0xA5, [])]).to_bytes()


def output_allowed(runtime: Runtime, rec: AppletRecord, data: bytes, *, selecting: bool = False) -> bool:
    """The output gate (module docstring). True when ``data`` may leave the card; the
    answer to an application's own SELECT may be its plain FCI only."""
    issued = getattr(runtime, "guard_issued", None)
    expected = issued.pop(rec.aid, None) if issued else None
    if not data:
        return True
    reg = runtime.registry
    guard = reg.get(GUARD_AID) if reg is not None else None
    if guard is None:
        return True  # a card without a guard holds no readings-holding applets' outputs
    if rec.privileges[:1] and rec.privileges[0] & PRIV_SECURITY_DOMAIN:
        return True
    if rec.class_name == GUARD_CLASS and rec.aid == AID.of(GUARD_AID):
        return True
    if vault_record_ok(rec, guard.sd_aid):  # the host's records, sealed or opened for the host
        return True
    if expected is not None and hmac.compare_digest(expected, bytes(data)):
        return True
    if selecting and hmac.compare_digest(_plain_fci(rec.aid), bytes(data)):
        return True
    log.error("output of %s not issued by the privacy guard: withheld", rec.aid)
    return False


def _policy_kind(kind: str) -> None:
    """Releases under the policy's entitlements; an ``export`` goes through the consent
    path (:meth:`GuardPort.begin_export`) only."""
    if kind == "export":
        raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "exports need the customer's consent")
    if kind == "aggregate":
        raise ISOException(SW.WRONG_DATA, "aggregates are released per group and day (begin_aggregate)")
    if kind not in KINDS:
        raise ISOException(SW.WRONG_DATA, "unknown kind of release")


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")
