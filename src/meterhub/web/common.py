"""What both dashboards share: templates, static files, charts with their tables, CSRF,
security headers (docs/dashboards.md).

Pages are rendered on the server (Jinja2, autoescaped): every figure is in an HTML table
that works without JavaScript; the chart beside it is drawn in the browser by plotly.js,
served from the plotly wheel (:func:`plotly.offline.get_plotlyjs`), never from a CDN. A
chart's data travel as JSON in a ``<script type="application/json">`` element (Jinja's
``tojson`` escapes ``<``, ``>``, ``&`` and ``'``), so the Content-Security-Policy allows
scripts from this origin only and no inline script.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import MeterhubError

__all__ = [
    "CSP",
    "Chart",
    "CsrfTokens",
    "FormError",
    "NoData",
    "read_form",
    "page",
    "static_routes",
]

#: No inline script, nothing from another origin; plotly.js injects its own <style>
#: elements and uses data: images for its mode bar icons.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes browsers send "Origin: null" on form posts
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: A colour-blind-safe qualitative palette (Okabe-Ito) with >= 3:1 contrast on white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


@functools.cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("meterhub.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass
class Chart:
    """A chart and its text alternative: the table of the same numbers.

    ``traces`` are plotly.js trace objects (plain JSON); ``columns`` and ``rows`` the
    table shown beside the chart (also without JavaScript)."""

    chart_id: str
    title: str
    traces: list[dict[str, Any]]
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    layout: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def spec(self) -> dict[str, Any]:
        layout = {
            "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
            "font": {"family": "system-ui, sans-serif", "size": 13, "color": "#1a1a1a"},
            "colorway": list(PALETTE),
            "legend": {"orientation": "h", "y": -0.2},
            "paper_bgcolor": "#ffffff",
            "plot_bgcolor": "#ffffff",
            **self.layout,
        }
        return {"data": self.traces, "layout": layout}


@dataclass(frozen=True)
class NoData:
    """An explicit empty state: what is missing and why (never an empty chart)."""

    title: str
    reason: str


def page(template: str, request: Request, status: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    html = _env().get_template(template).render(request=request, **context)
    return HTMLResponse(html, status, headers={**SECURITY_HEADERS, **(headers or {})})


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def _static_file(name: str) -> bytes:
    return resources.files("meterhub.web").joinpath("static", name).read_bytes()


_STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
}


def static_routes() -> list[Route]:
    """``/static/plotly.min.js`` (from the plotly wheel) and the dashboards' own files."""

    async def plotly(request: Request) -> Response:
        body = _plotly_js()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"Cache-Control": "public, max-age=86400", "ETag": etag, "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)

    async def own(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", 404, media_type="text/plain")
        return Response(_static_file(name), media_type=_STATIC[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return [
        Route("/static/plotly.min.js", plotly, methods=["GET"]),
        Route("/static/{name}", own, methods=["GET"]),
    ]


class CsrfTokens:
    """Synchroniser tokens bound to a session (OWASP CSRF cheat sheet, "Synchronizer
    token pattern"): ``token = HMAC-SHA256(secret, "meterhub/v1/csrf" || session)``.

    The session id lives in an HttpOnly, SameSite=Strict cookie; every form carries the
    token in a hidden field and a POST is accepted only when the field matches the
    cookie's token (compared in constant time) and the ``Origin`` header, when sent, is
    this server's own."""

    COOKIE = "meterhub_session"

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def session(self, request: Request) -> str | None:
        s = request.cookies.get(self.COOKIE, "")
        return s if len(s) == 43 and s.replace("-", "").replace("_", "").isalnum() else None

    def token(self, session: str) -> str:
        return hmac.new(self._secret, b"meterhub/v1/csrf\x00" + session.encode(), hashlib.sha256).hexdigest()

    def ensure(self, request: Request) -> tuple[str, dict[str, str]]:
        """The page's token and, for a new session, the Set-Cookie header."""
        s = self.session(request)
        if s is not None:
            return self.token(s), {}
        s = secrets.token_urlsafe(32)
        cookie = f"{self.COOKIE}={s}; Path=/; HttpOnly; SameSite=Strict"
        return self.token(s), {"Set-Cookie": cookie}

    def check(self, request: Request, submitted: str) -> str | None:
        """``None`` if the POST may proceed, else the reason it may not."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return "cross-origin request"
        s = self.session(request)
        if s is None:
            return "no session cookie"
        if not hmac.compare_digest(self.token(s).encode(), submitted.encode("utf-8", "replace")):
            return "CSRF token does not match"
        return None


class FormError(MeterhubError, ValueError):
    """A form body that is too large or not ``application/x-www-form-urlencoded`` UTF-8."""


async def read_form(request: Request, max_bytes: int = 8192, max_fields: int = 20) -> dict[str, str]:
    """An urlencoded form (HTML 5.2, 4.10.21.6), bounded; the first value of each field."""
    from urllib.parse import parse_qs

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise FormError("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError):
        raise FormError("malformed form") from None
    return {k: v[0] for k, v in parsed.items()}
