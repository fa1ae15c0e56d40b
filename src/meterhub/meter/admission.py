"""Connection admission for the meter's TCP servers (DLMS wrapper/HDLC, SML push).

A meter has few connection slots. A hostile peer on the home network can try to
hold all of them with connections that never finish a request (slowloris) or never
read. :class:`Admission` keeps a cap on connections in total and per peer address;
when a cap is reached, a new connection takes the slot of the connection that has
made no progress for the longest time. A legitimate client completes a request
frame every few milliseconds while it reads, so it is not the most stalled
connection, while a peer that trickles bytes or sits idle is; to push a reading
client out, a peer must open more new connections than there are slots between two
of its frames (thousands per second), which is a flood, not a slow client.

``evict_after`` (default 0) protects connections that made progress within that
many seconds; a new connection is refused when the cap is reached and every
connection is that fresh. A positive value makes caps refuse rather than evict,
but lets a peer that reconnects faster than ``slots / evict_after`` per second
keep every slot fresh, so the servers use 0.

What counts as progress is the server's business: a complete request frame for
DLMS, nothing at all for the SML push (every client there is a passive reader, so
the oldest one gives way).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Admission", "Slot"]


@dataclass(eq=False)
class Slot:
    """One admitted connection."""

    peer: str
    #: closes the connection at once (e.g. ``transport.abort``)
    abort: Callable[[], None]
    opened: float
    last_progress: float
    evicted: bool = field(default=False)

    def stalled(self, now: float) -> float:
        """Seconds since this connection last made progress."""
        return now - self.last_progress


class Admission:
    """Caps on open connections in total and per peer, with eviction of the most
    stalled connection when a cap is reached (see the module docstring)."""

    def __init__(
        self,
        max_total: int,
        max_per_peer: int,
        *,
        evict_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_total < 1 or max_per_peer < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.evict_after = evict_after
        self.clock = clock
        self._slots: list[Slot] = []

    def __len__(self) -> int:
        return len(self._slots)

    def count(self, peer: str) -> int:
        return sum(1 for s in self._slots if s.peer == peer)

    def admit(self, peer: str, abort: Callable[[], None]) -> tuple[Slot | None, list[Slot], str]:
        """Try to admit a connection from ``peer``.

        Returns ``(slot, evicted, reason)``: ``slot`` is None when refused (``reason``
        says which cap); ``evicted`` are the connections that were aborted to make
        room (already removed from the counts).
        """
        now = self.clock()
        evicted: list[Slot] = []
        if self.count(peer) >= self.max_per_peer:
            victim = self._most_stalled(now, peer)
            if victim is None:
                return None, evicted, f"{self.max_per_peer} connections from this peer"
            evicted.append(self._evict(victim))
        if len(self._slots) >= self.max_total:
            victim = self._most_stalled(now, None)
            if victim is None:
                return None, evicted, f"{self.max_total} connections in total"
            evicted.append(self._evict(victim))
        slot = Slot(peer, abort, now, now)
        self._slots.append(slot)
        return slot, evicted, ""

    def progress(self, slot: Slot) -> None:
        """The connection did something useful (e.g. completed a request frame)."""
        slot.last_progress = self.clock()

    def release(self, slot: Slot) -> None:
        """The connection is closed; idempotent."""
        if slot in self._slots:
            self._slots.remove(slot)

    def _most_stalled(self, now: float, peer: str | None) -> Slot | None:
        best: Slot | None = None
        for s in self._slots:
            if peer is not None and s.peer != peer:
                continue
            if s.stalled(now) < self.evict_after:
                continue
            if best is None or s.last_progress < best.last_progress:
                best = s
        return best

    def _evict(self, slot: Slot) -> Slot:
        self._slots.remove(slot)
        slot.evicted = True
        slot.abort()
        return slot
