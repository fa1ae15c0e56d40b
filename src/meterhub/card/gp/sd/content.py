"""Content management commands of a security domain: INSTALL (GPC 2.3.1 §11.5),
LOAD (§11.6, with DAP verification, §9.2.3), DELETE (§11.2) and STORE DATA (§11.11).
"""

from __future__ import annotations

import hmac

from ....crypto import ecdsa
from ....protocols.gp import commands as cmd
from ....protocols.gp.constants import (
    APP_INSTALLED,
    APP_SELECTABLE,
    CARD_LOCKED,
    INS,
    TERMINATED,
    Privilege,
    has_privilege,
)
from ....protocols.iso7816.aid import AID
from ....protocols.iso7816.apdu import CommandAPDU
from ....protocols.iso7816.sw import SW, ISOException
from ....protocols.iso7816.tlv import parse
from ...applet import applet_class
from ...guard import clear_issued, output_allowed
from ...runtime import SecurityException
from .. import registry as gpreg
from ..loadfile import (
    LoadFileError,
    applet_code_hash,
    lfdb_hash,
    parse_load_file,
    parse_package,
    verify_dap,
)
from .base import MAX_LOAD_FILE, SecurityDomainBase, _err, _PendingLoad

__all__ = [
    "ContentManagement",
]

