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
* a hub refuses a block after which the registry, **all groups of all intervals
  together**, has a household in its span or two groups that differ by fewer than the
  minimum (time-agnostic, like the hub's pairwise rule: a household's days are alike,
  so sums of different days can be differenced as well);
* **no retroactive groups**: once a hub has released a day, a block may add a group
  valid on that day only if the group lies in that day's span already (it reveals
  nothing new: the same members under a new id, or a union of disjoint groups);
* every masked release and recovery of a day binds the day's span digest
  (:func:`span_digest` of the groups valid that day) into its zero-sum masks
  (:func:`meterhub.model.formats.aggregation.mask_context`). Two members of a group with different
  views of the day (the grid operator showed them different chains: equivocation)
  derive different pair values, the masks do not cancel and the sum stays hidden.

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
(or a small difference) that the grid operator could compute, refused as well. (The
second test is sound but not complete: a small-support vector of the span need not be a
reduced row. The single-household test is complete.)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Sequence
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

__all__ = [
    "REGISTRY_DST",
    "SPAN_DST",
    "RegistryBlock",
    "RegistryView",
    "reduced_rows",
    "isolated_households",
    "registry_problems",
    "span_digest",
]

REGISTRY_DST = b"meterhub/v1/aggregation-group-registry\x00"
SPAN_DST = b"meterhub/v1/aggregation-day-span\x00"
_MAGIC = b"MHGR\x01"
MAX_BLOCK_GROUPS = 256
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class RegistryBlock:
    """One block of a feeder's group registry, signed by the group-signing key.

    ``MHGR 01 || str8 feeder id || u32 version || 32-byte previous chain value (zero for
    version 0) || u16 n || n x (u16 length || signed group definition) || 64-byte ECDSA
    P-256 signature (r || s)`` over ``REGISTRY_DST || everything before it``. The chain
    value of a block is ``SHA-256(REGISTRY_DST || "chain" || body)`` (the signature is
    left out: ECDSA signatures are malleable).
    """

    feeder_id: str
    version: int
    prev: bytes
    groups: tuple[GroupDefinition, ...]
    signature: bytes = b""

    def body(self) -> bytes:
        if not 0 <= self.version < 1 << 32 or len(self.prev) != 32:
            raise FormatError("registry block: version is a u32, the previous value 32 bytes")
        if len(self.groups) > MAX_BLOCK_GROUPS:
            raise FormatError(f"registry block: at most {MAX_BLOCK_GROUPS} groups")
        out = [_MAGIC, _str8(self.feeder_id), _U32.pack(self.version), self.prev, len(self.groups).to_bytes(2, "big")]
        for g in self.groups:
            raw = g.to_bytes()
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
        if r.take(len(_MAGIC)) != _MAGIC:
            raise FormatError("registry block: not a version-1 registry block")
        feeder = r.str8("feeder id")
        version = int.from_bytes(r.take(4), "big")
        prev = r.take(32)
        n = r.u16()
        if n > MAX_BLOCK_GROUPS:
            raise FormatError(f"registry block: at most {MAX_BLOCK_GROUPS} groups")
        groups = tuple(GroupDefinition.from_bytes(r.take(r.u16())) for _ in range(n))
        sig = r.take(64)
        r.end()
        return cls(feeder, version, prev, groups, sig)


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
    out = []
    for g in groups:
        if len(g.members) < min_size:
            out.append(f"group {g.group_id} has {len(g.members)} members, fewer than {min_size}")
    distinct: dict[frozenset[str], str] = {}
    for g in groups:
        distinct.setdefault(g.meter_ids, g.group_id)
    items = list(distinct.items())
    for i, (a, ga) in enumerate(items):
        for b, gb in items[i + 1 :]:
            d = len(a ^ b)
            if d < min_size:
                out.append(f"groups {ga} and {gb} differ by {d} member(s), fewer than {min_size}")
    out += _key_conflicts(groups)
    cols, rows = reduced_rows(distinct)
    supports = [[cols[k] for k, x in enumerate(row) if x] for row in rows]
    out[:0] = [f"the groups together isolate household {nz[0]}" for nz in supports if len(nz) == 1]
    out += [f"the groups together give a combination of {len(nz)} households ({', '.join(nz)})"
            for nz in supports if 1 < len(nz) < min_size]
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

    def check_extension(self, block: RegistryBlock, signer_keys: Sequence[bytes],
                        released: Callable[[date], bool], *, min_size: int = MIN_GROUP_SIZE,
                        interval_minutes: int = FIXED_INTERVAL_MINUTES) -> None:
        """Raise :class:`PermissionError` (signature) or :class:`PolicyRefusal` unless
        ``block`` is the next block of this chain and the registry after it passes
        :func:`registry_problems`. ``released(day)``: has this hub released that day?"""
        keys = []
        for k in signer_keys:
            try:
                keys.append(ecdsa.load_verifying_key(k))
            except ValueError:
                continue
        if not keys:
            raise PolicyRefusal("no group-signing key pinned for this recipient")
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
            self._check_not_retroactive(g, released)
        problems = registry_problems([*self.groups.values(), *block.groups], min_size)
        if problems:
            raise PolicyRefusal(f"registry block {block.version}: {problems[0]}")

    def _check_not_retroactive(self, g: GroupDefinition, released: Callable[[date], bool]) -> None:
        spans: dict[bytes, bool] = {}
        d = g.valid_from
        while d <= g.valid_to:
            if released(d):
                before = self.day_groups(d)
                key = span_digest(before)
                if key not in spans:
                    spans[key] = span_digest([*before, g]) == key
                if not spans[key]:
                    raise PolicyRefusal(
                        f"group {g.group_id} would add to the span of {d}, which this hub has released"
                    )
            d += timedelta(days=1)

    def extended(self, block: RegistryBlock) -> RegistryView:
        groups = dict(self.groups)
        groups.update({g.group_id: g for g in block.groups})
        return RegistryView(block.feeder_id, block.version, block.chain_value(), groups)
