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
* ``10`` + :class:`~meterhub.model.formats.aggregation.AggregationRequest` → the
  :class:`~meterhub.model.formats.aggregation.MaskedRelease` (about 1.6 KB), a release of kind
  ``aggregate`` through the guard (logged; one per group and day; a re-ask answers the
  same bytes), answered directly: the card returns it in ``61xx`` chunks that the host
  collects with GET RESPONSE (ISO/IEC 7816-4 §5.6), after the security domain has
  wrapped the whole answer (R-MAC, R-ENC). Unknown group or day without readings
  ``6A88``; day outside the group's validity ``6985``.
* ``11`` + :class:`~meterhub.model.formats.aggregation.RecoveryRequest` (version 2, the unmasking
  round) → the :class:`~meterhub.model.formats.aggregation.RecoveryRelease`: the pairwise masks it
  shares with the members named missing, and its opened share of each named present
  member's seed; a ``recovery`` release through the guard (one per group and day,
  only after the day's own release, never both kinds for one member), answered the
  same way. Policy or a share that does not open ``6985``; version 1 ``6A80``.

Install parameters: empty, or the recipient's group-signing key that the customer
pinned (``group/<recipient>``); any other key ``6982``. The applet never takes a
signer key from its installer: it reads the pinned one from the guard.

The X25519 key pair is drawn from the card's random source at install
(``AppletContext.random_bytes``, which a demo may seed).

The masks of a day bind the span digest of that day's groups in the hub's registry
(``mask_context``), so members shown different registries get masks that do not cancel.

What a hostile grid operator learns: from a release, nothing (masked twice: zero-sum
pairwise masks and a self-mask from a fresh seed whose Shamir shares are sealed to the
peers, Bonawitz et al., CCS 2017, §4); from a group's releases and the unmasking round,
the group's hourly sum; from a recovery, the sum of the present members. It could
isolate a household only with groups whose span contains it (two groups that differ by
few members, or a chain of groups), which the guard refuses over the whole registry.
Declaring missing a member that did answer (message ``11``) removes only its pairwise
masks: its self-mask needs ``t`` shares of its seed, and every card that answered
"missing" for it refuses its share (the guard keeps the kind per member and
group-day, docs/fraud.md); only ``t`` peers colluding with the operator can unmask it.
"""

from __future__ import annotations

from datetime import date

from ..card import AppletContext, register_applet_class
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
    self_mask_context,
    self_mask_threshold,
    share_aad,
)
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
]  # GroupPolicy and its constants live in meterhub.model.formats.aggregation (the guard enforces them)

CLASS_NAME = "meterhub.applets.aggregation/1"
_K_DH = b"dh"


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
        msg = self.rs.assemble(apdu)
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
        if kind == 0x10:
            return self._release(body)
        if kind == 0x11:
            return self._recover(body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

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
        # double masking (Bonawitz et al., CCS 2017, §4): a fresh seed per round from the
        # card's RNG, its self-mask on the values, its Shamir shares sealed to the peers
        seed = self.ctx.random_bytes(selfmask.SEED_BYTES)
        own = selfmask.self_masks(seed, self_mask_context(group.group_id, day, n, meter_id), 2 * n)
        values = tuple(((m + masks[2 * h] + own[2 * h]) % Q, (r + masks[2 * h + 1] + own[2 * h + 1]) % Q)
                       for h, (m, r) in enumerate(sums))
        shares = selfmask.split_seed(seed, self_mask_threshold(len(group.members)), len(group.members))
        held = [(peer, sh) for peer, sh in zip(group.members, shares, strict=True) if peer.meter_id != meter_id]
        sealed = tuple(
            selfmask.seal_share(pk, share_aad(group.group_id, day, meter_id, peer.meter_id), idx, share,
                                self.ctx.random_bytes(selfmask.NONCE_BYTES))
            for pk, (peer, (idx, share)) in zip(pairs, held, strict=True)
        )
        out = MaskedRelease(group.group_id, meter_id, day, first, applet_code_hash(type(self)), values, sealed)
        return bytes(self.guard.commit_aggregate("aggregate", bytes(body), meter_id, self._own_key(), out.to_bytes(),
                                                 hours=n))

    def _recover(self, body: bytes) -> bytes:
        meter_id = self.rs.pairing()[0]
        # the guard refuses a member asked for the other kind than before (docs/fraud.md)
        again, group, day = self.guard.begin_aggregate("recovery", bytes(body), meter_id, self._own_key())
        if again is not None:
            return bytes(again)
        req = RecoveryRequest.from_bytes(body)  # the guard parsed it already
        _, sums = self._day_sums(group, day)
        by_key = {p.peer: p for p in self._pairs(group, meter_id)}
        missing = set(req.missing)
        pairs = [by_key[m.hub_key] for m in group.members if m.meter_id in missing]
        ctx = mask_context(group.group_id, day, len(sums), self.guard.day_span(day))
        terms = zerosum.member_masks(pairs, ctx, 2 * len(sums))
        values = tuple((terms[2 * h], terms[2 * h + 1]) for h in range(len(sums)))
        my_index = 1 + [m.meter_id for m in group.members].index(meter_id)
        opened = []
        for pid, sealed in req.present:
            peer = group.member(pid)
            if peer is None:  # the guard checked membership already
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"{pid} is not a member")
            try:
                idx, share = selfmask.open_share(by_key[peer.hub_key], share_aad(group.group_id, day, pid, meter_id),
                                                 sealed)
            except selfmask.SelfMaskError:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"the share of {pid} does not open") from None
            if idx != my_index:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, f"the share of {pid} is not this member's")
            opened.append((pid, idx, share))
        out = RecoveryRelease(group.group_id, meter_id, day, req.missing, values, tuple(opened))
        return bytes(self.guard.commit_aggregate("recovery", bytes(body), meter_id, self._own_key(), out.to_bytes(),
                                                 hours=0))


register_applet_class(CLASS_NAME, AggregationApplet)
