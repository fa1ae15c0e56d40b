"""The applet firewall, contexts, transient memory and shareable interfaces
(Java Card 3.0.5 Runtime Environment Specification, ch. 5-7).

Every applet instance runs in its own :class:`AppletContext` (JCRE §6.1.2).
The :class:`Runtime` keeps the *currently active context* as a stack: the
runtime's own context (``None``, the "JCRE context" of §6.2.3) at the bottom,
the selected applet's context while it processes an APDU, and a server's
context pushed for the duration of a shareable-interface call (the context
switch of §6.2.5).

Objects that hold applet state check, on every access, that the active
context is their owner (the object access rules of §6.2.8) and raise
:class:`SecurityException` otherwise, which the card answers with ``6982``:

* :class:`ContextStore` - the applet's namespace of the persistent store;
* :class:`TransientArray` - transient bytes, ``CLEAR_ON_RESET`` or
  ``CLEAR_ON_DESELECT`` (JCRE ch. 5);
* the :class:`AppletContext` itself (transactions, shareable look-up).

Python cannot sandbox code, so the firewall is enforced at this API: applets
are reviewed code from the class registry (no code is ever loaded from a
package), and they keep their state only in these objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import MeterhubError
from ..protocols.iso7816.aid import AID
from ..protocols.iso7816.sw import SW
from .store import PersistentStore

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "SecurityException",
    "Runtime",
    "AppletContext",
    "ContextStore",
    "TransientArray",
    "Shareable",
    "shareable_interface",
    "CLEAR_ON_RESET",
    "CLEAR_ON_DESELECT",
    "SYSTEM_NAMESPACE",
]

CLEAR_ON_RESET = 1  # JCSystem.CLEAR_ON_RESET (JCRE §5.1)
CLEAR_ON_DESELECT = 2  # JCSystem.CLEAR_ON_DESELECT (JCRE §5.1)
SYSTEM_NAMESPACE = b""  # the runtime's own namespace; AIDs are never empty

PRIV_SECURITY_DOMAIN = 0x80  # GPC 2.3.1 §6.6.1 Table 6-1, privilege byte 1 b8


class SecurityException(MeterhubError):  # noqa: N818 - Java Card name
    """A firewall violation (``java.lang.SecurityException``, JCRE §6.2.8);
    the card answers ``6982`` (security status not satisfied)."""

    sw = SW.SECURITY_STATUS_NOT_SATISFIED


class Shareable:
    """Marker base of objects a server applet may hand to clients
    (``javacard.framework.Shareable``, JCRE §6.2.4)."""


def shareable_interface(cls: type) -> type:
    """Mark a :class:`Shareable` subclass as an *interface*: the public methods
    it defines are the only ones a client can call through the proxy, as in
    Java Card where a client sees the SIO only through its interface type."""
    if not issubclass(cls, Shareable):
        raise TypeError("a shareable interface must subclass Shareable")
    cls._meterhub_interface = True  # type: ignore[attr-defined]
    return cls


def _interface_methods(obj: Shareable) -> frozenset[str]:
    names: set[str] = set()
    for klass in type(obj).__mro__:
        if klass.__dict__.get("_meterhub_interface"):
            names.update(
                n for n, v in klass.__dict__.items() if callable(v) and not n.startswith("_")
            )
    return frozenset(names)


class _ShareableProxy:
    """What a client holds: calls switch to the server's context (JCRE §6.2.5)."""

    __slots__ = ("_obj", "_ctx", "_methods")
    # Declared so that the type checker does not route these through __getattr__.
    _obj: Shareable
    _ctx: AppletContext
    _methods: frozenset[str]

    def __init__(self, obj: Shareable, ctx: AppletContext) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_methods", _interface_methods(obj))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in self._methods:
            raise SecurityException(f"{name!r} is not part of a shareable interface")
        target = getattr(self._obj, name)
        ctx = self._ctx

        def call(*args: Any, **kwargs: Any) -> Any:
            with ctx.runtime.enter(ctx):
                return target(*args, **kwargs)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        raise SecurityException("shareable interface objects are read-only to clients")


