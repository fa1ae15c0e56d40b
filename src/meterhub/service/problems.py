"""The service's errors: RFC 9457 problems (``application/problem+json``) and the budget
that bounds how many refusals are logged (:mod:`meterhub.service.app` writes them)."""

from __future__ import annotations

import threading
from typing import Any

from ..errors import MeterhubError

_PROBLEM = "tag:meterhub,2026:problem:"


class Problem(MeterhubError):
    """An RFC 9457 problem: ``status``, a short ``slug`` (the type) and a one-line ``detail``;
    ``retry_after`` (seconds) becomes a ``Retry-After`` header (RFC 9110, 10.2.3)."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, *, retry_after: int | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail, self.extra = (
            status,
            slug,
            title,
            detail,
            extra,
        )
        self.retry_after = retry_after



class _LogBudget:
    """At most ``per_second`` refusal lines a second: a client flooding bad requests
    cannot flood the log (or the disk under it); the lines left out are counted and
    the count is logged with the next line that is written."""

    def __init__(self, per_second: int = 20) -> None:
        self.per_second, self.second, self.used, self.dropped = per_second, 0, 0, 0
        self.lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        import time

        with self.lock:
            now = int(time.monotonic())
            if now != self.second:
                self.second, self.used = now, 0
            if self.used >= self.per_second:
                self.dropped += 1
                return False, 0
            self.used += 1
            dropped, self.dropped = self.dropped, 0
            return True, dropped

