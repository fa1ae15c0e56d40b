"""The storage vault: the card seals and opens the hub host's records under a key it
never exports (docs/privacy.md, "Secrets and readings at rest").

The hub's host keeps each day's openings, the home-link key and the saved statements
in ``hub.sqlite``. They are encrypted under the **record key** of the meter's hub card:
32 random bytes (``secrets``) created inside the card when the vault is installed, kept
in the vault's namespace of the card's persistent store, and used only here, by
AES-256-GCM (``cryptography``'s ``AESGCM``, NIST SP 800-38D) with a fresh 96-bit nonce
per record. The host sends a record's identity and plaintext and gets the sealed record
back, or sends identity and sealed record and gets the plaintext; no command returns
the key, so a copy of ``hub.sqlite`` (and the host's memory, apart from the records it
asked for) holds nothing that opens another record.

The vault is an ISD-associated applet at the fixed AID :data:`VAULT_AID`, installed at
provisioning (:func:`provision_vault`), never by a recipient's security domain; the
output gate (:func:`meterhub.card.guard.output_allowed`) lets its answers out only from
that instance. It grants no shareable interface: applets cannot ask it to open records.

Commands (class ``80``, any logical channel; ISO/IEC 7816-4 §5.4.1 channels keep it apart
from the applet selected on the basic channel):

* ``54`` SEAL: ``u16 len(identity) || identity || plaintext`` → ``01 || nonce (12) ||
  ciphertext || tag (16)``;
* ``56`` OPEN: ``u16 len(identity) || identity || sealed`` → the plaintext; a record
  altered, sealed for another identity or under another card's key ``6982``;
* ``58`` KEY ID: the 16-byte key identifier ``SHA-256("meterhub/v1/vault-key-id\\0" ||
  key)[:16]``, so the host can tell which card sealed a meter's records (a one-way
  function of a 256-bit random key reveals nothing usable about it).

The associated data is ``"meterhub/v1/vault-record\\0" || identity``; the host's
identities name the store, table, column and row (``meterhub.hub.store``), so a record
moved to another row or column does not open.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.sw import SW, ISOException
from .applet import Applet, ins, register_applet_class
from .registry import AppletRecord
from .runtime import AppletContext

__all__ = ["VAULT_AID", "VAULT_CLASS", "StorageVault", "provision_vault", "vault_record_ok"]

VAULT_AID = "F04D480056540001"  # "VT"
VAULT_CLASS = "meterhub.card.vault/1"
_AAD = b"meterhub/v1/vault-record\x00"
_KEY_ID = b"meterhub/v1/vault-key-id\x00"
_SEALED_V1 = b"\x01"
MAX_IDENTITY = 512


def _split(data: bytes) -> tuple[bytes, bytes]:
    if len(data) < 2:
        raise ISOException(SW.WRONG_LENGTH, "identity length missing")
    n = int.from_bytes(data[:2], "big")
    if not 1 <= n <= MAX_IDENTITY or len(data) < 2 + n:
        raise ISOException(SW.WRONG_DATA, "bad record identity")
    return data[2 : 2 + n], data[2 + n :]


class StorageVault(Applet):
    """See the module docstring."""

    #: Stateless between commands: several host clients may hold it on their own channels.
    multiselectable = True

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> StorageVault:
        if ctx.aid != AID.of(VAULT_AID):
            raise ISOException(SW.WRONG_DATA, "the storage vault lives at its fixed AID")
        if params:
            raise ISOException(SW.WRONG_DATA, "the storage vault takes no parameters")
        # Created on the card: never a parameter, never an output (a seeded demo source
        # must not choose it either, hence secrets and not the runtime's random).
        ctx.store.put(b"key", secrets.token_bytes(32))
        return cls(ctx)

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._aead: tuple[bytes, AESGCM] | None = None

    def _cipher(self) -> AESGCM:
        key = self.ctx.store.get(b"key")
        if key is None or len(key) != 32:
            raise ISOException(SW.UNKNOWN, "vault key missing")
        if self._aead is None or self._aead[0] != hashlib.sha256(key).digest():
            self._aead = (hashlib.sha256(key).digest(), AESGCM(key))
        return self._aead[1]

    @ins(0x54, cla=0x80)
    def seal(self, apdu: CommandAPDU) -> bytes:
        identity, plaintext = _split(bytes(apdu.data))
        nonce = secrets.token_bytes(12)
        return _SEALED_V1 + nonce + self._cipher().encrypt(nonce, plaintext, _AAD + identity)

    @ins(0x56, cla=0x80)
    def open(self, apdu: CommandAPDU) -> bytes:
        identity, sealed = _split(bytes(apdu.data))
        if sealed[:1] != _SEALED_V1 or len(sealed) < 29:
            raise ISOException(SW.WRONG_DATA, "not a sealed record")
        try:
            return self._cipher().decrypt(sealed[1:13], sealed[13:], _AAD + identity)
        except InvalidTag:
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "record fails authentication") from None

    @ins(0x58, cla=0x80)
    def key_id(self, apdu: CommandAPDU) -> bytes:
        key = self.ctx.store.get(b"key") or b""
        return hashlib.sha256(_KEY_ID + key).digest()[:16]


register_applet_class(VAULT_CLASS, StorageVault)


def vault_record_ok(rec: AppletRecord, isd: AID | None) -> bool:
    """Is ``rec`` the card's own vault: the vault class at its fixed AID, associated with
    the ISD (or with no SD on a card without a card manager)? A recipient's SD could
    install the class elsewhere; that instance has its own key and no exemption."""
    return rec.class_name == VAULT_CLASS and rec.aid == AID.of(VAULT_AID) and rec.sd_aid == isd


def provision_vault(card: Any, *, isd_aid: AID | bytes | str | None = None) -> AppletRecord:
    """Install the vault (directly, like the guard: no recipient's SD is involved) unless
    present; a vault record that is not the card's own is refused with ``ValueError``."""
    isd = AID.of(isd_aid) if isd_aid is not None else None
    rec = card.registry.get(VAULT_AID)
    if rec is None:
        rec = card.registry.install_applet(VAULT_CLASS, VAULT_AID, sd_aid=isd)
    if not vault_record_ok(rec, isd):
        raise ValueError(f"the applet at {VAULT_AID} is not this card's storage vault")
    return rec
