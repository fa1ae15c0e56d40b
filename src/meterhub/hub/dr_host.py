"""The hub host's side of demand response: the DR applet's package and AIDs, and the
client that hands it the VTN's signed events with the customer's opt-in decision
(commands in :mod:`meterhub.applets.demand_response`)."""

from __future__ import annotations

from collections.abc import Callable

from ..card.gp import make_load_file
from ..model.aids import (  # one AID plan, shared with the utility
    DR_APP_AID,
    DR_MODULE_AID,
    DR_PACKAGE_AID,
)
from ..protocols.iso7816 import CommandAPDU
from .secure_element import ReadingsClient, registered_class
from .store import HubError

__all__ = ["DR_APP_AID", "DR_MODULE_AID", "DR_PACKAGE_AID", "DRClient", "EventRefused", "dr_load_file"]


_PUT_EVENT_SW = {
    0x6A80: "malformed, not for this meter, off its grid or with bad baseline days",
    0x6982: "its signature does not verify under the pinned VTN key",
    0x6984: "expired (the hub already holds readings of the event day)",
    0x6985: "a replay (same event id, not a newer modification) or already released",
}


class EventRefused(HubError):
    """The applet refused an event; ``sw`` says why."""

    def __init__(self, event_id: str, sw: int) -> None:
        super().__init__(f"hub refused event {event_id!r}: {_PUT_EVENT_SW.get(sw, 'refused')} (SW {sw:04X})")
        self.sw = sw


def dr_load_file() -> bytes:
    """The DR applet's package, unsigned (the grid operator's TSM adds the DAP)."""
    from ..applets.demand_response import CLASS_NAME

    return make_load_file(DR_PACKAGE_AID, {DR_MODULE_AID: registered_class(CLASS_NAME)})


class DRClient(ReadingsClient):
    """Pairing, days and events over the plain channel; releases go only to the SD."""

    def __init__(self, transmit: Callable[[bytes], bytes], app_aid: str = DR_APP_AID) -> None:
        super().__init__(transmit, app_aid)

    def put_event(self, event_id: str, record: bytes, opt_in: bool) -> None:
        r = self._send(CommandAPDU(0x80, 0x40, 1 if opt_in else 0, 0, record, extended=len(record) > 255))
        if r.sw != 0x9000:
            raise EventRefused(event_id, r.sw)
