"""The one ``host:port`` parser for every TCP endpoint meterhub dials or serves on.

The syntax is the authority of RFC 3986 §3.2.2/§3.2.3 without user info:

* ``HOST:PORT`` with a host name or IPv4 address (exactly one colon);
* ``[V6]:PORT`` with an IPv6 address in brackets (RFC 3986 "IP-literal"; a zone
  ``%eth0`` as RFC 6874 allows is kept);
* ``HOST``, ``[V6]`` or a bare IPv6 address when the caller has a default port;
* ``:PORT`` when the caller has a default host.

A port is 1 to 65535 in ASCII digits only (``int()`` alone would take ``+80``,
`` 80`` or Arabic-Indic digits). An unbracketed text with two or more colons is
an IPv6 address and never ``address:port``: ``::1:4059`` is itself a valid
address, so reading its last group as a port would be a guess. Anything else is
an :class:`EndpointError` (a ``ValueError``) with a one-line message.

Used by the vpcd client (:mod:`meterhub.card.vpcd`), the meter's DLMS and SML
endpoints (:mod:`meterhub.meter.serve`) and the blocking DLMS reader
(:mod:`meterhub.protocols.dlms.client`). It sits in the protocol layer so that
every layer above may use it.
"""

from __future__ import annotations

import ipaddress
import re

from ..errors import MeterhubError

__all__ = ["EndpointError", "format_endpoint", "parse_endpoint"]

_PORT = re.compile(r"[0-9]{1,5}")
#: Characters RFC 3986 reg-names and IPv4 addresses cannot hold (delimiters, space, controls).
_BAD_HOST = re.compile(r"[\s/?#@\[\]\\%:\x00-\x1f\x7f]")


class EndpointError(MeterhubError, ValueError):
    """Text that is not an endpoint (module docstring); the message is one line."""


def _port(text: str, port_text: str) -> int:
    if not _PORT.fullmatch(port_text):
        raise EndpointError(f"bad port in {text!r:.80} (ASCII digits)")
    if not 0 < int(port_text) < 65536:
        raise EndpointError(f"port out of range in {text!r:.80} (1 to 65535)")
    return int(port_text)


def _v6(text: str, host: str) -> str:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise EndpointError(f"bad IPv6 address in {text!r:.80}") from None
    return host


def parse_endpoint(
    text: str,
    *,
    default_host: str | None = None,
    default_port: int | None = None,
) -> tuple[str, int]:
    """``(host, port)`` of ``text`` (module docstring); the defaults fill an omitted
    host or port, and without them the part is required."""
    if not isinstance(text, str):
        raise EndpointError("an endpoint is text")
    raw = text.strip()
    port_text: str | None = None
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise EndpointError(f"bad endpoint {text!r:.80}: missing ']'")
        host = _v6(text, raw[1:end])
        rest = raw[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise EndpointError(f"bad endpoint {text!r:.80}: only ':PORT' may follow ']'")
            port_text = rest[1:]
    elif raw.count(":") >= 2:
        host = _v6(text, raw)  # a bare IPv6 address; a port needs the brackets
    elif ":" in raw:
        host, port_text = raw.split(":")
    else:
        host = raw
    if not host:
        if default_host is None:
            raise EndpointError(f"bad endpoint {text!r:.80}: no host")
        host = default_host
    elif not raw.startswith("[") and raw.count(":") < 2 and _BAD_HOST.search(host):
        raise EndpointError(f"bad host in {text!r:.80}")
    if port_text is None:
        if default_port is None:
            if raw.count(":") >= 2 and not raw.startswith("["):
                raise EndpointError(f"not HOST:PORT: {text!r:.80} (write an IPv6 address as [ADDRESS]:PORT)")
            raise EndpointError(f"not HOST:PORT: {text!r:.80}")
        return host, default_port
    return host, _port(text, port_text)


def format_endpoint(host: str, port: int) -> str:
    """The inverse of :func:`parse_endpoint`: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
