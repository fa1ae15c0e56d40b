"""The error for data that does not follow docs/formats.md (shared model layer)."""

from __future__ import annotations

__all__ = ["FormatError"]


class FormatError(ValueError):
    """A record, file or message that does not follow docs/formats.md.

    Its message is one line; the CLI prints it and exits 1 (rejected input)."""
