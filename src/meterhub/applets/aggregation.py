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

* ``01`` + a signed group definition (:class:`meterhub.model.formats.aggregation.GroupDefinition`)
  → admitted by the privacy guard under :class:`~meterhub.model.formats.aggregation.GroupPolicy`
  (signed by the recipient's pinned group-signing key, this meter a member with this
  applet's key, at least 5 members, hourly intervals, no two groups of the recipient
  differing by fewer than 5, listed in the group registry the hub holds) and kept by
  the guard. Refused: malformed ``6A80``;
  signature ``6982``; policy ``6985``.
* ``02`` → the applet's 32-byte X25519 public key (issued by the guard).
* ``03`` + the next block of the recipient's **group registry**
  (:class:`meterhub.model.group_registry.RegistryBlock`) → kept by the guard if it extends the
  chain the hub holds and the whole registry isolates no household (docs/fraud.md).
  Signature ``6982``; not the next block, another feeder, a household in the span of
  the groups, two groups differing by fewer than 5, a group added to a day this hub
  has released ``6985``; malformed ``6A80``. A block held already is accepted again.
* ``04`` → ``u32 blocks held || 32-byte chain value`` of that registry.
* ``05`` → :class:`~meterhub.model.group_registry.HeadTags`: a 16-byte tag over that head for
  every co-member (every other member of a group listing this hub), under the pair's
  X25519 secret (no release: it says which registry the hub holds, nothing about
  readings). ``06`` + the co-members' tags addressed to this hub over the same head →
  recorded by the guard (a tag that does not verify ``6982``, another head ``6985``).
  Once a hub has released under one head it releases under a newer one only when
  every co-member tagged it (``6985`` otherwise): forks of the registry (docs/fraud.md).
* ``10`` + :class:`~meterhub.model.formats.aggregation.AggregationRequest` → the
  :class:`~meterhub.model.formats.aggregation.MaskedRelease` (about 1.6 KB), a release of kind
  ``aggregate`` through the guard (logged; one per group and day; a re-ask answers the
  same bytes), answered directly: the card returns it in ``61xx`` chunks that the host
  collects with GET RESPONSE (ISO/IEC 7816-4 §5.6), after the security domain has
  wrapped the whole answer (R-MAC, R-ENC). Unknown group or day without readings
  ``6A88``; day outside the group's validity ``6985``.
