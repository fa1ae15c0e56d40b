"""Mutual TLS for the utility's service (docs/service.md, "Mutual TLS").

``utility serve --tls-cert --tls-key --tls-client-ca``: uvicorn terminates TLS with the
server's certificate and, when a client CA is given, requires a client certificate
chaining to it (``ssl.CERT_REQUIRED``: the handshake fails without one, RFC 8446
section 4.4.2). The client certificate's subject (RFC 4514 string, as ``cryptography``
renders it) names the party: the keys file maps subjects to parties like key digests.

uvicorn does not pass the peer certificate to the ASGI app, so :class:`PeerCertH11Protocol`
(uvicorn's h11 protocol) adds the verified subject to the connection's request state
(``scope["state"]["tls_peer_subject"]``); it is set from the TLS session only, never
from anything the client sends in HTTP.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509

from .guard import DEFAULT_HEAD_TIMEOUT, GuardedH11Protocol

__all__ = ["PEER_SUBJECT", "PeerCertH11Protocol", "client_ssl_context", "server_tls_config"]

PEER_SUBJECT = "tls_peer_subject"


def peer_subject(transport: asyncio.BaseTransport) -> str | None:
    """The RFC 4514 subject of the verified client certificate, or ``None``."""
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return None
    der = obj.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


class PeerCertH11Protocol(GuardedH11Protocol):
    """The guarded h11 protocol, with the client certificate's subject in the request state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        subject = peer_subject(transport)
        # A per-connection copy: the shared lifespan state is never changed.
        self.app_state = {**self.app_state, PEER_SUBJECT: subject}


def server_tls_config(
    cert: str, key: str, client_ca: str | None, *, head_timeout: float = DEFAULT_HEAD_TIMEOUT
) -> dict[str, Any]:
    """uvicorn ``Config`` keyword arguments for TLS, with client certificates required
    (and the peer-subject protocol) when ``client_ca`` is given."""
    from .guard import guarded_protocol

    out: dict[str, Any] = {"ssl_certfile": cert, "ssl_keyfile": key,
                           "http": guarded_protocol(head_timeout, peer_cert=True)}
    if client_ca:
        out.update(ssl_ca_certs=client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return out


def client_ssl_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """The push client's context: the server verified under ``ca`` (else the system's
    roots), and our certificate presented when given."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx
