"""The aggregation applet: private, verified feeder sums for fraud detection (issue 13).

Installed by the grid operator's TSM under its security domain. The hub's host pairs
it with the meter and feeds each day's openings as for the other metering applets
(``10`` PAIR METER, ``20`` PUT DAY P1 ``01``, ``32`` GET STATE; see
:mod:`meterhub.applets.readings`). On install it draws an X25519 key pair
(:mod:`meterhub.crypto.zerosum`); the grid operator reads the public key and lists it
in the signed group definitions.

For a group and a local day the applet releases per hourly interval ``h`` the hour's
reading sum and blinding sum, each masked with the zero-sum masks it shares with the
other members (Kursawe, Danezis, Kohlweiss, PETS 2011): ``(m_h + a_h, r_h + b_h) mod
Q``. Alone, a release is uniformly random to its recipient; over the whole group the
masks cancel and the grid operator learns ``S_h = sum m_h`` and ``R_h = sum r_h``,
which it checks against the product of the meters' commitments
(``sum C = S*G + R*H``), so a hub cannot under-report.

STORE DATA messages (GPC 2.3.1 §11.11, blocks joined; P1 b8 on the last), from the
grid operator's security domain, inside its SCP03 session; first byte:

* ``01`` + a signed group definition (:class:`meterhub.aggregation.GroupDefinition`)
  → admitted under :class:`GroupPolicy` and stored. Refused: malformed ``6A80``;
  signature ``6982``; policy ``6985``.
* ``02`` → the applet's 32-byte X25519 public key.
* ``10`` + :class:`~meterhub.aggregation.AggregationRequest` → the
  :class:`~meterhub.aggregation.MaskedRelease` (about 1.6 KB), answered directly: the
  card returns it in ``61xx`` chunks that the host collects with GET RESPONSE
  (ISO/IEC 7816-4 §5.6), after the security domain has wrapped the whole answer
  (R-MAC, R-ENC). Unknown group or day without readings ``6A88``; day outside the
  group's validity ``6985``.
* ``11`` + :class:`~meterhub.aggregation.RecoveryRequest` → the
  :class:`~meterhub.aggregation.RecoveryRelease`, answered the same way. Policy ``6985``.
* ``03`` + ``u32 offset`` → the outbox chunk at ``offset`` (unused by this applet's
  answers; kept for the shared readings framing).

Install parameters: the grid operator's P-256 public key that signs group definitions.

What a hostile grid operator learns: from a release, nothing (uniformly masked); from
a group's releases, the group's hourly sum; from a recovery, the sum of the present
members. It could isolate a household only with groups that differ by few members,
which :class:`GroupPolicy` refuses, or by declaring as missing a member that did
answer (the recovery then unmasks that member's release): a hub cannot tell, so the
policy allows one recovery per group and day and the hubs log it (docs/fraud.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..aggregation import (
    AggregationRequest,
    FormatError,
    GroupDefinition,
    MaskedRelease,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
)
from ..card import AppletContext, register_applet_class
from ..card.gp.loadfile import applet_code_hash
from ..crypto import ecdsa, zerosum
from ..crypto.group import Q
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from .readings import MeteringApplet, day_bytes

__all__ = [
    "CLASS_NAME",
    "FIXED_INTERVAL_MINUTES",
    "MIN_GROUP_SIZE",
    "AggregationApplet",
    "GroupPolicy",
    "PolicyRefusal",
    "hour_sums",
]

CLASS_NAME = "meterhub.applets.aggregation/1"
MIN_GROUP_SIZE = 5
FIXED_INTERVAL_MINUTES = 60
_K_DH = b"dh"


class PolicyRefusal(Exception):
    """A group or request the hub's policy refuses; the message says which rule."""


