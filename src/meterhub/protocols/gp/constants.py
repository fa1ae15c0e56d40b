"""GlobalPlatform Card Specification v2.3.1 codes shared by the card and host sides.

Life cycles (§5.1, §5.3, §11.1.1), privileges (§6.6.1 Table 6-1, §11.1.2), instruction
codes (§11.1.4 Table 11-10) and the well-known AIDs used by meterhub.
"""

from __future__ import annotations

from ..iso7816.aid import AID

__all__ = [
    "ISD_AID",
    "SD_PACKAGE_AID",
    "SD_MODULE_AID",
    "OP_READY",
    "INITIALIZED",
    "SECURED",
    "CARD_LOCKED",
    "TERMINATED",
    "CARD_STATES",
    "APP_INSTALLED",
    "APP_SELECTABLE",
    "SD_PERSONALIZED",
    "APP_LOCKED",
    "ELF_LOADED",
    "Privilege",
    "privileges_bytes",
    "has_privilege",
    "INS",
]

#: Default AID of the Issuer Security Domain (GPC 2.3.1 §H.1, RID A000000151).
ISD_AID = AID.from_hex("A000000151000000")
#: Executable Load File and Module of security domains, built into the card (GPC §H.1:
#: A0000001515350 is GlobalPlatform's SSD package AID).
SD_PACKAGE_AID = AID.from_hex("A0000001515350")
SD_MODULE_AID = AID.from_hex("A000000151535041")

# --- card life cycle, GPC 2.3.1 §5.1.1 and Table 11-5 ---------------------------------
OP_READY = 0x01
INITIALIZED = 0x07
SECURED = 0x0F
CARD_LOCKED = 0x7F
TERMINATED = 0xFF
CARD_STATES = (OP_READY, INITIALIZED, SECURED, CARD_LOCKED, TERMINATED)

# --- application / SD life cycle, GPC 2.3.1 §5.3 and Tables 11-6, 11-7 ----------------
APP_INSTALLED = 0x03
APP_SELECTABLE = 0x07
SD_PERSONALIZED = 0x0F
APP_LOCKED = 0x80  # b8; the other bits keep the state from before locking
# Executable Load File life cycle, GPC 2.3.1 §5.2 and Table 11-4.
ELF_LOADED = 0x01


class Privilege:
    """Privileges as (byte index, mask) pairs, GPC 2.3.1 §6.6.1 Table 6-1 / §11.1.2."""

    SECURITY_DOMAIN = (0, 0x80)
    DAP_VERIFICATION = (0, 0xC0)  # b8 + b7: only security domains verify DAPs
    DELEGATED_MANAGEMENT = (0, 0xA0)
    CARD_LOCK = (0, 0x10)
    CARD_TERMINATE = (0, 0x08)
    CARD_RESET = (0, 0x04)
    CVM_MANAGEMENT = (0, 0x02)
    MANDATED_DAP = (0, 0xC1)
    TRUSTED_PATH = (1, 0x80)
    AUTHORIZED_MANAGEMENT = (1, 0x40)
    TOKEN_VERIFICATION = (1, 0x20)
    GLOBAL_DELETE = (1, 0x10)
    GLOBAL_LOCK = (1, 0x08)
    GLOBAL_REGISTRY = (1, 0x04)
    FINAL_APPLICATION = (1, 0x02)
    GLOBAL_SERVICE = (1, 0x01)
    RECEIPT_GENERATION = (2, 0x80)


def privileges_bytes(*privs: tuple[int, int]) -> bytes:
    """The 3-byte privilege field (GPC 2.3.1 §11.1.2) with ``privs`` set."""
    out = bytearray(3)
    for idx, mask in privs:
        out[idx] |= mask
    return bytes(out)


def has_privilege(field: bytes, priv: tuple[int, int]) -> bool:
    """Is ``priv`` (all of its bits) set in a 1- or 3-byte privilege field?"""
    idx, mask = priv
    return len(field) > idx and field[idx] & mask == mask


class INS:
    """Instruction bytes, GPC 2.3.1 Table 11-10 and Amendment D §7."""

    DELETE = 0xE4
    EXTERNAL_AUTHENTICATE = 0x82
    GET_DATA = 0xCA
    GET_DATA_ODD = 0xCB
    GET_STATUS = 0xF2
    INITIALIZE_UPDATE = 0x50
    INSTALL = 0xE6
    LOAD = 0xE8
    PUT_KEY = 0xD8
    SET_STATUS = 0xF0
    STORE_DATA = 0xE2