class ContentManagement(SecurityDomainBase):
    """INSTALL, LOAD, STORE DATA and DELETE."""

    # --- INSTALL (GPC 2.3.1 §11.5) -----------------------------------------------------
    def _install(self, p1: int, p2: int, data: bytes) -> bytes:
        if p2 != 0x00:
            raise _err(SW.INCORRECT_P1P2)
        kind = p1 & 0x7F  # b8: more INSTALL commands follow (ignored)
        if kind == 0x20:
            return self._install_for_personalization(data)
        self._content_management()
        if kind == 0x02:
            return self._install_for_load(data)
        if kind in (0x04, 0x0C):
            return self._install_for_install(data, selectable=kind == 0x0C)
        if kind == 0x08:
            return self._make_selectable(data)
        raise _err(SW.INCORRECT_P1P2)

    def _install_for_load(self, data: bytes) -> bytes:
        req = cmd.parse_install_for_load(data)
        if gpreg.get_elf(self._store, req.elf_aid) is not None or req.elf_aid in self._registry:
            raise _err(SW.WRONG_DATA, "AID already in use")
        sd = req.sd_aid or self.aid
        target = self._registry.get(sd)
        if target is None or not self._is_sd(target):
            raise _err(SW.REFERENCED_DATA_NOT_FOUND, "no such security domain")
        if sd != self.aid and not self.is_isd:
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED, "load into another domain")
        self._load = _PendingLoad(req.elf_aid, sd, req.lfdb_hash)
        return b"\x00"

    def _required_daps(self, sd: AID) -> set[AID]:
        """DAP verification (GPC 2.3.1 §9.2.1, §C.3): the target domain when it has the DAP
        Verification privilege, otherwise the ISD; plus every Mandated DAP domain. Never
        empty, so an unsigned load file is always refused."""
        target = self._registry.get(sd)
        isd = gpreg.isd_aid(self._store)
        need = set()
        if target is not None and has_privilege(target.privileges, Privilege.DAP_VERIFICATION):
            need.add(sd)
        elif isd is not None:
            need.add(isd)
        for rec in self._registry:
            if has_privilege(rec.privileges, Privilege.MANDATED_DAP):
                need.add(rec.aid)
        return need

    def _load_cmd(self, p1: int, p2: int, data: bytes) -> bytes:
        """LOAD (GPC 2.3.1 §11.6): P1 b8 = last block, P2 = block number from 00."""
        pending = self._load
        if pending is None:
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "no INSTALL [for load]")
        if p1 not in (0x00, 0x80) or p2 != pending.next_block:
            self._load = None  # a broken sequence ends the load (nothing was written)
            raise _err(SW.INCORRECT_P1P2, "LOAD block out of sequence")
        self._content_management()
        if len(pending.buf) + len(data) > MAX_LOAD_FILE:
            self._load = None
            raise _err(SW.FILE_FULL, "load file too large")
        pending.buf += data
        pending.next_block += 1
        if p1 == 0x00:
            return b"\x00"
        self._load = None
        self._finish_load(pending)
        return b"\x00"

    def _finish_load(self, pending: _PendingLoad) -> None:
        daps, lfdb = parse_load_file(bytes(pending.buf))
        digest = lfdb_hash(lfdb)
        if pending.digest and not hmac.compare_digest(digest, pending.digest):
            raise LoadFileError("load file data block hash mismatch")
        signed: set[AID] = set()
        for sd, sig in daps:
            rec = self._registry.get(sd)
            point = gpreg.get_dap_key(self._store, sd)
            if rec is None or point is None:
                raise LoadFileError("DAP block of a domain without a DAP key")
            if not has_privilege(rec.privileges, Privilege.DAP_VERIFICATION):
                raise LoadFileError("DAP block of a domain without DAP Verification")
            try:
                key = ecdsa.load_verifying_key(point)
            except ValueError:
                raise LoadFileError("stored DAP key unusable") from None
            if not verify_dap(digest, sig, key):
                raise LoadFileError("DAP verification failed")
            signed.add(sd)
        if not self._required_daps(pending.sd_aid) <= signed:
            raise LoadFileError("missing DAP signature")
        package = parse_package(lfdb)
        if package.aid != pending.elf_aid:
            raise LoadFileError("package AID differs from INSTALL [for load]")
        for m in package.modules:
            cls = applet_class(m.class_name)
            if cls is None or issubclass(cls, SecurityDomainBase):
                raise LoadFileError(f"unknown applet implementation {m.class_name!r}")
            if not hmac.compare_digest(applet_code_hash(cls), m.code_hash):
                raise LoadFileError(f"code hash of {m.class_name!r} does not match")
        elf = gpreg.ELFRecord(
            package.aid,
            package.version,
            pending.sd_aid,
            package.modules,
            gpreg.next_seq(self._store),
        )
        gpreg.put_elf(self._store, elf)  # one atomic write: the load file exists or not

    def _install_for_install(self, data: bytes, *, selectable: bool) -> bytes:
        req = cmd.parse_install_for_install(data)
        assert req.elf_aid is not None and req.module_aid is not None
        elf = gpreg.get_elf(self._store, req.elf_aid)
        if elf is None or not self._mine(elf.sd_aid):
            raise _err(SW.REFERENCED_DATA_NOT_FOUND, "no such load file")
        module = elf.module(req.module_aid)
        if module is None:
            raise _err(SW.REFERENCED_DATA_NOT_FOUND, "no such module")
        cls = applet_class(module.class_name)
        if cls is None:
            raise _err(SW.WRONG_DATA, "implementation not registered")
        if gpreg.get_elf(self._store, req.app_aid) is not None:
            raise _err(SW.WRONG_DATA, "AID already in use")
        if issubclass(cls, SecurityDomainBase):
            # Supplementary domains are created by provisioning, with their keys.
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "create security domains with provision_ssd")
        if any(req.privileges):
            raise _err(SW.WRONG_DATA, "applications get no privileges here")
        state = APP_SELECTABLE if selectable else APP_INSTALLED
        try:
            self._registry.install_applet(
                module.class_name,
                req.app_aid,
                elf.aid,
                self.aid,
                req.privileges,
                req.app_params,
                state=state,
            )
        except (ISOException, SecurityException):
            raise
        except Exception as exc:  # noqa: BLE001 - a failing install() means bad parameters
            raise _err(SW.WRONG_DATA, f"install refused: {exc}") from None
        return b"\x00"

    def _make_selectable(self, data: bytes) -> bytes:
        req = cmd.parse_install_for_install(data, make_selectable_only=True)
        rec = self._registry.get(req.app_aid)
        if rec is None or not self._mine(rec.sd_aid):
            raise _err(SW.REFERENCED_DATA_NOT_FOUND)
        if rec.state != APP_INSTALLED:
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "not in INSTALLED state")
        self._registry.set_state(rec.aid, APP_SELECTABLE)
        return b"\x00"

    def _install_for_personalization(self, data: bytes) -> bytes:
        req = cmd.parse_install_for_personalization(data)
        if self._lcs() in (CARD_LOCKED, TERMINATED):
            raise _err(SW.CONDITIONS_NOT_SATISFIED)
        rec = self._registry.get(req.app_aid)
        # GPC 2.3.1 §11.5.2.3.6: only an application associated with this domain.
        if rec is None or rec.sd_aid != self.aid:
            raise _err(SW.REFERENCED_DATA_NOT_FOUND)
        inst = rec.instance
        if rec.locked or inst is None or not callable(getattr(inst, "process_data", None)):
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "application cannot be personalized")
        self._perso = rec.aid
        self._store_next = 0
        return b"\x00"

    # --- STORE DATA (GPC 2.3.1 §11.11) -----------------------------------------------
    def _store_data(self, p1: int, p2: int, data: bytes) -> bytes:
        """P1 b8 last block, b7-b6 encryption, b5-b4 structure (00 none, 01 DGI, 10
        BER-TLV); P2 block number. Blocks go to the application named by INSTALL [for
        personalization] (its ``process_data``, the GP API ``Application.processData``),
        otherwise to this domain."""
        if p2 != self._store_next:
            self._store_next = 0
            raise _err(SW.INCORRECT_P1P2, "STORE DATA block out of sequence")
        self._store_next = 0 if p1 & 0x80 else (p2 + 1) & 0xFF
        if self._perso is not None:
            rec = self._registry.get(self._perso)
            if rec is None or rec.locked or rec.instance is None:
                self._perso = None
                raise _err(SW.CONDITIONS_NOT_SATISFIED)
            apdu = CommandAPDU(0x80, INS.STORE_DATA, p1, p2, data)
            clear_issued(self.ctx.runtime, rec.aid)
            with self.ctx.runtime.enter(rec.context):
                out = rec.instance.process_data(apdu)  # type: ignore[attr-defined]
            if not output_allowed(self.ctx.runtime, rec, bytes(out or b"")):
                raise _err(SW.UNKNOWN, "output not issued by the privacy guard")
            return bytes(out or b"")
        if self._lcs() in (CARD_LOCKED, TERMINATED):
            raise _err(SW.CONDITIONS_NOT_SATISFIED)
        if p1 & 0x60:
            raise _err(SW.WRONG_DATA, "encrypted STORE DATA to a domain is not offered")
        structure = p1 & 0x18
        if structure == 0x08:
            items = _parse_dgi(data)
        elif structure in (0x00, 0x10):
            items = [(o.tag, o.value) for o in parse(data)]
        else:
            raise _err(SW.INCORRECT_P1P2)
        if not self.is_isd or any(tag not in (0x42, 0x45) for tag, _ in items):
            raise _err(SW.WRONG_DATA, "only IIN (42) and CIN (45) to the ISD")
        self.ctx.begin_transaction()
        for tag, value in items:
            self.ctx.store.put(b"IIN" if tag == 0x42 else b"CIN", value)
        self.ctx.commit_transaction()
        return b""

    # --- DELETE (GPC 2.3.1 §11.2) ------------------------------------------------------
    def _delete(self, p1: int, p2: int, data: bytes) -> bytes:
        if p1 & 0x7F or p2 not in (0x00, 0x80):
            raise _err(SW.INCORRECT_P1P2)
        aid = cmd.parse_delete(data)
        self._content_management()
        related = p2 == 0x80
        if aid == self.aid or aid == gpreg.isd_aid(self._store):
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "a domain cannot delete itself or the ISD")
        rec = self._registry.get(aid)
        elf = gpreg.get_elf(self._store, aid)
        if rec is not None and self._mine(rec.sd_aid):
            if self._is_sd(rec) and (
                self._registry.associated(aid)
                or any(e.sd_aid == aid for e in gpreg.elf_records(self._store))
            ):
                raise _err(SW.CONDITIONS_NOT_SATISFIED, "domain still has content")
            self.ctx.begin_transaction()
            self._registry.delete(aid)
            gpreg.delete_dap_key(self._store, aid)
            self.ctx.commit_transaction()
            return b"\x00"
        if elf is not None and self._mine(elf.sd_aid):
            if elf.builtin:
                raise _err(SW.CONDITIONS_NOT_SATISFIED, "load file in immutable memory")
            instances = [r for r in self._registry if r.package_aid == aid]
            if instances and not related:
                raise _err(SW.CONDITIONS_NOT_SATISFIED, "load file has instances")
            card = self.ctx.card
            if any(card.is_selected(r.aid) for r in instances):
                raise _err(SW.CONDITIONS_NOT_SATISFIED, "an instance is selected")
            # One store transaction: the load file and its instances go together or not.
            self.ctx.begin_transaction()
            for r in instances:
                self._registry.delete(r.aid)
            gpreg.delete_elf(self._store, aid)
            self.ctx.commit_transaction()
            return b"\x00"
        raise _err(SW.REFERENCED_DATA_NOT_FOUND)


def _parse_dgi(data: bytes) -> list[tuple[int, bytes]]:
    """DGI records (GPC 2.3.1 §11.11.2.3 / EMV CPS): tag 2 bytes, length 1 byte or
    ``FF`` + 2 bytes, value."""
    out, off = [], 0
    while off < len(data):
        if off + 3 > len(data):
            raise _err(SW.WRONG_DATA, "truncated DGI")
        tag = int.from_bytes(data[off : off + 2], "big")
        n = data[off + 2]
        off += 3
        if n == 0xFF:
            if off + 2 > len(data):
                raise _err(SW.WRONG_DATA, "truncated DGI")
            n = int.from_bytes(data[off : off + 2], "big")
            off += 2
        if off + n > len(data):
            raise _err(SW.WRONG_DATA, "truncated DGI")
        out.append((tag, data[off : off + n]))
        off += n
    return out
