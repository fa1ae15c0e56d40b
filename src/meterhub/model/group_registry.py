"""The group registry: every aggregation group a grid operator publishes, signed and
hash-chained, which every hub checks as a whole before it releases (docs/fraud.md).

Why: each hub's own rules (:class:`meterhub.model.formats.aggregation.GroupPolicy`) only see the
groups the hub is a member of. Four groups ``G1 = {v, a1..a4}``, ``G2 = {a1..a4,
p1..p5}``, ``G3 = {p1..p5, q1..q5}``, ``G4 = {q1..q5}`` pass at every hub, and ``G1 -
G2 + G3 - G4`` is household ``v`` alone. A sum over a group is the inner product of
the readings with the group's indicator vector, so what the grid operator can compute
from a set of group sums of one interval is exactly their rational span: household
``w`` is isolated iff its indicator ``e_w`` lies in the span of the groups' indicator
vectors. The registry makes the whole set visible to every hub:

* a **registry block** (``MHGR 01``) is signed by the grid operator's group-signing key
  (the one the customer pinned) and carries its feeder, a version (0, 1, 2, ...), the
  previous block's chain value and the signed group definitions it adds; blocks only
  add. A hub holds one chain per recipient and accepts a block only if it extends the
  chain it holds (version and previous value), for the same feeder;
* a block carries a **member certificate** (:class:`meterhub.model.formats.membership.MemberCertificate`)
  for every member of its groups, from the member certifier the customer pinned (not
  the grid operator), binding the member's meter id to its hub key; a hub that pinned
  one refuses a block with an uncertified member (:func:`certificate_problems`), so the
  operator cannot fill a group with keys it holds (phantom members);
* a hub refuses a block after which the registry, **all groups of all intervals
  together**, has a household in its span or two groups that differ by fewer than the
  minimum (time-agnostic, like the hub's pairwise rule: a household's days are alike,
  so sums of different days can be differenced as well);
* **no retroactive groups**: once a hub has released a day, a block may add a group
  valid on that day only if the group lies in that day's span already (it reveals
  nothing new: the same members under a new id, or a union of disjoint groups);
* every masked release and recovery of a day binds the day's span digest
  (:func:`span_digest` of the groups valid that day) and the registry head the hub
  released the day under into its zero-sum masks
  (:func:`meterhub.model.formats.aggregation.mask_context`). Two members of a group with different
  views of the day (the grid operator showed them different chains: equivocation)
  derive different pair values, the masks do not cancel and the sum stays hidden;
* **head tags** (:class:`HeadTags`): a hub that released under one head releases under
  another only once every co-member tagged that head (a MAC under the pair's X25519
  secret the operator relays but cannot make), so a registry forked after a release
  cannot give two sets of hubs branches that do not extend each other;
* a **recovery** (the unmasking round with members missing) releases the sum of the
  present members, answered only where :func:`recovery_problems` admits it: the group
  splits the day's span, and the present set with the day's groups and the hub's own
  recoveries of the day passes :func:`set_problems`.

Why this closes the chain for a day ``d`` even against equivocation: after its first
release of ``d`` a hub's span of ``d`` never changes (no retroactive groups). A group's
sum is only learnt when all its present members used the same span, so every hub of a
connected set of released groups used one span ``V``, and each released group is in
its members' chains, hence in ``V``. If those sums isolated ``w``, ``e_w`` would be in
``V``, which every hub refused when it accepted its chain.

The span test is exact: Gauss-Jordan elimination over the integers (fraction-free, each
row divided by its content), which gives the reduced row echelon form over Q up to a
positive factor per row. ``e_w`` is in the span iff a reduced row is ``e_w`` itself;
a reduced row with fewer than the minimum households is a sum of fewer than the minimum
(or a small difference) that the grid operator could compute, refused as well, and so
is a combination of two reduced rows with fewer (:func:`_two_row_combinations`). The
single-household and two-household tests are complete; for 3 or 4 households the test
is sound but not complete (a combination of 3 or 4 reduced rows is not searched).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from math import gcd

from ..crypto import ecdsa
from .errors import FormatError
from .formats.aggregation import (
    FIXED_INTERVAL_MINUTES,
    MIN_GROUP_SIZE,
    GroupDefinition,
    PolicyRefusal,
    _Reader,
    _str8,
)
from .formats.membership import MemberCertificate

__all__ = [
    "MAX_REGISTRY_GROUPS",
    "MAX_REGISTRY_MEMBERS",
    "RegistryFull",
    "REGISTRY_DST",
    "SPAN_DST",
    "RegistryBlock",
    "RegistryView",
    "reduced_rows",
    "isolated_households",
    "registry_problems",
    "recovery_problems",
    "set_problems",
    "span_digest",
    "day_mask_digest",
    "HEAD_DST",
    "HeadTags",
    "head_message",
    "certificate_problems",
]

REGISTRY_DST = b"meterhub/v1/aggregation-group-registry\x00"
HEAD_DST = b"meterhub/v1/aggregation-registry-head\x00"
_HEAD_MAGIC = b"MHGH\x01"
SPAN_DST = b"meterhub/v1/aggregation-day-span\x00"
SPAN_HEAD_DST = b"meterhub/v1/aggregation-day-span-under-head\x00"
_MAGIC = b"MHGR\x01"
_MAGIC_CERTIFIED = b"MHGR\x02"  # version 2: the block carries member certificates
MAX_BLOCK_GROUPS = 256
MAX_BLOCK_CERTIFICATES = 4096
#: The most distinct members and groups a hub's registry of one recipient holds
#: (docs/fraud.md, "Registry bounds"). A low-voltage feeder serves 5-60 customers; 256
#: leaves room for reconfigurations and meter exchanges, and 1,024 groups for years of
#: periods with their cable segments (about 25 per period for a feeder of 60). The
#: span test costs the card about ``groups x members x rank``; within these bounds a
#: block costs seconds, not the minute and more of 256 groups over 1,000 certified meters
#: of the service area (red team round 4).
MAX_REGISTRY_MEMBERS = 256
MAX_REGISTRY_GROUPS = 1024


class RegistryFull(PolicyRefusal):
    """The registry after a block would exceed :data:`MAX_REGISTRY_MEMBERS` or
    :data:`MAX_REGISTRY_GROUPS` (the card answers ``6A84``, not enough memory space)."""
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class RegistryBlock:
    """One block of a feeder's group registry, signed by the group-signing key.

    ``MHGR 01 || str8 feeder id || u32 version || 32-byte previous chain value (zero for
    version 0) || u16 n || n x (u16 length || signed group definition) || 64-byte ECDSA
    P-256 signature (r || s)`` over ``REGISTRY_DST || everything before it``. The chain
    value of a block is ``SHA-256(REGISTRY_DST || "chain" || body)`` (the signature is
    left out: ECDSA signatures are malleable).

    ``MHGR 02`` is the same with ``u16 c || c x (u16 length || member certificate)``
    (:class:`meterhub.model.formats.membership.MemberCertificate`) after the groups: the
    certifier's binding of each member's meter id to its hub key, which a hub that
    pinned a member certifier requires for every member of every group of the block
    (docs/fraud.md, phantom members). A block without certificates is encoded ``01``.
    """

    feeder_id: str
    version: int
    prev: bytes
    groups: tuple[GroupDefinition, ...]
    signature: bytes = b""
    certificates: tuple[MemberCertificate, ...] = ()

    def body(self) -> bytes:
        if not 0 <= self.version < 1 << 32 or len(self.prev) != 32:
            raise FormatError("registry block: version is a u32, the previous value 32 bytes")
        if len(self.groups) > MAX_BLOCK_GROUPS:
            raise FormatError(f"registry block: at most {MAX_BLOCK_GROUPS} groups")
        if len(self.certificates) > MAX_BLOCK_CERTIFICATES:
            raise FormatError(f"registry block: at most {MAX_BLOCK_CERTIFICATES} member certificates")
        magic = _MAGIC_CERTIFIED if self.certificates else _MAGIC
        out = [magic, _str8(self.feeder_id), _U32.pack(self.version), self.prev, len(self.groups).to_bytes(2, "big")]
        for g in self.groups:
            raw = g.to_bytes()
            out += [len(raw).to_bytes(2, "big"), raw]
        if self.certificates:
            out.append(len(self.certificates).to_bytes(2, "big"))
            for c in self.certificates:
                raw = c.to_bytes()
                out += [len(raw).to_bytes(2, "big"), raw]
        return b"".join(out)

    def chain_value(self) -> bytes:
        return hashlib.sha256(REGISTRY_DST + b"chain\x00" + self.body()).digest()

    def signed(self, key: ecdsa.SigningKey) -> RegistryBlock:
        return replace(self, signature=ecdsa.sign(key, REGISTRY_DST + self.body()))

    def verify(self, key: ecdsa.VerifyingKey) -> bool:
        return len(self.signature) == 64 and ecdsa.verify(key, REGISTRY_DST + self.body(), self.signature)

    def to_bytes(self) -> bytes:
        if len(self.signature) != 64:
            raise FormatError("registry block: not signed")
        return self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> RegistryBlock:
        r = _Reader(data, "registry block")
        magic = r.take(len(_MAGIC))
        if magic not in (_MAGIC, _MAGIC_CERTIFIED):
            raise FormatError("registry block: not a version-1 or version-2 registry block")
        feeder = r.str8("feeder id")
        version = int.from_bytes(r.take(4), "big")
        prev = r.take(32)
        n = r.u16()
        if n > MAX_BLOCK_GROUPS:
            raise FormatError(f"registry block: at most {MAX_BLOCK_GROUPS} groups")
        groups = tuple(GroupDefinition.from_bytes(r.take(r.u16())) for _ in range(n))
        certs: tuple[MemberCertificate, ...] = ()
        if magic == _MAGIC_CERTIFIED:
            c = r.u16()
            if not 1 <= c <= MAX_BLOCK_CERTIFICATES:
                raise FormatError(f"registry block: version 2 carries 1..{MAX_BLOCK_CERTIFICATES} member certificates")
            certs = tuple(MemberCertificate.from_bytes(r.take(r.u16())) for _ in range(c))
        sig = r.take(64)
        r.end()
        return cls(feeder, version, prev, groups, sig, certs)


def head_message(feeder_id: str, version: int, head: bytes, sender: str, receiver: str) -> bytes:
    """What a hub's tag for one co-member covers: ``HEAD_DST || str8 feeder || u32 version
    || 32-byte chain value || str8 sender || str8 receiver``."""
    if len(head) != 32 or not 0 <= version < 1 << 32:
        raise FormatError("registry head: u32 version and a 32-byte chain value")
    return HEAD_DST + _str8(feeder_id) + _U32.pack(version) + bytes(head) + _str8(sender) + _str8(receiver)


@dataclass(frozen=True)
class HeadTags:
    """Tags over a registry head (docs/fraud.md, forks): a hub's answer to applet
    message ``05`` (``owner`` the sender, one tag per co-member) or the grid operator's
    message ``06`` to one hub (``owner`` the receiver, the tags its co-members addressed
    to it over the same head). Each tag is :func:`meterhub.crypto.zerosum.pair_tag` of
    :func:`head_message` under the pair's X25519 secret, so the operator relays but
    cannot forge a co-member's view.

    ``MHGH 01 || str8 feeder || u32 version || 32-byte chain value || str8 owner || u16 n
    || n x (str8 peer || 16-byte tag)``, sorted by peer and tag, no entry twice. A peer
    the registry lists with two hub keys (on separate days) gets one tag per key.
    """

    feeder_id: str
    version: int
    head: bytes
    owner: str
    tags: tuple[tuple[str, bytes], ...]

    def to_bytes(self) -> bytes:
        if list(self.tags) != sorted(set(self.tags)) or any(len(t) != 16 for _, t in self.tags) \
                or len(self.tags) > 0xFFFF:
            raise FormatError("registry head tags: entries sorted and distinct, 16-byte tags")
        if len(self.head) != 32 or not 0 <= self.version < 1 << 32:
            raise FormatError("registry head tags: u32 version and a 32-byte chain value")
        return (_HEAD_MAGIC + _str8(self.feeder_id) + _U32.pack(self.version) + self.head + _str8(self.owner)
                + len(self.tags).to_bytes(2, "big") + b"".join(_str8(p) + t for p, t in self.tags))

    @classmethod
    def from_bytes(cls, data: bytes) -> HeadTags:
        r = _Reader(data, "registry head tags")
        if r.take(len(_HEAD_MAGIC)) != _HEAD_MAGIC:
            raise FormatError("registry head tags: not version 1")
        feeder, version, head, owner = r.str8("feeder id"), int.from_bytes(r.take(4), "big"), r.take(32), r.str8("owner")
        tags = tuple((r.str8("peer"), r.take(16)) for _ in range(r.u16()))
        r.end()
        if list(tags) != sorted(set(tags)):
            raise FormatError("registry head tags: entries must be sorted, without repeats")
        return cls(feeder, version, head, owner, tags)


# ---------------------------------------------------------------------- exact linear algebra


def reduced_rows(sets: Iterable[frozenset[str]]) -> tuple[list[str], list[tuple[int, ...]]]:
    """The reduced row echelon form over Q of the sets' indicator vectors (columns: the
    sorted union of the members), each row scaled to coprime integers with a positive
    pivot. Unique for the span (RREF is unique; the scaling is canonical)."""
    sets = list(sets)
    cols = sorted(set().union(*sets)) if sets else []
    index = {c: k for k, c in enumerate(cols)}
    rows: list[list[int]] = []
    for s in sets:
        row = [0] * len(cols)
        for m in s:
            row[index[m]] = 1
        rows.append(row)
    out: list[list[int]] = []
    r = 0
    for c in range(len(cols)):
        piv = next((i for i in range(r, len(rows)) if rows[i][c]), None)
        if piv is None:
            continue
        rows[r], rows[piv] = rows[piv], rows[r]
        p = rows[r]
        for i in range(len(rows)):
            if i != r and rows[i][c]:
                f, q = rows[i][c], p[c]
                rows[i] = _primitive([q * x - f * y for x, y in zip(rows[i], p, strict=True)])
        rows[r] = _primitive(p)
        r += 1
        if r == len(rows):
            break
    for row in rows[:r]:
        lead = next(x for x in row if x)
        out.append([-x for x in row] if lead < 0 else row)
    # every other row's entry in a pivot column is zero, so ``out`` is the RREF up to a
    # positive factor per row
    return cols, [tuple(row) for row in out]


def _primitive(row: list[int]) -> list[int]:
    g = 0
    for x in row:
        if x:
            g = gcd(g, x)
            if g == 1:
                return row
    return [x // g for x in row] if g > 1 else row


def isolated_households(sets: Iterable[frozenset[str]]) -> list[str]:
    """Households whose indicator vector lies in the span of the sets (exact)."""
    cols, rows = reduced_rows(sets)
    out = []
    for row in rows:
        nz = [k for k, x in enumerate(row) if x]
        if len(nz) == 1:
            out.append(cols[nz[0]])
    return sorted(out)


def registry_problems(groups: Sequence[GroupDefinition], min_size: int = MIN_GROUP_SIZE) -> list[str]:
    """Why a set of groups (all intervals together) lets the grid operator learn a sum
    of fewer than ``min_size`` households: a group below the minimum, two groups that
    differ by fewer (symmetric difference, equal sets allowed), a household listed with two
    hub keys on overlapping days (:func:`_key_conflicts`), a household in the span, or a
    reduced row of fewer households. Empty when none."""
    return set_problems([(g.group_id, g.meter_ids) for g in groups], min_size, _key_conflicts(groups))


def set_problems(named: Sequence[tuple[str, frozenset[str]]], min_size: int = MIN_GROUP_SIZE,
                 extra: Sequence[str] = ()) -> list[str]:
    """:func:`registry_problems` over named member sets (a group, or the present set of a
    recovery round, ``meterhub.model.formats.aggregation.GroupPolicy`` rule 6): a set below the
    minimum, two sets that differ by fewer, a household in their span, a reduced row of
    fewer households; ``extra`` problems are listed after the pairwise ones."""
    out = []
    for name, s in named:
        if len(s) < min_size:
            out.append(f"group {name} has {len(s)} members, fewer than {min_size}")
    distinct: dict[frozenset[str], str] = {}
    for name, s in named:
        distinct.setdefault(s, name)
    items = list(distinct.items())
    for i, (a, ga) in enumerate(items):
        for b, gb in items[i + 1 :]:
            d = len(a ^ b)
            if d < min_size:
                out.append(f"groups {ga} and {gb} differ by {d} member(s), fewer than {min_size}")
    out += extra
    cols, rows = reduced_rows(distinct)
    supports = [[cols[k] for k, x in enumerate(row) if x] for row in rows]
    out[:0] = [f"the groups together isolate household {nz[0]}" for nz in supports if len(nz) == 1]
    out += [f"the groups together give a combination of {len(nz)} households ({', '.join(nz)})"
            for nz in supports if 1 < len(nz) < min_size]
    out += [f"the groups together give a combination of {len(nz)} households ({', '.join(nz)})"
            for nz in _two_row_combinations(cols, rows, min_size)]
    return out


def _two_row_combinations(cols: list[str], rows: list[tuple[int, ...]], min_size: int) -> list[list[str]]:
    """Supports of fewer than ``min_size`` households of a combination ``a r_i + b r_j``
    (``a, b`` nonzero) of two reduced rows. A vector of the span is the combination of
    the reduced rows whose pivot columns it touches, so this finds every vector of the
    span with at most two pivots in its support: every sum or difference of two
    households (``G1 + G2 - G3 = v + w`` from ``G1 = v + X``, ``G2 = w + Y``, ``G3 = X +
    Y``), and the small combinations of two rows. (Three or four rows are not searched:
    sound, not complete, for supports of 3 and 4.)"""
    pivots = {next(k for k, x in enumerate(row) if x) for row in rows}
    free = [k for k in range(len(cols)) if k not in pivots]
    parts = [{k: row[k] for k in free if row[k]} for row in rows]
    out = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            ni, nj = parts[i], parts[j]
            common = ni.keys() & nj.keys()
            if not common:
                continue  # no cancellation: the support is both rows' together
            # b/a = -ni[k]/nj[k] cancels column k; count the columns each ratio cancels
            votes: dict[tuple[int, int], int] = {}
            for k in common:
                num, den = -ni[k], nj[k]
                g = gcd(num, den)
                key = (num // g, den // g) if den // g > 0 else (-num // g, -den // g)
                votes[key] = votes.get(key, 0) + 1
            (num, den), cancelled = max(votes.items(), key=lambda kv: kv[1])
            if 2 + len(ni.keys() | nj.keys()) - cancelled >= min_size:
                continue
            a, b = den, num  # a*r_i + b*r_j with b/a = num/den
            comb = [a * x + b * y for x, y in zip(rows[i], rows[j], strict=True)]
            support = [cols[k] for k, x in enumerate(comb) if x]
            if len(support) < min_size:
                out.append(support)
    return out


def recovery_problems(day_sets: Mapping[str, frozenset[str]], group_id: str, present: frozenset[str],
                      answered: Mapping[str, frozenset[str]], min_size: int = MIN_GROUP_SIZE) -> list[str]:
    """Why a hub must not answer a recovery of group ``group_id`` (the unmasking round
    with members missing) that enables the sum over ``present`` on a day whose groups in
    its registry are ``day_sets`` (group id -> members), after the recoveries it answered
    that day (``answered``: group id -> the present set it enabled). Empty when it may.

    What the grid operator can learn on the day is one vector per group: the group's sum,
    or, for a group with a recovery, its present set's sum (never both: every present
    member answers one unmasking per group and day, and the missing members' self-masks
    need ``t`` shares that only present members hold). The rule, per day (docs/fraud.md):

    A complete unmasking (``present`` is the group) is checked by rule 2 alone, and only
    on a day this hub answered a recovery (else the day's vectors are groups, which the
    registry checked).

    1. **the group splits the day's span**: every reduced row of the day's groups lies
       inside the group or outside it (a group crossing it could be combined with the
       present sets of other groups' recoveries, which other hubs answer and this hub
       never sees: ``v + X``, ``X + Y``, ``Y`` from three groups give ``v``);
    2. the day's vectors, every group's sum except the ones this hub answered a
       recovery for, those recoveries' present sets and this present set, pass
       :func:`set_problems`: no household in their span, no two that differ by fewer
       than the minimum, no reduced row of fewer households. (With the feeder group and
       its halves on the day, the present set ``F - v`` gives ``L + R - (F - v) = v``.)
    """
    mine = day_sets.get(group_id)
    if mine is None:
        return [f"group {group_id} is not a group of the day in the registry"]
    if present == mine:
        # a complete unmasking adds the group's own vector, in the span the registry
        # checked, unless this hub answered recoveries that day: their present sets
        # replace their groups, and the group may complete one (red team round 4:
        # a copy of ``G`` unmasked complete after ``G - x``)
        if not answered:
            return []
        return set_problems([*((gid, answered.get(gid, s)) for gid, s in day_sets.items() if gid != group_id),
                             (group_id, present)], min_size)
    out = []
    cols, rows = reduced_rows(day_sets.values())
    for row in rows:
        support = {cols[k] for k, x in enumerate(row) if x}
        if support & mine and support - mine:
            out.append(f"the day's groups cross group {group_id} (a combination of {len(support)} households "
                       "lies partly inside it): a recovery of it could combine with recoveries this hub does not see")
            break
    named = [(gid, answered.get(gid, s)) for gid, s in day_sets.items() if gid != group_id]
    named.append((f"{group_id} (present set of the recovery)", present))
    out += set_problems(named, min_size)
    return out


def _key_conflicts(groups: Sequence[GroupDefinition]) -> list[str]:
    """A household listed with two different hub keys in groups whose validity overlaps:
    one of the keys is not its hub's (a phantom of a real household, whose masks the
    grid operator removes itself while the span test counts the household as present)."""
    listed: dict[str, list[tuple[bytes, date, date, str]]] = {}
    out = []
    for g in groups:
        for m in g.members:
            for key, first, last, gid in listed.setdefault(m.meter_id, []):
                if key != m.hub_key and first <= g.valid_to and g.valid_from <= last:
                    out.append(f"groups {gid} and {g.group_id} list household {m.meter_id} with different hub keys")
                    break
            listed[m.meter_id].append((m.hub_key, g.valid_from, g.valid_to, g.group_id))
    return out


def span_digest(groups: Iterable[GroupDefinition]) -> bytes:
    """SHA-256 over the canonical reduced rows of the groups' indicator vectors: equal
    for two sets of groups iff they span the same space (bound into the masks)."""
    cols, rows = reduced_rows(g.meter_ids for g in groups)
    h = hashlib.sha256(SPAN_DST)
    h.update(len(cols).to_bytes(4, "big"))
    for c in cols:
        h.update(_str8(c))
    h.update(len(rows).to_bytes(4, "big"))
    for row in rows:
        for x in row:
            raw = str(x).encode()
            h.update(bytes([len(raw)]) + raw)
    return h.digest()


def day_mask_digest(span: bytes, head: bytes) -> bytes:
    """What a day's masks bind (:func:`meterhub.model.formats.aggregation.mask_context`): the day's
    :func:`span_digest` and the registry chain value the hub released the day under,
    ``SHA-256(SPAN_HEAD_DST || span || head)`` (docs/fraud.md, equivocation and forks)."""
    if len(span) != 32 or len(head) != 32:
        raise FormatError("day mask digest: a 32-byte span digest and a 32-byte chain value")
    return hashlib.sha256(SPAN_HEAD_DST + bytes(span) + bytes(head)).digest()


# ---------------------------------------------------------------------- member certificates


def _verifying_keys(points: Sequence[bytes]) -> list[ecdsa.VerifyingKey]:
    keys = []
    for k in points:
        try:
            keys.append(ecdsa.load_verifying_key(k))
        except ValueError:
            continue
    return keys


def certificate_problems(block: RegistryBlock, certifiers: Sequence[ecdsa.VerifyingKey]) -> list[str]:
    """Why the block's members are not all certified (docs/fraud.md, phantom members):
    every certificate the block carries must verify under one of ``certifiers`` (a
    forged one is reported, not skipped), and every member of every group of the block
    must have one that binds exactly its meter id and its hub key. Empty: all certified."""
    problems = []
    bound: dict[str, set[bytes]] = {}
    for c in block.certificates:
        if not any(c.verify(k) for k in certifiers):
            problems.append(f"the certificate of meter {c.meter_id} does not verify under the pinned member certifier")
        else:
            bound.setdefault(c.meter_id, set()).add(c.hub_key)
    for g in block.groups:
        for m in g.members:
            keys = bound.get(m.meter_id)
            if keys is None:
                problems.append(f"member {m.meter_id} of group {g.group_id} has no certificate from the pinned "
                                f"member certifier (a phantom member?)")
            elif m.hub_key not in keys:
                problems.append(f"member {m.meter_id} of group {g.group_id} is listed with a hub key its "
                                f"certificate does not bind (a phantom key?)")
    return problems


# ---------------------------------------------------------------------- a hub's view


@dataclass
class RegistryView:
    """The chain a hub (or the grid operator) holds: feeder, last version, chain value and
    every group of the blocks so far. Pure; the privacy guard stores it."""

    feeder_id: str | None = None
    version: int = -1
    head: bytes = bytes(32)
    groups: dict[str, GroupDefinition] = field(default_factory=dict)

    def day_groups(self, day: date) -> list[GroupDefinition]:
        return [g for g in self.groups.values() if g.valid_from <= day <= g.valid_to]

    def day_span(self, day: date) -> bytes:
        return span_digest(self.day_groups(day))

    def co_members(self, meter_id: str) -> dict[str, set[bytes]]:
        """Every other member of every group listing ``meter_id``, with the hub keys the
        registry lists it with: the hubs whose tags over a new head this hub needs
        before it releases under that head (docs/fraud.md, forks)."""
        out: dict[str, set[bytes]] = {}
        for g in self.groups.values():
            if g.member(meter_id) is not None:
                for m in g.members:
                    if m.meter_id != meter_id:
                        out.setdefault(m.meter_id, set()).add(m.hub_key)
        return out

    def recovery_problems(self, group_id: str, day: date, present: frozenset[str],
                          answered: Mapping[str, frozenset[str]], *, min_size: int = MIN_GROUP_SIZE) -> list[str]:
        """:func:`recovery_problems` over the groups of ``day`` in this registry."""
        return recovery_problems({g.group_id: g.meter_ids for g in self.day_groups(day)}, group_id, present,
                                 answered, min_size)

    def check_extension(self, block: RegistryBlock, signer_keys: Sequence[bytes],
                        released: Callable[[date], bool] | Collection[date], *, min_size: int = MIN_GROUP_SIZE,
                        interval_minutes: int = FIXED_INTERVAL_MINUTES,
                        certifier_keys: Sequence[bytes] | None = None,
                        answered: Mapping[date, Mapping[str, frozenset[str]]] | None = None) -> None:
        """Raise :class:`PermissionError` (signature) or :class:`PolicyRefusal` unless
        ``block`` is the next block of this chain and the registry after it passes
        :func:`registry_problems`. ``released``: the days this hub has released (a
        collection: the guard passes its own, so the no-retroactive-groups check costs
        one step per released day, whatever validity a group claims), or a predicate
        (the operator's tools and tests; one call per day of each group's validity).

        With ``certifier_keys`` (the member certifier the customer pinned; the guard always
        passes them) every member of every group of the block must be certified
        (:func:`certificate_problems`; :class:`PermissionError`), and none pinned is a
        :class:`PolicyRefusal`. ``None`` skips that check: the grid operator's own tools,
        which hold no certifier key, and the span tests.

        ``answered``: per released day, the present sets of the recoveries this hub
        answered that day (group id -> present set; the guard passes its own records). A
        group added to a released day must lie in the span of the day's vectors as the
        hub answered them: each recovered group replaced by its present set."""
        keys = _verifying_keys(signer_keys)
        if not keys:
            raise PolicyRefusal("no group-signing key pinned for this recipient")
        certifiers = None if certifier_keys is None else _verifying_keys(certifier_keys)
        if certifiers is not None and not certifiers:
            raise PolicyRefusal("no member certifier pinned for this recipient")
        if not any(block.verify(k) for k in keys):
            raise PermissionError("registry block is not signed by the pinned group-signing key")
        if block.version != self.version + 1 or block.prev != self.head:
            raise PolicyRefusal(
                f"registry block {block.version} does not extend the registry this hub holds "
                f"(version {self.version}): stale, or another chain (equivocation)"
            )
        if self.feeder_id is not None and block.feeder_id != self.feeder_id:
            raise PolicyRefusal(f"registry block of feeder {block.feeder_id}, this hub's registry is {self.feeder_id}")
        seen = set(self.groups)
        for g in block.groups:
            if g.feeder_id != block.feeder_id:
                raise PolicyRefusal(f"group {g.group_id} is of feeder {g.feeder_id}, not {block.feeder_id}")
            if g.group_id in seen:
                raise PolicyRefusal(f"group id {g.group_id} is in the registry already")
            seen.add(g.group_id)
            if g.interval_minutes != interval_minutes:
                raise PolicyRefusal(f"groups aggregate fixed {interval_minutes}-minute intervals")
            if not any(g.verify(k) for k in keys):
                raise PermissionError(f"group {g.group_id} is not signed by the pinned group-signing key")
        # the bounds first: they cost nothing, the certificates and the span test do
        n_groups = len(seen)
        if n_groups > MAX_REGISTRY_GROUPS:
            raise RegistryFull(f"registry block {block.version}: the registry would hold {n_groups} groups, "
                               f"at most {MAX_REGISTRY_GROUPS}")
        members = {m for g in self.groups.values() for m in g.meter_ids} | {m for g in block.groups for m in g.meter_ids}
        if len(members) > MAX_REGISTRY_MEMBERS:
            raise RegistryFull(f"registry block {block.version}: the registry would hold {len(members)} distinct "
                               f"members, at most {MAX_REGISTRY_MEMBERS} (a feeder serves 5-60)")
        for g in block.groups:
            self._check_not_retroactive(g, released, answered or {})
        if certifiers is not None:
            uncertified = certificate_problems(block, certifiers)
            if uncertified:
                raise PermissionError(f"registry block {block.version}: {uncertified[0]}")
        problems = registry_problems([*self.groups.values(), *block.groups], min_size)
        if problems:
            raise PolicyRefusal(f"registry block {block.version}: {problems[0]}")

    def _check_not_retroactive(self, g: GroupDefinition, released: Callable[[date], bool] | Collection[date],
                               answered: Mapping[date, Mapping[str, frozenset[str]]]) -> None:
        """Once this hub has released a day, a new group valid on it must lie in the span
        of what the day gave: its groups, each group the hub answered a recovery for
        replaced by that recovery's present set (a copy of ``G`` added after ``G - x``
        would give ``x``; docs/fraud.md)."""
        # the released days inside the group's validity: from the hub's own list (a
        # validity up to 9999-12-31 once cost the card a minute per group, then overflowed
        # the date: docs/fraud.md, red team), or by asking the predicate day by day
        if callable(released):
            days: Iterable[date] = (g.valid_from + timedelta(days=k) for k in range((g.valid_to - g.valid_from).days + 1)
                                    if released(g.valid_from + timedelta(days=k)))
        else:
            days = sorted(d for d in released if g.valid_from <= d <= g.valid_to)
        seen: dict[tuple[frozenset[str], ...], bool] = {}
        for d in days:
            got = answered.get(d, {})
            vectors = tuple(sorted({got.get(x.group_id, x.meter_ids) for x in self.day_groups(d)}, key=sorted))
            if vectors not in seen:
                seen[vectors] = len(reduced_rows([*vectors, g.meter_ids])[1]) == len(reduced_rows(vectors)[1])
            if not seen[vectors]:
                raise PolicyRefusal(
                    f"group {g.group_id} would add to the span of {d}, which this hub has released"
                    + (" (with the present sets of the recoveries it answered that day)" if got else "")
                )

    def extended(self, block: RegistryBlock) -> RegistryView:
        groups = dict(self.groups)
        groups.update({g.group_id: g for g in block.groups})
        return RegistryView(block.feeder_id, block.version, block.chain_value(), groups)
