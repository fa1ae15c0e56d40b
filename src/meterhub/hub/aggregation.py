"""The aggregation applet on the hub (fraud detection, issue 13): its AIDs and package.

The grid operator's TSM installs it under the grid operator's security domain from a
DAP-signed package, like the profiling applet; the hub's host pairs it and feeds each
day's openings with :class:`meterhub.hub.secure_element.ReadingsClient`.
"""

from __future__ import annotations

from ..card.applet import applet_class
from ..card.gp import make_load_file
from ..model.aids import (  # shared AID plan
    AGGREGATION_APP_AID,
    AGGREGATION_MODULE_AID,
    AGGREGATION_PACKAGE_AID,
)

__all__ = ["AGGREGATION_PACKAGE_AID", "AGGREGATION_MODULE_AID", "AGGREGATION_APP_AID", "aggregation_load_file"]



def aggregation_load_file() -> bytes:
    """The aggregation applet's package, unsigned (the grid operator's TSM adds the DAP)."""
    from ..applets.aggregation import CLASS_NAME

    cls = applet_class(CLASS_NAME)
    if cls is None:  # pragma: no cover - the applets package registers it on import
        raise RuntimeError("aggregation applet class is not registered")
    return make_load_file(AGGREGATION_PACKAGE_AID, {AGGREGATION_MODULE_AID: cls})
