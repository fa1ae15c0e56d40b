"""The demand-response applet: a reduction against the CAISO 10-in-10 baseline, proven.

Installed by the grid operator's (the DR program operator's, which runs the OpenADR
VTN) TSM under its own security domain. The VTN's event-signing P-256 key is pinned by
the customer at provisioning in the card's privacy guard (role ``dr-event/<recipient>``,
:mod:`meterhub.card.guard`); install parameters may only repeat it (another key
``6982``). Every event must carry a signature under that key.

Host commands (proprietary class ``80``, the hub's host software, plain channel):

======  ===========  ==========================================================
INS     name         data → response
======  ===========  ==========================================================
``10``  PAIR METER   as the settlement applet (:mod:`meterhub.applets.readings`)
``20``  PUT DAY      as the settlement applet
``32``  GET STATE    as the settlement applet
``40``  PUT EVENT    P1 ``01`` opt in, ``00`` opt out (the customer's decision,
                     taken by the VEN on the customer's rules); data: the signed
                     event record (:class:`meterhub.dr.event.DREvent`). The same
                     record again only changes the opt-in flag, until the event day.
======  ===========  ==========================================================

PUT EVENT refusals: malformed ``6A80``; signature not under the pinned VTN key
``6982``; expired, i.e. the hub already holds readings of the event day (its only
clock) ``6984``; a replay: the same event id with another record at a modification
number not above the stored one, or a record after the release ``6985``; not for
this meter, off the meter's grid, or bad baseline days ``6A80``.

Releases go **only** through STORE DATA from the applet's own security domain
(SCP03 level 33), message type byte:

* ``02`` + event id → the :class:`meterhub.dr.release.DRRelease`, released through
  the privacy guard (kind ``dr``); the answer is the first chunk. Unknown event or
  missing days ``6A88``; opted out ``6985`` (nothing is released). The guard enforces
  the rest (docs/privacy.md): the grid operator's entitlement to ``dr``, **one release
  per recipient and event day** (a re-ask answers the stored bytes; another event of the
  same day is refused, so two windows cannot be differenced), one linear functional of
  the period's budget per event, the policy's cap on events per period, and the entry in
  the release log, all in the guard's one transaction; the output gate lets out only the
  bytes the guard issued. Nothing finer than the event window leaves the applet: one
  scaled sum over the window, the capped adjustment factor (permille) and range proofs
  that reveal nothing else.
* ``03`` + ``u32 offset`` → the chunk at ``offset`` of the statement the guard handed out.
"""

from __future__ import annotations

from datetime import date

from ..card import ins, register_applet_class
from ..crypto import bulletproofs
from ..crypto.group import Q
from ..crypto.pedersen import Commitment, Opening, commit
from ..dr.event import (
    DREvent,
    EventError,
    adjustment_factor,
    check_baseline_days,
    event_windows,
)
from ..dr.release import (
    DRRelease,
    adjustment_bounds,
    proof_context,
    range_bits,
    reduction_coefficients,
)
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from .readings import MeteringApplet, ReadingsStore
from .settlement import code_hash_of, fetch_chunk

__all__ = ["CLASS_NAME", "DemandResponseApplet"]

CLASS_NAME = "meterhub.applets.demand_response/1"


def _day_openings(rs: ReadingsStore, day: date) -> list[tuple[int, int]]:
    _, blob = rs.period(day, day)
    frm = int.from_bytes
    return [(frm(blob[k : k + 4], "big"), frm(blob[k + 4 : k + 36], "big")) for k in range(0, len(blob), 36)]


