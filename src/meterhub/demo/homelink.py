"""Meter and hub on one machine (the demo): the home link in process.

This glues two parties together, so it sits above both (docs/architecture.md,
"Layers"): the meter's DLMS server core (:func:`meterhub.meter.serve.meter_dlms_server`)
answers the hub's :class:`~meterhub.hub.homelink.HubHomeLink` APDU for APDU, with no
socket in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hub.homelink import HubHomeLink
from ..hub.store import HubStore
from ..meter.serve import StoreFeed, meter_dlms_server
from ..meter.store import MeterStore
from ..model.formats.sealed import SealedDay, open_sealed_openings
from ..model.formats.upload import DayUpload
from ..protocols.dlms.addressing import MANAGEMENT_CLIENT

__all__ = ["InProcessHomeLink"]


@dataclass
class _MeterEnd:
    feed: StoreFeed
    home_link_key: bytes


class InProcessHomeLink:
    """Meter and hub on one machine (the demo): the hub's client calls the meter's
    DLMS server core directly, APDU for APDU, with no socket in between.

    The meter publishes each recorded day (its own copy of the openings, which it
    keeps sealed under the home-link key in its outbox); the hub then reads that
    day through DLMS. The meter's counters live in ``meter.sqlite``.
    """

    def __init__(self, meters: MeterStore, hub: HubStore, meter_id: str, *, max_pdu_size: int = 1024) -> None:
        info = meters.info(meter_id)
        feed = StoreFeed(
            meter_id=meter_id,
            public_key=info.public_key,
            tz=info.tz,
            interval_minutes=info.interval_minutes,
        )
        self._meter = _MeterEnd(feed, info.home_link_key)
        self.server = meter_dlms_server(feed, info.home_link_key, meters.conn, max_pdu_size=max_pdu_size)
        self.hub_link = HubHomeLink(
            hub, meter_id, lambda: self.server.association(MANAGEMENT_CLIENT).handle, max_pdu_size=max_pdu_size
        )

    def deliver(self, upload: DayUpload, sealed: SealedDay) -> bool:
        """Publish one recorded day on the meter and let the hub read it; True if new to the hub."""
        day = upload.batch.batch.day
        if self.hub_link.has_day(day):
            return False
        feed = self._meter.feed
        feed.clear()  # the meter's link buffer holds the day being delivered
        feed.add_day(upload, open_sealed_openings(self._meter.home_link_key, sealed))
        try:
            return self.hub_link.fetch_day(day)
        finally:
            self.server.replay.save()  # type: ignore[attr-defined]

    def close(self) -> None:
        self.hub_link.close()
        self.server.replay.save()  # type: ignore[attr-defined]
