"""Status commands of a security domain: GET STATUS (GPC 2.3.1 §11.4) and SET STATUS
(§11.10), with the card and application life-cycle transitions (§5.1, §5.3).
"""

from __future__ import annotations

from ....protocols.gp import commands as cmd
from ....protocols.gp.constants import (
    APP_LOCKED,
    CARD_LOCKED,
    INITIALIZED,
    OP_READY,
    SECURED,
    TERMINATED,
    Privilege,
)
from ....protocols.iso7816.aid import AID
from ....protocols.iso7816.sw import SW
from ....protocols.iso7816.tlv import TLV
from ...registry import AppletRecord
from .. import registry as gpreg
from .base import MAX_STATUS_DATA, SecurityDomainBase, _err, _PendingStatus

__all__ = [
    "StatusManagement",
]

class StatusManagement(SecurityDomainBase):
    """GET STATUS and SET STATUS."""

    # --- GET STATUS (GPC 2.3.1 §11.4) -----------------------------------------------
    def _get_status(self, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        if p1 not in (0x80, 0x40, 0x20, 0x10) or p2 & ~0x03:
            raise _err(SW.INCORRECT_P1P2)
        tagged = bool(p2 & 0x02)
        if p2 & 0x01:
            cont = self._status
            if cont is None or cont.p1 != p1 or cont.tagged != tagged:
                raise _err(SW.INCORRECT_P1P2, "no GET STATUS to continue")
            entries = cont.entries
        else:
            prefix = cmd.parse_get_status(data)
            entries = self._status_entries(p1, prefix, tagged)
            if not entries:
                self._status = None
                raise _err(SW.REFERENCED_DATA_NOT_FOUND)
        out = bytearray()
        n = 0
        while n < len(entries) and (n == 0 or len(out) + len(entries[n]) <= MAX_STATUS_DATA):
            out += entries[n]
            n += 1
        rest = entries[n:]
        self._status = _PendingStatus(p1, tagged, rest) if rest else None
        return bytes(out), (SW.MORE_DATA_AVAILABLE if rest else SW.NO_ERROR)

    def _status_entries(self, p1: int, prefix: bytes, tagged: bool) -> list[bytes]:
        isd = gpreg.isd_aid(self._store)
        out = []

        def entry(aid: AID, lcs: int, privs: bytes, extra: list[TLV], legacy_tail: bytes) -> bytes:
            if tagged:
                objs = [TLV(0x4F, aid.raw), TLV(0x9F70, bytes((lcs,)))]
                if privs:
                    objs.append(TLV(0xC5, privs))
                return TLV.build(0xE3, objs + extra).to_bytes()
            return (
                bytes((len(aid),)) + aid.raw + bytes((lcs, privs[0] if privs else 0)) + legacy_tail
            )

        if p1 in (0x80, 0x40):
            for rec in self._registry:
                if not rec.aid.raw.startswith(prefix):
                    continue
                if (rec.aid == isd) != (p1 == 0x80):
                    continue
                if not (self.is_isd or rec.aid == self.aid or rec.sd_aid == self.aid):
                    continue
                lcs = self._lcs() if rec.aid == isd else rec.state
                privs = rec.privileges + bytes(3 - len(rec.privileges))
                extra = []
                if p1 == 0x40:
                    if rec.package_aid is not None:
                        extra.append(TLV(0xC4, rec.package_aid.raw))
                    if rec.sd_aid is not None:
                        extra.append(TLV(0xCC, rec.sd_aid.raw))
                out.append(entry(rec.aid, lcs, privs[:3], extra, b""))
            return out
        for elf in gpreg.elf_records(self._store):
            if not elf.aid.raw.startswith(prefix) or not self._mine(elf.sd_aid):
                continue
            extra = [TLV(0xCE, elf.version)]
            tail = b""
            if p1 == 0x10:
                extra += [TLV(0x84, m.aid.raw) for m in elf.modules]
                tail = bytes((len(elf.modules),)) + b"".join(
                    bytes((len(m.aid),)) + m.aid.raw for m in elf.modules
                )
            extra.append(TLV(0xCC, elf.sd_aid.raw))
            out.append(entry(elf.aid, elf.state, b"\x00", extra, tail))
        return out

    # --- SET STATUS (GPC 2.3.1 §11.10) ---------------------------------------------
    def _set_status(self, p1: int, p2: int, data: bytes) -> bytes:
        if p1 == 0x80:
            self._set_card_state(p2, data)
            return b""
        if p1 not in (0x40, 0x60):
            raise _err(SW.INCORRECT_P1P2)
        if self._lcs() == TERMINATED:
            raise _err(SW.CONDITIONS_NOT_SATISFIED)
        try:
            aid = AID(data)
        except ValueError:
            raise _err(SW.WRONG_DATA) from None
        if aid == self.aid:
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "a domain cannot lock itself")
        rec = self._registry.get(aid)
        if rec is None or not self._mine(rec.sd_aid) or aid == gpreg.isd_aid(self._store):
            raise _err(SW.REFERENCED_DATA_NOT_FOUND)
        targets = [rec]
        if p1 == 0x60:
            if not self._is_sd(rec):
                raise _err(SW.WRONG_DATA, "P1 = 60 names a security domain")
            targets += self._registry.associated(aid)
        new_states = [(r, _next_app_state(r, p2, self._is_sd(r))) for r in targets]
        self.ctx.begin_transaction()
        for r, state in new_states:
            self._registry.set_state(r.aid, state)
        self.ctx.commit_transaction()
        return b""

    def _set_card_state(self, new: int, data: bytes) -> None:
        """Card life cycle transitions (GPC 2.3.1 §5.1.2, Figure 5-1)."""
        if data and data != self.aid.raw:
            raise _err(SW.WRONG_DATA)
        cur = self._lcs()
        if cur == TERMINATED:
            raise _err(SW.CONDITIONS_NOT_SATISFIED)
        if new == TERMINATED:
            need = Privilege.CARD_TERMINATE
        elif new == CARD_LOCKED and cur == SECURED:
            need = Privilege.CARD_LOCK
        elif new == SECURED and cur == CARD_LOCKED:
            need = Privilege.CARD_LOCK  # §5.1.1.4: unlocking needs the same privilege
        elif (cur, new) in ((OP_READY, INITIALIZED), (OP_READY, SECURED), (INITIALIZED, SECURED)):
            if not self.is_isd:  # pre-issuance transitions belong to the ISD alone
                raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
            need = Privilege.SECURITY_DOMAIN
        elif new in (OP_READY, INITIALIZED, SECURED, CARD_LOCKED):
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "transition not allowed")
        else:
            raise _err(SW.WRONG_DATA, "unknown card life cycle state")
        if not self._has(need):
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
        gpreg.set_card_life_cycle(self._store, new)


def _next_app_state(rec: AppletRecord, p2: int, is_sd: bool) -> int:
    """Application life-cycle transitions (GPC 2.3.1 §5.3, §11.10.2.2): b8 set locks
    (keeping the previous state bits), ``00`` unlocks, and a value with b3-b1 = 111
    moves a selectable application to an application-specific state."""
    if p2 & APP_LOCKED:
        return rec.state | APP_LOCKED
    if p2 == 0x00:
        if not rec.locked:
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "not locked")
        return rec.state & ~APP_LOCKED & 0xFF
    if is_sd or rec.locked or (p2 & 0x07) != 0x07 or (rec.state & 0x07) != 0x07:
        raise _err(SW.WRONG_DATA, "transition not allowed")
    return p2
