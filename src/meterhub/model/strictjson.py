"""The one strict JSON reader for every format that crosses a trust boundary.

docs/verification.md, rule V03: a boundary document (bill statements, day
uploads, sealed openings, tariffs, price indices and load profiles, settlement
statements, profile scores, sample releases) is RFC 8259 JSON, UTF-8, and is
refused with :class:`StrictJSONError` (a :class:`~meterhub.model.errors.FormatError`,
so callers print one line) when it

* is larger than ``max_bytes`` (checked before anything is parsed),
* is not UTF-8, or not JSON,
* repeats a key in an object (``{"total": 6, "total": 999}`` would otherwise
  silently mean 999),
* holds ``NaN``, ``Infinity`` or ``-Infinity`` (not JSON, but accepted by
  Python's ``json`` module by default),
* nests arrays/objects deeper than ``max_depth`` (a 100,000-deep file would
  otherwise exhaust the interpreter's recursion limit).

The depth is measured before parsing, in one regular-expression pass that skips
string literals, so a hostile file costs linear time and no recursion.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

from .errors import FormatError

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH", "StrictJSONError", "hex_bytes", "iso_date", "loads", "nesting_depth"]

DEFAULT_MAX_BYTES = 64 << 20  # a month of tiered proofs is a few MiB
DEFAULT_MAX_DEPTH = 64

# A string literal (skipped whole) or a bracket; everything else is irrelevant to depth.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class StrictJSONError(FormatError):
    """A boundary document that is not strict JSON; the message is one line."""


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise StrictJSONError(f"duplicate key {k!r:.70}")
        out[k] = v
    return out


def nesting_depth(text: str) -> int:
    """The deepest array/object nesting of ``text`` (strings skipped), in linear time."""
    depth = top = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            top = max(top, depth)
        elif c in "]}":
            depth -= 1
    return top


def loads(
    data: str | bytes | bytearray | memoryview,
    what: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Parse one strict JSON document; :class:`StrictJSONError` names ``what`` and the fault."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if len(raw) > max_bytes:
            raise StrictJSONError(f"{what} too large ({len(raw)} bytes, max {max_bytes})")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError(f"{what} is not UTF-8 (byte {exc.start})") from None
    elif isinstance(data, str):
        text = data
        if len(text) > max_bytes:  # characters: a lower bound of the UTF-8 size
            raise StrictJSONError(f"{what} too large ({len(text)} characters, max {max_bytes})")
    else:
        raise StrictJSONError(f"{what}: expected text or bytes, got {type(data).__name__}")
    if text.startswith("\ufeff"):
        raise StrictJSONError(f"{what} starts with a byte-order mark")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise StrictJSONError(f"{what} nests {depth} levels deep (max {max_depth})")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except StrictJSONError as exc:
        raise StrictJSONError(f"{what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise StrictJSONError(f"{what} is not JSON: {str(exc)[:80]}") from None


_LOWER_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def hex_bytes(value: object, what: str, size: int | None = None) -> bytes:
    """A hex field (docs/verification.md, rule V04): lower-case digits only, an even
    count, no prefix, sign, underscore or whitespace (all of which ``bytes.fromhex``
    or ``int(x, 16)`` would accept), and exactly ``size`` bytes when given."""
    if not isinstance(value, str) or not _LOWER_HEX.fullmatch(value):
        raise StrictJSONError(f"{what} must be lower-case hex")
    if size is not None and len(value) != 2 * size:
        raise StrictJSONError(f"{what} must be {size} bytes ({2 * size} hex digits)")
    return bytes.fromhex(value)


def iso_date(value: object, what: str) -> date:
    """A date field (rule V04): exactly ``YYYY-MM-DD`` (``date.fromisoformat`` alone
    also takes ``20270315`` and ISO week dates)."""
    if not isinstance(value, str):
        raise StrictJSONError(f"{what} must be a date YYYY-MM-DD")
    try:
        d = date.fromisoformat(value)
    except ValueError:
        d = None
    if d is None or d.isoformat() != value:
        raise StrictJSONError(f"{what} {value!r:.20} is not YYYY-MM-DD")
    return d