* ``11`` + :class:`~meterhub.model.formats.aggregation.RecoveryRequest` (version 3, the unmasking
  round) → the :class:`~meterhub.model.formats.aggregation.RecoveryRelease`: the pairwise masks it
  shares with the members named missing, and ONE vector, the sum of its Shamir shares
  of the self-masks of the members named present and of its own (each share derived
  from the pair secret or opened from the sealed share forwarded with the member); a
  ``recovery`` release through the guard (one per group and day, only after the
  day's own release, never both kinds for one member), answered the same way. Policy,
  a share that does not open, is another member's, is sent where it is derived or is
  left out ``6985``; versions 1 and 2 ``6A80``.

Install parameters: empty, or the recipient's group-signing key that the customer
pinned (``group/<recipient>``); any other key ``6982``. The applet never takes a
signer key from its installer: it reads the pinned one from the guard.

The X25519 key pair is drawn from the card's random source at install
(``AppletContext.random_bytes``, which a demo may seed).

The masks of a day bind the span digest of that day's groups in the hub's registry
(``mask_context``), so members shown different registries get masks that do not cancel.

What a hostile grid operator learns: from a release, nothing (masked twice: zero-sum
pairwise masks and a fresh uniform self-mask Shamir-shared over Z_Q among the group,
Bonawitz et al., CCS 2017, §4; its sealed shares open only under the pair keys); from
a group's releases and the unmasking round, the group's hourly sum and, of the
self-masks, only their sum over the present members (each answer is one share of that
sum); from a recovery, the sum of the present members, which the guard allows only
where it adds no household to the day's span (docs/fraud.md). It could
isolate a household only with groups whose span contains it (two groups that differ by
few members, or a chain of groups), which the guard refuses over the whole registry.
Declaring missing a member that did answer (message ``11``) removes only its pairwise
masks: its self-mask needs ``t`` shares of it, and every card that answered
"missing" for it leaves its share out (refuses a request naming it present) (the guard keeps the kind per member and
group-day, docs/fraud.md); only ``t`` peers colluding with the operator can unmask it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from ..card import CLEAR_ON_RESET, AppletContext, register_applet_class
from ..card.gp.loadfile import applet_code_hash
from ..crypto import selfmask, zerosum
from ..crypto.group import Q
from ..model.formats.aggregation import (
    FIXED_INTERVAL_MINUTES,
    MIN_GROUP_SIZE,
    FormatError,
    GroupDefinition,
    GroupPolicy,
    MaskedRelease,
    PolicyRefusal,
    RecoveryRelease,
    RecoveryRequest,
    mask_context,
    self_mask_threshold,
    share_aad,
    share_context,
)
from ..model.group_registry import HeadTags, head_message
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from .readings import MeteringApplet

__all__ = [
    "CLASS_NAME",
    "FIXED_INTERVAL_MINUTES",
    "MIN_GROUP_SIZE",
    "AggregationApplet",
    "GroupPolicy",
    "PolicyRefusal",
    "hour_sums",
    "deal_self_mask",
    "share_sum",
]  # GroupPolicy and its constants live in meterhub.model.formats.aggregation (the guard enforces them)

CLASS_NAME = "meterhub.applets.aggregation/1"
_K_DH = b"dh"
_K_OWN = b"own/"  # + group id / day: this hub's share of its own self-mask, kept for the unmasking round
_INBOX_BYTES = 256 * 255  # a STORE DATA sequence: block numbers 00..FF (GPC 2.3.1 §11.11.2.2), Lc <= 255


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


def deal_self_mask(group: GroupDefinition, day: date, hours: int, meter_id: str, pairs: Sequence[zerosum.PairKey],
                   self_mask: Sequence[int], random_bytes: Callable[[int], bytes],
                   ) -> tuple[tuple[tuple[str, bytes], ...], list[int]]:
    """Shamir shares of ``self_mask`` over Z_Q (:mod:`meterhub.crypto.selfmask`): the
    sealed ones for the members that do not derive theirs, in member order, and the
    dealer's share at its own index. ``pairs`` are the dealer's pair keys in member
    order (itself left out); ``random_bytes`` gives the sealing nonces."""
    ids = [m.meter_id for m in group.members]
    me = ids.index(meter_id) + 1
    pair_of = dict(zip([i for i in ids if i != meter_id], pairs, strict=True))
    count = len(self_mask)
    derived = selfmask.derived_holders(len(ids), me, self_mask_threshold(len(ids)))
    fixed = {x: selfmask.derived_share(pair_of[ids[x - 1]], share_context(group.group_id, day, hours, meter_id,
                                                                           ids[x - 1]), count)
             for x in derived}
    sent = [x for x in range(1, len(ids) + 1) if x != me and x not in fixed]
    shares = selfmask.split(self_mask, fixed, [*sent, me])
    sealed = tuple(
        (ids[x - 1], selfmask.seal_vector(pair_of[ids[x - 1]], share_aad(group.group_id, day, meter_id, ids[x - 1]),
                                          x, shares[x], random_bytes(selfmask.NONCE_BYTES)))
        for x in sent
    )
    return sealed, shares[me]


def share_sum(group: GroupDefinition, day: date, hours: int, meter_id: str, pairs: Sequence[zerosum.PairKey],
              present: Sequence[tuple[str, bytes]], own_share: Sequence[int]) -> list[int]:
    """``F(x) = own_share + sum over present members i of f_i(x)`` at this member's index
    ``x``: each ``f_i(x)`` derived from the pair secret (``present`` gives ``b""``) or
    opened from the sealed share forwarded with it. :class:`~meterhub.crypto.selfmask.SelfMaskError`
    names a member whose share is sent where derived, missing, does not open or is
    another member's."""
    ids = [m.meter_id for m in group.members]
    me = ids.index(meter_id) + 1
    t = self_mask_threshold(len(ids))
    by_key = {p.peer: p for p in pairs}
    total = list(own_share)
    count = len(total)
    for pid, sealed in present:
        peer = group.member(pid)
        if peer is None or pid == meter_id:
            raise selfmask.SelfMaskError(f"{pid} is not another member")
        pair = by_key[peer.hub_key]
        if me in selfmask.derived_holders(len(ids), ids.index(pid) + 1, t):
            if sealed:
                raise selfmask.SelfMaskError(f"the share of {pid} is derived, not sent")
            share = selfmask.derived_share(pair, share_context(group.group_id, day, hours, pid, meter_id), count)
        else:
            try:
                idx, share = selfmask.open_vector(pair, share_aad(group.group_id, day, pid, meter_id), sealed, count)
            except selfmask.SelfMaskError:
                raise selfmask.SelfMaskError(f"the share of {pid} does not open") from None
            if idx != me:
                raise selfmask.SelfMaskError(f"the share of {pid} is not this member's")
        total = [a + b for a, b in zip(total, share, strict=True)]
    return [y % Q for y in total]


class AggregationApplet(MeteringApplet):
    """See the module docstring."""

    KEY_ROLE = "group"

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> AggregationApplet:
        applet = super().install(ctx, params)
        # X25519 accepts any 32 bytes as a private key (RFC 7748 §5 clamps them).
        key = zerosum.private_key_from_bytes(ctx.random_bytes(32))
        ctx.store.put(_K_DH, zerosum.private_key_bytes(key))
        return applet  # type: ignore[return-value]

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._pair_cache: dict[tuple[bytes, ...], list[zerosum.PairKey]] = {}
        self._key_cache: dict[bytes, zerosum.PairKey] = {}
        # STORE DATA blocks are joined in RAM (JCRE ch. 5 transient memory, cleared on
        # reset: a torn sequence starts again at block 0), not in the persistent store: an
        # unmasking request of a 50-member group is about 27 KB, 135 blocks, and a write of
        # the growing message per block cost more than the answer itself
        self._inbox = ctx.make_transient_bytes(_INBOX_BYTES, CLEAR_ON_RESET)
        self._inbox_lengths = ctx.make_transient_bytes(256, CLEAR_ON_RESET)  # each block's length
        self._inbox_held = ctx.make_transient_bytes(2, CLEAR_ON_RESET)  # u16 blocks held (0: none)

    def _assemble(self, apdu: CommandAPDU) -> bytes | None:
        """Join STORE DATA blocks (P2 block number from 00, P1 b8 on the last): the whole
        message, or None until the last block."""
        held = 0 if apdu.p2 == 0 else int.from_bytes(bytes(self._inbox_held), "big")
        if apdu.p2 != held:
            self._inbox_held[0:2] = bytes(2)
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "STORE DATA block out of sequence")
        data = bytes(apdu.data)
        if len(data) > 255:
            raise ISOException(SW.WRONG_LENGTH, "block too large")
        pos = 255 * apdu.p2
        self._inbox[pos : pos + len(data)] = data
        self._inbox_lengths[apdu.p2] = len(data)
        if not apdu.p1 & 0x80:
            self._inbox_held[0:2] = (apdu.p2 + 1).to_bytes(2, "big")
            return None
        self._inbox_held[0:2] = bytes(2)
        lengths = bytes(self._inbox_lengths)
        msg = b"".join(self._inbox[255 * k : 255 * k + lengths[k]] for k in range(apdu.p2 + 1))  # type: ignore[misc]
        if not msg:
            raise ISOException(SW.WRONG_LENGTH, "empty message")
        return msg

    # -- state ------------------------------------------------------------------
    def _private(self):  # noqa: ANN202 - an X25519PrivateKey
        raw = self.ctx.store.get(_K_DH)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no key pair")
        return zerosum.private_key_from_bytes(raw)

    def _own_key(self) -> bytes:
        return zerosum.public_key_bytes(self._private())

    def _pairs(self, group: GroupDefinition, meter_id: str) -> list[zerosum.PairKey]:
        # a pair key depends only on the two hubs' keys: cached by the peers' keys, so a
        # new group of the same hubs (a localisation round, a new validity) reuses them
        peers = tuple(m.hub_key for m in group.members if m.meter_id != meter_id)
        hit = self._pair_cache.get(peers)
        if hit is None:
            own = self._private()
            hit = [zerosum.pair_key(own, k) for k in peers]
            self._pair_cache[peers] = hit
        return hit

    # -- commands -----------------------------------------------------------------
    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA from the grid operator's SD (GP API ``Application.processData``)."""
        msg = self._assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x01:
            self._admit(body)
            return b""
        if kind == 0x02:
            return bytes(self.guard.issue_key(self._own_key()))
        if kind == 0x03:
            self.guard.extend_registry(bytes(body))
            return b""
        if kind == 0x04:
            return bytes(self.guard.registry_head())
        if kind == 0x05:
            return self._head_tags()
        if kind == 0x06:
            self._take_head_tags(body)
            return b""
        if kind == 0x10:
            return self._release(body)
        if kind == 0x11:
            return self._recover(body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    def _pair_with(self, key: bytes) -> zerosum.PairKey:
        hit = self._key_cache.get(key)
        if hit is None:
            hit = self._key_cache[key] = zerosum.pair_key(self._private(), key)
        return hit

    def _head_tags(self) -> bytes:
        """Message ``05``: a tag over this hub's registry head for every co-member."""
        meter_id = self.rs.pairing()[0]
        view = self.guard.registry_view()
        if view.feeder_id is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no group registry")
        tags = set()
        for peer, keys in view.co_members(meter_id).items():
            for key in keys:  # one tag per key the registry lists the peer with
                try:
                    pair = self._pair_with(key)
                except zerosum.ZeroSumError:
                    continue
                tags.add((peer, zerosum.pair_tag(pair, head_message(view.feeder_id, view.version, view.head,
                                                                      meter_id, peer))))
        out = HeadTags(view.feeder_id, view.version, view.head, meter_id, tuple(sorted(tags)))
        return bytes(self.guard.issue_head_tags(out.to_bytes()))

    def _take_head_tags(self, body: bytes) -> None:
        """Message ``06``: the co-members' tags addressed to this hub over its head; each
        named peer needs one tag that verifies (else ``6982``: forged or from another
        head), then the guard records the peers."""
        try:
            got = HeadTags.from_bytes(bytes(body))
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed registry head tags") from None
        meter_id = self.rs.pairing()[0]
        view = self.guard.registry_view()
        if got.owner != meter_id or (got.feeder_id, got.version, got.head) != (view.feeder_id, view.version, view.head):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tags for another hub or another registry head")
        peers = view.co_members(meter_id)
        verified: set[str] = set()
        for peer, tag in got.tags:
            msg = head_message(got.feeder_id, got.version, got.head, peer, meter_id)
            for key in peers.get(peer, ()):
                try:
                    if zerosum.pair_tag_ok(self._pair_with(key), msg, tag):
                        verified.add(peer)
                except zerosum.ZeroSumError:
                    continue
        unverified = sorted({p for p, _ in got.tags} - verified)
        if unverified:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, f"no tag of {unverified[0]} verifies")
        self.guard.record_head_tags(sorted(verified), got.version, got.head)

    def _admit(self, body: bytes) -> None:
        try:
            group = GroupDefinition.from_bytes(body)
        except FormatError:
            raise ISOException(SW.WRONG_DATA, "malformed group definition") from None
        meter_id = self.rs.pairing()[0]
        try:
            self._pairs(group, meter_id)  # every member key must give a pair key
        except zerosum.ZeroSumError:
            raise ISOException(SW.WRONG_DATA, "a member's key is not a usable X25519 key") from None
        self.guard.admit_group(bytes(body), meter_id, self._own_key())

    def _day_sums(self, group: GroupDefinition, day: date) -> tuple[int, list[tuple[int, int]]]:
        _, _, interval, _ = self.rs.pairing()
        if group.interval_minutes % interval:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the meter's interval does not divide the group's")
        first, blob = self.rs.period(day, day)
        try:
            return first, hour_sums(blob, group.interval_minutes // interval)
        except ValueError:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored day does not fill whole intervals") from None

    def _release(self, body: bytes) -> bytes:
        meter_id = self.rs.pairing()[0]
        again, group, day = self.guard.begin_aggregate("aggregate", bytes(body), meter_id, self._own_key())
        if again is not None:
            return bytes(again)
        first, sums = self._day_sums(group, day)
        n = len(sums)
        ctx = mask_context(group.group_id, day, n, self.guard.day_span(day))
        pairs = self._pairs(group, meter_id)
        masks = zerosum.member_masks(pairs, ctx, 2 * n)
        # double masking (Bonawitz et al., CCS 2017, §4): a fresh self-mask from the card's
        # RNG, Shamir-shared over Z_Q; t - 1 shares derived from the pair secrets, the
        # others sealed to their members (crypto/selfmask.py)
        own = selfmask.random_scalars(self.ctx.random_bytes, 2 * n)
        values = tuple(((m + masks[2 * h] + own[2 * h]) % Q, (r + masks[2 * h + 1] + own[2 * h + 1]) % Q)
                       for h, (m, r) in enumerate(sums))
        sealed, own_share = deal_self_mask(group, day, n, meter_id, pairs, own, self.ctx.random_bytes)
        out = MaskedRelease(group.group_id, meter_id, day, first, applet_code_hash(type(self)), values, sealed)
        # the own share is overwritten by a release that did not commit (power loss) and
        # kept with the one that did: the guard answers a re-ask from its stored bytes
        self.ctx.store.put(self._own_slot(group.group_id, day), b"".join(y.to_bytes(32, "big") for y in own_share))
        return bytes(self.guard.commit_aggregate("aggregate", bytes(body), meter_id, self._own_key(), out.to_bytes(),
                                                 hours=n))

    @staticmethod
    def _own_slot(group_id: str, day: date) -> bytes:
        return _K_OWN + group_id.encode() + b"/" + day.isoformat().encode()

    def _recover(self, body: bytes) -> bytes:
        meter_id = self.rs.pairing()[0]
        # the guard refuses a member asked for the other kind than before (docs/fraud.md)
        again, group, day = self.guard.begin_aggregate("recovery", bytes(body), meter_id, self._own_key())
        if again is not None:
            return bytes(again)
        req = RecoveryRequest.from_bytes(body)  # the guard parsed it already
        _, sums = self._day_sums(group, day)
        n = len(sums)
        by_key = {p.peer: p for p in self._pairs(group, meter_id)}
        missing = set(req.missing)
        pairs = [by_key[m.hub_key] for m in group.members if m.meter_id in missing]
        ctx = mask_context(group.group_id, day, n, self.guard.day_span(day))
        terms = zerosum.member_masks(pairs, ctx, 2 * n)
        values = tuple((terms[2 * h], terms[2 * h + 1]) for h in range(n))
        raw = self.ctx.store.get(self._own_slot(group.group_id, day))
        if raw is None or len(raw) != 64 * n:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "this hub holds no share of its own self-mask for the day")
        own_share = [int.from_bytes(raw[k : k + 32], "big") for k in range(0, len(raw), 32)]
        try:
            total = share_sum(group, day, n, meter_id, list(by_key.values()), req.present, own_share)
        except selfmask.SelfMaskError as exc:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, str(exc)) from None
        out = RecoveryRelease(group.group_id, meter_id, day, req.missing, tuple(p for p, _ in req.present), values,
                              tuple((total[2 * h], total[2 * h + 1]) for h in range(n)))
        answer = bytes(self.guard.commit_aggregate("recovery", bytes(body), meter_id, self._own_key(), out.to_bytes(),
                                                   hours=0))
        self.ctx.store.delete(self._own_slot(group.group_id, day))  # a re-ask is answered from the guard's bytes
        return answer


register_applet_class(CLASS_NAME, AggregationApplet)