class Runtime:
    """The JCRE core: active-context stack, persistent store, transactions."""

    def __init__(self, store: PersistentStore) -> None:
        self.store = store
        self._stack: list[AppletContext | None] = [None]
        self.registry: Registry | None = None  # set by the card
        self.card: Any = None  # the Card, for privileged contexts
        # The card's random number generator (javacard.security.RandomData); a demo
        # may inject a seeded source to make its runs reproducible.
        self.random: Callable[[int], bytes] = secrets.token_bytes

    @property
    def active_context(self) -> AppletContext | None:
        """The context whose code is running; ``None`` is the runtime's own."""
        return self._stack[-1]

    @contextmanager
    def enter(self, ctx: AppletContext | None) -> Iterator[None]:
        """Run with ``ctx`` active, restoring the previous context afterwards."""
        self._stack.append(ctx)
        try:
            yield
        finally:
            self._stack.pop()

    def check_owner(self, owner: AppletContext) -> None:
        """JCRE §6.2.8: only the owning context (or the runtime) may touch an object."""
        active = self.active_context
        if active is not None and active is not owner:
            raise SecurityException(f"context {active.aid} may not access an object of {owner.aid}")

    def reset_contexts(self) -> None:
        self._stack = [None]


class ContextStore:
    """An applet's persistent objects: its own namespace of the store (bytes in, bytes out)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: AppletContext) -> None:
        self._owner = owner

    def _ns(self) -> tuple[PersistentStore, bytes]:
        self._owner.runtime.check_owner(self._owner)
        return self._owner.runtime.store, self._owner.aid.raw

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        store, ns = self._ns()
        v = store.get(ns, bytes(key))
        return default if v is None else v

    def put(self, key: bytes, value: bytes) -> None:
        store, ns = self._ns()
        store.put(ns, bytes(key), bytes(value))

    def delete(self, key: bytes) -> None:
        store, ns = self._ns()
        store.delete(ns, bytes(key))

    def keys(self) -> list[bytes]:
        store, ns = self._ns()
        return store.keys(ns)

    def get_int(self, key: bytes, default: int = 0) -> int:
        """Signed big-endian integer (convenience for counters)."""
        v = self.get(key)
        return default if v is None else int.from_bytes(v, "big", signed=True)

    def put_int(self, key: bytes, value: int) -> None:
        n = max(1, (value.bit_length() + 8) // 8)
        self.put(key, value.to_bytes(n, "big", signed=True))


class TransientArray:
    """A transient byte array (``JCSystem.makeTransientByteArray``, JCRE ch. 5).

    Lives in RAM only: zeroed on card reset/power-up and, for
    ``CLEAR_ON_DESELECT``, when its owner is deselected.
    """

    __slots__ = ("_owner", "_buf", "event")

    def __init__(self, owner: AppletContext, size: int, event: int) -> None:
        if event not in (CLEAR_ON_RESET, CLEAR_ON_DESELECT):
            raise ValueError("event must be CLEAR_ON_RESET or CLEAR_ON_DESELECT")
        if size < 0:
            raise ValueError("negative size")
        self._owner = owner
        self._buf = bytearray(size)
        self.event = event

    def _check(self) -> bytearray:
        self._owner.runtime.check_owner(self._owner)
        return self._buf

    def __len__(self) -> int:
        return len(self._buf)

    def __getitem__(self, index: int | slice) -> int | bytes:
        b = self._check()[index]
        return bytes(b) if isinstance(b, bytearray) else b

    def __setitem__(self, index: int | slice, value: Any) -> None:
        buf = self._check()
        if isinstance(index, slice):
            before = len(buf)
            buf[index] = value
            if len(buf) != before:  # a Java array never changes size
                raise ValueError("transient arrays have a fixed size")
        else:
            buf[index] = value

    def __bytes__(self) -> bytes:
        return bytes(self._check())

    def _clear(self) -> None:
        self._buf[:] = bytes(len(self._buf))


class AppletContext:
    """The context of one applet instance (JCRE §6.1.2)."""

    def __init__(self, runtime: Runtime, aid: AID) -> None:
        self.runtime = runtime
        self.aid = aid
        self.store = ContextStore(self)
        self._transients: list[TransientArray] = []
        self.selecting = False  # true while process() sees its own SELECT
        self.channel = 0  # logical channel of the APDU being processed

    def _check(self) -> None:
        self.runtime.check_owner(self)

    # --- transient memory (JCRE ch. 5) ------------------------------------------
    def make_transient_bytes(self, size: int, event: int = CLEAR_ON_DESELECT) -> TransientArray:
        self._check()
        arr = TransientArray(self, size, event)
        self._transients.append(arr)
        return arr

    def clear_transients(self, events: tuple[int, ...]) -> None:
        """Runtime hook: zero this context's arrays for the given events."""
        for arr in self._transients:
            if arr.event in events:
                arr._clear()

    def random_bytes(self, n: int) -> bytes:
        """``RandomData.nextBytes`` (JC 3.0.5 API): ``n`` bytes from the card's RNG."""
        self._check()
        return self.runtime.random(n)

    # --- transactions (JCRE ch. 7) -----------------------------------------------
    def begin_transaction(self) -> None:
        """``JCSystem.beginTransaction`` (JCRE §7.3)."""
        self._check()
        self.runtime.store.begin()

    def commit_transaction(self) -> None:
        """``JCSystem.commitTransaction`` (JCRE §7.3)."""
        self._check()
        self.runtime.store.commit()

    def abort_transaction(self) -> None:
        """``JCSystem.abortTransaction`` (JCRE §7.5)."""
        self._check()
        self.runtime.store.abort()

    @property
    def transaction_depth(self) -> int:
        """``JCSystem.getTransactionDepth``: 1 inside a transaction, else 0."""
        return 1 if self.runtime.store.in_transaction else 0

    # --- shareable interfaces (JCRE §6.2.4, §6.2.7) -----------------------------
    def get_shareable(self, server_aid: AID | bytes | str, parameter: int = 0) -> Any:
        """``JCSystem.getAppletShareableInterfaceObject``.

        Asks the server applet, in the server's context, for an interface for
        this (client) AID. Returns a proxy, or ``None`` when the server does not
        exist, is not selectable, or declines. A server returning anything but
        a :class:`Shareable` raises :class:`SecurityException`.
        """
        self._check()
        registry = self.runtime.registry
        if registry is None:
            return None
        rec = registry.get(AID.of(server_aid))
        if rec is None or not rec.selectable:
            return None
        server = rec.instance
        if server is None:
            return None
        with self.runtime.enter(rec.context):
            obj = server.get_shareable_interface(self.aid, parameter)
        if obj is None:
            return None
        if not isinstance(obj, Shareable):
            raise SecurityException("server returned an object that is not Shareable")
        return _ShareableProxy(obj, rec.context)

    # --- privileged access (card manager) ----------------------------------------
    def _privileged(self) -> None:
        self._check()
        registry = self.runtime.registry
        rec = registry.get(self.aid) if registry is not None else None
        if rec is None or not rec.privileges or not rec.privileges[0] & PRIV_SECURITY_DOMAIN:
            raise SecurityException("only a security domain may manage the card")

    @property
    def registry(self) -> Registry:
        """The applet registry, for security domains only (GPC 2.3.1 §6.6.1)."""
        self._privileged()
        assert self.runtime.registry is not None
        return self.runtime.registry

    @property
    def card(self) -> Any:
        """The card (life cycle, channels), for security domains only."""
        self._privileged()
        return self.runtime.card

    def __repr__(self) -> str:
        return f"AppletContext({self.aid})"

