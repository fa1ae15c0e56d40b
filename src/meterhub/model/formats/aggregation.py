"""Wire formats of private verified aggregation (fraud detection, docs/formats.md).

The grid operator asks the hubs of a feeder for the sum of their readings per
hour; each hub's aggregation applet (:mod:`meterhub.applets.aggregation`)
answers its hourly reading sums ``m_h`` and blinding sums ``r_h``, each masked
with zero-sum masks shared with the other hubs of the group
(:mod:`meterhub.crypto.zerosum`), and the grid operator checks the unmasked
totals against the product of the meters' commitments
(:mod:`meterhub.utility.fraud`). Every message is one class here with
``to_bytes``/``from_bytes``, used by the applet and by the grid operator alike.

All integers are big-endian. ``str8`` is ``u8 length || ASCII`` (printable,
1..64 bytes); ``date4`` is ``u16 year || u8 month || u8 day``; scalars are 32
bytes below the group order ``Q``. Decoders are strict: any other length,
order, trailing byte or out-of-range value raises :class:`FormatError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from ...crypto import ecdsa
from ...crypto.group import Q
from ...crypto.selfmask import SEALED_BYTES
from ...errors import MeterhubError
from ..demo_keys import GRID_OPERATOR_GROUP, demo_signing_key
from ..errors import FormatError

__all__ = [
    "GROUP_DST",
    "GroupMember",
    "GroupDefinition",
    "AggregationRequest",
    "MaskedRelease",
    "RecoveryRequest",
    "RecoveryRelease",
    "mask_context",
    "self_mask_context",
    "share_aad",
    "self_mask_threshold",
    "FormatError",
    "FeederReading",
    "FEEDER_DST",
    "FIXED_INTERVAL_MINUTES",
    "MIN_GROUP_SIZE",
    "GroupPolicy",
    "PolicyRefusal",
    "demo_group_key",
]

GROUP_DST = b"meterhub/v1/aggregation-group\x00"
_MAGIC = b"MHAG\x01"
_RELEASE_MAGIC = b"MHAR\x02"  # version 2: self-masked, with sealed seed shares (version 1 refused)
_RECOVERY_MAGIC = b"MHAV\x02"
_UNMASK_MAGIC = b"MHAU\x02"  # version-1 recovery requests (no magic) are refused
SELF_MASK_CTX_DST = b"meterhub/v1/aggregation-self-mask\x00"
SHARE_AAD_DST = b"meterhub/v1/aggregation-seed-share\x00"
MAX_MEMBERS = 1000
MAX_HOURS = 25  # a local day has 23, 24 or 25 hours
_DATE = struct.Struct(">HBB")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FormatError(f"{what}: expected bytes")
        self.data, self.pos, self.what = bytes(data), 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise FormatError(f"{self.what}: truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def str8(self, field: str) -> str:
        raw = self.take(self.u8())
        if not 1 <= len(raw) <= 64 or not all(0x21 <= b < 0x7F for b in raw):
            raise FormatError(f"{self.what}: {field} must be 1..64 printable ASCII characters")
        return raw.decode()

    def date4(self, field: str) -> date:
        y, m, d = _DATE.unpack(self.take(4))
        try:
            return date(y, m, d)
        except ValueError:
            raise FormatError(f"{self.what}: {field} is not a date") from None

    def scalar(self, field: str) -> int:
        k = int.from_bytes(self.take(32), "big")
        if k >= Q:
            raise FormatError(f"{self.what}: {field} is not below the group order")
        return k

    def end(self) -> None:
        if self.pos != len(self.data):
            raise FormatError(f"{self.what}: {len(self.data) - self.pos} trailing bytes")


def _str8(s: str) -> bytes:
    try:
        raw = s.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise FormatError(f"{s!r:.70}: identifiers are 1..64 printable ASCII characters") from None
    if not 1 <= len(raw) <= 64 or not all(0x21 <= b < 0x7F for b in raw):
        raise FormatError(f"{s!r:.70}: identifiers are 1..64 printable ASCII characters")
    return bytes([len(raw)]) + raw


def _date4(d: date) -> bytes:
    return _DATE.pack(d.year, d.month, d.day)


def _scalar(k: int) -> bytes:
    if not 0 <= k < Q:
        raise FormatError("scalar out of range")
    return k.to_bytes(32, "big")


def mask_context(group_id: str, day: date, hours: int, span: bytes) -> bytes:
    """The HKDF context of a day's masks: the group id and the interval range (the
    local day and its number of hourly intervals), so no mask is ever reused, and the
    span digest of the day's groups in the hub's group registry
    (:func:`meterhub.model.group_registry.span_digest`), so members shown different
    registries derive masks that do not cancel (docs/fraud.md, equivocation)."""
    if len(span) != 32:
        raise FormatError("mask context: the span digest is 32 bytes")
    return (b"group\x00" + _str8(group_id) + b"day\x00" + _date4(day) + hours.to_bytes(1, "big")
            + b"span\x00" + bytes(span))


def self_mask_context(group_id: str, day: date, hours: int, meter_id: str) -> bytes:
    """The HKDF context of a hub's self-mask for a day (Bonawitz et al., CCS 2017, §4):
    the group, the interval range and the hub's meter id. It needs no span digest: the
    self-mask does not cancel over the group, it is removed from the recovered seed."""
    return SELF_MASK_CTX_DST + _str8(group_id) + _date4(day) + hours.to_bytes(1, "big") + _str8(meter_id)


def share_aad(group_id: str, day: date, sender: str, receiver: str) -> bytes:
    """The AES-GCM associated data of a sealed seed share: group, day, sender, receiver,
    so a share cannot be replayed to another round, group or peer."""
    return SHARE_AAD_DST + _str8(group_id) + _date4(day) + _str8(sender) + _str8(receiver)


def self_mask_threshold(members: int) -> int:
    """The Shamir threshold ``t`` of a member's self-mask seed, shared among the other
    ``members - 1``: ``max(MIN_GROUP_SIZE - 1, ceil(2 (members - 1) / 3))``, at most
    ``members - 1``. The operator together with fewer than ``t`` hubs cannot remove a
    present member's self-mask; the round recovers a member's seed only if ``t`` of
    its peers are present (docs/fraud.md, double masking)."""
    holders = members - 1
    return max(1, min(holders, max(MIN_GROUP_SIZE - 1, -(-2 * holders // 3))))


@dataclass(frozen=True)
class GroupMember:
    meter_id: str
    hub_key: bytes  # the aggregation applet's X25519 public key, 32 bytes


@dataclass(frozen=True)
class GroupDefinition:
    """A group of hubs whose sum the grid operator may learn, signed by the grid operator.

    ``members`` are sorted by meter id, ids and keys distinct. ``interval_minutes`` is
    the group's fixed aggregation interval (60: hourly). The signature is ECDSA P-256
    (64-byte ``r || s``) over ``GROUP_DST || body``; empty until :meth:`signed`.
    """

    group_id: str
    feeder_id: str
    interval_minutes: int
    valid_from: date
    valid_to: date
    members: tuple[GroupMember, ...]
    signature: bytes = b""

    def __post_init__(self) -> None:
        for ident in (self.group_id, self.feeder_id, *(m.meter_id for m in self.members)):
            _str8(ident)
        if not 1 <= len(self.members) <= MAX_MEMBERS:
            raise FormatError(f"group: 1..{MAX_MEMBERS} members")
        ids = [m.meter_id for m in self.members]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            raise FormatError("group: members must be sorted by meter id, without repeats")
        if len({m.hub_key for m in self.members}) != len(ids) or any(len(m.hub_key) != 32 for m in self.members):
            raise FormatError("group: hub keys must be 32 bytes and distinct")
        if self.interval_minutes not in (15, 30, 60):
            raise FormatError("group: interval must be 15, 30 or 60 minutes")
        if self.valid_to < self.valid_from:
            raise FormatError("group: validity ends before it starts")
        if self.signature and len(self.signature) != 64:
            raise FormatError("group: signature must be 64 bytes")

    @property
    def meter_ids(self) -> frozenset[str]:
        return frozenset(m.meter_id for m in self.members)

    def member(self, meter_id: str) -> GroupMember | None:
        return next((m for m in self.members if m.meter_id == meter_id), None)

    def body(self) -> bytes:
        out = [
            _MAGIC, _str8(self.group_id), _str8(self.feeder_id), self.interval_minutes.to_bytes(2, "big"),
            _date4(self.valid_from), _date4(self.valid_to), len(self.members).to_bytes(2, "big"),
        ]
        for m in self.members:
            out += [_str8(m.meter_id), m.hub_key]
        return b"".join(out)

    def signed(self, key: ecdsa.SigningKey) -> GroupDefinition:
        return replace(self, signature=ecdsa.sign(key, GROUP_DST + self.body()))

    def verify(self, key: ecdsa.VerifyingKey) -> bool:
        return len(self.signature) == 64 and ecdsa.verify(key, GROUP_DST + self.body(), self.signature)

    def to_bytes(self) -> bytes:
        if not self.signature:
            raise FormatError("group: not signed")
        return self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupDefinition:
        r = _Reader(data, "group")
        if r.take(len(_MAGIC)) != _MAGIC:
            raise FormatError("group: not a version-1 group definition")
        gid, fid = r.str8("group id"), r.str8("feeder id")
        interval = r.u16()
        vf, vt = r.date4("valid_from"), r.date4("valid_to")
        n = r.u16()
        if not 1 <= n <= MAX_MEMBERS:
            raise FormatError(f"group: 1..{MAX_MEMBERS} members")
        members = tuple(GroupMember(r.str8("meter id"), r.take(32)) for _ in range(n))
        sig = r.take(64)
        r.end()
        return cls(gid, fid, interval, vf, vt, members, sig)


@dataclass(frozen=True)
class AggregationRequest:
    """The grid operator asks for one local day of a group: ``str8 group id || date4``."""

    group_id: str
    day: date

    def to_bytes(self) -> bytes:
        return _str8(self.group_id) + _date4(self.day)

    @classmethod
    def from_bytes(cls, data: bytes) -> AggregationRequest:
        r = _Reader(data, "aggregation request")
        out = cls(r.str8("group id"), r.date4("day"))
        r.end()
        return out


def _pairs(r: _Reader, what: str) -> tuple[tuple[int, int], ...]:
    n = r.u8()
    if not 1 <= n <= MAX_HOURS:
        raise FormatError(f"{what}: 1..{MAX_HOURS} intervals")
    return tuple((r.scalar("masked reading sum"), r.scalar("masked blinding sum")) for _ in range(n))


def _pairs_bytes(values: Sequence[tuple[int, int]]) -> bytes:
    if not 1 <= len(values) <= MAX_HOURS:
        raise FormatError(f"1..{MAX_HOURS} intervals")
    return bytes([len(values)]) + b"".join(_scalar(a) + _scalar(b) for a, b in values)


@dataclass(frozen=True)
class MaskedRelease:
    """One hub's answer for one day (version 2, double masking): per interval ``(m_h +
    a_h + c_h, r_h + b_h + d_h) mod Q``, where ``m_h``/``r_h`` are the hour's reading
    and blinding sums, ``a_h``/``b_h`` the hub's zero-sum masks and ``c_h``/``d_h`` its
    self-mask, expanded from a fresh 16-byte seed (:mod:`meterhub.crypto.selfmask`).
    ``first_index`` is the meter's first reading index of the day and ``code_hash``
    the applet's code hash (GPC load-file hash of the reviewed code). ``shares`` holds
    one sealed Shamir share of the seed per other member, in the group's member order
    (the grid operator forwards each to its member in the unmasking round).

    ``MHAR 02 || str8 group || str8 meter || date4 || u64 first index || 32-byte code
    hash || u8 n || n x (32-byte scalar, 32-byte scalar) || u16 k || k x 46-byte sealed
    share``. Version 1 (``MHAR 01``, no self-mask) is refused.
    """

    group_id: str
    meter_id: str
    day: date
    first_index: int
    code_hash: bytes
    values: tuple[tuple[int, int], ...]
    shares: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        if len(self.code_hash) != 32:
            raise FormatError("release: code hash is 32 bytes")
        return (
            _RELEASE_MAGIC + _str8(self.group_id) + _str8(self.meter_id) + _date4(self.day)
            + self.first_index.to_bytes(8, "big") + self.code_hash + _pairs_bytes(self.values)
            + _sealed_bytes(self.shares)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedRelease:
        r = _Reader(data, "masked release")
        if r.take(len(_RELEASE_MAGIC)) != _RELEASE_MAGIC:
            raise FormatError("masked release: not a version-2 release (version 1 had no self-mask)")
        out = cls(r.str8("group id"), r.str8("meter id"), r.date4("day"), r.u64(), r.take(32),
                  _pairs(r, "masked release"), _sealed(r))
        r.end()
        return out


def _sealed(r: _Reader) -> tuple[bytes, ...]:
    n = r.u16()
    if n >= MAX_MEMBERS:
        raise FormatError(f"{r.what}: at most {MAX_MEMBERS - 1} sealed shares")
    return tuple(r.take(SEALED_BYTES) for _ in range(n))


def _sealed_bytes(shares: Sequence[bytes]) -> bytes:
    if len(shares) >= MAX_MEMBERS or any(len(s) != SEALED_BYTES for s in shares):
        raise FormatError(f"sealed shares: at most {MAX_MEMBERS - 1} of {SEALED_BYTES} bytes")
    return len(shares).to_bytes(2, "big") + b"".join(shares)


def _ids(r: _Reader, what: str) -> tuple[str, ...]:
    n = r.u16()
    if n > MAX_MEMBERS:
        raise FormatError(f"{what}: 0..{MAX_MEMBERS} missing members")
    ids = tuple(r.str8("meter id") for _ in range(n))
    if list(ids) != sorted(set(ids)):
        raise FormatError(f"{what}: missing members must be sorted, without repeats")
    return ids


def _ids_bytes(ids: Sequence[str]) -> bytes:
    if len(ids) > MAX_MEMBERS or list(ids) != sorted(set(ids)):
        raise FormatError("missing members: sorted distinct ids")
    return len(ids).to_bytes(2, "big") + b"".join(_str8(i) for i in ids)


def _check_round(missing: Sequence[str], present: Sequence[str], what: str) -> None:
    if list(present) != sorted(set(present)):
        raise FormatError(f"{what}: present members must be sorted, without repeats")
    if set(missing) & set(present):
        raise FormatError(f"{what}: a member is named both missing and present")
    if not missing and not present:
        raise FormatError(f"{what}: names no member")


@dataclass(frozen=True)
class RecoveryRequest:
    """The unmasking round (version 2): the grid operator names, for the asked hub, the
    members it claims **missing** (the hub answers the pairwise masks it shares with
    them) and the members it claims **present**, each with the sealed share of its
    seed addressed to the asked hub, taken from that member's release (the hub answers
    the opened share). Bonawitz et al., CCS 2017, §4.

    ``MHAU 02 || str8 group || date4 || u16 n || n x str8 missing id || u16 k || k x
    (str8 present id || 46-byte sealed share)``; ids sorted, distinct, the two lists
    disjoint, not both empty. A version-1 request (no magic) is refused.
    """

    group_id: str
    day: date
    missing: tuple[str, ...]
    present: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_round(self.missing, [p for p, _ in self.present], "recovery request")

    def to_bytes(self) -> bytes:
        if len(self.present) > MAX_MEMBERS or any(len(s) != SEALED_BYTES for _, s in self.present):
            raise FormatError(f"recovery request: present members with {SEALED_BYTES}-byte sealed shares")
        return (_UNMASK_MAGIC + _str8(self.group_id) + _date4(self.day) + _ids_bytes(self.missing)
                + len(self.present).to_bytes(2, "big") + b"".join(_str8(p) + s for p, s in self.present))

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryRequest:
        r = _Reader(data, "recovery request")
        if r.take(len(_UNMASK_MAGIC)) != _UNMASK_MAGIC:
            raise FormatError("recovery request: not a version-2 unmasking request (version 1 is refused)")
        gid, day, missing = r.str8("group id"), r.date4("day"), _ids(r, "recovery request")
        n = r.u16()
        if n > MAX_MEMBERS:
            raise FormatError(f"recovery request: at most {MAX_MEMBERS} present members")
        present = tuple((r.str8("meter id"), r.take(SEALED_BYTES)) for _ in range(n))
        r.end()
        try:
            return cls(gid, day, missing, present)
        except FormatError:
            raise
        except ValueError as exc:  # a date or id the dataclass refuses
            raise FormatError(f"recovery request: {exc}") from None


@dataclass(frozen=True)
class RecoveryRelease:
    """A present hub's unmasking answer: per interval, the sum of the signed pairwise
    masks it shares with the members claimed missing, ``sum_{k missing} s_ik (p_ik,
    p'_ik) mod Q`` (all zero when none is), which the grid operator subtracts; and for
    each member claimed present, the hub's Shamir share ``(index, 16 bytes)`` of that
    member's self-mask seed. For any one member a hub answers one kind or the other,
    never both (the guard remembers, docs/fraud.md). It reveals nothing about the hub's
    own readings: its own masks stay on its release.

    ``MHAV 02 || str8 group || str8 meter || date4 || u16 n || n x str8 missing id ||
    u8 k || k x (32-byte, 32-byte) || u16 p || p x (str8 present id || u16 index ||
    16-byte share)``.
    """

    group_id: str
    meter_id: str
    day: date
    missing: tuple[str, ...]
    values: tuple[tuple[int, int], ...]
    shares: tuple[tuple[str, int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_round(self.missing, [p for p, _, _ in self.shares], "recovery release")

    def to_bytes(self) -> bytes:
        if len(self.shares) > MAX_MEMBERS or any(len(s) != 16 or not 1 <= i <= 0xFFFF for _, i, s in self.shares):
            raise FormatError("recovery release: shares are (index 1..65535, 16 bytes)")
        return (
            _RECOVERY_MAGIC + _str8(self.group_id) + _str8(self.meter_id) + _date4(self.day)
            + _ids_bytes(self.missing) + _pairs_bytes(self.values) + len(self.shares).to_bytes(2, "big")
            + b"".join(_str8(p) + i.to_bytes(2, "big") + s for p, i, s in self.shares)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryRelease:
        r = _Reader(data, "recovery release")
        if r.take(len(_RECOVERY_MAGIC)) != _RECOVERY_MAGIC:
            raise FormatError("recovery release: not a version-2 recovery release")
        head = (r.str8("group id"), r.str8("meter id"), r.date4("day"), _ids(r, "recovery release"),
                _pairs(r, "recovery release"))
        n = r.u16()
        if n > MAX_MEMBERS:
            raise FormatError(f"recovery release: at most {MAX_MEMBERS} shares")
        shares = []
        for _ in range(n):
            pid, idx, share = r.str8("meter id"), r.u16(), r.take(16)
            if idx == 0:
                raise FormatError("recovery release: share index 0")
            shares.append((pid, idx, share))
        r.end()
        return cls(*head, tuple(shares))


FEEDER_DST = b"meterhub/v1/feeder-meter-day\x00"
_FEEDER_MAGIC = b"MHFR\x01"


@dataclass(frozen=True)
class FeederReading:
    """A feeder meter's signed day: Wh per hourly interval at the transformer.

    ``MHFR 01 || str8 feeder id || date4 || u8 n || n x u64 Wh || 64-byte ECDSA P-256
    signature (r || s)`` over ``FEEDER_DST || everything before the signature``.
    """

    feeder_id: str
    day: date
    hours: tuple[int, ...]
    signature: bytes = b""

    def body(self) -> bytes:
        if not 1 <= len(self.hours) <= MAX_HOURS or any(not 0 <= h < 1 << 63 for h in self.hours):
            raise FormatError(f"feeder reading: 1..{MAX_HOURS} hourly values in range")
        return (_FEEDER_MAGIC + _str8(self.feeder_id) + _date4(self.day) + bytes([len(self.hours)])
                + b"".join(h.to_bytes(8, "big") for h in self.hours))

    def signed(self, key: ecdsa.SigningKey) -> FeederReading:
        return replace(self, signature=ecdsa.sign(key, FEEDER_DST + self.body()))

    def verify(self, key: ecdsa.VerifyingKey) -> bool:
        return len(self.signature) == 64 and ecdsa.verify(key, FEEDER_DST + self.body(), self.signature)

    def to_bytes(self) -> bytes:
        if len(self.signature) != 64:
            raise FormatError("feeder reading: not signed")
        return self.body() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> FeederReading:
        r = _Reader(data, "feeder reading")
        if r.take(len(_FEEDER_MAGIC)) != _FEEDER_MAGIC:
            raise FormatError("feeder reading: not a version-1 feeder reading")
        fid, day = r.str8("feeder id"), r.date4("day")
        n = r.u8()
        if not 1 <= n <= MAX_HOURS:
            raise FormatError(f"feeder reading: 1..{MAX_HOURS} hourly values")
        hours = tuple(r.u64() for _ in range(n))
        if any(h >= 1 << 63 for h in hours):
            raise FormatError("feeder reading: value out of range")
        sig = r.take(64)
        r.end()
        return cls(fid, day, hours, sig)


# ---------------------------------------------------------------------- the hub's group rules

MIN_GROUP_SIZE = 5
FIXED_INTERVAL_MINUTES = 60


class PolicyRefusal(MeterhubError):
    """A group or request the hub's policy refuses; the message says which rule."""


@dataclass(frozen=True)
class GroupPolicy:
    """The hub's rules for aggregation groups (issue 13), enforced by the card's privacy
    guard (:mod:`meterhub.card.guard`) over all groups of one recipient, whichever of its
    aggregation applets admitted them:

    1. the group definition is signed by the recipient's group-signing key that the
       customer pinned at provisioning (``group/<recipient>``);
    2. the hub's meter is a member, listed with the asking applet's own key;
    3. at least ``min_size`` members;
    4. the fixed interval (``interval_minutes``, hourly by default);
    5. no two groups of this hub differ by fewer than ``min_size`` members (symmetric
       difference), which would isolate a household by subtraction; equal member
       sets are allowed (they reveal nothing new), a reused group id with other
       content is not;
    6. a recovery (the unmasking round) leaves at least ``min_size`` members present,
       names only other members, each once (missing or present, never both), and
       happens at most once per group and day; the guard also keeps, per group-day,
       which kind it answered for each member and refuses the other kind.

    Pure checks with no state of their own; the guard holds the groups.
    """

    min_size: int = MIN_GROUP_SIZE
    interval_minutes: int = FIXED_INTERVAL_MINUTES

    def admit(self, group: GroupDefinition, signer_keys: Sequence[bytes], meter_id: str, own_key: bytes,
              known: Sequence[GroupDefinition]) -> None:
        """Raise :class:`PermissionError` (signature) or :class:`PolicyRefusal`."""
        keys = []
        for k in signer_keys:
            try:
                keys.append(ecdsa.load_verifying_key(k))
            except ValueError:
                continue
        if not keys:
            raise PolicyRefusal("no group-signing key pinned for this recipient")
        if not any(group.verify(k) for k in keys):
            raise PermissionError("group definition is not signed by the pinned group-signing key")
        me = group.member(meter_id)
        if me is None:
            raise PolicyRefusal(f"meter {meter_id} is not a member of group {group.group_id}")
        if me.hub_key != own_key:
            raise PolicyRefusal("the group lists another key for this hub")
        if len(group.members) < self.min_size:
            raise PolicyRefusal(f"group of {len(group.members)} is below the minimum of {self.min_size}")
        if group.interval_minutes != self.interval_minutes:
            raise PolicyRefusal(f"groups aggregate fixed {self.interval_minutes}-minute intervals")
        ids = group.meter_ids
        for other in known:
            if other.group_id == group.group_id:
                if other.body() != group.body():
                    raise PolicyRefusal(f"group id {group.group_id} is taken by another definition")
                continue
            diff = len(ids ^ other.meter_ids)
            if 0 < diff < self.min_size:
                raise PolicyRefusal(
                    f"group {group.group_id} differs from group {other.group_id} by {diff} "
                    f"member(s), fewer than {self.min_size}"
                )

    def check_recovery(self, group: GroupDefinition, meter_id: str, missing: tuple[str, ...],
                       present: tuple[str, ...] = ()) -> None:
        if meter_id in missing or meter_id in present:
            raise PolicyRefusal("a hub cannot recover its own masks")
        unknown = [m for m in (*missing, *present) if group.member(m) is None]
        if unknown:
            raise PolicyRefusal(f"{unknown[0]} is not a member of group {group.group_id}")
        named = (*missing, *present)
        if len(set(named)) != len(named):
            raise PolicyRefusal("a member is named twice")
        remain = len(group.members) - len(missing)
        if remain < self.min_size:
            raise PolicyRefusal(f"{remain} members would remain, fewer than {self.min_size}")


def demo_group_key() -> ecdsa.SigningKey:
    """A PUBLICLY KNOWN P-256 key with which the demo grid operator signs group
    definitions and its own suspect profiles (derived from a public string; the demo
    customers pin it as ``group/grid-operator`` and ``load-profile/grid-operator``).
    Demo and tests only."""
    return demo_signing_key(GRID_OPERATOR_GROUP)
