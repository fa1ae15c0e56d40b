"""Security domains: the Issuer Security Domain (card manager) and Supplementary Security
Domains, GlobalPlatform Card Specification v2.3.1 with SCP03 (Amendment D).

A :class:`SecurityDomain` is an applet (registered as ``meterhub.gp.sd``) with the Security
Domain privilege, so its context may drive the card's registry. Each instance keeps its own
SCP03 key sets and sequence counters in its own namespace of the persistent store, so one
domain's keys can never open another domain's channel. The ISD additionally carries the card
life cycle (GPC 2.3.1 §5.1) and installs the card's ``select_guard``.

Command routing (GPC 2.3.1 §10.2, §11):

* INITIALIZE UPDATE / EXTERNAL AUTHENTICATE open a session (Amendment D §7.1);
* GET DATA works without a session; every other command needs an authenticated session
  with at least C-MAC (GPC 2.3.1 §10.2.2, §11.1.4 Table 11-10 "secure messaging"), else
  ``6982``;
* protected commands are unwrapped by the domain's :class:`SCP03CardSession` and their
  responses wrapped by it (R-MAC / R-ENC as the session level says).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...crypto import ecdsa
from ...protocols.gp import commands as cmd
from ...protocols.gp.constants import (
    APP_INSTALLED,
    APP_LOCKED,
    APP_SELECTABLE,
    CARD_LOCKED,
    INITIALIZED,
    INS,
    OP_READY,
    SECURED,
    TERMINATED,
    Privilege,
    has_privilege,
)
from ...protocols.gp.keys import KeySetError, StaticKeys, kcv_aes
from ...protocols.gp.scp03 import C_MAC, SCP03CardSession, SCP03Error
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.apdu import CommandAPDU, ResponseAPDU
from ...protocols.iso7816.sw import SW, ISOException
from ...protocols.iso7816.tlv import TLV, TLVError, parse
from ..applet import Applet, applet_class, register_applet_class
from ..guard import clear_issued, output_allowed
from ..registry import AppletRecord, Registry
from ..runtime import CLEAR_ON_DESELECT, AppletContext, SecurityException
from ..store import PersistentStore
from . import registry as gpreg
from .loadfile import (
    LoadFileError,
    applet_code_hash,
    lfdb_hash,
    parse_load_file,
    parse_package,
    verify_dap,
)

__all__ = [
    "SecurityDomain",
    "SD_CLASS_NAME",
    "MAX_LOAD_FILE",
    "MAX_STATUS_DATA",
    "card_recognition_data",
]

SD_CLASS_NAME = "meterhub.gp.sd"
MAX_LOAD_FILE = 64 * 1024  # bytes of one Load File; more answers 6A84 (not enough memory)
#: GET STATUS data per response: 232 plain bytes pad to 240 under R-ENC, plus an 8-byte
#: R-MAC, so the protected answer still fits a short Le of 256 (GPC 2.3.1 §11.4.3).
MAX_STATUS_DATA = 232
_OID_GP = bytes.fromhex("2A864886FC6B")  # {iso(1) member-body(2) us(840) globalPlatform(114283)}


def card_recognition_data(i_param: int = 0x70) -> bytes:
    """Card Recognition Data, tag ``66`` (GPC 2.3.1 §H.2, Table H-1): GP RID OID, card
    management type and version (2.3.1), card identification scheme, SCP03 with ``i``."""
    inner = [
        TLV(0x06, _OID_GP + b"\x01"),
        TLV.build(0x60, [TLV(0x06, _OID_GP + bytes.fromhex("02020301"))]),
        TLV.build(0x63, [TLV(0x06, _OID_GP + b"\x03")]),
        TLV.build(0x64, [TLV(0x06, _OID_GP + bytes((0x04, 0x03, i_param)))]),
    ]
    return TLV.build(0x66, [TLV.build(0x73, inner)]).to_bytes()


def _err(sw: int, msg: str = "") -> ISOException:
    return ISOException(sw, msg)


# --- persistent key sets and counters, in the domain's own namespace --------------------
class _StoredKeys(Mapping[int, StaticKeys]):
    """Live KVN -> key set view over the domain's store (``K`` + KVN -> ENC||MAC||DEK)."""

    def __init__(self, ctx: AppletContext) -> None:
        self._ctx = ctx

    def __getitem__(self, kvn: int) -> StaticKeys:
        if not isinstance(kvn, int) or not 0 <= kvn <= 0xFF:
            raise KeyError(kvn)
        if kvn == 0xFF:
            # 'FF' names the initial (factory) key set, as yubikit's default KeyRef(1, FF)
            # does; here that is the first key set, the same choice as P1 = '00'.
            first = next(iter(self), None)
            if first is None:
                raise KeyError(kvn)
            return self[first]
        raw = self._ctx.store.get(b"K" + bytes((kvn,)))
        if raw is None:
            raise KeyError(kvn)
        n = len(raw) // 3
        return StaticKeys(kvn, raw[:n], raw[n : 2 * n], raw[2 * n :])

    def __iter__(self) -> Iterator[int]:
        names = self._ctx.store.keys()  # noqa: SIM118 - a ContextStore, not a dict
        return iter(sorted(k[1] for k in names if k[:1] == b"K" and len(k) == 2))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def put(self, keys: StaticKeys) -> None:
        self._ctx.store.put(b"K" + bytes((keys.kvn,)), keys.enc + keys.mac + keys.dek)

    def delete(self, kvn: int) -> None:
        self._ctx.store.delete(b"K" + bytes((kvn,)))


