"""meterhub.card: a Java Card-like runtime for the hub's secure element.

See docs/card.md. The surface:

* :class:`Card` - sans-IO card OS (``power_on``, ``reset``, ``power_off``, ``transmit``);
* :class:`Registry` - installed applets (``Card.registry``), driven by ``card.gp``;
* :class:`Applet`, :func:`ins`, :func:`register_applet_class` - writing applets;
* :class:`AppletContext`, :class:`Shareable`, :func:`shareable_interface`,
  :class:`SecurityException` - the firewall;
* :class:`PersistentStore`, :class:`PowerLoss`, :class:`TransactionException` - memory.
"""

from ..protocols.iso7816.aid import AID
from .applet import (
    Applet,
    applet_class,
    applet_class_name,
    ins,
    register_applet_class,
    registered_applet_classes,
)
from .card import DEFAULT_HISTORICAL_BYTES, Card, SelectGuard, build_atr
from .registry import (
    INSTALLED,
    LOCKED,
    PERSONALIZED,
    PRIV_CARD_RESET,
    PRIV_SECURITY_DOMAIN,
    SELECTABLE,
    AppletRecord,
    Registry,
    RegistryError,
    is_selectable,
)
from .runtime import (
    CLEAR_ON_DESELECT,
    CLEAR_ON_RESET,
    AppletContext,
    ContextStore,
    Runtime,
    SecurityException,
    Shareable,
    TransientArray,
    shareable_interface,
)
from .store import PersistentStore, PowerLoss, StorageIntegrityError, TransactionException

__all__ = [
    "AID",
    "Applet",
    "AppletContext",
    "AppletRecord",
    "CLEAR_ON_DESELECT",
    "CLEAR_ON_RESET",
    "Card",
    "ContextStore",
    "DEFAULT_HISTORICAL_BYTES",
    "INSTALLED",
    "LOCKED",
    "PERSONALIZED",
    "PRIV_CARD_RESET",
    "PRIV_SECURITY_DOMAIN",
    "PersistentStore",
    "PowerLoss",
    "Registry",
    "RegistryError",
    "Runtime",
    "SELECTABLE",
    "SecurityException",
    "SelectGuard",
    "StorageIntegrityError",
    "Shareable",
    "TransactionException",
    "TransientArray",
    "applet_class",
    "applet_class_name",
    "build_atr",
    "ins",
    "is_selectable",
    "register_applet_class",
    "registered_applet_classes",
    "shareable_interface",
]

from . import (
    guard,  # noqa: E402,F401 - registers the privacy guard's class
    vault,  # noqa: E402,F401 - registers the storage vault's class
)
