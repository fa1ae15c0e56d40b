"""The grid operator's side of private verified aggregation (issue 13).

For a feeder's group of hubs and a local day, the grid operator

1. collects each hub's :class:`~meterhub.model.formats.aggregation.MaskedRelease` through its own
   security domain (SCP03), each masked twice: zero-sum pairwise masks and a fresh
   self-mask vector Shamir-shared over Z_Q among the group (double masking, Bonawitz
   et al., CCS 2017, §4; :mod:`meterhub.crypto.selfmask`); then runs the unmasking
   round: each present hub answers the pairwise masks it shares with the members that
   did not answer and ONE vector, the sum of its shares of the present members'
   self-masks (:class:`~meterhub.model.formats.aggregation.RecoveryRelease`); the grid operator
   subtracts the former and the present members' self-mask sum, which it interpolates
   at 0 from ``t`` answers (:func:`meterhub.model.formats.aggregation.self_mask_threshold`; the other
   answers must lie on the same polynomial);
2. checks each present member's signed batch for the day (signature, chain,
   completeness: :func:`meterhub.utility.settlement.check_batches`) and that the
   release names the meter's first index and the reviewed applet's code hash;
3. unmasks the hourly totals ``S_h = sum masked m - sum recovery terms`` and ``R_h``
   likewise (mod ``Q``), and checks them against the product of the present members'
   commitments of each hour: ``sum_i sum_{j in h} C_ij == S_h*G + R_h*H``, all hours
   at once with fresh random 128-bit weights ``w_h`` (small-exponent batch
   verification, Bellare, Garay, Rabin 1998): ``sum_h w_h sum C == (sum w_h S_h)*G +
   (sum w_h R_h)*H``, one multi-scalar multiplication over ``n x 96`` points with 24
   distinct scalars. Only on failure does it check hour by hour to say which.

A hub that under-reports (a wrong reading or blinding sum, or masks that do not
cancel) fails step 3: the totals are bound to the meters' commitments. The day is
*complete* when every member answered, otherwise *incomplete*, with the sum of the
present members only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..crypto import ecdsa
from ..crypto.group import G, H, PointDecodeError, Q, msm_encoded
from ..crypto.selfmask import combine, consistent, derived_holders
from ..model.formats.aggregation import (
    AggregationRequest,
    GroupDefinition,
    GroupMember,
    MaskedRelease,
    PolicyRefusal,
    RecoveryRelease,
    RecoveryRequest,
    self_mask_threshold,
)
from ..model.formats.membership import MemberCertificate
from ..model.group_registry import HeadTags, RegistryBlock, RegistryView, certificate_problems
from ..model.timebase import day_starts
from .settlement import AppletMailbox, check_batches
from .verifier import DayCommitments, MeterRegistration, Rejected

__all__ = [
    "AGGREGATION_CLASS",
    "FeederDay",
    "make_group",
    "collect_day",
    "collect_group_day",
    "GroupDayCollection",
    "recovery_missing",
    "verify_feeder_day",
    "demo_grid_key",
    "hub_key",
    "push_group",
    "push_registry",
    "relay_head_tags",
    "registry_head",
    "GroupRegistry",
    "SessionMailbox",
]

AGGREGATION_CLASS = "meterhub.applets.aggregation/1"
MAX_SUM_WH = 1 << 40  # an hour of a feeder is far below 1 TWh; larger means a wrapped negative


@dataclass
class FeederDay:
    """A verified feeder-day: the hourly sums of the present members."""

    group_id: str
    day: date
    hours: list[int]  # S_h, Wh
    present: list[str]
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def make_group(group_id: str, feeder_id: str, keys: Mapping[str, bytes], valid_from: date, valid_to: date,
               key: ecdsa.SigningKey, *, interval_minutes: int = 60) -> GroupDefinition:
    """A group definition over ``keys`` (meter id -> the hub's X25519 key), signed."""
    members = tuple(GroupMember(mid, keys[mid]) for mid in sorted(keys))
    return GroupDefinition(group_id, feeder_id, interval_minutes, valid_from, valid_to, members).signed(key)


def recovery_missing(view: RegistryView, group: GroupDefinition, day: date, dropped: Sequence[str],
                     answered: Mapping[str, frozenset[str]] | None = None) -> tuple[str, ...] | None:
    """The members to name missing in a recovery of ``group`` on ``day`` when ``dropped``
    did not answer: ``dropped`` itself if the hubs' recovery rule
    (:func:`meterhub.model.group_registry.recovery_problems`, over the day's groups in
    ``view`` and the recoveries already run that day, ``answered``) admits the present
    set, else ``dropped`` grown by the smallest groups of the day inside ``group`` that
    hold a dropped member (the present set is then the rest of a nested partition, in
    the registry's span), else ``None``: the day has no sum. The present set must also
    hold ``t + 1`` members (:func:`meterhub.model.formats.aggregation.self_mask_threshold`)."""
    ids = group.meter_ids
    t = self_mask_threshold(len(ids))
    inner = sorted((g.meter_ids for g in view.day_groups(day) if g.meter_ids < ids), key=len)
    grown = set(dropped)
    for d in dropped:
        grown |= next((s for s in inner if d in s), frozenset())
    for missing in (frozenset(dropped), frozenset(grown)):
        present = ids - missing
        if len(present) - 1 >= t and not view.recovery_problems(group.group_id, day, present, answered or {}):
            return tuple(sorted(missing))
    return None


@dataclass
class GroupDayCollection:
    """What one group-day's collection gave the grid operator: the releases and
    recovery releases to verify, the members the unmasking round named missing, and the
    members that did not answer one of its requests (the release, or the unmasking
    round; a release whose sealed shares cannot be forwarded counts as no answer).
    ``unanswered`` is what the withholding alarm counts
    (:class:`meterhub.utility.theft.WithholdingDetector`): members named missing only
    because the recovery rule grew the missing set answered, and are not counted."""

    releases: dict[str, MaskedRelease]
    recoveries: dict[str, RecoveryRelease]
    missing: list[str]
    unanswered: list[str]

    @property
    def has_sum(self) -> bool:
        """Whether the day has a sum to verify: the unmasking round ran to its end (every
        present member answers it, a complete day included)."""
        return bool(self.recoveries)


def collect_day(mailboxes: Mapping[str, AppletMailbox | None], group: GroupDefinition, day: date,
                app_aid: str, *, registry: RegistryView | None = None,
                answered: Mapping[str, frozenset[str]] | None = None
                ) -> tuple[dict[str, MaskedRelease], dict[str, RecoveryRelease], list[str]]:
    """Step 1: ask every member (``None``: the hub is unreachable), then recover the missing.

    Returns releases, recovery releases and the missing members
    (:func:`collect_group_day`, which also says who did not answer)."""
    c = collect_group_day(mailboxes, group, day, app_aid, registry=registry, answered=answered)
    return c.releases, c.recoveries, c.missing


def collect_group_day(mailboxes: Mapping[str, AppletMailbox | None], group: GroupDefinition, day: date,
                      app_aid: str, *, registry: RegistryView | None = None,
                      answered: Mapping[str, frozenset[str]] | None = None) -> GroupDayCollection:
    """Step 1 of the module docstring, with the members that did not answer.

    With the feeder's
    ``registry`` the missing set is chosen by :func:`recovery_missing` first (members
    that answered but are named missing lose their release: the present set's sum is all
    the day gives); when none is admitted, or when a present hub refuses or fails the
    recovery (its policy refuses a present set outside the registry's span for the day,
    or one that would leave fewer than the minimum present), the recovery releases come
    back empty: the day has no sum, and it is reported, not retried.
    """
    from .settlement import HubRefused

    releases: dict[str, MaskedRelease] = {}
    req = AggregationRequest(group.group_id, day).to_bytes()
    for m in group.members:
        mb = mailboxes.get(m.meter_id)
        if mb is None:
            continue
        try:
            releases[m.meter_id] = MaskedRelease.from_bytes(mb.send(b"\x10" + req, f"aggregate of {m.meter_id}"))
        except (HubRefused, ValueError):
            continue
    ids = [m.meter_id for m in group.members]
    t = self_mask_threshold(len(ids))
    for mid, rel in list(releases.items()):
        sent = [ids[x - 1] for x in _sent_holders(len(ids), ids.index(mid) + 1, t)]
        if [i for i, _ in rel.shares] != sent:  # its shares cannot be forwarded: as if it had not answered
            del releases[mid]
    missing = sorted(m for m in ids if m not in releases)
    silent = list(missing)
    if missing and registry is not None:
        chosen = recovery_missing(registry, group, day, missing, answered)
        if chosen is None:
            return GroupDayCollection(releases, {}, missing, silent)  # no admissible present set: no sum
        missing = list(chosen)
        releases = {m: r for m, r in releases.items() if m not in chosen}
    recoveries: dict[str, RecoveryRelease] = {}
    present = sorted(releases)
    if len(present) < t:
        return GroupDayCollection(releases, {}, missing, silent)  # fewer answers than the threshold: no sum
    # the unmasking round (Bonawitz et al., CCS 2017, §4): each present hub gets the
    # present members, each with the sealed share of its self-mask addressed to the hub
    # (empty where the hub derives it), and the missing members, whose pairwise masks it
    # answers
    sealed = {mid: dict(releases[mid].shares) for mid in present}
    for mid in present:
        mb = mailboxes.get(mid)
        fwd = tuple((p, sealed[p].get(mid, b"")) for p in present if p != mid)
        rreq = b"\x11" + RecoveryRequest(group.group_id, day, tuple(missing), fwd).to_bytes()
        try:
            if mb is None:
                raise ValueError("unreachable")
            recoveries[mid] = RecoveryRelease.from_bytes(mb.send(rreq, f"unmasking of {mid}"))
        except (HubRefused, ValueError):
            # A hub that fails the unmasking round cannot be unmasked, and its peers have
            # answered their one round for this day: the day stays without a sum.
            return GroupDayCollection(releases, {}, missing, sorted({*silent, mid}))
    return GroupDayCollection(releases, recoveries, missing, silent)


def _sent_holders(members: int, dealer: int, threshold: int) -> list[int]:
    """The indices whose shares of ``dealer``'s self-mask travel sealed in its release."""
    derived = set(derived_holders(members, dealer, threshold))
    return [x for x in range(1, members + 1) if x != dealer and x not in derived]


def verify_feeder_day(
    group: GroupDefinition,
    day: date,
    releases: Mapping[str, MaskedRelease],
    recoveries: Mapping[str, RecoveryRelease],
    registrations: Mapping[str, MeterRegistration],
    commitments: Mapping[str, Sequence[DayCommitments]],
    *,
    code_hash: bytes | None = None,
) -> FeederDay:
    """Steps 2 and 3 of the module docstring. Raises :class:`Rejected` with the reason."""
    present = sorted(releases)
    missing = sorted(group.meter_ids - set(present))
    if set(present) - group.meter_ids:
        raise Rejected(f"release from {sorted(set(present) - group.meter_ids)[0]}, not a member of {group.group_id}")
    if not present:
        raise Rejected(f"no member of {group.group_id} answered for {day}")
    if set(recoveries) != set(present):
        raise Rejected(f"{len(missing)} member(s) missing and unmasking answers from {len(recoveries)} of {len(present)}")
    ids = [m.meter_id for m in group.members]
    t = self_mask_threshold(len(ids))
    n_hours: int | None = None
    blobs: list[bytes] = []
    widths: set[int] = set()
    per_hour: list[int] = []
    for mid in present:
        rel = releases[mid]
        if rel.group_id != group.group_id or rel.day != day or rel.meter_id != mid:
            raise Rejected(f"{mid}: release is for {rel.group_id}/{rel.meter_id} on {rel.day}")
        if code_hash is not None and rel.code_hash != code_hash:
            raise Rejected(f"{mid}: release is not from the reviewed aggregation applet (code hash)")
        reg = registrations.get(mid)
        days = commitments.get(mid, ())
        if reg is None or len(days) != 1:
            raise Rejected(f"{mid}: no registration or no signed batch for {day}")
        b = days[0].batch.batch
        check_batches(mid, day, day, b.first_index, b.count, 0, reg, days)
        if rel.first_index != b.first_index:
            raise Rejected(f"{mid}: release starts at reading {rel.first_index}, the batch at {b.first_index}")
        if group.interval_minutes % reg.interval_minutes:
            raise Rejected(f"{mid}: {reg.interval_minutes}-minute readings do not fill the group's intervals")
        g = group.interval_minutes // reg.interval_minutes
        count = len(day_starts(day, reg.tz, reg.interval_minutes))
        if count % g or count // g != len(rel.values):
            raise Rejected(f"{mid}: {len(rel.values)} intervals released, the day has {count // g}")
        if n_hours is None:
            n_hours = len(rel.values)
        elif n_hours != len(rel.values):
            raise Rejected(f"{mid}: members' days have different numbers of intervals")
        dc = days[0]
        if dc.c65 is not None:
            blobs.append(dc.c65)
            widths.add(65)
        else:
            blobs.append(dc.c33)
            widths.add(33)
        per_hour.append(g)
        rec = recoveries[mid]
        if (rec.group_id, rec.meter_id, rec.day, rec.missing) != (group.group_id, mid, day, tuple(missing)):
            raise Rejected(f"{mid}: unmasking answer does not match the round")
        if list(rec.present) != [p for p in present if p != mid]:
            raise Rejected(f"{mid}: unmasking answer sums the self-mask shares of another set of members")
        if len(rec.values) != n_hours:
            raise Rejected(f"{mid}: unmasking answer has {len(rec.values)} intervals")
        if [i for i, _ in rel.shares] != [ids[x - 1] for x in _sent_holders(len(ids), ids.index(mid) + 1, t)]:
            raise Rejected(f"{mid}: release does not carry the sealed shares of the members that need them")
    assert n_hours is not None
    if len(present) < t:
        raise Rejected(f"{len(present)} members answered, the self-mask threshold is {t}")
    s = [0] * n_hours
    r = [0] * n_hours
    for mid in present:
        for h, (a, b2) in enumerate(releases[mid].values):
            s[h] += a
            r[h] += b2
        for h, (a, b2) in enumerate(recoveries[mid].values):
            s[h] -= a
            r[h] -= b2
    # the present members' self-mask sum: each answer is F(x) = sum_{i present} f_i(x) at
    # its member index x; F(0) by Lagrange from t of them (Shamir 1979), the others
    # checked to lie on the same polynomial so that no answer is silently ignored
    points = {ids.index(mid) + 1: [y for pair in recoveries[mid].share for y in pair] for mid in present}
    off = consistent(points, t, [secrets.randbits(128) for _ in range(2 * n_hours)])
    if off:
        raise Rejected(f"the unmasking answers' self-mask share sums do not lie on one polynomial of degree {t - 1} "
                       f"(first disagreeing: {ids[off[0] - 1]}; a wrong unmasking answer)")
    own = combine(dict(list(points.items())[:t]))
    for h in range(n_hours):
        s[h] -= own[2 * h]
        r[h] -= own[2 * h + 1]
    s = [x % Q for x in s]
    r = [x % Q for x in r]
    for h, x in enumerate(s):
        if x >= MAX_SUM_WH:
            raise Rejected(f"hour {h}: unmasked sum out of range (masks do not cancel or a release is wrong)")
    if len(widths) == 1:
        width = widths.pop()
        blob = b"".join(blobs)
    else:  # mixed encodings: re-encode compressed
        width, blob = 33, b"".join(commitments[mid][0].c33 for mid in present)
    weights = [secrets.randbits(128) | 1 for _ in range(n_hours)]
    scalars = [weights[j // g] for g in per_hour for j in range(g * n_hours)]
    try:
        lhs = msm_encoded(scalars, blob, width)
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None
    rhs = G * (sum(w * x for w, x in zip(weights, s, strict=True)) % Q) + H * (
        sum(w * x for w, x in zip(weights, r, strict=True)) % Q
    )
    if lhs != rhs:
        bad = _first_bad_hour(blob, width, per_hour, n_hours, s, r)
        raise Rejected(
            f"hour {bad}: the product of the commitments is not S*G + R*H "
            "(a hub's reading or blinding sum does not match its meter's commitments)"
        )
    return FeederDay(group.group_id, day, s, present, missing)


def _first_bad_hour(blob: bytes, width: int, per_hour: list[int], n_hours: int, s: list[int], r: list[int]) -> int:
    for h in range(n_hours):
        scalars = [1 if j // g == h else 0 for g in per_hour for j in range(g * n_hours)]
        if msm_encoded(scalars, blob, width) != G * s[h] + H * r[h]:
            return h
    return -1


class SessionMailbox(AppletMailbox):
    """An :class:`AppletMailbox` that sends INSTALL [for personalization] once per SCP03
    session: the security domain keeps the target application until the session ends
    (GPC 2.3.1 §11.5.2.3), so the releases of a whole period cost one STORE DATA each.
    After a refusal the next message personalizes again."""

    def __init__(self, tsm: Any, app_aid: str) -> None:
        super().__init__(tsm, app_aid)
        self._personalized = False

    def send(self, message: bytes, what: str, *, personalize: bool = True) -> bytes:
        from .settlement import HubRefused

        try:
            out = super().send(message, what, personalize=personalize and not self._personalized)
        except HubRefused:
            self._personalized = False
            raise
        self._personalized = True
        return out


def demo_grid_key() -> ecdsa.SigningKey:
    """The demo grid operator's group-signing key (:func:`meterhub.model.formats.aggregation.demo_group_key`),
    PUBLICLY KNOWN. Demo and tests only."""
    from ..model.formats.aggregation import demo_group_key

    return demo_group_key()


def hub_key(mailbox: AppletMailbox) -> bytes:
    """The aggregation applet's X25519 public key, read through the grid operator's SD."""
    key = mailbox.send(b"\x02", "aggregation key")
    if len(key) != 32:
        raise Rejected("the aggregation applet answered a key of the wrong length")
    return key


MAX_BLOCK_BYTES = 40_000  # a STORE DATA message is at most 256 blocks of the mailbox's block size


class GroupRegistry:
    """The grid operator's group registry of one feeder (:mod:`meterhub.model.group_registry`):
    the chain of signed blocks every hub of the feeder holds. :meth:`publish` checks the
    registry after the block with the hubs' own rules first (an honest operator never
    publishes a block its hubs refuse) and signs it.

    Member certificates (docs/fraud.md, phantom members): the hubs accept a block only
    if every member of its groups is certified by the certifier they pinned, which the
    grid operator is not. The operator collects the certificates (:meth:`add_certificates`,
    or asks the certifier's ``directory`` for a member's) and each block carries those of
    its groups' members;
    with ``certifier`` (the certifier's public key) :meth:`publish` checks them as the
    hubs will."""

    def __init__(self, feeder_id: str, key: ecdsa.SigningKey, *,
                 directory: Callable[[str, bytes], MemberCertificate | None] | None = None,
                 certifier: ecdsa.VerifyingKey | None = None) -> None:
        self.feeder_id, self._key, self._certifier = feeder_id, key, certifier
        self._directory = directory  # the certifier's: (meter id, hub key) -> its certificate, if any
        self.blocks: list[RegistryBlock] = []
        self.view = RegistryView()
        self.certificates: dict[tuple[str, bytes], MemberCertificate] = {}

    def add_certificates(self, certificates: Iterable[MemberCertificate]) -> None:
        """Keep the certifier's certificates for the blocks to come (the latest per
        meter id and hub key)."""
        for c in certificates:
            self.certificates[(c.meter_id, bytes(c.hub_key))] = c

    def _certificates_of(self, groups: Sequence[GroupDefinition]) -> tuple[MemberCertificate, ...]:
        """The certificates this registry holds for the members of ``groups``, each once,
        sorted by meter id and key (a block's certificates are canonical)."""
        wanted = sorted({(m.meter_id, bytes(m.hub_key)) for g in groups for m in g.members})
        if self._directory is not None:
            for mid, key in wanted:
                if (mid, key) not in self.certificates:
                    found = self._directory(mid, key)
                    if found is not None:
                        self.add_certificates([found])
        return tuple(self.certificates[k] for k in wanted if k in self.certificates)

    def _block(self, view: RegistryView, groups: Sequence[GroupDefinition]) -> RegistryBlock:
        return RegistryBlock(self.feeder_id, view.version + 1, view.head, tuple(groups),
                             certificates=self._certificates_of(groups)).signed(self._key)

    @classmethod
    def from_blocks(cls, feeder_id: str, key: ecdsa.SigningKey, blocks: Sequence[RegistryBlock], *,
                    certifier: ecdsa.VerifyingKey | None = None) -> GroupRegistry:
        """A registry kept from an earlier run, checked block by block like a hub does
        (with ``certifier``, the member certificates too), keeping their certificates."""
        reg = cls(feeder_id, key, certifier=certifier)
        for b in blocks:
            if b.feeder_id != feeder_id:
                raise Rejected(f"registry block {b.version} is of feeder {b.feeder_id}")
            try:
                reg.view.check_extension(b, [ecdsa.public_bytes(key)], (),
                                         certifier_keys=None if certifier is None else [ecdsa.public_bytes(certifier)])
            except (PolicyRefusal, PermissionError) as exc:
                raise Rejected(f"registry of {feeder_id}: {exc}") from None
            reg.add_certificates(b.certificates)
            reg.blocks.append(b)
            reg.view = reg.view.extended(b)
        return reg

    def next_block(self, groups: Sequence[GroupDefinition]) -> RegistryBlock:
        """The next block with ``groups``, signed, unchecked and not appended (what a
        hostile operator would send, for tests)."""
        return self._block(self.view, groups)

    def publish(self, groups: Sequence[GroupDefinition], released: Callable[[date], bool] | Collection[date] = ()
                ) -> list[RegistryBlock]:
        """Append ``groups`` in one block, or several where one would not fit a STORE DATA
        message (``MAX_BLOCK_BYTES``); :class:`Rejected` if the hubs would refuse the
        registry after them (``released``: days the hubs released already), and then
        nothing is appended."""
        chunks: list[list[GroupDefinition]] = [[]]
        size = 0
        for g in groups:
            n = len(g.to_bytes()) + 2 + sum(len(c.to_bytes()) + 2 for c in self._certificates_of([g]))
            if chunks[-1] and size + n > MAX_BLOCK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(g)
            size += n
        view, blocks = self.view, []
        key = [ecdsa.public_bytes(self._key)]
        for chunk in chunks:
            block = self._block(view, chunk)
            try:
                view.check_extension(block, key, released)
                if self._certifier is not None:
                    uncertified = certificate_problems(block, [self._certifier])
                    if uncertified:
                        raise PermissionError(uncertified[0])
            except (PolicyRefusal, PermissionError) as exc:
                raise Rejected(f"registry of {self.feeder_id}: {exc}") from None
            view = view.extended(block)
            blocks.append(block)
        self.blocks += blocks
        self.view = view
        return blocks

    def group(self, group_id: str) -> GroupDefinition:
        return self.view.groups[group_id]


def registry_head(mailbox: AppletMailbox) -> tuple[int, bytes]:
    """How many blocks of the registry a hub holds, and its chain value."""
    raw = mailbox.send(b"\x04", "registry head")
    if len(raw) != 36:
        raise Rejected("the aggregation applet answered a registry head of the wrong length")
    return int.from_bytes(raw[:4], "big"), raw[4:]


def push_registry(mailbox: AppletMailbox, registry: GroupRegistry | Sequence[RegistryBlock]) -> None:
    """Send a hub the blocks it does not hold yet (in order); the hub refuses one that
    does not extend its chain or that its rules refuse (``HubRefused``)."""
    blocks = registry.blocks if isinstance(registry, GroupRegistry) else list(registry)
    held, head = registry_head(mailbox)
    if held and (held > len(blocks) or blocks[held - 1].chain_value() != head):
        raise Rejected(f"the hub holds another registry (block {held - 1} differs)")
    for b in blocks[held:]:
        mailbox.send(b"\x03" + b.to_bytes(), f"registry block {b.version}")


def relay_head_tags(mailboxes: Mapping[str, AppletMailbox | None]) -> list[str]:
    """Relay the hubs' tags over their registry heads (applet ``05``) to their co-members
    (``06``): after a new block, a hub that released under an older head releases again
    only once every co-member tagged the new one (docs/fraud.md, forks). Returns the
    hubs that got every tag they need from the hubs reached (``None``: unreachable)."""
    got = {mid: HeadTags.from_bytes(mb.send(b"\x05", f"registry head tags of {mid}"))
           for mid, mb in mailboxes.items() if mb is not None}
    done = []
    for mid, mine in got.items():
        tags = tuple(sorted({(sender, tag) for sender, theirs in got.items()
                             if sender != mid and (theirs.feeder_id, theirs.version, theirs.head)
                             == (mine.feeder_id, mine.version, mine.head)
                             for peer, tag in theirs.tags if peer == mid}))
        box = mailboxes[mid]
        assert box is not None
        box.send(b"\x06" + HeadTags(mine.feeder_id, mine.version, mine.head, mid, tags).to_bytes(),
                 f"co-members' registry head tags for {mid}")
        if {p for p, _ in tags} >= {p for p, _ in mine.tags}:
            done.append(mid)
    return sorted(done)


def push_group(mailbox: AppletMailbox, group: GroupDefinition) -> None:
    """Send a signed group definition; the applet admits it under its policy or refuses
    (:class:`meterhub.utility.settlement.HubRefused`)."""
    mailbox.send(b"\x01" + group.to_bytes(), f"group {group.group_id}")