class _StoredCounters:
    """:class:`~meterhub.protocols.gp.scp03.SequenceCounterStore` in the domain's store; each
    ``store`` is one atomic write, durable before INITIALIZE UPDATE answers."""

    def __init__(self, ctx: AppletContext) -> None:
        self._ctx = ctx

    def load(self, kvn: int) -> int:
        raw = self._ctx.store.get(b"C" + bytes((kvn,)))
        return int.from_bytes(raw, "big") if raw else 0

    def store(self, kvn: int, value: int) -> None:
        self._ctx.store.put(b"C" + bytes((kvn,)), value.to_bytes(3, "big"))


@dataclass
class _PendingLoad:
    elf_aid: AID
    sd_aid: AID
    digest: bytes
    next_block: int = 0
    buf: bytearray = field(default_factory=bytearray)


@dataclass
class _PendingStatus:
    p1: int
    tagged: bool
    entries: list[bytes]


class SecurityDomain(Applet):
    """ISD or SSD (GPC 2.3.1 ch. 7, ch. 11). State that must survive a restart is in the
    store; sessions, pending loads and GET STATUS continuations are RAM only and end on
    deselect or reset (a ``CLEAR_ON_DESELECT`` marker tells us when that happened)."""

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self._alive = ctx.make_transient_bytes(1, CLEAR_ON_DESELECT)
        self.keys = _StoredKeys(ctx)
        self.counters = _StoredCounters(ctx)
        self.scp = SCP03CardSession(self.keys, aid=ctx.aid.raw, counters=self.counters)
        self._load: _PendingLoad | None = None
        self._status: _PendingStatus | None = None
        self._perso: AID | None = None
        self._store_next = 0
        card = ctx.runtime.card
        if card is not None and gpreg.isd_aid(card.store) == ctx.aid:
            attach(card)  # after a restart the ISD re-arms the card life-cycle guard

    # --- helpers -----------------------------------------------------------------------
    @property
    def _store(self) -> PersistentStore:
        return self.ctx.card.store  # privileged: needs the Security Domain privilege

    @property
    def _registry(self) -> Registry:
        return self.ctx.registry

    @property
    def is_isd(self) -> bool:
        return gpreg.isd_aid(self._store) == self.aid

    def _record(self) -> AppletRecord:
        rec = self._registry.get(self.aid)
        if rec is None:  # cannot happen while we run; keeps the type checker honest
            raise _err(SW.UNKNOWN)
        return rec

    def _has(self, priv: tuple[int, int]) -> bool:
        return has_privilege(self._record().privileges, priv)

    def _reset_volatile(self) -> None:
        self.scp.close()
        self._load = None
        self._status = None
        self._perso = None
        self._store_next = 0

    def fci_proprietary(self) -> list[TLV]:
        """SD FCI (GPC 2.3.1 §11.9.3.1): Security Domain Management Data ``73`` and the
        maximum command data length ``9F65``."""
        crd = parse(card_recognition_data(self.scp.i_param))[0].children()[0]
        return [crd, TLV(0x9F65, b"\xff")]

    # --- entry point -------------------------------------------------------------------
    def process(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        if not self._alive[0]:
            self._reset_volatile()  # first APDU since select or reset: no session survives
            self._alive[0] = 1
        if self.selecting_applet():
            self._reset_volatile()  # GPC 2.3.1 §10.2.3: a SELECT ends the session
            return self.on_select_apdu(apdu)
        try:
            return self._process(apdu)
        except SCP03Error as exc:
            return ResponseAPDU(b"", exc.sw)

    def _process(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        ins = apdu.ins
        if ins in (INS.GET_DATA, INS.GET_DATA_ODD) and not apdu.secure_messaging:
            if self.scp.is_authenticated:
                # A plain command inside a session would bypass its MAC chain: end it.
                self.scp.close()
                raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
            return self._get_data(apdu.p1, apdu.p2, apdu.data)
        if apdu.interindustry and ins == 0xA4:
            raise _err(SW.FILE_NOT_FOUND)  # a SELECT the card forwarded: no such applet
        if apdu.interindustry and ins not in (INS.GET_DATA, INS.GET_DATA_ODD):
            # GP commands use the proprietary class; GET DATA may come as 00/04 (yubikit).
            raise _err(SW.CLA_NOT_SUPPORTED if ins in _HANDLERS else SW.INS_NOT_SUPPORTED)
        if ins == INS.INITIALIZE_UPDATE:
            self._load, self._status, self._perso = None, None, None
            return self.scp.initialize_update(apdu.cla, apdu.p1, apdu.p2, apdu.data)
        if ins == INS.EXTERNAL_AUTHENTICATE:
            self.scp.external_authenticate(
                apdu.cla, apdu.p1, apdu.p2, apdu.data, extended=bool(apdu.extended)
            )
            return None
        handler = _HANDLERS.get(ins)
        if handler is None and ins not in (INS.GET_DATA, INS.GET_DATA_ODD):
            raise _err(SW.INS_NOT_SUPPORTED)
        if not self.scp.is_authenticated:
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
        _, ins, p1, p2, data = self.scp.unwrap_command(
            apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, extended=bool(apdu.extended)
        )
        if ins in (INS.GET_DATA, INS.GET_DATA_ODD):
            out, sw = self._get_data(p1, p2, data), SW.NO_ERROR
        else:
            if not (self.scp.security_level or 0) & C_MAC:
                raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)  # level 00 manages nothing
            assert handler is not None
            try:
                result = handler(self, p1, p2, data)
            except (TLVError, KeySetError) as exc:
                raise _err(getattr(exc, "sw", SW.WRONG_DATA)) from None
            out, sw = result if isinstance(result, tuple) else (result, SW.NO_ERROR)
        return ResponseAPDU(self.scp.wrap_response(out, sw), sw)

    # --- checks ------------------------------------------------------------------------
    def _lcs(self) -> int:
        return gpreg.card_life_cycle(self._store)

    def _content_management(self) -> None:
        """Card content changes: not on a locked card (GPC 2.3.1 §5.1.1.4) and only for
        the ISD or a domain with Authorized Management (§6.6.1, §9.1)."""
        if self._lcs() in (CARD_LOCKED, TERMINATED):
            raise _err(SW.CONDITIONS_NOT_SATISFIED, "card is locked")
        if not (self.is_isd or self._has(Privilege.AUTHORIZED_MANAGEMENT)):
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED, "no card content management privilege")

    def _mine(self, rec_sd: AID | None) -> bool:
        """Objects a domain may manage: its own, or all of them for the ISD (GPC 2.3.1
        §9.5: the ISD is the ancestor of every domain)."""
        return self.is_isd or rec_sd == self.aid

    def _is_sd(self, rec: AppletRecord) -> bool:
        return has_privilege(rec.privileges, Privilege.SECURITY_DOMAIN)

    # --- GET DATA (GPC 2.3.1 §11.3) ----------------------------------------------------
    def _get_data(self, p1: int, p2: int, data: bytes) -> bytes:
        tag = (p1 << 8) | p2
        if tag == 0x00E0:
            objs = []
            for kvn in self.keys:
                ks = self.keys[kvn]
                for key_id in (1, 2, 3):  # Amendment D §7.2: ENC, MAC, DEK
                    objs.append(TLV(0xC0, bytes((key_id, kvn, 0x88, ks.key_length))))
            return TLV.build(0xE0, objs).to_bytes()
        if tag == 0x0066:
            return card_recognition_data(self.scp.i_param)
        if tag in (0x0042, 0x0045):
            value = self.ctx.store.get(b"IIN" if tag == 0x0042 else b"CIN")
            if value is not None:
                return TLV(tag, value).to_bytes()
        raise _err(SW.REFERENCED_DATA_NOT_FOUND)

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
            if cls is None or issubclass(cls, SecurityDomain):
                raise LoadFileError(f"unknown applet implementation {m.class_name!r}")
            if not hmac.compare_digest(applet_code_hash(cls), m.code_hash):
                raise LoadFileError(f"code hash of {m.class_name!r} does not match")
        rec = gpreg.ELFRecord(
            package.aid,
            package.version,
            pending.sd_aid,
            package.modules,
            gpreg.next_seq(self._store),
        )
        gpreg.put_elf(self._store, rec)  # one atomic write: the load file exists or not

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
        if issubclass(cls, SecurityDomain):
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


