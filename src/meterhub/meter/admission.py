"""Connection admission for the meter's TCP servers (DLMS wrapper/HDLC, SML push).

A meter has few connection slots. A hostile peer on the home network can try to
hold all of them with connections that never finish a request (slowloris) or never
read. :class:`Admission` keeps two tiers:

* **waiting**: every new connection starts here, until it proves itself (a complete
  request frame for DLMS, a finished TLS handshake as the paired hub for SML). At
  most ``max_waiting`` connections wait; when full, the oldest waiting connection
  of the peer with the most waiting connections gives way to the new one. Whoever
  never completes a request therefore never holds more than a waiting place, is
  churned out by newer connections, and a flood from one address pushes out its
  own connections first.
* **members**: connections that proved themselves, at most ``max_members`` in total
  and ``max_per_peer`` per peer address. A waiting connection that proves itself
  when a cap is reached takes the slot of the member that has made no progress for
  the longest time, provided that member has made none for ``evict_after``
  seconds; otherwise the newcomer is refused.

A slow or silent client thus never pushes out a member, and a reading client is
pushed out of the waiting tier only if more than ``max_waiting`` connections arrive
between its connect and its first request (milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Admission", "Slot"]


@dataclass(eq=False)
class Slot:
    """One admitted connection."""

    peer: str
    #: closes the connection at once (e.g. ``transport.abort``)
    abort: Callable[[], None]
    opened: float
    last_progress: float
    member: bool = False
    evicted: bool = False

    def stalled(self, now: float) -> float:
        """Seconds since this connection last made progress (or was opened)."""
        return now - self.last_progress


class Admission:
    """Waiting places and member slots with caps in total and per peer (see the
    module docstring)."""

    def __init__(
        self,
        max_members: int,
        max_per_peer: int,
        *,
        max_waiting: int,
        evict_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(max_members, max_per_peer, max_waiting) < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_members = max_members
        self.max_per_peer = max_per_peer
        self.max_waiting = max_waiting
        self.evict_after = evict_after
        self.clock = clock
        self._members: list[Slot] = []
        self._waiting: list[Slot] = []

    def __len__(self) -> int:
        """Open connections, waiting or member."""
        return len(self._members) + len(self._waiting)

    @property
    def members(self) -> int:
        return len(self._members)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def members_from(self, peer: str) -> int:
        return sum(1 for s in self._members if s.peer == peer)

    def admit(self, peer: str, abort: Callable[[], None]) -> tuple[Slot, list[Slot]]:
        """A new connection from ``peer`` starts waiting; returns it and the waiting
        connections aborted to make room (the oldest of the peer with the most)."""
        now = self.clock()
        evicted: list[Slot] = []
        while len(self._waiting) >= self.max_waiting:
            counts: dict[str, int] = {}
            for s in self._waiting:
                counts[s.peer] = counts.get(s.peer, 0) + 1
            most = max(counts.values())
            # _waiting is in arrival order: the first of a top peer is its oldest
            victim = next(s for s in self._waiting if counts[s.peer] == most)
            evicted.append(self._evict(self._waiting, victim))
        slot = Slot(peer, abort, now, now)
        self._waiting.append(slot)
        return slot, evicted

    def progress(self, slot: Slot) -> tuple[bool, list[Slot], str]:
        """``slot`` did something useful (completed a request, authenticated).

        A waiting connection becomes a member. Returns ``(ok, evicted, reason)``:
        ``ok`` False means no member slot could be had (``reason`` says which cap)
        and the caller should close the connection; ``evicted`` are the members
        aborted to make room.
        """
        now = self.clock()
        if slot.member or slot.evicted:
            slot.last_progress = now
            return not slot.evicted, [], "evicted" if slot.evicted else ""
        evicted: list[Slot] = []
        if self.members_from(slot.peer) >= self.max_per_peer:
            victim = self._most_stalled(now, slot.peer)
            if victim is None:
                return False, evicted, f"{self.max_per_peer} busy connections from this peer"
            evicted.append(self._evict(self._members, victim))
        if len(self._members) >= self.max_members:
            victim = self._most_stalled(now, None)
            if victim is None:
                return False, evicted, f"{self.max_members} busy connections in total"
            evicted.append(self._evict(self._members, victim))
        self._waiting.remove(slot)
        slot.member = True
        slot.last_progress = now
        self._members.append(slot)
        return True, evicted, ""

    def release(self, slot: Slot) -> None:
        """The connection is closed; idempotent."""
        for tier in (self._members, self._waiting):
            if slot in tier:
                tier.remove(slot)

    def _most_stalled(self, now: float, peer: str | None) -> Slot | None:
        best: Slot | None = None
        for s in self._members:
            if peer is not None and s.peer != peer:
                continue
            if s.stalled(now) < self.evict_after:
                continue
            if best is None or s.last_progress < best.last_progress:
                best = s
        return best

    def _evict(self, tier: list[Slot], slot: Slot) -> Slot:
        tier.remove(slot)
        slot.evicted = True
        slot.abort()
        return slot
