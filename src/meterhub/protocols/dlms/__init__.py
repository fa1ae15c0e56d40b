"""DLMS/COSEM (IEC 62056) for meterhub's simulated meter.

Sans-IO layers, bottom up (docs/dlms.md has the object list and byte layouts):

* :mod:`.axdr` - A-XDR ``Data`` and the COSEM date-time, with correct long-form lengths;
* :mod:`.apdu` - GET request parsing and the response encoders dlms-cosem gets wrong;
* :mod:`.initiate` - the xDLMS InitiateRequest/-Response and the 24-bit conformance
  block (dlms-cosem drops its first octet), the AARQ's raw user-information;
* :mod:`.security` - security suite 0 (AES-GCM-128 via ``cryptography``), HLS-GMAC,
  general-glo-ciphering and service-specific glo-ciphering, invocation counters and
  the replay guard;
* :mod:`.cosem` - the meter's objects (Clock, Register, Profile generic, the
  manufacturer-specific commitments/batches/openings) over a :class:`MeterDataSource`;
* :mod:`.state` - the server association's transition table ``(state, event) -> (action, next state)``;
* :mod:`.server` - the server: ``DlmsServer(...).association(sap).handle(apdu)`` runs that table;
* :mod:`.client` - the client association (sans-IO), the mirror of the server's;
* :mod:`.tcp` - the client's blocking wrapper-over-TCP driver and a small meter reader;
* :mod:`.wrapper` - IEC 62056-47 wrapper framing; :mod:`.push` - DataNotification of a day's batch.

The asyncio TCP server is :mod:`meterhub.meter.dlms_server`.
"""

from .axdr import AxdrError, decode_datetime, encode_datetime
from .cosem import InMemoryDataSource, MeterDataSource
from .push import decode_batch_body, encode_batch_notification
from .security import DecipherError, InvocationCounterError, SecurityError, Suite0Keys
from .server import MANAGEMENT_CLIENT, PUBLIC_CLIENT, DlmsServer, ServerAssociation
from .state import AssociationState
from .wrapper import WrapperDecoder, WrapperError, WrapperFrame

__all__ = [
    "AxdrError",
    "decode_datetime",
    "encode_datetime",
    "InMemoryDataSource",
    "MeterDataSource",
    "decode_batch_body",
    "encode_batch_notification",
    "DecipherError",
    "InvocationCounterError",
    "SecurityError",
    "Suite0Keys",
    "MANAGEMENT_CLIENT",
    "PUBLIC_CLIENT",
    "AssociationState",
    "DlmsServer",
    "ServerAssociation",
    "WrapperDecoder",
    "WrapperError",
    "WrapperFrame",
]
