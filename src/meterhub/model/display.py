"""Showing untrusted text: the one place output built from received strings is escaped.

docs/verification.md, rule V01: a field taken from a statement, upload, tariff or
series (a meter id, a currency, a profile id, a rejection reason quoting them) is
printed as is only when every character is printable; otherwise it is shown as a
Python string literal (``'EUR\\nVERIFIED'``), so a newline, carriage return, escape
sequence or bidirectional override can never forge a line or hide text.
"""

from __future__ import annotations

__all__ = ["format_amount", "shown"]


def shown(text: object) -> str:
    """``text`` itself if it is a printable string, else its escaped literal (``repr``)."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return repr(s)


def format_amount(subunits: int, subunits_per_unit: int, currency: str) -> str:
    """A verified amount for display (rule V20): ``subunits / subunits_per_unit``
    rounded to two decimals, half up (0.005 -> 0.01), in exact integer arithmetic
    (a float would misround large totals), then the escaped currency code."""
    if subunits_per_unit < 1:
        raise ValueError("subunits_per_unit must be at least 1")
    sign = "-" if subunits < 0 else ""
    cents = (abs(subunits) * 200 + subunits_per_unit) // (2 * subunits_per_unit)
    return f"{sign}{cents // 100}.{cents % 100:02d} {shown(currency)}"
