"""The home link over DLMS/COSEM: the hub reads each day's openings from its meter.

docs/architecture.md, data flow step 3: ``(i, m_i, r_i)`` go from meter to hub over
the home link, encrypted. Here the hub is a DLMS **management client** (client
SAP 1, Green Book 1000-2 Ed. 9 §9.2.5) of the meter's management logical
device: application context LN with ciphering, HLS-GMAC (mechanism 5,
§9.2.7.4) and security suite 0 (AES-GCM-128, general-glo-ciphering, §9.2.7.2)
under keys derived from the 16-byte meter-hub key
(:func:`~meterhub.links.dlms.home_link_suite0_keys`). It reads the openings
object 0.128.96.4.0.255 (Profile generic, docs/dlms.md) with a range selection
on its clock column for one local day, checks what it got and stores it in the
:class:`~meterhub.hub.store.HubStore`.

The protocol is the sans-IO :class:`~meterhub.protocols.dlms.client.DlmsLinkClient`,
which talks to a ``transport(request) -> response`` callable. In the demo that
callable is the meter's :class:`~meterhub.protocols.dlms.server.ServerAssociation`
itself (:class:`meterhub.demo.homelink.InProcessHomeLink`); :func:`meterhub.protocols.dlms.tcp.wrapper_transport`
gives the same over TCP. This module keeps the hub's side: which day to read, the
checks on what came back, and the stores.
Both ends keep their invocation counters in their own databases, so a killed
run resumes without reusing an IV and a replayed APDU stays refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from ..crypto.group import Q
from ..crypto.pedersen import Opening
from ..links.dlms import (
    StoredInvocationCounter,
    StoredReplayGuard,
    home_link_suite0_keys,
    hub_system_title,
)
from ..model.timebase import day_starts
from ..protocols.dlms import axdr
from ..protocols.dlms.client import DlmsLinkClient, DlmsLinkError, Transport, clock_range
from ..protocols.dlms.cosem import IC_PROFILE_GENERIC, OPENINGS
from .store import HubError, HubStore

__all__ = [
    "HomeLinkError",
    "HubHomeLink",
    "decode_openings",
]


class HomeLinkError(HubError):
    """The hub could not take a day's openings over the home link; says which and why."""


# ------------------------------------------------------------------- openings


def _range(day: date, tz: str, interval_minutes: int) -> tuple[int, bytes]:
    """Selector 1, ``range_descriptor`` on the clock column (Blue Book §4.3.6): the
    interval ends of local ``day``, i.e. (midnight + interval) .. next midnight."""
    starts = day_starts(day, tz, interval_minutes)
    step = timedelta(minutes=interval_minutes)
    return clock_range(starts[0] + step, starts[-1] + step)


def decode_openings(
    raw: bytes, day: date, tz: str, interval_minutes: int
) -> tuple[int, list[Opening]]:
    """Check and decode a day's openings buffer; returns ``(first index, openings)``.

    Rows are ``{date-time interval end, long64-unsigned i, long64-unsigned m_i,
    octet-string(32) r_i}`` (docs/dlms.md). Every interval of the local day must be
    there exactly once, in order, with contiguous indices, ``m < 2^32`` and ``r < Q``.
    """
    try:
        rows = axdr.decode(raw)
    except axdr.AxdrError as exc:
        raise HomeLinkError(f"day {day}: openings are not A-XDR: {exc}") from None
    starts = day_starts(day, tz, interval_minutes)
    step = timedelta(minutes=interval_minutes)
    if not isinstance(rows, list) or len(rows) != len(starts):
        got = len(rows) if isinstance(rows, list) else "no"
        raise HomeLinkError(f"day {day}: {got} openings for {len(starts)} intervals")
    out: list[Opening] = []
    first = None
    for k, (row, start) in enumerate(zip(rows, starts, strict=True)):
        if (
            not isinstance(row, list)
            or len(row) != 4
            or not isinstance(row[0], bytes)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:3])
            or not isinstance(row[3], bytes)
            or len(row[3]) != 32
        ):
            raise HomeLinkError(f"day {day}: opening {k} has the wrong shape")
        try:
            end = axdr.decode_datetime(row[0])
        except axdr.AxdrError as exc:
            raise HomeLinkError(f"day {day}: opening {k}: {exc}") from None
        if end.tzinfo is None or end != start + step:
            raise HomeLinkError(f"day {day}: opening {k} is for {end.isoformat()}, not {(start + step).isoformat()}")
        if first is None:
            first = row[1]
        if row[1] != first + k:
            raise HomeLinkError(f"day {day}: interval index {row[1]} where {first + k} was due")
        r = int.from_bytes(row[3], "big")
        if not 0 <= row[2] <= 0xFFFFFFFF or r >= Q:
            raise HomeLinkError(f"day {day}: opening {k} out of range")
        out.append(Opening(row[2], r))
    assert first is not None
    return first, out