@dataclass(frozen=True)
class GroupPolicy:
    """The hub's rules for aggregation groups (issue 13).

    Pure checks over the group at hand and the groups the hub already belongs to, with
    no card state of their own, so that the card's common privacy guard (issue 11) can
    take them over unchanged:

    1. the group definition is signed by the grid operator pinned at install;
    2. the hub's meter is a member, listed with this applet's own key;
    3. at least ``min_size`` members;
    4. the fixed interval (``interval_minutes``, hourly by default);
    5. no two groups of this hub differ by fewer than ``min_size`` members (symmetric
       difference), which would isolate a household by subtraction; equal member
       sets are allowed (they reveal nothing new), a reused group id with other
       content is not;
    6. a recovery leaves at least ``min_size`` members present, names only other
       members, and happens at most once per group and day.
    """

    min_size: int = MIN_GROUP_SIZE
    interval_minutes: int = FIXED_INTERVAL_MINUTES

    def admit(self, group: GroupDefinition, grid_key: bytes, meter_id: str, own_key: bytes,
              known: list[GroupDefinition]) -> None:
        try:
            key = ecdsa.load_verifying_key(grid_key)
        except ValueError:
            raise PolicyRefusal("no grid operator key") from None
        if not group.verify(key):
            raise PermissionError("group definition is not signed by the grid operator")
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
                       previous: tuple[str, ...] | None) -> None:
        if meter_id in missing:
            raise PolicyRefusal("a hub cannot recover its own masks")
        unknown = [m for m in missing if group.member(m) is None]
        if unknown:
            raise PolicyRefusal(f"{unknown[0]} is not a member of group {group.group_id}")
        present = len(group.members) - len(missing)
        if present < self.min_size:
            raise PolicyRefusal(f"{present} members would remain, fewer than {self.min_size}")
        if previous is not None and previous != missing:
            raise PolicyRefusal("a recovery with other missing members was already answered for this day")


