"""The privacy guard: the card service every release passes through (docs/privacy.md).

The guard is an applet instance at :data:`GUARD_AID`, associated with the ISD and
installed when the hub is provisioned (:func:`provision_guard`), never by a recipient's
security domain. It holds, in its own persistent namespace (JCRE ch. 7 transactions):

* the customer's P-256 public key (the customer keeps the private key on the host);
* the **pinned publisher keys**: the price-index publisher, the neutral reference-profile
  publisher, each recipient's tariff signers and, optionally, each recipient's own
  profile signer and aggregation-group signer, and each demand-response program
  operator's event-signing (VTN) key (role ``dr-event/<recipient>``), and who certifies
  the members of a recipient's aggregation groups (role ``member-cert/<recipient>``,
  a party other than the recipient, docs/fraud.md). A recipient's SD
  cannot change them: applets read them from here, and an install parameter naming
  another key is refused (``6982``);
* the map from recipient security domain to recipient name;
* the customer-signed **release policy** (:mod:`meterhub.policy`);
* each recipient's admitted **aggregation groups** (:class:`meterhub.model.formats.aggregation.GroupPolicy`
  over all of them, whichever applet of the recipient asks), and per group and day at
  most one masked release and one unmasking (recovery) answer, and per member which
  kind that answer gave (pairwise masks: missing; self-mask share: present), so a member is
  never answered both ways (double masking, docs/fraud.md);
* each recipient's **group registry** (:mod:`meterhub.model.group_registry`): the chain of
  signed blocks with every group of the feeder, accepted only while every member is
  certified by the pinned member certifier and no household is in the span of all of
  them, and the days released (no retroactive groups);
* every released statement and the **release log** (a hash chain, :mod:`meterhub.policy.log`),
  the coin tosses and the tariff changes. The budget spent is read from the log per
  calendar time (:func:`meterhub.policy.log.over_budget`: every cell a release's support
  touches, against every earlier release overlapping it), so a cycle change renews nothing;
  a ``dp-forecast`` release's epsilon, recorded in its log entry, is charged the same way.

Applets reach it through the shareable interface :class:`GuardPort` (JCRE §6.2.4). The
guard learns the client's recipient from the registry (the client's associated security
domain), never from the client. A release is two calls: :meth:`GuardPort.begin`
(entitlement, whole period, one release per period and kind, overlap; a re-ask returns
the stored statement byte for byte) and :meth:`GuardPort.commit` (budget; statement, log
entry, head and counters in one transaction; only then are the bytes handed out).

**Output gate.** On a card with a guard, response data of any application that is not a
security domain or the guard leaves the card only if the guard issued exactly those bytes
for that command (:func:`output_allowed`, called by the card runtime for the plain channel
and by the security domain for STORE DATA). An applet path that forgot the guard answers
``6F00`` and releases nothing.

Customer commands (plain channel, class ``80``): ``40`` GET POLICY, ``42`` SET POLICY (a
policy signed by the customer's key; version must increase; hard limits hold), ``44`` GET
LOG HEAD (``u32 count || 32-byte chain value``), ``46`` READ LOG ENTRY (``u32 seq``),
``48`` GET PINNED KEYS (JSON), ``4A`` GET RELEASE (``u32 seq`` → the released bytes),
``50`` ADD CONSENT and ``52`` REVOKE CONSENT (signed by the customer's key;
:mod:`meterhub.policy.consent`). An ``export`` release needs a valid consent instead of
the policy's entitlement; a revocation stops further exports (re-asks included) at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from ..crypto import ecdsa
from ..crypto.sampling import commit_hub_nonce
from ..model.formats.aggregation import (
    AggregationRequest,
    FormatError,
    GroupDefinition,
    GroupPolicy,
    PolicyRefusal,
    RecoveryRequest,
)
from ..model.group_registry import HeadTags, RegistryBlock, RegistryView, day_mask_digest
from ..policy import (
    AGGREGATE_KINDS,
    KINDS,
    LogEntry,
    PolicyError,
    PolicyViolation,
    ReleasePolicy,
    chain_hash,
    check_pair_support,
    check_profile,
    check_support,
    check_tariff,
    dump_policy,
    load_policy,
    verify_policy,
)
from ..policy.consent import Consent, load_consent, verify_consent, verify_revocation
from ..policy.log import charged_span, epsilon_charges, over_budget
from ..policy.model import SW_BUDGET, SignedPolicy
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLV
from .applet import Applet, ins, register_applet_class
from .registry import PRIV_SECURITY_DOMAIN, AppletRecord
from .runtime import AppletContext, Runtime, Shareable, shareable_interface
from .vault import vault_record_ok

__all__ = [
    "GUARD_AID",
    "GUARD_CLASS",
    "GuardPort",
    "InstallPort",
    "Pinned",
    "PrivacyGuard",
    "clear_issued",
    "output_allowed",
    "provision_guard",
]

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


@shareable_interface
class GuardPort(Shareable):
    """What an applet may ask the guard (every call runs in the guard's context)."""

    def __init__(self, guard: PrivacyGuard, client: AID, recipient: str) -> None:
        self._guard = guard
        self._client = client
        self._recipient = recipient

    def recipient(self) -> str:
        return self._recipient

    def pinned(self, role: str) -> list[bytes]:
        """Keys for ``price-index``, ``load-profile`` (the neutral publisher and this
        recipient's own profile signer), ``tariff`` (this recipient's signers) or
        ``group`` (this recipient's aggregation-group signer) and ``dr-event`` (this
        recipient's VTN event-signing key) and ``member-cert`` (who certifies the members of
        this recipient's aggregation groups)."""
        g = self._guard
        if role in ("tariff", "group", "dr-event", "member-cert"):
            return g._keys(f"{role}/{self._recipient}")
        if role == "load-profile":
            return g._keys("load-profile") + g._keys(f"load-profile/{self._recipient}")
        if role == "price-index":
            return g._keys("price-index")
        raise ISOException(SW.WRONG_DATA, "unknown publisher role")

    def check_series(self, kind: str, series: Any) -> None:
        """The policy's shape limits for a reference profile (``6A80``)."""
        if kind == "load-profile":
            self._guard._violation(check_profile, series)

    def check_weights(self, profiles: list[tuple[str, list[int]]], minutes: int) -> None:
        """The weights of the profiles of one release over the released period, before any
        score is computed: no profile, and no two of them together, may isolate fewer hours
        than the policy's minimum support from the energy (``6A80``;
        :func:`meterhub.policy.check_support`, :func:`meterhub.policy.check_pair_support`).
        A series that passed at push time can still be a spike over the one period asked
        for, or differ from another by a spike."""
        g = self._guard
        for sid, w in profiles:
            g._violation(lambda w, pol, sid=sid: check_support(w, minutes, pol, name=f"profile {sid}"), list(w))
        for i, (sa, wa) in enumerate(profiles):
            for sb, wb in profiles[i + 1 :]:
                g._violation(lambda pair, pol, sa=sa, sb=sb: check_pair_support(
                    pair[0], pair[1], minutes, pol, name=f"profiles {sa} and {sb}"), (list(wa), list(wb)))

    def accept_tariff(self, tariff: Any, today: date | None) -> None:
        """Shape limits (``6A80``) and at most the policy's tariff changes per billing
        period (``6985``); ``today`` is the last reading day the applet holds."""
        g = self._guard
        pol = g._policy()
        g._violation(check_tariff, tariff)
        digest = tariff.digest()
        key = b"C" + self._recipient.encode() + b"/" + (g._cell(today)[0].isoformat().encode() if today else b"-")
        seen = g.ctx.store.get(key) or b""
        changes = [seen[i : i + 32] for i in range(0, len(seen), 32)]
        if digest in changes:
            return
        if len(changes) >= max(1, pol.limit("tariff", "max_changes_per_period")):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the tariff already changed in this billing period")
        # A tariff taking effect inside a cell splits it there (docs/privacy.md, "Split
        # periods"): one such day per cell, and not inside a piece already released.
        start = getattr(getattr(tariff, "base", tariff), "valid_from", None)
        writes = {key: seen + digest}
        if isinstance(start, date) and g._cell(start)[0] != start:
            vkey = g._tariff_split_key(self._recipient, start)
            old = g.ctx.store.get(vkey)
            if old is not None and old != start.isoformat().encode():
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a tariff already takes effect inside this billing period")
            for kind in KINDS:
                for rkey in g._stored(b"R" + f"{self._recipient}/{kind}/".encode()):
                    raw = g.ctx.store.get(rkey) or b""
                    a, b = date.fromisoformat(raw[4:14].decode()), date.fromisoformat(raw[14:24].decode())
                    if a < start <= b:
                        raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for {a}..{b} is released: the tariff cannot split it")
            writes[vkey] = start.isoformat().encode()
        g.ctx.begin_transaction()
        for k, v in writes.items():
            g.ctx.store.put(k, v)
        g.ctx.commit_transaction()

    def state(self, next_index: int, last_day: bytes) -> bytes:
        """Issue the non-release GET STATE answer (``u64 next index || day``)."""
        if len(last_day) not in (0, 4) or not 0 <= next_index < 1 << 64:
            raise ISOException(SW.WRONG_DATA, "bad state")
        return _issue(self._guard.ctx.runtime, self._client, next_index.to_bytes(8, "big") + last_day)

    # -- sampling: commit-then-reveal -------------------------------------------------
    def toss_commit(self, meter_id: str, first: date, last: date, k: int, commitment: bytes,
                    last_day: date | None) -> bytes:
        """Record the recipient's commitment; answer the commitment to the hub's nonce."""
        g = self._guard
        pol = g._policy()
        g._entitled(self._recipient, "samples")
        g._piece(self._recipient, first, last)
        if k < pol.limit("sampling", "min_k"):
            raise ISOException(SW.WRONG_DATA, f"k = {k} is below the policy's floor {pol.limit('sampling', 'min_k')}")
        key = b"T" + self._recipient.encode() + b"/" + first.isoformat().encode()
        rec = g.ctx.store.get(key)
        if rec is not None:
            # The same commitment and k again (the answer was lost to a crash or a dropped
            # link): the same answer again, so a retry cannot re-toss the coin.
            if hmac.compare_digest(rec[:34], k.to_bytes(2, "big") + bytes(commitment)) and rec[66:] == meter_id.encode():
                return _issue(g.ctx.runtime, self._client, commit_hub_nonce(rec[34:66]))
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "one coin toss per sampling period")
        if last_day is not None and last_day >= first:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the period has already begun")
        hub_nonce = g.ctx.random_bytes(32)
        g.ctx.store.put(key, k.to_bytes(2, "big") + bytes(commitment) + hub_nonce + meter_id.encode())
        return _issue(g.ctx.runtime, self._client, commit_hub_nonce(hub_nonce))

    def toss(self, first: date) -> tuple[int, bytes, bytes, str] | None:
        """``(k, commitment, hub nonce, meter id)`` of this recipient's toss for the period."""
        rec = self._guard.ctx.store.get(b"T" + self._recipient.encode() + b"/" + first.isoformat().encode())
        if rec is None:
            return None
        return int.from_bytes(rec[:2], "big"), rec[2:34], rec[34:66], rec[66:].decode()

    # -- releases -----------------------------------------------------------------------
    def begin(self, kind: str, first: date, last: date, request: bytes, *, chunked: bool) -> bytes | None:
        """Policy checks before computing. A re-ask of a released request answers the
        stored statement (issued); ``None``: the applet may compute and :meth:`commit`.
        Kind ``dr`` names the event day (``first == last``) instead of a whole period and
        the event id in ``request``: one release per recipient and event day."""
        g = self._guard
        _policy_kind(kind)
        seq = g._check(self._recipient, kind, first, last, hashlib.sha256(request).hexdigest())
        if seq is None:
            return None
        return g._hand_out(self._client, seq, chunked)

    def commit(self, kind: str, first: date, last: date, request: bytes, statement: bytes, *,
               functionals: int, samples: int = 0, chunked: bool, support_from: date | None = None,
               epsilon_milli: int = 0) -> bytes:
        """Check the budget, store statement and log entry atomically, hand out the bytes.
        ``support_from``: for kind ``dr``, the earliest baseline day; the functional is
        charged to every period from there to the event day (docs/privacy.md).
        ``epsilon_milli``: the differential-privacy loss of a ``dp-forecast`` release,
        charged to the period's ``dp.epsilon_milli_per_period`` (docs/privacy.md)."""
        g = self._guard
        _policy_kind(kind)
        if not (isinstance(functionals, int) and isinstance(samples, int) and functionals >= 0 and samples >= 0):
            raise ISOException(SW.WRONG_DATA, "functionals and samples are counts")
        if support_from is not None and (kind != "dr" or support_from >= first):
            raise ISOException(SW.WRONG_DATA, "only a demand-response release reaches back to baseline days")
        if not isinstance(epsilon_milli, int) or epsilon_milli < 0 or (kind == "dp-forecast") != (epsilon_milli > 0):
            raise ISOException(SW.WRONG_DATA, "a dp-forecast release, and only it, spends a positive epsilon")
        req = hashlib.sha256(request).hexdigest()
        seq = g._check(self._recipient, kind, first, last, req)
        if seq is None:
            seq = g._record(self._recipient, kind, first, last, req, bytes(statement), self._client,
                            functionals, samples, support_from=support_from, epsilon_milli=epsilon_milli)
        return g._hand_out(self._client, seq, chunked)

    def dp_limits(self) -> dict[str, int]:
        """The ``dp`` section of the policy in force: epsilon per period (milli), clip, unit."""
        return dict(self._guard._policy().limits["dp"])

    def dp_left(self, first: date, last: date | None = None) -> int:
        """Milli-epsilon this recipient may still spend on a release over ``first..last``
        (default: ``first``'s cell): the cap less the most already charged, per calendar
        time (:func:`~meterhub.policy.log.over_budget`), to any cell it touches."""
        g = self._guard
        pol = g._policy()
        cap = pol.limit("dp", "epsilon_milli_per_period")
        charges = epsilon_charges(g._entries(self._recipient))
        spent, (a, b) = 0, g._cell(first)
        while a <= (last or first):
            spent = max(spent, sum(e for x, y, e in charges if not (y < a or b < x)))
            a, b = g._cell(b + timedelta(days=1))
        return max(0, cap - spent)

    # -- corrections (docs/privacy.md, "Gaps and corrections") ---------------------------
    def released(self, kind: str, first: date) -> tuple[int, bytes] | None:
        """``(seq, bytes)`` of this recipient's release of ``kind`` for the period starting
        ``first`` (the applet's own earlier output), or None."""
        return self._guard._released(self._recipient, kind, first)

    def begin_correction(self, kind: str, first: date, last: date, request: bytes) -> bytes | None:
        """Checks before computing a correction of the ``kind`` release for ``first..last``:
        it exists and listed missing days (``6985`` otherwise; ``6A88`` when there is no
        release to correct), and no other correction of it was released (``6985``). A
        re-ask of the same correction answers the stored bytes; None: compute and
        :meth:`commit_correction`."""
        return self._guard._check_correction(self._client, self._recipient, kind, first, last,
                                             hashlib.sha256(request).hexdigest())

    def commit_correction(self, kind: str, first: date, last: date, request: bytes, statement: bytes, *,
                          functionals: int) -> bytes:
        """Record the one correction of the period's release (log kind ``correction``,
        charged to the budget like any release) and hand out the bytes."""
        g = self._guard
        if not isinstance(functionals, int) or functionals < 0:
            raise ISOException(SW.WRONG_DATA, "functionals is a count")
        req = hashlib.sha256(request).hexdigest()
        again = g._check_correction(self._client, self._recipient, kind, first, last, req)
        if again is not None:
            return again
        seq = g._record(self._recipient, "correction", first, last, req, bytes(statement), self._client,
                        functionals, 0)
        return g._hand_out(self._client, seq, False)

    # -- private aggregation (docs/fraud.md) ------------------------------------------
    def issue_key(self, key: bytes) -> bytes:
        """Issue the aggregation applet's 32-byte X25519 public key (no release: it is
        drawn from the card's random source and says nothing about readings)."""
        if len(key) != 32:
            raise ISOException(SW.WRONG_DATA, "an X25519 public key is 32 bytes")
        return _issue(self._guard.ctx.runtime, self._client, bytes(key))

    def admit_group(self, raw: bytes, meter_id: str, own_key: bytes) -> None:
        """Admit a signed group definition for this recipient under :class:`GroupPolicy`,
        against every group this recipient has on the card, whichever of its applets
        admitted it. Malformed ``6A80``, signature ``6982``, policy ``6985``."""
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            group = GroupDefinition.from_bytes(raw)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed group definition") from None
        prefix = b"G" + self._recipient.encode() + b"/"
        known = [GroupDefinition.from_bytes(g.ctx.store.get(k) or b"") for k in g._stored(prefix)]
        try:
            GROUP_POLICY.admit(group, self.pinned("group"), meter_id, bytes(own_key), known)
        except PermissionError as exc:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        listed = self._registry().groups.get(group.group_id)
        if listed is None or listed.body() != group.body():
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"group {group.group_id} is not in the group registry this hub holds")
        key = prefix + group.group_id.encode()
        if g.ctx.store.get(key) is None:
            g.ctx.store.put(key, group.to_bytes())

    # -- the group registry (meterhub.model.group_registry, docs/fraud.md) --------------------
    def _qkey(self, *parts: bytes) -> bytes:
        return b"Q" + self._recipient.encode() + b"/" + b"/".join(parts)

    def _registry(self) -> RegistryView:
        g = self._guard
        raw = g.ctx.store.get(self._qkey(b"head"))
        if raw is None:
            return RegistryView()
        hit = g._registry_cache.get(self._recipient)
        if hit is not None and hit[0] == raw:
            return hit[1]
        n = raw[0]
        feeder, version, head = raw[1 : 1 + n].decode(), int.from_bytes(raw[1 + n : 5 + n], "big"), raw[5 + n :]
        groups = {}
        for k in g._stored(self._qkey(b"g", b"")):
            grp = GroupDefinition.from_bytes(g.ctx.store.get(k) or b"")
            groups[grp.group_id] = grp
        view = RegistryView(feeder, version, head, groups)
        g._registry_cache[self._recipient] = (raw, view)
        return view

    def registry_view(self) -> RegistryView:
        """This recipient's group registry as the hub holds it (for the applet's tags)."""
        return self._registry()

    def issue_head_tags(self, raw: bytes) -> bytes:
        """Issue the applet's tags over this recipient's current registry head (applet
        message ``05``): MACs under pair keys, about the registry only (no release)."""
        try:
            tags = HeadTags.from_bytes(bytes(raw))
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed registry head tags") from None
        view = self._registry()
        if (tags.feeder_id, tags.version, tags.head) != (view.feeder_id, view.version, view.head):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tags over another registry head than this hub's")
        return _issue(self._guard.ctx.runtime, self._client, bytes(raw))

    def record_head_tags(self, peers: Iterable[str], version: int, head: bytes) -> None:
        """Record that ``peers`` (the applet checked their tags) hold this recipient's
        current registry head, in one card transaction."""
        g = self._guard
        view = self._registry()
        if (version, bytes(head)) != (view.version, view.head):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tags over another registry head than this hub's")
        g.ctx.begin_transaction()
        for p in peers:
            g.ctx.store.put(self._qkey(b"a", p.encode()), _u32(version) + bytes(head))
        g.ctx.commit_transaction()

    def _check_head_held(self, meter_id: str) -> None:
        """Forks (docs/fraud.md): once this hub has released under one registry head, it
        releases under another only when every co-member has tagged that head (each then
        held it, so no two of them release on branches that do not extend each other)."""
        g = self._guard
        last = g.ctx.store.get(self._qkey(b"last"))
        view = self._registry()
        if last is None or last == view.head:
            return
        want = _u32(view.version) + view.head
        lacking = sorted(p for p in view.co_members(meter_id) if g.ctx.store.get(self._qkey(b"a", p.encode())) != want)
        if lacking:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"the registry changed since this hub's last release and {len(lacking)} co-member(s) "
                               f"have not tagged its head ({', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''})")

    def registry_head(self) -> bytes:
        """Issue ``u32 blocks held || 32-byte chain value`` of this recipient's group
        registry (the recipient's own published data; no release)."""
        view = self._registry()
        return _issue(self._guard.ctx.runtime, self._client, _u32(view.version + 1) + view.head)

    def extend_registry(self, raw: bytes) -> None:
        """Append the next block of this recipient's group registry after
        :meth:`RegistryView.check_extension` (signature, or a member without a certificate
        from the pinned member certifier binding its meter id and hub key, ``6982``; no
        member certifier pinned, not the next block, another feeder, a registry that
        isolates a household or adds to a released day ``6985``; malformed ``6A80``). A block this hub holds already is accepted again
        without change (the grid operator may resend its chain)."""
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            block = RegistryBlock.from_bytes(raw)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed registry block") from None
        view = self._registry()
        if block.version <= view.version:
            if g.ctx.store.get(self._qkey(b"v", _u32(block.version))) == block.chain_value():
                return
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                               f"registry block {block.version} differs from the one this hub holds (equivocation)")
        try:
            view.check_extension(block, self.pinned("group"), self._released, min_size=GROUP_POLICY.min_size,
                                 interval_minutes=GROUP_POLICY.interval_minutes,
                                 certifier_keys=self.pinned("member-cert"))
        except PermissionError as exc:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        new = view.extended(block)
        feeder = block.feeder_id.encode()
        g.ctx.begin_transaction()
        for grp in block.groups:
            g.ctx.store.put(self._qkey(b"g", grp.group_id.encode()), grp.to_bytes())
        g.ctx.store.put(self._qkey(b"v", _u32(block.version)), new.head)
        g.ctx.store.put(self._qkey(b"head"), bytes([len(feeder)]) + feeder + _u32(new.version) + new.head)
        g.ctx.commit_transaction()

    def _released(self, day: date) -> bool:
        return self._guard.ctx.store.get(self._qkey(b"d", day.isoformat().encode())) is not None

    def day_span(self, day: date) -> bytes:
        """The span digest of ``day``'s groups in this recipient's registry, bound with the
        registry head this hub released the day under (its current head before its first
        release of the day), which the applet binds into the day's masks
        (:func:`meterhub.model.formats.aggregation.mask_context`): members that hold
        different spans of the day, or different registries, derive masks that do not cancel."""
        g = self._guard
        view = self._registry()
        frozen = g.ctx.store.get(self._qkey(b"d", day.isoformat().encode()))
        head = frozen if frozen is not None and len(frozen) == 32 else view.head
        key = (self._recipient, view.head, day, head)
        hit = g._span_cache.get(key)
        if hit is None:
            if len(g._span_cache) > 256:
                g._span_cache.clear()
            hit = g._span_cache[key] = day_mask_digest(view.day_span(day), head)
        return hit

    def group(self, group_id: str) -> GroupDefinition:
        """An admitted group of this recipient (``6A88`` if none)."""
        raw = self._guard.ctx.store.get(b"G" + self._recipient.encode() + b"/" + group_id.encode())
        if raw is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no group {group_id}")
        return GroupDefinition.from_bytes(raw)

    def _group_release(self, kind: str, request: bytes, meter_id: str,
                       own_key: bytes) -> tuple[GroupDefinition, date, str]:
        g = self._guard
        g._entitled(self._recipient, "aggregate")
        try:
            req = AggregationRequest.from_bytes(request) if kind == "aggregate" else RecoveryRequest.from_bytes(request)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, f"malformed {kind} request") from None
        group = self.group(req.group_id)
        me = group.member(meter_id)
        if me is None or me.hub_key != bytes(own_key):  # another applet of the recipient
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this applet is not the group's member for its meter")
        if not group.valid_from <= req.day <= group.valid_to:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "day outside the group's validity")
        def slot(k: str) -> str:  # (a group id is printable ASCII, braces included)
            return "/".join((self._recipient, k, group.group_id, req.day.isoformat()))

        if kind == "recovery":
            if g.ctx.store.get(b"R" + slot("aggregate").encode()) is None:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this hub has not released the day")
            assert isinstance(req, RecoveryRequest)
            present = tuple(p for p, _ in req.present)
            try:
                GROUP_POLICY.check_recovery(group, meter_id, req.missing, present)
            except PolicyRefusal as exc:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
            # double masking: for each member one kind of answer per group-day, never
            # both (pairwise masks if missing, self-mask share if present; docs/fraud.md)
            for mid, kind_asked in [*((m, b"D") for m in req.missing), *((p, b"P") for p in present)]:
                had = g.ctx.store.get(self._mark(group.group_id, req.day, mid))
                if had is not None and had != kind_asked:
                    raise ISOException(SW.CONDITIONS_NOT_SATISFIED,
                                       f"{mid} was answered as {'missing' if had == b'D' else 'present'} "
                                       "for this group and day; the other kind is refused")
            # the present set's sum must not leave the registry's span for the day,
            # with the recoveries this card answered that day (docs/fraud.md)
            problems = self._registry().recovery_problems(
                group.group_id, req.day, group.meter_ids - set(req.missing), self._answered(req.day),
                min_size=GROUP_POLICY.min_size)
            if problems:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"recovery refused: {problems[0]}")
        return group, req.day, slot(kind)

    def _answered(self, day: date) -> dict[str, frozenset[str]]:
        """The present sets of the recoveries this card answered on ``day``, by group."""
        g = self._guard
        prefix = self._qkey(b"p", day.isoformat().encode(), b"")
        out = {}
        for k in g._stored(prefix):
            raw = (g.ctx.store.get(k) or b"").decode()
            out[k[len(prefix):].decode()] = frozenset(raw.split("\n")) if raw else frozenset()
        return out

    def _mark(self, group_id: str, day: date, member: str) -> bytes:
        return b"U" + "/".join((self._recipient, group_id, day.isoformat(), member)).encode()

    def begin_aggregate(self, kind: str, request: bytes, meter_id: str,
                        own_key: bytes) -> tuple[bytes | None, GroupDefinition, date]:
        """For ``aggregate`` (the day's masked sums) or ``recovery`` (one per group and
        day): entitlement ``aggregate`` (``6982``), an admitted group (``6A88``), the day
        within its validity, the recovery rules (``6985``). A re-ask of the same request
        answers the stored bytes; another request for the group and day ``6985``."""
        if kind not in AGGREGATE_KINDS:
            raise ISOException(SW.WRONG_DATA, "unknown kind of aggregation release")
        g = self._guard
        group, day, slot = self._group_release(kind, request, meter_id, own_key)
        idx = g.ctx.store.get(b"R" + slot.encode())
        if idx is None:
            if kind == "aggregate":
                self._check_head_held(meter_id)
            return None, group, day
        entry = LogEntry.from_bytes(g.ctx.store.get(b"L" + idx[:4]) or b"")
        if entry.request_digest != hashlib.sha256(request).hexdigest():
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for this group and day already answered (another request)")
        return g._hand_out(self._client, int.from_bytes(idx[:4], "big"), False), group, day

    def commit_aggregate(self, kind: str, request: bytes, meter_id: str, own_key: bytes, statement: bytes, *,
                         hours: int) -> bytes:
        """Log and store the release (one card transaction), then hand out its bytes."""
        again, group, day = self.begin_aggregate(kind, request, meter_id, own_key)
        if again is not None:
            return again
        g = self._guard
        pol = g._policy()
        slot = "/".join((self._recipient, kind, group.group_id, day.isoformat()))
        count, head = g._head()
        entry = LogEntry(count, kind, self._recipient, day.isoformat(), day.isoformat(), pol.version,
                         self._client.raw.hex().upper(), hashlib.sha256(request).hexdigest(),
                         hashlib.sha256(statement).hexdigest(), hours if kind == "aggregate" else 0, 0,
                         group=group.group_id)
        raw = entry.canonical_bytes()
        g.ctx.begin_transaction()
        g.ctx.store.put(b"S" + _u32(count), bytes(statement))
        g.ctx.store.put(b"L" + _u32(count), raw)
        g.ctx.store.put(b"R" + slot.encode(), _u32(count))
        g.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        day_key = self._qkey(b"d", day.isoformat().encode())
        if g.ctx.store.get(day_key) is None:  # no retroactive groups; the head the day is released under
            g.ctx.store.put(day_key, self._registry().head)
        if kind == "aggregate":
            g.ctx.store.put(self._qkey(b"last"), self._registry().head)
        if kind == "recovery":  # which kind this card answered for each member, same transaction
            req = RecoveryRequest.from_bytes(request)
            for m in req.missing:
                g.ctx.store.put(self._mark(group.group_id, day, m), b"D")
            for p, _ in req.present:
                g.ctx.store.put(self._mark(group.group_id, day, p), b"P")
            # the present set this answer enables, counted by later recoveries of the day
            g.ctx.store.put(self._qkey(b"p", day.isoformat().encode(), group.group_id.encode()),
                            "\n".join(sorted(group.meter_ids - set(req.missing))).encode())
        g.ctx.commit_transaction()
        return g._hand_out(self._client, count, False)

    # -- consented export -------------------------------------------------------------
    def begin_export(self, consent_id: str, first: date, last: date, resolution: int, request: bytes,
                     today: date | None) -> bytes | None:
        """Like :meth:`begin` for kind ``export``: a valid consent of the customer for this
        recipient, period and resolution replaces the policy's entitlement (``6982``)."""
        g = self._guard
        g._consent_ok(self._recipient, consent_id, first, last, resolution, today)
        seq = g._check(self._recipient, "export", first, last, hashlib.sha256(request).hexdigest())
        return None if seq is None else g._hand_out(self._client, seq, True)

    def commit_export(self, consent_id: str, first: date, last: date, resolution: int, request: bytes,
                      document: bytes, readings: int, today: date | None) -> bytes:
        g = self._guard
        g._consent_ok(self._recipient, consent_id, first, last, resolution, today)
        req = hashlib.sha256(request).hexdigest()
        seq = g._check(self._recipient, "export", first, last, req)
        if seq is None:
            seq = g._record(self._recipient, "export", first, last, req, bytes(document), self._client,
                            0, readings, consent=consent_id)
        return g._hand_out(self._client, seq, True)

    def fetch(self, offset: int) -> bytes:
        """The chunk at ``offset`` of this client's last handed-out statement."""
        g = self._guard
        raw = g.ctx.store.get(b"O" + self._client.raw)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "nothing to fetch")
        out = g.ctx.store.get(b"S" + raw) or b""
        if not 0 <= offset <= len(out):
            raise ISOException(SW.WRONG_DATA, "offset out of range")
        return _issue(g.ctx.runtime, self._client, _u32(len(out)) + out[offset : offset + CHUNK])


