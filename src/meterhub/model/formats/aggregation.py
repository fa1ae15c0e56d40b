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
from ...crypto.selfmask import sealed_size
from ..errors import FormatError
from .group_rules import (
    FIXED_INTERVAL_MINUTES,
    MIN_GROUP_SIZE,
    GroupPolicy,
    PolicyRefusal,
    demo_group_key,
)

__all__ = [
    "GROUP_DST",
    "GroupMember",
    "GroupDefinition",
    "AggregationRequest",
    "MaskedRelease",
    "RecoveryRequest",
    "RecoveryRelease",
    "mask_context",
    "share_context",
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
# version 3: the self-mask is a vector shared linearly over Z_Q (docs/fraud.md); versions
# 2 (a seed in GF(2^128) Shamir shares) and 1 (no self-mask) are refused by name
_RELEASE_MAGIC = b"MHAR\x03"
_RECOVERY_MAGIC = b"MHAV\x03"
_UNMASK_MAGIC = b"MHAU\x03"
SHARE_CTX_DST = b"meterhub/v2/aggregation-self-mask-share\x00"
SHARE_AAD_DST = b"meterhub/v2/aggregation-self-mask-share-aad\x00"
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


def share_context(group_id: str, day: date, hours: int, dealer: str, holder: str) -> bytes:
    """The HKDF context of a self-mask share that dealer and holder derive from their
    pair secret (:func:`meterhub.crypto.selfmask.derived_share`): the group, the
    interval range, the dealer's and the holder's meter ids. It needs no span digest:
    the self-masks do not cancel over the group, their sum is interpolated."""
    return (SHARE_CTX_DST + _str8(group_id) + _date4(day) + hours.to_bytes(1, "big") + _str8(dealer)
            + _str8(holder))


def share_aad(group_id: str, day: date, sender: str, receiver: str) -> bytes:
    """The AES-GCM associated data of a sealed self-mask share: group, day, dealer
    (sender), holder (receiver), so a share cannot be replayed to another round, group
    or peer."""
    return SHARE_AAD_DST + _str8(group_id) + _date4(day) + _str8(sender) + _str8(receiver)


def self_mask_threshold(members: int) -> int:
    """The Shamir threshold ``t`` of a member's self-mask: ``max(MIN_GROUP_SIZE - 1,
    ceil(2 (members - 1) / 3))``, at most ``members - 1``. The operator together with
    fewer than ``t`` other hubs cannot remove a present member's self-mask; the round
    gives the sum of the present members' self-masks if ``t`` of them answer
    (docs/fraud.md, double masking)."""
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
    """One hub's answer for one day (version 3, double masking): per interval ``(m_h +
    a_h + c_h, r_h + b_h + d_h) mod Q``, where ``m_h``/``r_h`` are the hour's reading
    and blinding sums, ``a_h``/``b_h`` the hub's zero-sum masks and ``(c_h, d_h)`` its
    self-mask, a fresh uniform vector of ``2 n`` scalars Shamir-shared over Z_Q
    (:mod:`meterhub.crypto.selfmask`). ``first_index`` is the meter's first reading
    index of the day and ``code_hash`` the applet's code hash (GPC load-file hash of the
    reviewed code). ``shares`` holds, for each member whose share is not derived from
    the pair secret, ``(member id, sealed share of 2 n scalars)``, in the group's member
    order (the grid operator forwards each to its member in the unmasking round).

    ``MHAR 03 || str8 group || str8 meter || date4 || u64 first index || 32-byte code
    hash || u8 n || n x (32-byte scalar, 32-byte scalar) || u16 k || k x (str8 member
    id || sealed share of 12 + 2 + 64 n + 16 bytes)``. Versions 1 (no self-mask) and 2
    (a seed shared in GF(2^128)) are refused.
    """

    group_id: str
    meter_id: str
    day: date
    first_index: int
    code_hash: bytes
    values: tuple[tuple[int, int], ...]
    shares: tuple[tuple[str, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        if len(self.code_hash) != 32:
            raise FormatError("release: code hash is 32 bytes")
        return (
            _RELEASE_MAGIC + _str8(self.group_id) + _str8(self.meter_id) + _date4(self.day)
            + self.first_index.to_bytes(8, "big") + self.code_hash + _pairs_bytes(self.values)
            + _sealed_bytes(self.shares, sealed_size(2 * len(self.values)))
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedRelease:
        r = _Reader(data, "masked release")
        _magic(r, _RELEASE_MAGIC, "masked release")
        head = (r.str8("group id"), r.str8("meter id"), r.date4("day"), r.u64(), r.take(32))
        values = _pairs(r, "masked release")
        out = cls(*head, values, _sealed(r, sealed_size(2 * len(values))))
        r.end()
        return out


def _magic(r: _Reader, magic: bytes, what: str) -> None:
    got = r.take(len(magic))
    if got == magic:
        return
    if got[:4] == magic[:4] and got[4] in (1, 2):
        raise FormatError(f"{what}: version {got[4]} is refused (this is version {magic[4]}: the self-mask is "
                          "shared linearly over Z_q, docs/fraud.md)")
    raise FormatError(f"{what}: not a version-{magic[4]} message")


def _sealed(r: _Reader, size: int) -> tuple[tuple[str, bytes], ...]:
    n = r.u16()
    if n >= MAX_MEMBERS:
        raise FormatError(f"{r.what}: at most {MAX_MEMBERS - 1} sealed shares")
    out = tuple((r.str8("member id"), r.take(size)) for _ in range(n))
    ids = [i for i, _ in out]
    if len(set(ids)) != len(ids):
        raise FormatError(f"{r.what}: a member has two sealed shares")
    return out


def _sealed_bytes(shares: Sequence[tuple[str, bytes]], size: int) -> bytes:
    if len(shares) >= MAX_MEMBERS or any(len(s) != size for _, s in shares):
        raise FormatError(f"sealed shares: at most {MAX_MEMBERS - 1} of {size} bytes")
    if len({i for i, _ in shares}) != len(shares):
        raise FormatError("sealed shares: a member has two")
    return len(shares).to_bytes(2, "big") + b"".join(_str8(i) + s for i, s in shares)


def _ids(r: _Reader, what: str, kind: str = "missing") -> tuple[str, ...]:
    n = r.u16()
    if n > MAX_MEMBERS:
        raise FormatError(f"{what}: 0..{MAX_MEMBERS} {kind} members")
    ids = tuple(r.str8("meter id") for _ in range(n))
    if list(ids) != sorted(set(ids)):
        raise FormatError(f"{what}: {kind} members must be sorted, without repeats")
    return ids


def _ids_bytes(ids: Sequence[str], kind: str = "missing") -> bytes:
    if len(ids) > MAX_MEMBERS or list(ids) != sorted(set(ids)):
        raise FormatError(f"{kind} members: sorted distinct ids")
    return len(ids).to_bytes(2, "big") + b"".join(_str8(i) for i in ids)


def _check_round(missing: Sequence[str], present: Sequence[str], what: str) -> None:
    if list(present) != sorted(set(present)):
        raise FormatError(f"{what}: present members must be sorted, without repeats")
    if set(missing) & set(present):
        raise FormatError(f"{what}: a member is named both missing and present")
    if not missing and not present:
        raise FormatError(f"{what}: names no member")


def _sealed_len_ok(n: int) -> bool:
    return n == 0 or (n >= sealed_size(2) and (n - sealed_size(0)) % 64 == 0 and n <= sealed_size(2 * MAX_HOURS))


@dataclass(frozen=True)
class RecoveryRequest:
    """The unmasking round (version 3): the grid operator names, for the asked hub, the
    members it claims **missing** (the hub answers the pairwise masks it shares with
    them) and the members it claims **present** (the hub answers the sum of its shares
    of their self-masks and its own), each present member with the sealed share
    addressed to the asked hub from that member's release, or empty where the hub
    derives that share from the pair secret. Bonawitz et al., CCS 2017, §4.

    ``MHAU 03 || str8 group || date4 || u16 n || n x str8 missing id || u16 k || k x
    (str8 present id || u16 len || len bytes sealed share)``; ids sorted, distinct, the
    two lists disjoint, not both empty; ``len`` is 0 or a sealed share's size. Versions
    1 and 2 are refused.
    """

    group_id: str
    day: date
    missing: tuple[str, ...]
    present: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_round(self.missing, [p for p, _ in self.present], "recovery request")
        if any(not _sealed_len_ok(len(s)) for _, s in self.present):
            raise FormatError("recovery request: a sealed share has an impossible length")

    def to_bytes(self) -> bytes:
        if len(self.present) > MAX_MEMBERS:
            raise FormatError(f"recovery request: at most {MAX_MEMBERS} present members")
        return (_UNMASK_MAGIC + _str8(self.group_id) + _date4(self.day) + _ids_bytes(self.missing)
                + len(self.present).to_bytes(2, "big")
                + b"".join(_str8(p) + len(s).to_bytes(2, "big") + s for p, s in self.present))

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryRequest:
        r = _Reader(data, "recovery request")
        _magic(r, _UNMASK_MAGIC, "recovery request")
        gid, day, missing = r.str8("group id"), r.date4("day"), _ids(r, "recovery request")
        n = r.u16()
        if n > MAX_MEMBERS:
            raise FormatError(f"recovery request: at most {MAX_MEMBERS} present members")
        present = tuple((r.str8("meter id"), r.take(r.u16())) for _ in range(n))
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
    p'_ik) mod Q`` (all zero when none is), which the grid operator subtracts; and
    ``share``, the sum of its Shamir shares of the self-masks of the members claimed
    ``present`` and of its own, ``F(x) = sum_{i in present + self} f_i(x)`` at its
    index ``x``, from which ``t`` answers interpolate the present members' self-mask
    sum. For any one member a hub answers one kind or the other, never both (the guard
    remembers, docs/fraud.md). It reveals nothing about the hub's own readings: its
    pairwise masks stay on its release, its own share is one of ``t`` needed.

    ``MHAV 03 || str8 group || str8 meter || date4 || u16 n || n x str8 missing id ||
    u16 p || p x str8 present id || u8 k || k x (32-byte, 32-byte) pairwise terms || u8
    k || k x (32-byte, 32-byte) self-mask share sum``.
    """

    group_id: str
    meter_id: str
    day: date
    missing: tuple[str, ...]
    present: tuple[str, ...]
    values: tuple[tuple[int, int], ...]
    share: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if self.meter_id in self.missing or self.meter_id in self.present:
            raise FormatError("recovery release: the answering hub names itself")
        _check_round(self.missing, self.present, "recovery release")
        if len(self.values) != len(self.share):
            raise FormatError("recovery release: pairwise terms and share of different lengths")

    def to_bytes(self) -> bytes:
        return (
            _RECOVERY_MAGIC + _str8(self.group_id) + _str8(self.meter_id) + _date4(self.day)
            + _ids_bytes(self.missing) + _ids_bytes(self.present, "present") + _pairs_bytes(self.values)
            + _pairs_bytes(self.share)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryRelease:
        r = _Reader(data, "recovery release")
        _magic(r, _RECOVERY_MAGIC, "recovery release")
        head = (r.str8("group id"), r.str8("meter id"), r.date4("day"), _ids(r, "recovery release"),
                _ids(r, "recovery release", "present"), _pairs(r, "recovery release"), _pairs(r, "recovery release"))
        r.end()
        return cls(*head)


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