_HANDLERS = {
    INS.INSTALL: SecurityDomain._install,
    INS.LOAD: SecurityDomain._load_cmd,
    INS.DELETE: SecurityDomain._delete,
    INS.GET_STATUS: SecurityDomain._get_status,
    INS.SET_STATUS: SecurityDomain._set_status,
    INS.PUT_KEY: SecurityDomain._put_key,
    INS.STORE_DATA: SecurityDomain._store_data,
}

register_applet_class(SD_CLASS_NAME, SecurityDomain)


# --- the card life-cycle guard ---------------------------------------------------------
def attach(card: object) -> None:
    """Install the card manager's SELECT policy on ``card`` (idempotent).

    GPC 2.3.1 §5.1.1.4 / §11.9.3: in CARD_LOCKED only the ISD is selectable and it
    answers ``6283``; other applications answer ``6A81``. In TERMINATED (§5.1.1.5)
    nothing is selectable: ``6A81``.
    """
    store: PersistentStore = card.store  # type: ignore[attr-defined]

    def guard(rec: AppletRecord) -> int:
        lcs = gpreg.card_life_cycle(store)
        if lcs == TERMINATED:
            return SW.FUNC_NOT_SUPPORTED
        if lcs == CARD_LOCKED:
            return SW.FILE_INVALIDATED if rec.aid == gpreg.isd_aid(store) else SW.FUNC_NOT_SUPPORTED
        return SW.NO_ERROR

    card.select_guard = guard  # type: ignore[attr-defined]