def hour_sums(blob: bytes, per_hour: int) -> list[tuple[int, int]]:
    """Reading and blinding sums of each run of ``per_hour`` openings (36-byte units)."""
    n = len(blob) // 36
    if n % per_hour:
        raise ValueError("the day's readings do not fill whole intervals")
    out = []
    frm = int.from_bytes
    for h in range(n // per_hour):
        m = r = 0
        for j in range(h * per_hour, (h + 1) * per_hour):
            off = 36 * j
            m += frm(blob[off : off + 4], "big")
            r += frm(blob[off + 4 : off + 36], "big")
        out.append((m % Q, r % Q))
    return out


class AggregationApplet(MeteringApplet):
    """See the module docstring."""

    KEY_SLOT = b"grid"
    KEY_ROLE = "grid operator"
    POLICY = GroupPolicy()

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> AggregationApplet:
        applet = super().install(ctx, params)
        ctx.store.put(_K_DH, zerosum.private_key_bytes(zerosum.generate_private_key()))
        return applet  # type: ignore[return-value]

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._pair_cache: dict[bytes, list[zerosum.PairKey]] = {}

    # -- state ------------------------------------------------------------------
    def _private(self):  # noqa: ANN202 - an X25519PrivateKey
        raw = self.ctx.store.get(_K_DH)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no key pair")
        return zerosum.private_key_from_bytes(raw)

    def _own_key(self) -> bytes:
        return zerosum.public_key_bytes(self._private())

    def _groups(self) -> list[GroupDefinition]:
        names = [k for k in self.ctx.store.keys() if k[:2] == b"g:"]  # noqa: SIM118 - a card store, not a dict
        return [GroupDefinition.from_bytes(self.ctx.store.get(k) or b"") for k in names]

    def _group(self, group_id: str) -> GroupDefinition:
        raw = self.ctx.store.get(b"g:" + group_id.encode())
        if raw is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no group {group_id}")
        return GroupDefinition.from_bytes(raw)

    def _pairs(self, group: GroupDefinition, meter_id: str) -> list[zerosum.PairKey]:
        raw = group.to_bytes()
        hit = self._pair_cache.get(raw)
        if hit is None:
            own = self._private()
            hit = [zerosum.pair_key(own, m.hub_key) for m in group.members if m.meter_id != meter_id]
            self._pair_cache[raw] = hit
        return hit

    # -- commands -----------------------------------------------------------------
    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA from the grid operator's SD (GP API ``Application.processData``)."""
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x01:
            self._admit(body)
            return b""
        if kind == 0x02:
            return self._own_key()
        if kind == 0x10:
            return self._release(body)
        if kind == 0x11:
            return self._recover(body)
        if kind == 0x03:
            return self.rs.fetch(body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    def _admit(self, body: bytes) -> None:
        try:
            group = GroupDefinition.from_bytes(body)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed group definition") from None
        meter_id = self.rs.pairing()[0]
        try:
            self.POLICY.admit(group, self.signer_key, meter_id, self._own_key(), self._groups())
        except PermissionError as exc:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, str(exc)) from None
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        try:
            self._pairs(group, meter_id)  # every member key must give a pair key
        except zerosum.ZeroSumError:
            raise ISOException(SW.WRONG_DATA, "a member's key is not a usable X25519 key") from None
        self.ctx.store.put(b"g:" + group.group_id.encode(), group.to_bytes())

    def _day_sums(self, group: GroupDefinition, day: date) -> tuple[int, list[tuple[int, int]]]:
        if not group.valid_from <= day <= group.valid_to:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "day outside the group's validity")
        _, _, interval, _ = self.rs.pairing()
        if group.interval_minutes % interval:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the meter's interval does not divide the group's")
        first, blob = self.rs.period(day, day)
        try:
            return first, hour_sums(blob, group.interval_minutes // interval)
        except ValueError:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored day does not fill whole intervals") from None

    def _release(self, body: bytes) -> bytes:
        try:
            req = AggregationRequest.from_bytes(body)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed aggregation request") from None
        group = self._group(req.group_id)
        meter_id = self.rs.pairing()[0]
        first, sums = self._day_sums(group, req.day)
        masks = zerosum.member_masks(self._pairs(group, meter_id), mask_context(group.group_id, req.day, len(sums)),
                                     2 * len(sums))
        values = tuple(((m + masks[2 * h]) % Q, (r + masks[2 * h + 1]) % Q) for h, (m, r) in enumerate(sums))
        out = MaskedRelease(group.group_id, meter_id, req.day, first, applet_code_hash(type(self)), values)
        mark = b"r:" + group.group_id.encode() + b"/" + day_bytes(req.day)
        if self.ctx.store.get(mark) is None:  # one atomic write (JCRE §7.2): released or not
            self.ctx.store.put(mark, b"\x01")
        return out.to_bytes()

    def _recover(self, body: bytes) -> bytes:
        try:
            req = RecoveryRequest.from_bytes(body)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed recovery request") from None
        group = self._group(req.group_id)
        meter_id = self.rs.pairing()[0]
        key = group.group_id.encode() + b"/" + day_bytes(req.day)
        if self.ctx.store.get(b"r:" + key) is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this hub has not released the day")
        prev_raw = self.ctx.store.get(b"v:" + key)
        previous = tuple(prev_raw.decode().split(",")) if prev_raw else None
        try:
            self.POLICY.check_recovery(group, meter_id, req.missing, previous)
        except PolicyRefusal as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        _, sums = self._day_sums(group, req.day)
        missing = set(req.missing)
        keys = {m.hub_key for m in group.members if m.meter_id in missing}
        pairs = [p for p in self._pairs(group, meter_id) if p.peer in keys]
        terms = zerosum.member_masks(pairs, mask_context(group.group_id, req.day, len(sums)), 2 * len(sums))
        values = tuple((terms[2 * h], terms[2 * h + 1]) for h in range(len(sums)))
        out = RecoveryRelease(group.group_id, meter_id, req.day, req.missing, values)
        if previous is None:  # recorded before anything leaves the card
            self.ctx.store.put(b"v:" + key, ",".join(req.missing).encode())
        return out.to_bytes()


register_applet_class(CLASS_NAME, AggregationApplet)
