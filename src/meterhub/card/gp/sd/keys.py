"""Key management of a security domain: PUT KEY (GPC 2.3.1 §11.8, Amendment D §7.2)."""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ....protocols.gp import commands as cmd
from ....protocols.gp.constants import (
    CARD_LOCKED,
    TERMINATED,
)
from ....protocols.gp.keys import KeySetError, StaticKeys, kcv_aes
from ....protocols.iso7816.sw import SW
from .base import SecurityDomainBase, _err

__all__ = [
    "KeyManagement",
]

class KeyManagement(SecurityDomainBase):
    """PUT KEY."""

    # --- PUT KEY (GPC 2.3.1 §11.8, Amendment D §7.2) --------------------------------
    def _put_key(self, p1: int, p2: int, data: bytes) -> bytes:
        """A whole SCP03 key set (P2 = 81: key identifier 1, several keys); each key
        AES-CBC encrypted with zero ICV under the static Key-DEK of the session's key set
        (SCP03 has no session DEK). Response: KVN and the three KCVs."""
        if p2 != 0x81:
            raise _err(SW.INCORRECT_P1P2, "only whole SCP03 key sets")
        if self._lcs() in (CARD_LOCKED, TERMINATED):
            raise _err(SW.CONDITIONS_NOT_SATISFIED)
        session_keys = self.scp.key_set
        if session_keys is None:
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
        req = cmd.parse_put_key(data)
        comps = req.components
        if len(comps) != 3 or any(c.key_type != 0x88 for c in comps):
            raise _err(SW.WRONG_DATA, "three AES keys expected")
        clear = []
        for c in comps:
            if not c.cryptogram or len(c.cryptogram) % 16 or c.key_length > len(c.cryptogram):
                raise _err(SW.WRONG_DATA, "bad key cryptogram")
            dec = Cipher(algorithms.AES(session_keys.dek), modes.CBC(bytes(16))).decryptor()
            key = (dec.update(c.cryptogram) + dec.finalize())[: c.key_length]
            try:
                kcv = kcv_aes(key)
            except KeySetError:
                raise _err(SW.WRONG_DATA, "bad key length") from None
            if c.kcv and not hmac.compare_digest(kcv, c.kcv):
                raise _err(SW.WRONG_DATA, "key check value mismatch")
            clear.append(key)
        new = StaticKeys(req.new_kvn, clear[0], clear[1], clear[2])  # KeySetError -> 6A80
        old_kvn = p1 & 0x7F
        if old_kvn == 0:
            if new.kvn in self.keys:
                raise _err(SW.WRONG_DATA, "key version already present")
        else:
            if old_kvn not in self.keys:
                raise _err(SW.REFERENCED_DATA_NOT_FOUND, "no key set to replace")
            if new.kvn != old_kvn and new.kvn in self.keys:
                raise _err(SW.WRONG_DATA, "key version already present")
        previous = self.keys.get(new.kvn)
        self.ctx.begin_transaction()
        if old_kvn and old_kvn != new.kvn:
            self.keys.delete(old_kvn)
        self.keys.put(new)
        if previous is None or not hmac.compare_digest(previous.enc, new.enc):
            # A new Key-ENC never repeats a challenge, so its counter may start over
            # (and an exhausted counter is how a key set gets back into service).
            self.counters.store(new.kvn, 0)
        self.ctx.commit_transaction()
        return bytes((new.kvn,)) + b"".join(new.kcv())
