"""The shared model layer's errors: malformed exchange data and rejected figures.

Both derive from :class:`meterhub.errors.MeterhubError` (the one root, exit codes
there) and are re-exported with it, so ``from meterhub.model.errors import ...``
gives a party everything it needs to raise or catch.
"""

from __future__ import annotations

from ..errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, MeterhubError

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "FormatError", "MeterhubError", "Rejected"]


class FormatError(MeterhubError, ValueError):
    """A record, file or message that does not follow docs/formats.md.

    Its message is one line; the CLI prints it and exits 1 (rejected input)."""


class Rejected(MeterhubError):
    """A verifier's check failed; the message is the precise reason (docs/verification.md).

    Verifiers catch it at their boundary and return a ``Verdict(False, reason)``."""
