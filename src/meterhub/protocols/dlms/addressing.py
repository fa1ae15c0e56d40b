"""DLMS addressing: the client and server SAPs meterhub uses (Green Book 1000-2 Ed. 9 §9.2.5).

Client SAP 16 is the public client (every meter has one, no security); client SAP 1
is the management client. Server SAP 1 is the management logical device, the only
logical device a meterhub meter exposes.
"""

from __future__ import annotations

__all__ = ["MANAGEMENT_CLIENT", "MANAGEMENT_LOGICAL_DEVICE", "PUBLIC_CLIENT"]

PUBLIC_CLIENT = 16
MANAGEMENT_CLIENT = 1
MANAGEMENT_LOGICAL_DEVICE = 1
