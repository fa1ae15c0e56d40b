"""The security domain's shared state and helpers (GPC 2.3.1 ch. 7, ch. 11): stored
key sets and counters, pending multi-command operations, the checks every command
group uses, GET DATA, and the card life-cycle SELECT guard (§5.1.1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ....protocols.gp.constants import (
    CARD_LOCKED,
    TERMINATED,
    Privilege,
    has_privilege,
)
from ....protocols.gp.keys import StaticKeys
from ....protocols.gp.scp03 import SCP03CardSession
from ....protocols.iso7816.aid import AID
from ....protocols.iso7816.sw import SW, ISOException
from ....protocols.iso7816.tlv import TLV, parse
from ...applet import Applet
from ...registry import AppletRecord, Registry
from ...runtime import CLEAR_ON_DESELECT, AppletContext
from ...store import PersistentStore
from .. import registry as gpreg

__all__ = [
    "SD_CLASS_NAME",
    "MAX_LOAD_FILE",
    "MAX_STATUS_DATA",
    "SecurityDomainBase",
    "attach",
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


class SecurityDomainBase(Applet):
    """What every security-domain command group shares: state, helpers, checks, GET DATA.

    ISD or SSD (GPC 2.3.1 ch. 7, ch. 11). State that must survive a restart is in the
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
