"""`meterhub utility push`: the client the meter and hub hosts deliver through (docs/service.md).

Day uploads go as NDJSON (the meter's ``ID.uploads.jsonl`` lines, unchanged) in
deliveries of ``days_per_request`` days; a bill statement as its JSON. A 503 or a lost
connection is retried with backoff: the service commits a delivery whole or not at
all and identical re-deliveries are idempotent, so a retry can neither lose nor
duplicate a day. Every other refusal is a :class:`PushError` carrying the server's
problem+json detail, never ignored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import MeterhubError
from ..model.formats.upload import DayUpload
from ..utility.deliveries import REF_KINDS

# The output delivery paths (the service's routes are built from this table).
OUTPUT_PATHS = {
    "/v1/settlement-statements": "settlement",
    "/v1/profile-scores": "scores",
    "/v1/samples": "samples",
    "/v1/dr-releases": "dr-release",
    "/v1/feeder-days": "feeder-day",
}

__all__ = ["PushClient", "PushError"]


class PushError(MeterhubError, RuntimeError):
    """A delivery the service refused: ``status`` and the problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "refused"
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.problem = status, problem


@dataclass
class PushClient:
    """Deliveries to one service with one API key."""

    server: str
    api_key: str
    retries: int = 8
    timeout: float = 30.0
    client: httpx.Client | None = None
    tls_ca: str | None = None  # CA file the server's certificate must chain to (https)
    tls_cert: str | None = None  # our client certificate (mutual TLS) and its key
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            verify: Any = True
            if self.tls_ca or self.tls_cert:
                from .tls import client_ssl_context

                verify = client_ssl_context(self.tls_ca, self.tls_cert, self.tls_key)
            self.client = httpx.Client(base_url=self.server.rstrip("/"), timeout=self.timeout, verify=verify)

    def close(self) -> None:
        assert self.client is not None
        self.client.close()

    def _send(
        self, method: str, path: str, *, content: bytes | None = None, ctype: str = ""
    ) -> dict:
        assert self.client is not None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        if ctype:
            headers["Content-Type"] = ctype
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                r = self.client.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise PushError(0, {"detail": f"cannot reach {self.server}: {exc}"}) from None
            else:
                if r.status_code == 503 and attempt < self.retries:
                    pass  # database restarting: retry the whole delivery
                elif r.is_success:
                    return r.json()
                else:
                    try:
                        problem = r.json()
                    except ValueError:
                        problem = {"detail": r.text[:200]}
                    raise PushError(r.status_code, problem if isinstance(problem, dict) else {})
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def push_days(self, uploads: Sequence[DayUpload], *, days_per_request: int = 100) -> list[dict]:
        """Deliver day uploads, ``days_per_request`` per request; the per-day results."""
        out: list[dict] = []
        for k in range(0, len(uploads), days_per_request):
            body = "".join(u.to_json() + "\n" for u in uploads[k : k + days_per_request]).encode()
            out.extend(
                self._send("POST", "/v1/days", content=body, ctype="application/x-ndjson")[
                    "results"
                ]
            )
        return out

    def push_statement(self, statement_json: str | bytes) -> dict:
        body = statement_json.encode() if isinstance(statement_json, str) else statement_json
        return self._send("POST", "/v1/statements", content=body, ctype="application/json")

    def register_meter(self, registration: dict[str, Any]) -> dict:
        import json

        return self._send(
            "POST",
            "/v1/meters",
            content=json.dumps(registration).encode(),
            ctype="application/json",
        )

    def push_output(self, kind: str, body: bytes) -> dict:
        """Deliver one hub output (docs/service.md, "Outputs"): ``settlement``, ``scores``,
        ``samples`` (JSON documents), ``dr-release`` (binary record) or ``feeder-day``."""
        path = {v: k for k, v in OUTPUT_PATHS.items()}.get(kind)
        if path is None:
            raise ValueError(f"unknown output kind {kind!r} (one of {', '.join(OUTPUT_PATHS.values())})")
        ctype = "application/octet-stream" if kind == "dr-release" else "application/json"
        return self._send("POST", path, content=body, ctype=ctype)

    def push_reference(self, kind: str, body: bytes) -> dict:
        """Deliver reference data: a signed series, a DR event, a group or a coin toss."""
        if kind not in REF_KINDS:
            raise ValueError(f"unknown reference kind {kind!r} (one of {', '.join(REF_KINDS)})")
        binary = kind in ("dr-event", "aggregation-group")
        ctype = "application/octet-stream" if binary else "application/json"
        return self._send("POST", f"/v1/references/{kind}", content=body, ctype=ctype)

    def outputs(self, meter_id: str) -> dict:
        return self._send("GET", f"/v1/meters/{quote(meter_id, safe='')}/outputs")

    def forecast(self, meter_id: str) -> dict:
        return self._send("GET", f"/v1/meters/{quote(meter_id, safe='')}/forecast")

    def shares(self) -> dict:
        return self._send("GET", "/v1/shares")

    def coverage(self, meter_id: str) -> dict:
        return self._send("GET", f"/v1/meters/{meter_id}/coverage")

    def verdicts(self, meter_id: str) -> dict:
        return self._send("GET", f"/v1/meters/{meter_id}/verdicts")
