"""The grid operator's side of private verified aggregation (issue 13).

For a feeder's group of hubs and a local day, the grid operator

1. collects each hub's :class:`~meterhub.model.formats.aggregation.MaskedRelease` through its own
   security domain (SCP03), each masked twice: zero-sum pairwise masks and a
   self-mask from a fresh seed whose Shamir shares it sealed to its peers (double
   masking, Bonawitz et al., CCS 2017, §4); then runs the unmasking round: each present
   hub answers the pairwise masks it shares with the members that did not answer and
   its shares of the present members' seeds
   (:class:`~meterhub.model.formats.aggregation.RecoveryRelease`); the grid operator subtracts the
   former and the self-masks it expands from ``t`` shares of each seed
   (:func:`meterhub.model.formats.aggregation.self_mask_threshold`);
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..crypto import ecdsa
from ..crypto.group import G, H, PointDecodeError, Q, msm_encoded
from ..crypto.selfmask import combine_seed, self_masks
from ..model.formats.aggregation import (
    AggregationRequest,
    GroupDefinition,
    GroupMember,
    MaskedRelease,
    PolicyRefusal,
    RecoveryRelease,
    RecoveryRequest,
    self_mask_context,
    self_mask_threshold,
)
from ..model.group_registry import RegistryBlock, RegistryView
from ..model.timebase import day_starts
from .settlement import AppletMailbox, check_batches
from .verifier import DayCommitments, MeterRegistration, Rejected

__all__ = [
    "AGGREGATION_CLASS",
    "FeederDay",
    "make_group",
    "collect_day",
    "verify_feeder_day",
    "demo_grid_key",
    "hub_key",
    "push_group",
    "push_registry",
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


def collect_day(mailboxes: Mapping[str, AppletMailbox | None], group: GroupDefinition, day: date,
                app_aid: str) -> tuple[dict[str, MaskedRelease], dict[str, RecoveryRelease], list[str]]:
    """Step 1: ask every member (``None``: the hub is unreachable), then recover the missing.

    Returns releases, recovery releases and the missing members. When a present hub
    refuses or fails the recovery (its policy refuses one that would leave fewer than the
    minimum present), the recovery releases come back empty: the day has no sum.
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
    for mid, rel in list(releases.items()):
        if len(rel.shares) != len(ids) - 1:  # its seed shares cannot be forwarded: as if it had not answered
            del releases[mid]
    missing = sorted(m for m in ids if m not in releases)
    recoveries: dict[str, RecoveryRelease] = {}
    present = sorted(releases)
    if len(present) - 1 < self_mask_threshold(len(ids)):
        return releases, {}, missing  # too few holders of each seed: no sum for the day
    # the unmasking round (Bonawitz et al., CCS 2017, §4): each present hub gets, for
    # every other present member, the sealed share of that member's seed addressed to
    # it, and for the missing members a request for the pairwise masks
    for mid in present:
        mb = mailboxes.get(mid)
        fwd = []
        for p in present:
            if p != mid:
                others = [i for i in ids if i != p]
                fwd.append((p, releases[p].shares[others.index(mid)]))
        rreq = b"\x11" + RecoveryRequest(group.group_id, day, tuple(missing), tuple(fwd)).to_bytes()
        try:
            if mb is None:
                raise ValueError("unreachable")
            recoveries[mid] = RecoveryRelease.from_bytes(mb.send(rreq, f"unmasking of {mid}"))
        except (HubRefused, ValueError):
            # A hub that fails the unmasking round cannot be unmasked, and its peers have
            # answered their one round for this day: the day stays without a sum.
            return releases, {}, missing
    return releases, recoveries, missing


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
        if [p for p, _, _ in rec.shares] != [p for p in present if p != mid]:
            raise Rejected(f"{mid}: unmasking answer does not give a share of every other present member's seed")
        if any(i != 1 + ids.index(mid) for _, i, _ in rec.shares):
            raise Rejected(f"{mid}: unmasking answer gives shares at another member's index")
        if len(rec.values) != n_hours:
            raise Rejected(f"{mid}: unmasking answer has {len(rec.values)} intervals")
    assert n_hours is not None
    s = [0] * n_hours
    r = [0] * n_hours
    for mid in present:
        for h, (a, b2) in enumerate(releases[mid].values):
            s[h] += a
            r[h] += b2
        for h, (a, b2) in enumerate(recoveries[mid].values):
            s[h] -= a
            r[h] -= b2
        # the member's self-mask, from t shares of its seed held by the other present members
        held = [(i, sh) for other in present if other != mid for p, i, sh in recoveries[other].shares if p == mid]
        if len(held) < t:
            raise Rejected(f"{mid}: {len(held)} shares of its self-mask seed, the threshold is {t}")
        own = self_masks(combine_seed(held[:t]), self_mask_context(group.group_id, day, n_hours, mid), 2 * n_hours)
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
    publishes a block its hubs refuse) and signs it."""

    def __init__(self, feeder_id: str, key: ecdsa.SigningKey) -> None:
        self.feeder_id, self._key = feeder_id, key
        self.blocks: list[RegistryBlock] = []
        self.view = RegistryView()

    @classmethod
    def from_blocks(cls, feeder_id: str, key: ecdsa.SigningKey, blocks: Sequence[RegistryBlock]) -> GroupRegistry:
        """A registry kept from an earlier run, checked block by block like a hub does."""
        reg = cls(feeder_id, key)
        for b in blocks:
            if b.feeder_id != feeder_id:
                raise Rejected(f"registry block {b.version} is of feeder {b.feeder_id}")
            try:
                reg.view.check_extension(b, [ecdsa.public_bytes(key)], lambda d: False)
            except (PolicyRefusal, PermissionError) as exc:
                raise Rejected(f"registry of {feeder_id}: {exc}") from None
            reg.blocks.append(b)
            reg.view = reg.view.extended(b)
        return reg

    def next_block(self, groups: Sequence[GroupDefinition]) -> RegistryBlock:
        """The next block with ``groups``, signed, unchecked and not appended (what a
        hostile operator would send, for tests)."""
        return RegistryBlock(self.feeder_id, self.view.version + 1, self.view.head, tuple(groups)).signed(self._key)

    def publish(self, groups: Sequence[GroupDefinition], released: Callable[[date], bool] = lambda d: False
                ) -> list[RegistryBlock]:
        """Append ``groups`` in one block, or several where one would not fit a STORE DATA
        message (``MAX_BLOCK_BYTES``); :class:`Rejected` if the hubs would refuse the
        registry after them (``released``: days the hubs released already), and then
        nothing is appended."""
        chunks: list[list[GroupDefinition]] = [[]]
        size = 0
        for g in groups:
            n = len(g.to_bytes()) + 2
            if chunks[-1] and size + n > MAX_BLOCK_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(g)
            size += n
        view, blocks = self.view, []
        key = [ecdsa.public_bytes(self._key)]
        for chunk in chunks:
            block = RegistryBlock(self.feeder_id, view.version + 1, view.head, tuple(chunk)).signed(self._key)
            try:
                view.check_extension(block, key, released)
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


def push_group(mailbox: AppletMailbox, group: GroupDefinition) -> None:
    """Send a signed group definition; the applet admits it under its policy or refuses
    (:class:`meterhub.utility.settlement.HubRefused`)."""
    mailbox.send(b"\x01" + group.to_bytes(), f"group {group.group_id}")