class HubHomeLink:
    """The hub's end of one meter's home link: fetch a day's openings, check, store.

    ``connect()`` returns a fresh transport to the meter's management logical
    device; the association is opened on first use and reused for later days.
    The hub's sending counter and the meter's last counter are kept in
    ``hub.sqlite`` (table ``dlms_counters``).
    """

    def __init__(self, hub: HubStore, meter_id: str, connect: Callable[[], Transport], *, max_pdu_size: int = 1024) -> None:
        self.hub = hub
        self.meter_id = meter_id
        key, self.tz, self.interval_minutes = hub.meter(meter_id)
        self.keys = home_link_suite0_keys(key)
        self.title = hub_system_title(meter_id)
        owner = f"hub:{meter_id}"
        self.counter = StoredInvocationCounter(hub.conn, owner, self.title)
        self.guard = StoredReplayGuard(hub.conn, owner)
        self._connect = connect
        self.max_pdu_size = max_pdu_size
        self.client: DlmsLinkClient | None = None

    def has_day(self, day: date) -> bool:
        return (
            self.hub.conn.execute(
                "SELECT 1 FROM openings WHERE meter_id=? AND day=?", (self.meter_id, day.isoformat())
            ).fetchone()
            is not None
        )

    def _open(self) -> DlmsLinkClient:
        if self.client is None:
            client = DlmsLinkClient(
                self._connect(),
                keys=self.keys,
                system_title=self.title,
                counter=self.counter,
                peer_guard=self.guard,
                max_pdu_size=self.max_pdu_size,
            )
            try:
                client.associate()
            except DlmsLinkError as exc:
                raise HomeLinkError(f"meter {self.meter_id}: {exc}") from None
            self.client = client
        return self.client

    def fetch_day(self, day: date) -> bool:
        """Read ``day``'s openings unless the hub has them; True if newly stored."""
        if self.has_day(day):
            return False
        client = self._open()
        try:
            raw = client.get(IC_PROFILE_GENERIC, OPENINGS, 2, _range(day, self.tz, self.interval_minutes))
        except DlmsLinkError as exc:
            self.client = None  # the association is no longer trusted; open a new one next time
            raise HomeLinkError(f"meter {self.meter_id}, day {day}: {exc}") from None
        finally:
            self.guard.save()
        first, openings = decode_openings(raw, day, self.tz, self.interval_minutes)
        self._check_follows(day, first)
        return self.hub.store_openings(self.meter_id, day, first, openings)

    def _check_follows(self, day: date, first: int) -> None:
        prev = self.hub.conn.execute(
            "SELECT first_index, count FROM openings WHERE meter_id=? AND day=?",
            (self.meter_id, (day - timedelta(days=1)).isoformat()),
        ).fetchone()
        if prev is not None and prev[0] + prev[1] != first:
            raise HomeLinkError(f"day {day}: first index {first} does not follow on from {prev[0] + prev[1]}")

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.release()
            except DlmsLinkError:
                pass  # the meter forgets the association anyway when the transport goes
            finally:
                self.client = None
                self.guard.save()
