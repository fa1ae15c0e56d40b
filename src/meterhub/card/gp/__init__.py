"""meterhub.card.gp: the GlobalPlatform card manager (GPC 2.3.1) with SCP03 (Amendment D).

* :mod:`.sd` - :class:`SecurityDomain` (ISD and SSDs), the card life-cycle guard;
* :mod:`.provision` - factory provisioning (:func:`provision_isd`, :func:`provision_ssd`);
* :mod:`.loadfile` - signed packages (DAP) naming registered applet classes;
* :mod:`.registry` - the GP registry entries on top of the card registry.

On-card code only. The off-card side (command builders, response parsers,
:class:`~meterhub.protocols.gp.host.GPClient`), the SCP03 sessions of both ends, the
key sets and the command codec are in :mod:`meterhub.protocols.gp`.

See docs/gp.md.
"""

from ...protocols.gp.constants import (
    APP_INSTALLED,
    APP_LOCKED,
    APP_SELECTABLE,
    CARD_LOCKED,
    INITIALIZED,
    ISD_AID,
    OP_READY,
    SD_PERSONALIZED,
    SECURED,
    TERMINATED,
    Privilege,
    privileges_bytes,
)
from ...protocols.gp.keys import StaticKeys
from .loadfile import applet_code_hash, make_load_file, sign_load_file
from .provision import ISD_PRIVILEGES, SSD_PRIVILEGES, open_card, provision_isd, provision_ssd
from .registry import card_life_cycle
from .sd import SecurityDomain, attach

__all__ = [
    "APP_INSTALLED",
    "APP_LOCKED",
    "APP_SELECTABLE",
    "CARD_LOCKED",
    "INITIALIZED",
    "ISD_AID",
    "ISD_PRIVILEGES",
    "OP_READY",
    "Privilege",
    "SD_PERSONALIZED",
    "SECURED",
    "SSD_PRIVILEGES",
    "SecurityDomain",
    "StaticKeys",
    "TERMINATED",
    "applet_code_hash",
    "attach",
    "card_life_cycle",
    "make_load_file",
    "open_card",
    "privileges_bytes",
    "provision_isd",
    "provision_ssd",
    "sign_load_file",
]
