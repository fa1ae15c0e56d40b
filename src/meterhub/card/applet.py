"""The applet base class, INS dispatch and the applet code registry
(Java Card 3.0.5 API ``javacard.framework.Applet``; JCRE ch. 3-4).

Life of an instance::

    install(ctx, params)  -> instance       once, when the registry installs it
    __init__(ctx)                           also on every card start-up (restore)
    select() -> bool                        JCRE §4.5: False answers 6999
    process(apdu) -> ResponseAPDU | bytes | None
    deselect()                              JCRE §4.6
    uninstall()                             before deletion (AppletEvent.uninstall)

Persistent state lives only in ``self.ctx.store`` (so ``__init__`` must not
reset it: it runs again after every restart); transient state in arrays from
``self.ctx.make_transient_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.apdu import CommandAPDU, ResponseAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..protocols.iso7816.tlv import TLV
from .runtime import AppletContext, Shareable

__all__ = [
    "Applet",
    "ins",
    "register_applet_class",
    "applet_class",
    "applet_class_name",
    "registered_applet_classes",
]

Handler = Callable[[Any, CommandAPDU], "ResponseAPDU | bytes | None"]
F = TypeVar("F", bound=Callable[..., Any])


def ins(code: int, *, cla: int | None = None) -> Callable[[F], F]:
    """Mark a method as the handler of instruction ``code``.

    ``cla``, if given, restricts the handler to interindustry (b8 = 0) or
    proprietary (b8 = 1) classes like ``cla`` (ISO/IEC 7816-4 §5.4.1); the
    channel, chaining and secure-messaging bits are not compared.
    """
    if not 0 <= code <= 0xFF:
        raise ValueError("INS is a byte")

    def mark(fn: F) -> F:
        fn._meterhub_ins = (code, cla)  # type: ignore[attr-defined]
        return fn

    return mark


class Applet:
    """Base class of all applets (and of the card manager)."""

    #: May the same instance be active on several logical channels (JCRE §4.2)?
    multiselectable: ClassVar[bool] = False
    _handlers: ClassVar[dict[int, tuple[str, int | None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = {}
        for klass in reversed(cls.__mro__):
            for name, value in klass.__dict__.items():
                mark = getattr(value, "_meterhub_ins", None)
                if mark is not None:
                    table[mark[0]] = (name, mark[1])
        cls._handlers = table

    def __init__(self, ctx: AppletContext) -> None:
        self.ctx = ctx

    # --- life cycle --------------------------------------------------------------
    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> Applet:
        """``Applet.install``: create the instance and set up its persistent state.

        Runs in the new applet's context; raising aborts the installation and
        nothing is registered.
        """
        return cls(ctx)

    def select(self) -> bool:
        """``Applet.select`` (JCRE §4.5): accept (True) or refuse (False → 6999)."""
        return True

    def deselect(self) -> None:
        """``Applet.deselect`` (JCRE §4.6)."""

    def uninstall(self) -> None:
        """``AppletEvent.uninstall``: called in this context before deletion."""

    def get_shareable_interface(self, client_aid: AID, parameter: int) -> Shareable | None:
        """``Applet.getShareableInterfaceObject`` (JCRE §6.2.7): grant or refuse
        (``None``) an interface to ``client_aid``. Default: refuse everyone."""
        return None

    @property
    def aid(self) -> AID:
        return self.ctx.aid

    def selecting_applet(self) -> bool:
        """``Applet.selectingApplet``: is the APDU being processed our own SELECT?"""
        return self.ctx.selecting

    # --- processing -----------------------------------------------------------------
    def process(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        """``Applet.process``; the default dispatches by INS (see :meth:`dispatch`)."""
        return self.dispatch(apdu)

    def dispatch(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        """INS-to-handler dispatch: the selecting SELECT answers the FCI; an
        unknown INS answers ``6D00``; a handler whose class does not match
        answers ``6E00``; a SELECT that reached us because no applet matched
        (JCRE §4.5.2) answers ``6A82``."""
        if self.selecting_applet():
            return self.on_select_apdu(apdu)
        entry = self._handlers.get(apdu.ins)
        if entry is None:
            if apdu.ins == 0xA4 and apdu.interindustry:
                raise ISOException(SW.FILE_NOT_FOUND)
            raise ISOException(SW.INS_NOT_SUPPORTED)
        name, cla = entry
        if cla is not None and (apdu.cla & 0x80) != (cla & 0x80):
            raise ISOException(SW.CLA_NOT_SUPPORTED)
        result: ResponseAPDU | bytes | None = getattr(self, name)(apdu)
        return result

    def on_select_apdu(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        """Answer to our own SELECT: the FCI unless P2 asks for no data
        (ISO/IEC 7816-4 §11.2.2, P2 b4-b3 = 11)."""
        if apdu.p2 & 0x0C == 0x0C:
            return None
        return self.fci()

    def fci(self) -> bytes:
        """File control information template (ISO/IEC 7816-4 §7.4;
        GPC 2.3.1 §11.9, SELECT response): ``6F { 84 AID, A5 { proprietary } }``."""
        return TLV.build(
            0x6F, [TLV(0x84, self.aid.raw), TLV.build(0xA5, self.fci_proprietary())]
        ).to_bytes()

    def fci_proprietary(self) -> list[TLV]:
        """Objects inside the ``A5`` proprietary template; override to add."""
        return []


# --- the applet code registry ----------------------------------------------------
_CLASSES: dict[str, type[Applet]] = {}


def register_applet_class(name: str, cls: type[Applet]) -> type[Applet]:
    """Make ``cls`` installable under ``name``. Only registered classes can be
    instantiated by the card; nothing is ever loaded from package bytes."""
    if not isinstance(cls, type) or not issubclass(cls, Applet):
        raise TypeError("applet classes must subclass Applet")
    if not name:
        raise ValueError("empty applet class name")
    old = _CLASSES.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"applet class name {name!r} already registered")
    _CLASSES[name] = cls
    return cls


def applet_class(name: str) -> type[Applet] | None:
    """The class registered under ``name``, if any."""
    return _CLASSES.get(name)


def applet_class_name(cls: type[Applet]) -> str | None:
    """The registered name of ``cls``, if any."""
    for name, c in _CLASSES.items():
        if c is cls:
            return name
    return None


def registered_applet_classes() -> dict[str, type[Applet]]:
    return dict(_CLASSES)
