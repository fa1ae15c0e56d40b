"""The meter-hub SML link: SML push only to the paired hub, over mutually
authenticated TLS 1.3 (docs/sml.md, "Only the paired hub").

A German smart-meter gateway reads its meters over the LMN interface with TLS and
certificates on both sides (BSI TR-03109-1, LMN; TR-03116-3 for the cipher suites),
so that nobody else on the wire reads the meter. meterhub has no smart-metering PKI,
so both TLS identities are derived from the meter-hub home-link key that pairing
already shares (docs/dlms.md, "Home link"):

    seed_role = HKDF-SHA256(IKM = home-link key, salt = none,
                            info = "meterhub/v1/home-link/sml-tls/" + role, L = 32)

with ``role`` ``meter`` or ``hub``; the seed is an Ed25519 private key (RFC 8032),
and the identity is a self-signed X.509 certificate over it with fixed fields. Ed25519
signatures are deterministic, so both ends compute byte-identical certificates and
each pins the other's: the meter requires the client certificate ``hub`` and the hub
requires the server certificate ``meter``. Whoever lacks the home-link key cannot
finish the handshake, and the SML bytes are encrypted on the wire.

What a neighbour on the home network gets: a TCP connection and the meter's TLS
certificate (a public key and the fixed name ``meterhub SML meter``; no meter id, no
readings), then a handshake failure and a closed connection; the meter logs an
authentication failure.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import socket
import ssl
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from ..protocols.sml import SmlFile, SmlStreamDecoder

__all__ = [
    "SML_TLS_KDF_INFO",
    "sml_tls_identity",
    "sml_server_context",
    "sml_client_context",
    "open_sml_link",
    "read_sml_push",
]

#: HKDF ``info`` prefix of the SML-link identities; the role name follows.
SML_TLS_KDF_INFO = b"meterhub/v1/home-link/sml-tls/"
_ROLES = ("meter", "hub")
# Fixed certificate fields, so that both ends derive the same bytes.
_NOT_BEFORE = _dt.datetime(2020, 1, 1, tzinfo=_dt.UTC)
_NOT_AFTER = _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.UTC)


def sml_tls_identity(home_link_key: bytes, role: str) -> tuple[bytes, bytes]:
    """``(private key PEM, certificate PEM)`` of ``role`` (``"meter"`` or ``"hub"``)."""
    if len(home_link_key) != 16:
        raise ValueError("home-link key must be 16 bytes")
    if role not in _ROLES:
        raise ValueError(f"role is one of {_ROLES}")
    seed = HKDF(hashes.SHA256(), 32, None, SML_TLS_KDF_INFO + role.encode()).derive(home_link_key)
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"meterhub SML {role}")])
    public = key.public_key()
    serial = int.from_bytes(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)[:16], "big")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(serial >> 1 or 1)  # positive, at most 127 bits (RFC 5280 §4.1.2.2)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, None)  # Ed25519 takes no separate hash
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _context(purpose: int, home_link_key: bytes, me: str, peer: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False  # the peer is pinned by its certificate, not by a name
    key_pem, cert_pem = sml_tls_identity(home_link_key, me)
    _load_identity(ctx, key_pem + cert_pem)
    ctx.load_verify_locations(cadata=sml_tls_identity(home_link_key, peer)[1].decode())
    return ctx


def _load_identity(ctx: ssl.SSLContext, pem: bytes) -> None:
    """``ctx.load_cert_chain`` from memory. The ssl module reads a private key only
    from a path: on Linux an anonymous memory file (never on disk), elsewhere a
    private directory (mode 0700) removed at once."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("meterhub-sml-identity", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="meterhub-sml-") as tmp:
        path = os.path.join(tmp, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(path)


def sml_server_context(home_link_key: bytes) -> ssl.SSLContext:
    """The meter's TLS context: its own identity, and only the paired hub's accepted."""
    return _context(ssl.PROTOCOL_TLS_SERVER, home_link_key, "meter", "hub")


def sml_client_context(home_link_key: bytes) -> ssl.SSLContext:
    """The hub's TLS context: its own identity, and only its paired meter accepted."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, home_link_key, "hub", "meter")


def open_sml_link(host: str, port: int, home_link_key: bytes, *, timeout: float = 10.0) -> ssl.SSLSocket:
    """Connect to the meter's SML port as the paired hub (blocking); raises ``OSError``
    (``ssl.SSLError`` when the meter is not the paired one)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        return sml_client_context(home_link_key).wrap_socket(sock, server_hostname=None)
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise


def read_sml_push(
    host: str, port: int, home_link_key: bytes, *, files: int = 1, timeout: float = 10.0
) -> list[SmlFile]:
    """The next ``files`` pushed SML files, read as the paired hub, all within one
    ``timeout`` (a total deadline). Raises ``TimeoutError``, ``ssl.SSLError`` (not the
    paired meter) or another ``OSError``."""
    deadline = time.monotonic() + timeout
    decoder = SmlStreamDecoder()
    out: list[SmlFile] = []
    with open_sml_link(host, port, home_link_key, timeout=timeout) as sock:
        while len(out) < files:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"fewer than {files} SML file(s) within {timeout:g} s")
            sock.settimeout(left)
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the meter closed the connection")
            out += decoder.feed(chunk)
    return out[:files]