@shareable_interface
class InstallPort(Shareable):
    """Granted to any client (parameter 1): is a key pinned for a role? Used while an
    applet installs, before its registry record (and so its recipient) exists."""

    def __init__(self, guard: PrivacyGuard) -> None:
        self._guard = guard

    def is_pinned(self, role: str, key: bytes) -> bool:
        g = self._guard
        roles = [r.decode()[4:] for r in g._stored(b"pin/")]
        return any(bytes(key) in g._keys(r) for r in roles if r == role or r.startswith(role + "/"))


class PrivacyGuard(Applet):
    """See the module docstring."""

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> PrivacyGuard:
        if ctx.aid != AID.of(GUARD_AID):
            raise ISOException(SW.WRONG_DATA, "the privacy guard lives at its fixed AID")
        try:
            p = json.loads(params)
            customer = bytes.fromhex(p["customer"])
            ecdsa.load_verifying_key(customer)
            signed = load_policy(p["policy"].encode())
            policy = verify_policy(signed, customer)
            pinned = {role: [bytes.fromhex(k) for k in keys] for role, keys in p["pinned"].items()}
            for keys in pinned.values():
                for k in keys:
                    ecdsa.load_verifying_key(k)
            sds = {AID.of(a).raw: str(n) for a, n in p["recipients"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, PolicyError):
            raise ISOException(SW.WRONG_DATA, "bad guard provisioning data") from None
        ctx.begin_transaction()
        ctx.store.put(b"customer", customer)
        for role, keys in pinned.items():
            ctx.store.put(b"pin/" + role.encode(), b"".join(keys))
        for sd, name in sds.items():
            ctx.store.put(b"sd/" + sd, name.encode())
        ctx.store.put(b"policy", dump_policy(signed))
        ctx.store.put(b"head", _u32(0) + bytes(32))
        ctx.commit_transaction()
        guard = cls(ctx)
        guard._append_policy_entry(policy, signed)
        return guard

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._policy_cache: tuple[bytes, ReleasePolicy] | None = None
        self._registry_cache: dict[str, tuple[bytes, RegistryView]] = {}
        self._span_cache: dict[tuple[str, bytes, date, bytes], bytes] = {}

    # -- state ----------------------------------------------------------------------------
    def _stored(self, prefix: bytes) -> list[bytes]:
        """Keys of the guard's namespace that start with ``prefix`` (the store's own listing)."""
        listing = self.ctx.store.keys
        return [k for k in listing() if k.startswith(prefix)]

    def _keys(self, role: str) -> list[bytes]:
        raw = self.ctx.store.get(b"pin/" + role.encode()) or b""
        return [raw[i : i + 65] for i in range(0, len(raw), 65)]

    def _policy(self) -> ReleasePolicy:
        raw = self.ctx.store.get(b"policy") or b""
        if self._policy_cache is None or self._policy_cache[0] != raw:
            self._policy_cache = (raw, load_policy(raw).policy)
        return self._policy_cache[1]

    def _cell(self, day: date) -> tuple[date, date]:
        return self._policy().cycle.period_of(day)

    def _violation(self, check: Any, obj: Any) -> None:
        try:
            check(obj, self._policy())
        except PolicyViolation as v:
            raise ISOException(v.sw, v.reason) from None

    def _entitled(self, recipient: str, kind: str) -> None:
        if not self._policy().entitled(recipient, kind):
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, f"{recipient} is not entitled to {kind}")

    def _tariff_split_key(self, recipient: str, day: date) -> bytes:
        return b"V" + f"{recipient}/{self._cell(day)[0].isoformat()}".encode()

    def pieces(self, recipient: str, day: date) -> list[tuple[date, date]]:
        """The pieces of the cell containing ``day`` for ``recipient``: split at the
        customer's split days and at the first day of a tariff of this recipient's that
        takes effect inside the cell (:meth:`GuardPort.accept_tariff`)."""
        raw = self.ctx.store.get(self._tariff_split_key(recipient, day))
        extra = (date.fromisoformat(raw.decode()),) if raw else ()
        return self._policy().cycle.pieces(day, extra)

    def _piece(self, recipient: str, first: date, last: date) -> None:
        """One whole piece of a cell (a whole cell when nothing splits it); the recipient
        cannot choose the boundaries: they are the customer's or the tariff's."""
        if (first, last) not in self.pieces(recipient, first):
            raise ISOException(SW.WRONG_DATA, "not one whole period of the customer's cycle (or one piece of a split period)")

    def _head(self) -> tuple[int, bytes]:
        raw = self.ctx.store.get(b"head") or _u32(0) + bytes(32)
        return int.from_bytes(raw[:4], "big"), raw[4:36]

    def recipient_of(self, client: AID) -> str | None:
        reg = self.ctx.runtime.registry
        rec = reg.get(client) if reg is not None else None
        if rec is None or rec.sd_aid is None or (rec.privileges[:1] and rec.privileges[0] & PRIV_SECURITY_DOMAIN):
            return None
        name = self.ctx.store.get(b"sd/" + rec.sd_aid.raw)
        return None if name is None else name.decode()

    def get_shareable_interface(self, client_aid: AID, parameter: int) -> Shareable | None:
        if parameter == 1:
            return InstallPort(self)
        recipient = self.recipient_of(client_aid)
        return None if recipient is None else GuardPort(self, client_aid, recipient)

    # -- releases -------------------------------------------------------------------------
    def _check(self, recipient: str, kind: str, first: date, last: date, req: str) -> int | None:
        """Entitlement, whole period, one release per period/kind, no overlap. The seq of
        the stored release for a re-ask of the same request, or None."""
        if kind != "export":  # an export's entitlement and period are its consent's
            self._entitled(recipient, kind)
            if kind == "dr":  # one event day; its period is charged (_record)
                if first != last:
                    raise ISOException(SW.WRONG_DATA, "a demand-response release names its event day")
            else:
                self._piece(recipient, first, last)
        idx = self.ctx.store.get(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode())
        if idx is not None:
            seq = int.from_bytes(idx[:4], "big")
            entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + idx[:4]) or b"")
            if entry.request_digest == req and entry.period_to == last.isoformat():
                return seq
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} for this period already released (another request)")
        for key in self._stored(b"R" + f"{recipient}/{kind}/".encode()):
            raw = self.ctx.store.get(key) or b""
            a, b = date.fromisoformat(raw[4:14].decode()), date.fromisoformat(raw[14:24].decode())
            if not (last < a or b < first):
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{kind} period overlaps {a}..{b}")
        return None

    def _released(self, recipient: str, kind: str, first: date) -> tuple[int, bytes] | None:
        idx = self.ctx.store.get(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode())
        if idx is None:
            return None
        seq = int.from_bytes(idx[:4], "big")
        return seq, self.ctx.store.get(b"S" + idx[:4]) or b""

    def _check_correction(self, client: AID, recipient: str, kind: str, first: date, last: date,
                          req: str) -> bytes | None:
        if kind != "bill":
            raise ISOException(SW.WRONG_DATA, "only bills are corrected")
        self._entitled(recipient, kind)
        done = self._released(recipient, "correction", first)
        if done is not None:
            entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + _u32(done[0])) or b"")
            if entry.request_digest == req and entry.period_to == last.isoformat():
                return self._hand_out(client, done[0], False)
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this period's bill was already corrected once")
        orig = self._released(recipient, kind, first)
        if orig is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no released bill for this period to correct")
        entry = LogEntry.from_bytes(self.ctx.store.get(b"L" + _u32(orig[0])) or b"")
        if entry.period_to != last.isoformat():
            raise ISOException(SW.WRONG_DATA, "a correction names the corrected bill's period")
        try:
            missing = json.loads(orig[1]).get("missing") if orig[1][:1] == b"{" else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            missing = None
        if not missing:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the released bill has no missing days to correct")
        return None

    def _entries(self, recipient: str) -> list[LogEntry]:
        """The log entries of every period release to ``recipient`` (aggregation slots,
        whose index value is the bare sequence number, are skipped)."""
        out = []
        for key in self._stored(b"R" + f"{recipient}/".encode()):
            idx = self.ctx.store.get(key) or b""
            if len(idx) == 24:
                out.append(LogEntry.from_bytes(self.ctx.store.get(b"L" + idx[:4]) or b""))
        return out

    def _charges(self, recipient: str) -> list[tuple[date, date, int]]:
        """The support (first day, last day) and functionals of every release to
        ``recipient`` that counts against its budget, read from the log."""
        return [(*charged_span(e), e.functionals) for e in self._entries(recipient)
                if e.functionals and e.kind not in AGGREGATE_KINDS]

    def _record(self, recipient: str, kind: str, first: date, last: date, req: str, statement: bytes,
                client: AID, functionals: int, samples: int, *, consent: str = "",
                support_from: date | None = None, epsilon_milli: int = 0) -> int:
        pol = self._policy()
        budget = pol.limit("budget", "functionals_per_period")
        # Charged per calendar time over the release's support (policy.log.over_budget):
        # every cell it touches, against every earlier release overlapping that cell.
        over = over_budget(pol.cycle, budget, self._charges(recipient), support_from or first, last, functionals)
        if over is not None:
            raise ISOException(SW_BUDGET, f"{recipient} has {max(budget - over[1], 0)} of {budget} functionals left "
                               f"in the period from {over[0]}, {functionals} asked")
        extra: dict[bytes, bytes] = {}
        if epsilon_milli:  # the per-household DP budget, per calendar time like the functionals
            cap = pol.limit("dp", "epsilon_milli_per_period")
            over = over_budget(pol.cycle, cap, epsilon_charges(self._entries(recipient)), support_from or first, last,
                               epsilon_milli)
            if over is not None:
                raise ISOException(SW_BUDGET, f"{recipient} has {max(cap - over[1], 0)} of {cap} milli-epsilon left "
                                   f"in the period from {over[0]}, {epsilon_milli} asked")
        if kind == "dr":  # the policy's cap on events per period (docs/privacy.md)
            ekey = b"E" + f"{recipient}/{self._cell(first)[0].isoformat()}".encode()
            events = int.from_bytes(self.ctx.store.get(ekey) or bytes(4), "big")
            cap = pol.limit("dr", "events_per_period")
            if events >= cap:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{recipient} already had {cap} demand-response events this period")
            extra[ekey] = _u32(events + 1)
        count, head = self._head()
        entry = LogEntry(count, kind, recipient, first.isoformat(), last.isoformat(), pol.version,
                         client.raw.hex().upper(), req, hashlib.sha256(statement).hexdigest(), functionals, samples,
                         consent, support_from=support_from.isoformat() if support_from else "",
                         epsilon_milli=epsilon_milli)
        raw = entry.canonical_bytes()
        self.ctx.begin_transaction()
        self.ctx.store.put(b"S" + _u32(count), statement)
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"R" + f"{recipient}/{kind}/{first.isoformat()}".encode(),
                           _u32(count) + first.isoformat().encode() + last.isoformat().encode())
        for k, v in extra.items():
            self.ctx.store.put(k, v)
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.store.put(b"O" + client.raw, _u32(count))  # the outbox pointer, same transaction
        self.ctx.commit_transaction()
        return count

    def _hand_out(self, client: AID, seq: int, chunked: bool) -> bytes:
        out = self.ctx.store.get(b"S" + _u32(seq))
        if out is None:
            raise ISOException(SW.UNKNOWN, "release log and statements disagree")
        if not chunked:
            return _issue(self.ctx.runtime, client, out)
        if self.ctx.store.get(b"O" + client.raw) != _u32(seq):
            self.ctx.store.put(b"O" + client.raw, _u32(seq))
        return _issue(self.ctx.runtime, client, _u32(len(out)) + out[:CHUNK])

    def _append_policy_entry(self, policy: ReleasePolicy, signed: SignedPolicy) -> None:
        count, head = self._head()
        entry = LogEntry(count, "policy", "customer", "", "", policy.version, GUARD_AID, signed.signature.hex()[:64],
                         policy.digest().hex(), 0)
        raw = entry.canonical_bytes()
        self.ctx.begin_transaction()
        self.ctx.store.put(b"policy", dump_policy(signed))
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"S" + _u32(count), dump_policy(signed))
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.commit_transaction()

    def _consent_ok(self, recipient: str, consent_id: str, first: date, last: date, resolution: int,
                    today: date | None) -> Consent:
        raw = self.ctx.store.get(b"K" + consent_id.encode())
        if raw is None:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "no such consent")
        if self.ctx.store.get(b"X" + consent_id.encode()) is not None:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent was revoked")
        c = load_consent(raw).consent
        if c.recipient != recipient:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent names another recipient")
        if first < c.period_from or last > c.period_to or last < first:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "outside the consented period")
        if resolution < c.resolution_minutes or resolution % c.resolution_minutes:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "finer than the consented resolution")
        if today is not None and today >= c.expires:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "the consent has expired")
        return c

    def _append_entry(self, entry_of: Any, extra: dict[bytes, bytes], document: bytes) -> None:
        """Append a bookkeeping entry (built by ``entry_of(seq)``), its ``document`` and the
        ``extra`` writes in one transaction."""
        count, head = self._head()
        raw = entry_of(count).canonical_bytes()
        self.ctx.begin_transaction()
        for k, v in extra.items():
            self.ctx.store.put(k, v)
        self.ctx.store.put(b"L" + _u32(count), raw)
        self.ctx.store.put(b"S" + _u32(count), document)
        self.ctx.store.put(b"head", _u32(count + 1) + chain_hash(head, raw))
        self.ctx.commit_transaction()

    @ins(0x50, cla=0x80)
    def add_consent(self, apdu: CommandAPDU) -> None:
        """ADD CONSENT: a consent signed by the customer's key (docs/privacy.md)."""
        customer = self.ctx.store.get(b"customer") or b""
        raw = bytes(apdu.data)
        try:
            c = verify_consent(load_consent(raw), customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not a consent signed by the customer") from None
        if self.ctx.store.get(b"K" + c.consent_id.encode()) is not None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a consent with this id exists")
        pol = self._policy()
        self._append_entry(
            lambda seq: LogEntry(seq, "consent", c.recipient, c.period_from.isoformat(), c.period_to.isoformat(),
                                 pol.version, GUARD_AID, hashlib.sha256(raw).hexdigest(), c.digest().hex(), 0, 0,
                                 c.consent_id),
            {b"K" + c.consent_id.encode(): raw},
            raw,
        )

    @ins(0x52, cla=0x80)
    def revoke_consent(self, apdu: CommandAPDU) -> None:
        """REVOKE CONSENT: a revocation signed by the customer's key; further exports stop."""
        customer = self.ctx.store.get(b"customer") or b""
        raw = bytes(apdu.data)
        try:
            cid = verify_revocation(raw, customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not a revocation signed by the customer") from None
        stored = self.ctx.store.get(b"K" + cid.encode())
        if stored is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such consent")
        if self.ctx.store.get(b"X" + cid.encode()) is not None:
            return  # already revoked
        c = load_consent(stored).consent
        pol = self._policy()
        self._append_entry(
            lambda seq: LogEntry(seq, "revoke", c.recipient, c.period_from.isoformat(), c.period_to.isoformat(),
                                 pol.version, GUARD_AID, hashlib.sha256(raw).hexdigest(), c.digest().hex(), 0, 0, cid),
            {b"X" + cid.encode(): raw},
            raw,
        )

    # -- customer commands ----------------------------------------------------------------
    @ins(0x40, cla=0x80)
    def get_policy(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"policy") or b""

    @ins(0x42, cla=0x80)
    def set_policy(self, apdu: CommandAPDU) -> None:
        customer = self.ctx.store.get(b"customer") or b""
        try:
            signed = load_policy(bytes(apdu.data))
        except PolicyError:
            raise ISOException(SW.WRONG_DATA, "malformed policy or beyond the hard limits") from None
        try:
            policy = verify_policy(signed, customer)
        except PolicyError:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "not signed by the customer's key") from None
        if policy.version <= self._policy().version:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the policy version must increase")
        self._append_policy_entry(policy, signed)

    @ins(0x44, cla=0x80)
    def get_log_head(self, apdu: CommandAPDU) -> bytes:
        count, head = self._head()
        return _u32(count) + head

    def _seq_of(self, apdu: CommandAPDU) -> bytes:
        if len(apdu.data) != 4:
            raise ISOException(SW.WRONG_LENGTH, "takes a u32 sequence number")
        if int.from_bytes(apdu.data, "big") >= self._head()[0]:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such entry")
        return bytes(apdu.data)

    @ins(0x46, cla=0x80)
    def read_log_entry(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"L" + self._seq_of(apdu)) or b""

    @ins(0x48, cla=0x80)
    def get_pinned(self, apdu: CommandAPDU) -> bytes:
        roles = {}
        for key in self._stored(b"pin/"):
            role = key[4:].decode()
            roles[role] = [k.hex() for k in self._keys(role)]
        return json.dumps({"customer": (self.ctx.store.get(b"customer") or b"").hex(), "pinned": roles},
                          sort_keys=True, separators=(",", ":")).encode()

    @ins(0x4A, cla=0x80)
    def get_release(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get(b"S" + self._seq_of(apdu)) or b""


register_applet_class(GUARD_CLASS, PrivacyGuard)


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
