"""Showing untrusted text: the one place output built from received strings is escaped.

docs/verification.md, rule V01: a field taken from a statement, upload, tariff or
series (a meter id, a currency, a profile id, a rejection reason quoting them) is
printed as is only when every character is printable; otherwise it is shown as a
Python string literal (``'EUR\\nVERIFIED'``), so a newline, carriage return, escape
sequence or bidirectional override can never forge a line or hide text.
"""

from __future__ import annotations

__all__ = ["shown"]


def shown(text: object) -> str:
    """``text`` itself if it is a printable string, else its escaped literal (``repr``)."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return repr(s)