class DemandResponseApplet(MeteringApplet):
    """See the module docstring."""

    KEY_ROLE = "dr-event"

    # -- events from the host ---------------------------------------------------
    @ins(0x40, cla=0x80)
    def put_event(self, apdu: CommandAPDU) -> None:
        if apdu.p1 not in (0, 1):
            raise ISOException(SW.INCORRECT_P1P2, "P1 must be 00 (opt out) or 01 (opt in)")
        raw = bytes(apdu.data)
        try:
            ev = DREvent.from_bytes(raw)
        except EventError:
            raise ISOException(SW.WRONG_DATA, "malformed event record") from None
        if not any(ev.verify(k) for k in self.signer_keys()):
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "event signature refused")
        meter_id, tz, interval, _ = self.rs.pairing()
        if not ev.targets_meter(meter_id):
            raise ISOException(SW.WRONG_DATA, "event not for this meter")
        try:
            day, _, _ = event_windows(ev, tz, interval)
            check_baseline_days(ev, day)
        except EventError:
            raise ISOException(SW.WRONG_DATA, "event off the meter's grid or bad baseline days") from None
        slot = b"e" + ev.event_id.encode()
        old = self.ctx.store.get(slot)
        stored = None if old is None else DREvent.from_bytes(old[1:])
        same = stored is not None and stored.body() == ev.body()  # ECDSA signatures differ per signing
        if same and old is not None and old[0] == apdu.p1:
            return  # the same event and decision delivered again (a host restart)
        if self.ctx.store.get(b"r" + ev.event_id.encode()) is not None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "event already released")
        if stored is not None and not same and stored.modification >= ev.modification:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "replayed or older event modification")
        last = self.rs.last_day()
        if last is not None and last >= day:
            raise ISOException(SW.DATA_INVALID, "event expired")
        self.ctx.store.put(slot, bytes([apdu.p1]) + raw)

    # -- the recipient's mailbox ----------------------------------------------------
    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA from the grid operator's SD (GP API ``Application.processData``)."""
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x02:
            return self._release(body)
        if kind == 0x03:
            return fetch_chunk(self.guard, body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    def _event(self, event_id: bytes) -> DREvent:
        """The customer's decision (the guard enforces the rest): a known event, opted in."""
        rec = self.ctx.store.get(b"e" + event_id)
        if rec is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no such event")
        if rec[0] != 1:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the customer opted out of this event")
        return DREvent.from_bytes(rec[1:])

    def _release(self, event_id: bytes) -> bytes:
        ev = self._event(event_id)
        meter_id, tz, interval, _ = self.rs.pairing()
        day, e_pos, w_pos = event_windows(ev, tz, interval)
        again = self.guard.begin("dr", day, day, b"\x02" + event_id, chunked=True)
        if again is not None:
            return again
        rel = self._compute(ev, meter_id, day, e_pos, w_pos)
        # The reduction depends on the baseline days' readings too: charged to every
        # period from the earliest baseline day to the event day (docs/privacy.md).
        support = min(ev.baseline_days, default=day)
        out = self.guard.commit("dr", day, day, b"\x02" + event_id, rel, functionals=1, chunked=True,
                                support_from=support if support < day else None)
        # After the guard's transaction: the event is frozen (PUT EVENT refuses changes).
        # Lost to a power cut, a re-ask still answers the guard's stored bytes.
        self.ctx.store.put(b"r" + event_id, b"\x01")
        return out

    def _compute(self, ev: DREvent, meter_id: str, day: date, e_pos: list[int], w_pos: list[int]) -> bytes:
        event_day = _day_openings(self.rs, day)
        base = [_day_openings(self.rs, d) for d in ev.baseline_days]
        if any(len(b) != len(event_day) for b in base):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        n = len(base)

        def total(days: list[list[tuple[int, int]]], pos: list[int]) -> Opening:
            return Opening(sum(d[j][0] for d in days for j in pos), sum(d[j][1] for d in days for j in pos) % Q)

        a_sum, x_sum = total([event_day], w_pos), total(base, w_pos)
        b_sum, e_sum = total(base, e_pos), total([event_day], e_pos)
        a = adjustment_factor(n, a_sum.m, x_sum.m)
        kb, ke = reduction_coefficients(a, n)
        s = kb * b_sum.m + ke * e_sum.m
        r = (kb * b_sum.r + ke * e_sum.r) % Q
        ctx = proof_context(meter_id, ev.event_id, ev.digest())
        openings = [
            Opening(ka * a_sum.m + kx * x_sum.m + c, (ka * a_sum.r + kx * x_sum.r) % Q)
            for ka, kx, c in adjustment_bounds(a, n)
        ]
        comms: list[Commitment] = [commit(o.m, o.r)[0] for o in openings]
        bits = range_bits([o.m for o in openings])
        proof = bulletproofs.prove(comms, openings, bits, ctx)
        return DRRelease(
            meter_id, ev.event_id, ev.digest(), bytes(self.ctx.aid).hex().upper(),
            bytes.fromhex(code_hash_of(type(self))), n, a, s, r, bits, proof,
        ).to_bytes()


register_applet_class(CLASS_NAME, DemandResponseApplet)
