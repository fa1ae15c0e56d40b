"""GlobalPlatform Registry entries that the card runtime's applet registry does not hold
(GPC 2.3.1 §5.2 Executable Load Files, §5.1 card life cycle, §C DAP keys).

They live in the runtime's system namespace of the :class:`PersistentStore` under keys
starting with ``GP/`` (the applet registry uses ``R``), so each update is one atomic
store write and a torn write leaves the old value.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...protocols.gp.constants import ELF_LOADED, OP_READY
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.tlv import TLV, find, find_all, parse
from ..runtime import SYSTEM_NAMESPACE
from ..store import PersistentStore
from .loadfile import Module

__all__ = [
    "ELFRecord",
    "get_elf",
    "put_elf",
    "delete_elf",
    "elf_records",
    "card_life_cycle",
    "set_card_life_cycle",
    "isd_aid",
    "get_dap_key",
    "put_dap_key",
    "delete_dap_key",
]

_ELF = b"GP/ELF/"
_LCS = b"GP/LCS"
_ISD = b"GP/ISD"
_DAP = b"GP/DAP/"
_SEQ = b"GP/SEQ"


@dataclass(frozen=True)
class ELFRecord:
    """An Executable Load File with its modules (GPC 2.3.1 §5.2, Table 11-37)."""

    aid: AID
    version: bytes
    sd_aid: AID
    modules: tuple[Module, ...]
    seq: int
    builtin: bool = False
    state: int = ELF_LOADED

    def module(self, aid: AID) -> Module | None:
        for m in self.modules:
            if m.aid == aid:
                return m
        return None

    def to_bytes(self) -> bytes:
        objs = [
            TLV(0x4F, self.aid.raw),
            TLV(0xCE, self.version),
            TLV(0xCC, self.sd_aid.raw),
            TLV(0xC6, self.seq.to_bytes(4, "big")),
            TLV(0xC7, b"\x01" if self.builtin else b"\x00"),
        ]
        for m in self.modules:
            objs.append(
                TLV.build(
                    0xA1,
                    [
                        TLV(0x84, m.aid.raw),
                        TLV(0x81, m.class_name.encode()),
                        TLV(0x82, m.code_hash),
                    ],
                )
            )
        return TLV.build(0xE1, objs).to_bytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ELFRecord:
        kids = parse(raw)[0].children()

        def v(tag: int, objs: list[TLV] = kids) -> bytes:
            o = find(objs, tag)
            return b"" if o is None else o.value

        mods = []
        for a1 in find_all(kids, 0xA1):
            mk = a1.children()
            mods.append(Module(AID(v(0x84, mk)), v(0x81, mk).decode(), v(0x82, mk)))
        return cls(
            AID(v(0x4F)),
            v(0xCE),
            AID(v(0xCC)),
            tuple(mods),
            int.from_bytes(v(0xC6), "big"),
            v(0xC7) == b"\x01",
        )


def get_elf(store: PersistentStore, aid: AID) -> ELFRecord | None:
    raw = store.get(SYSTEM_NAMESPACE, _ELF + aid.raw)
    return None if raw is None else ELFRecord.from_bytes(raw)


def next_seq(store: PersistentStore) -> int:
    recs = elf_records(store)
    return recs[-1].seq + 1 if recs else 0


def put_elf(store: PersistentStore, rec: ELFRecord) -> None:
    store.put(SYSTEM_NAMESPACE, _ELF + rec.aid.raw, rec.to_bytes())


def delete_elf(store: PersistentStore, aid: AID) -> None:
    store.delete(SYSTEM_NAMESPACE, _ELF + aid.raw)


def elf_records(store: PersistentStore) -> list[ELFRecord]:
    """All load files, in load order."""
    out = []
    for key in store.keys(SYSTEM_NAMESPACE):
        if key.startswith(_ELF):
            raw = store.get(SYSTEM_NAMESPACE, key)
            if raw is not None:
                out.append(ELFRecord.from_bytes(raw))
    return sorted(out, key=lambda r: r.seq)


def card_life_cycle(store: PersistentStore) -> int:
    """Card life cycle state (GPC 2.3.1 §5.1); OP_READY before provisioning."""
    raw = store.get(SYSTEM_NAMESPACE, _LCS)
    return raw[0] if raw else OP_READY


def set_card_life_cycle(store: PersistentStore, state: int) -> None:
    store.put(SYSTEM_NAMESPACE, _LCS, bytes((state,)))


def isd_aid(store: PersistentStore) -> AID | None:
    raw = store.get(SYSTEM_NAMESPACE, _ISD)
    return AID(raw) if raw else None


def set_isd_aid(store: PersistentStore, aid: AID) -> None:
    store.put(SYSTEM_NAMESPACE, _ISD, aid.raw)


def get_dap_key(store: PersistentStore, sd: AID) -> bytes | None:
    """SEC 1 P-256 public key a security domain checks DAP signatures with."""
    return store.get(SYSTEM_NAMESPACE, _DAP + sd.raw)


def put_dap_key(store: PersistentStore, sd: AID, point: bytes) -> None:
    store.put(SYSTEM_NAMESPACE, _DAP + sd.raw, point)


def delete_dap_key(store: PersistentStore, sd: AID) -> None:
    store.delete(SYSTEM_NAMESPACE, _DAP + sd.raw)
