"""Connection guards of ``utility serve`` against hostile clients (docs/service.md, "Soak").

uvicorn's h11 protocol closes an idle keep-alive connection after ``timeout_keep_alive``
but sets no deadline for a request head: a client that connects and sends nothing, or
sends its header lines a byte at a time (slowloris), holds a connection (a file
descriptor, buffers) for as long as it likes. :class:`GuardedH11Protocol` gives every
request head a deadline from its first byte (or from the connection's start): when it
passes and no complete head has arrived, the connection is closed. The deadline is not
extended by further bytes. A slow request body is bounded by the app (``body_timeout``
in :func:`meterhub.service.app.create_app`: 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_HEAD_TIMEOUT", "GuardedH11Protocol", "guarded_protocol"]

DEFAULT_HEAD_TIMEOUT = 10.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    head_timeout: float = DEFAULT_HEAD_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head()

    def _in_request(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self._in_request() and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        waiting = not self._in_request()
        super().data_received(data)
        if self._in_request():
            self._disarm_head()
        elif waiting:  # part of a head: the deadline runs from its first byte
            self._arm_head()

    def on_response_complete(self) -> None:
        self._disarm_head()  # idle now: the keep-alive timeout applies until the next byte
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        super().connection_lost(exc)


def guarded_protocol(head_timeout: float = DEFAULT_HEAD_TIMEOUT, *, peer_cert: bool = False) -> type[Any]:
    """The protocol class for ``uvicorn.Config(http=...)``; with ``peer_cert`` it also puts
    the TLS client certificate's subject in the request state (:mod:`meterhub.service.tls`)."""
    from .tls import PeerCertH11Protocol

    base: type[H11Protocol] = PeerCertH11Protocol if peer_cert else GuardedH11Protocol
    return type(base.__name__, (base,), {"head_timeout": float(head_timeout)})
