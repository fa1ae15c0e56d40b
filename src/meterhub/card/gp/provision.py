"""Factory provisioning of the card manager (pre-issuance, GPC 2.3.1 §5.1.1.1-2).

What a card manufacturer does before the card leaves the factory: register the ISD with its
initial SCP03 keys and DAP key, register the immutable security-domain load file, create the
Supplementary Security Domains of the data recipients, and set the card life cycle. After
this everything goes through APDUs and SCP03.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...crypto import ecdsa
from ...protocols.gp.constants import (
    ISD_AID,
    SD_MODULE_AID,
    SD_PACKAGE_AID,
    SD_PERSONALIZED,
    SECURED,
    Privilege,
    privileges_bytes,
)
from ...protocols.gp.keys import StaticKeys
from ...protocols.iso7816.aid import AID
from ..card import Card
from ..registry import AppletRecord
from ..runtime import SYSTEM_NAMESPACE
from ..store import PersistentStore
from . import registry as gpreg
from .loadfile import Module
from .sd import SD_CLASS_NAME, attach

__all__ = [
    "ISD_PRIVILEGES",
    "SSD_PRIVILEGES",
    "provision_isd",
    "provision_ssd",
    "open_card",
]

#: The ISD holds the card-wide privileges (GPC 2.3.1 §6.6.1, §7.2).
ISD_PRIVILEGES = privileges_bytes(
    Privilege.SECURITY_DOMAIN,
    Privilege.DAP_VERIFICATION,
    Privilege.CARD_LOCK,
    Privilege.CARD_TERMINATE,
    Privilege.CARD_RESET,
    Privilege.AUTHORIZED_MANAGEMENT,
    Privilege.GLOBAL_DELETE,
    Privilege.GLOBAL_LOCK,
    Privilege.GLOBAL_REGISTRY,
)
#: A data recipient's domain: manages its own applets and checks its own DAPs.
SSD_PRIVILEGES = privileges_bytes(
    Privilege.SECURITY_DOMAIN, Privilege.DAP_VERIFICATION, Privilege.AUTHORIZED_MANAGEMENT
)


def _as_point(dap_key: ecdsa.VerifyingKey | ecdsa.SigningKey | bytes | None) -> bytes | None:
    if dap_key is None:
        return None
    if isinstance(dap_key, bytes):
        ecdsa.load_verifying_key(dap_key)  # validate now, not at the first LOAD
        return dap_key
    return ecdsa.public_bytes(dap_key)


def _write_keys(store: PersistentStore, aid: AID, keys: Iterable[StaticKeys]) -> None:
    for k in keys:
        store.put(aid.raw, b"K" + bytes((k.kvn,)), k.enc + k.mac + k.dek)


def provision_isd(
    card: Card,
    keys: Iterable[StaticKeys],
    *,
    aid: AID | bytes | str = ISD_AID,
    dap_key: ecdsa.VerifyingKey | ecdsa.SigningKey | bytes | None = None,
    life_cycle: int = SECURED,
    iin: bytes | None = None,
    cin: bytes | None = None,
) -> AppletRecord:
    """Register the ISD, its key sets, its DAP key and the card life cycle; arm the guard."""
    isd = AID.of(aid)
    keys = list(keys)
    if not keys:
        raise ValueError("the ISD needs an initial key set (GPC 2.3.1 §5.1.1.1)")
    store = card.store
    point = _as_point(dap_key)
    rec = card.registry.install_applet(
        SD_CLASS_NAME, isd, SD_PACKAGE_AID, None, ISD_PRIVILEGES, state=SD_PERSONALIZED
    )
    store.begin()  # the rest in one atomic step
    gpreg.set_isd_aid(store, isd)
    _write_keys(store, isd, keys)
    if point is not None:
        gpreg.put_dap_key(store, isd, point)
    if iin is not None:
        store.put(isd.raw, b"IIN", iin)
    if cin is not None:
        store.put(isd.raw, b"CIN", cin)
    gpreg.put_elf(
        store,
        gpreg.ELFRecord(
            SD_PACKAGE_AID,
            b"\x01\x00",
            isd,
            (Module(SD_MODULE_AID, SD_CLASS_NAME, bytes(32)),),
            gpreg.next_seq(store),
            builtin=True,
        ),
    )
    gpreg.set_card_life_cycle(store, life_cycle)
    store.commit()
    attach(card)
    return rec


def provision_ssd(
    card: Card,
    aid: AID | bytes | str,
    keys: Iterable[StaticKeys],
    *,
    dap_key: ecdsa.VerifyingKey | ecdsa.SigningKey | bytes | None = None,
    privileges: bytes = SSD_PRIVILEGES,
) -> AppletRecord:
    """Create a Supplementary Security Domain for one data recipient, associated with the
    ISD, with its own SCP03 key sets and (for DAP Verification) its DAP key."""
    isd = gpreg.isd_aid(card.store)
    if isd is None:
        raise ValueError("provision the ISD first")
    ssd = AID.of(aid)
    keys = list(keys)
    point = _as_point(dap_key)
    rec = card.registry.install_applet(
        SD_CLASS_NAME, ssd, SD_PACKAGE_AID, isd, privileges, state=SD_PERSONALIZED
    )
    card.store.begin()
    _write_keys(card.store, ssd, keys)
    if point is not None:
        gpreg.put_dap_key(card.store, ssd, point)
    card.store.commit()
    return rec


def open_card(store: PersistentStore | str | Path | None = None) -> Card:
    """A :class:`Card` on ``store`` with the card manager's guard armed (use after a restart)."""
    card = Card(store)
    if card.store.get(SYSTEM_NAMESPACE, b"GP/ISD") is not None:
        attach(card)
    return card
