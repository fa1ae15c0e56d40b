"""Identifiers a billing system keys on: metering points and contracts.

German market identifiers (BDEW, "Identifikatoren in der Marktkommunikation"):

* **MaLo-ID** (Marktlokations-ID): 11 digits, the first not 0; the 11th is a
  check digit over the first ten: ``a`` = sum of the digits at odd positions
  (1, 3, 5, 7, 9), ``b`` = sum of the digits at even positions (2, 4, 6, 8, 10);
  the check digit is ``(10 - (a + 2b) mod 10) mod 10``.
* **MeLo-ID** (Messlokations-ID, the older Zählpunktbezeichnung): 33
  characters, ``DE``, the 6-digit network operator number, the 5-digit postal
  code, then 20 digits or capital letters (the meter point number).

A statement's ``metering_point`` is one of these two forms; ``contract_id``
is the supplier's contract (Vertragskonto) number, opaque to meterhub.
"""

from __future__ import annotations

import re

from .errors import FormatError

__all__ = ["malo_check_digit", "is_malo", "is_melo", "check_metering_point", "check_contract_id"]

_MELO = re.compile(r"DE[0-9]{11}[0-9A-Z]{20}")
_CONTRACT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")


def malo_check_digit(first_ten: str) -> int:
    """The MaLo-ID check digit of its first ten digits (BDEW algorithm, module docstring)."""
    if len(first_ten) != 10 or not first_ten.isascii() or not first_ten.isdigit():
        raise ValueError("a MaLo-ID check digit is computed over exactly ten digits")
    digits = [int(c) for c in first_ten]
    a = sum(digits[0::2])
    b = sum(digits[1::2])
    return (10 - (a + 2 * b) % 10) % 10


def is_malo(value: str) -> bool:
    """An 11-digit MaLo-ID, first digit not 0, with a correct check digit."""
    return (
        len(value) == 11
        and value.isascii()
        and value.isdigit()
        and value[0] != "0"
        and malo_check_digit(value[:10]) == int(value[10])
    )


def is_melo(value: str) -> bool:
    """A 33-character MeLo-ID / Zählpunktbezeichnung (``DE`` + 11 digits + 20 of [0-9A-Z])."""
    return _MELO.fullmatch(value) is not None


def check_metering_point(value: object) -> str:
    """A MaLo-ID or MeLo-ID, else a one-line :class:`FormatError` (docs/verification.md V26)."""
    if not isinstance(value, str):
        raise FormatError("metering_point must be a string")
    if len(value) == 11 and value.isascii() and value.isdigit():
        if value[0] == "0" or not is_malo(value):
            raise FormatError(f"metering_point {value} is not a MaLo-ID (wrong check digit)")
        return value
    if not is_melo(value):
        raise FormatError(
            "metering_point must be an 11-digit MaLo-ID or a 33-character MeLo-ID "
            f"(got {value[:40]!r})"
        )
    return value


def check_contract_id(value: object) -> str:
    """1 to 64 characters of ``[A-Za-z0-9._/-]``, starting alphanumeric (V26)."""
    if not isinstance(value, str) or _CONTRACT.fullmatch(value) is None:
        raise FormatError("contract_id must be 1-64 characters of [A-Za-z0-9._/-], starting alphanumeric")
    return value
