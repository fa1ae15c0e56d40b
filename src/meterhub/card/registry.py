"""The registry of installed applets (the GlobalPlatform Registry, GPC 2.3.1
§5.3 life cycles, §6.6 privileges, ch. 9 management; JCRE §3.1 applet table).

Each :class:`AppletRecord` holds an instance AID, the registered applet class
name, its Executable Load File (package) AID, its associated security domain,
its privileges and its life-cycle state byte. Records persist in the store's
system namespace (one row per AID, BER-TLV encoded), so installed applets
survive a restart; their Python objects are rebuilt lazily from the class
registry (``cls(ctx)``, never ``install`` again).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLV, find, parse
from .applet import Applet, applet_class_name
from .applet import applet_class as _class_by_name
from .runtime import SYSTEM_NAMESPACE, AppletContext, Runtime

__all__ = [
    "Registry",
    "AppletRecord",
    "RegistryError",
    "INSTALLED",
    "SELECTABLE",
    "PERSONALIZED",
    "LOCKED",
    "is_selectable",
    "PRIV_SECURITY_DOMAIN",
    "PRIV_CARD_RESET",
]

# Application life-cycle coding, GPC 2.3.1 §11.1.1 (life cycle coding) and §5.3.
INSTALLED = 0x03
SELECTABLE = 0x07
PERSONALIZED = 0x0F  # security domains (GPC 2.3.1 §5.3)
LOCKED = 0x80  # b8: locked, the other bits keep the previous state (§11.1.1)

PRIV_SECURITY_DOMAIN = 0x80  # GPC 2.3.1 §6.6.1 Table 6-1, byte 1 b8
PRIV_CARD_RESET = 0x04  # byte 1 b3: Card Reset / implicitly selected on the basic channel

_KEY_RECORD = b"R"  # system-namespace key prefix of registry rows


def is_selectable(state: int) -> bool:
    """SELECTABLE or a later application-specific state (b3-b1 = 111), not LOCKED.

    GPC 2.3.1 §5.3: INSTALLED applications are not selectable; LOCKED
    applications cannot be selected (the OPEN answers ``6A82``, §11.9 SELECT error conditions).
    """
    return (state & 0x07) == 0x07 and not state & LOCKED


class RegistryError(ISOException):
    """Refused registry operation; the SW is the one GPC 2.3.1 uses for the
    matching card-manager command (6A80 bad data, 6A88 not found, 6985 busy)."""


@dataclass
class AppletRecord:
    """One registry entry."""

    aid: AID
    class_name: str
    package_aid: AID | None
    sd_aid: AID | None
    privileges: bytes
    state: int
    params: bytes
    seq: int
    context: AppletContext = field(repr=False)
    _instance: Applet | None = field(default=None, repr=False)

    @property
    def selectable(self) -> bool:
        return is_selectable(self.state)

    @property
    def locked(self) -> bool:
        return bool(self.state & LOCKED)

    @property
    def instance(self) -> Applet | None:
        """The applet object, rebuilt from the class registry after a restart.
        ``None`` when its class is not registered in this process."""
        if self._instance is None:
            cls = _class_by_name(self.class_name)
            if cls is None:
                return None
            with self.context.runtime.enter(self.context):
                self._instance = cls(self.context)
        return self._instance

    def to_bytes(self) -> bytes:
        objs = [
            TLV(0x4F, self.aid.raw),
            TLV(0xC0, self.class_name.encode()),
            TLV(0xC3, self.privileges),
            TLV(0xC4, bytes((self.state,))),
            TLV(0xC5, self.params),
            TLV(0xC6, self.seq.to_bytes(4, "big")),
        ]
        if self.package_aid is not None:
            objs.append(TLV(0xC1, self.package_aid.raw))
        if self.sd_aid is not None:
            objs.append(TLV(0xC2, self.sd_aid.raw))
        return TLV.build(0xE0, objs).to_bytes()


class Registry:
    """Installed applets in installation order; driven by the card manager."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._records: dict[AID, AppletRecord] = {}
        self._next_seq = 0
        self._load()

    # --- persistence ---------------------------------------------------------------
    def _load(self) -> None:
        store = self.runtime.store
        recs = []
        for key in store.keys(SYSTEM_NAMESPACE):
            if not key.startswith(_KEY_RECORD):
                continue
            raw = store.get(SYSTEM_NAMESPACE, key)
            if raw is None:
                continue
            e0 = parse(raw)[0].children()

            def val(tag: int, objs: list[TLV] = e0) -> bytes | None:
                o = find(objs, tag)
                return None if o is None else o.value

            aid = AID(val(0x4F) or b"")
            pkg, sd = val(0xC1), val(0xC2)
            recs.append(
                AppletRecord(
                    aid=aid,
                    class_name=(val(0xC0) or b"").decode(),
                    package_aid=AID(pkg) if pkg else None,
                    sd_aid=AID(sd) if sd else None,
                    privileges=val(0xC3) or b"",
                    state=(val(0xC4) or b"\x00")[0],
                    params=val(0xC5) or b"",
                    seq=int.from_bytes(val(0xC6) or b"", "big"),
                    context=AppletContext(self.runtime, aid),
                )
            )
        recs.sort(key=lambda r: r.seq)
        self._records = {r.aid: r for r in recs}
        self._next_seq = recs[-1].seq + 1 if recs else 0
        # An install torn by a power loss may have left objects but no record:
        # collect them so that nothing is ever half-installed.
        live = {r.aid.raw for r in recs}
        for ns in store.namespaces():
            if ns != SYSTEM_NAMESPACE and ns not in live:
                store.delete_namespace(ns)

    def _save(self, rec: AppletRecord) -> None:
        self.runtime.store.put(SYSTEM_NAMESPACE, _KEY_RECORD + rec.aid.raw, rec.to_bytes())

    # --- queries -------------------------------------------------------------------
    def get(self, aid: AID | bytes | str) -> AppletRecord | None:
        return self._records.get(AID.of(aid))

    def __contains__(self, aid: object) -> bool:
        try:
            return AID.of(aid) in self._records  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False

    def __iter__(self) -> Iterator[AppletRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def associated(self, sd_aid: AID | bytes | str) -> list[AppletRecord]:
        """Records whose associated security domain is ``sd_aid``."""
        sd = AID.of(sd_aid)
        return [r for r in self._records.values() if r.sd_aid == sd]

    def default_record(self) -> AppletRecord | None:
        """The applet implicitly selected on the basic channel after reset:
        the first selectable one with the Card Reset privilege (GPC 2.3.1 §6.6.1)."""
        for r in self._records.values():
            if r.selectable and r.privileges[:1] and r.privileges[0] & PRIV_CARD_RESET:
                return r
        return None

    # --- management ----------------------------------------------------------------
    def install_applet(
        self,
        applet_class: type[Applet] | str,
        instance_aid: AID | bytes | str,
        package_aid: AID | bytes | str | None = None,
        sd_aid: AID | bytes | str | None = None,
        privileges: bytes = b"\x00",
        params: bytes = b"",
        *,
        state: int = SELECTABLE,
    ) -> AppletRecord:
        """Create an instance (GPC 2.3.1 §11.5 INSTALL [for install]).

        ``applet_class`` is a registered class or its registered name. The
        class's ``install`` runs in the new context; if it raises, its objects
        are removed and no record is written (the record is written last, in
        one atomic store write).
        """
        try:
            aid = AID.of(instance_aid)
            pkg = AID.of(package_aid) if package_aid is not None else None
            sd = AID.of(sd_aid) if sd_aid is not None else None
        except ValueError as exc:
            raise RegistryError(SW.WRONG_DATA, str(exc)) from None
        if isinstance(applet_class, str):
            name: str | None = applet_class
            cls = _class_by_name(applet_class)
        else:
            cls = applet_class
            name = applet_class_name(applet_class)
        if cls is None or name is None:
            raise RegistryError(SW.WRONG_DATA, "applet class is not registered")
        if aid in self._records:
            raise RegistryError(SW.WRONG_DATA, f"AID {aid} already installed")
        if not 0 <= state <= 0xFF:
            raise RegistryError(SW.WRONG_DATA, "state is a byte")
        store = self.runtime.store
        ctx = AppletContext(self.runtime, aid)
        store.delete_namespace(aid.raw)  # stale objects of a torn earlier attempt
        try:
            with self.runtime.enter(ctx):
                inst = cls.install(ctx, bytes(params))
            if not isinstance(inst, cls):
                raise TypeError("install() must return an instance of its class")
        except BaseException:
            if not store.closed:
                if store.in_transaction:
                    store.abort()
                store.delete_namespace(aid.raw)
            raise
        if store.in_transaction:  # install() must not leave a transaction open
            store.abort()
        rec = AppletRecord(
            aid, name, pkg, sd, bytes(privileges), state, bytes(params), self._next_seq, ctx, inst
        )
        self._save(rec)
        self._next_seq += 1
        self._records[aid] = rec
        return rec

    def delete(self, aid: AID | bytes | str) -> None:
        """Remove an instance and its objects (GPC 2.3.1 §11.2 DELETE).

        A currently selected applet cannot be deleted (``6985``, GPC 2.3.1
        §11.2 error conditions). The record disappears in one atomic write, then the objects.
        """
        rec = self._get_or_raise(aid)
        card = self.runtime.card
        if card is not None and card.is_selected(rec.aid):
            raise RegistryError(SW.CONDITIONS_NOT_SATISFIED, "applet is selected")
        inst = rec.instance
        if inst is not None:
            try:
                with self.runtime.enter(rec.context):
                    inst.uninstall()
            except Exception:  # noqa: BLE001 - JCRE: uninstall failures do not block deletion
                pass
        self.runtime.store.delete(SYSTEM_NAMESPACE, _KEY_RECORD + rec.aid.raw)
        del self._records[rec.aid]
        self.runtime.store.delete_namespace(rec.aid.raw)

    def set_state(self, aid: AID | bytes | str, state: int) -> None:
        """Set the life-cycle byte (GPC 2.3.1 §11.10 SET STATUS does the checks)."""
        rec = self._get_or_raise(aid)
        if not 0 <= state <= 0xFF:
            raise RegistryError(SW.WRONG_DATA, "state is a byte")
        old = rec.state
        rec.state = state
        try:
            self._save(rec)
        except BaseException:
            rec.state = old
            raise

    def set_privileges(self, aid: AID | bytes | str, privileges: bytes) -> None:
        """Replace the privilege bytes (GPC 2.3.1 §6.6)."""
        rec = self._get_or_raise(aid)
        old = rec.privileges
        rec.privileges = bytes(privileges)
        try:
            self._save(rec)
        except BaseException:
            rec.privileges = old
            raise

    def _get_or_raise(self, aid: AID | bytes | str) -> AppletRecord:
        try:
            rec = self._records.get(AID.of(aid))
        except ValueError:
            rec = None
        if rec is None:
            raise RegistryError(SW.REFERENCED_DATA_NOT_FOUND, "no such applet")
        return rec

