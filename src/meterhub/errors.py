"""The one root of every error meterhub raises, and the CLI exit code each carries.

Every exception class in ``meterhub`` derives from :class:`MeterhubError`
(checked by ``tests/test_errors.py``, which fails for a new class that does not),
so a caller catches one type, and :func:`meterhub.cli.main` maps all of them to
a one-line message and an exit code in one place (docs/architecture.md, "Where
things live"). The one exception: :class:`meterhub.card.store.PowerLoss` is a
``BaseException`` by design, so that applet code catching ``Exception`` cannot
swallow a simulated tear (JCRE §7.6).

The module sits below every layer (it imports nothing), so that ``crypto`` and
``protocols`` may derive their errors from it without importing anything above
them. Families keep their standard-library bases too (``FormatError`` is still a
``ValueError``), so existing ``except ValueError`` clauses keep working.

Exit codes (the CLI's contract, docs/architecture.md "Errors"): ``2`` bad usage or an unusable
environment (arguments, files, configuration, a damaged data directory); ``1``
rejected: input that fails verification or a format's rules, or a refusal by a
peer, card or policy.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "MeterhubError"]

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class MeterhubError(Exception):
    """Anything meterhub reports as one line; ``exit_code`` is what the CLI returns.

    ``what`` (optional) names the kind of problem before the message, as in
    ``meterhub: error: card store: ...``."""

    exit_code: ClassVar[int] = EXIT_REJECTED
    what: ClassVar[str] = ""
