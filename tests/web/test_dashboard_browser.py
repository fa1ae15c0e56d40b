"""Both dashboards in a real headless browser: Playwright for Python driving Debian's
``chromium`` (``/usr/bin/chromium``; never ``playwright install``) against uvicorn on
127.0.0.1, port 0 (docs/dashboards.md).

Every page loads without console errors, page errors, failed requests or HTTP errors,
every chart is drawn (an SVG with data points), the customer revokes a consent with the
keyboard alone (skip link, Tab to the button, Enter) and the export is refused afterwards.
A screenshot of each page is saved under the pytest base temp directory
(``dashboard-screenshots/``) and, for the pages the docs show, in ``METERHUB_SCREENSHOTS`` when set (``make
screenshots`` uses docs/img), there as well.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from dashboard_setup import METER, START, copy_of, demo_dir, export, install_export
from meterhub.utility.settlement import HubRefused

playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
CHROMIUM = "/usr/bin/chromium"


class _Server:
    """uvicorn serving ``app`` on 127.0.0.1 and an ephemeral port, in a thread."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One browser for all the browser tests. Module scope, not session: Playwright's sync
    API keeps an event loop running on this thread until it stops, and later tests (and
    the demo's OpenADR part, built first here) call asyncio.run()."""
    demo_dir(tmp_path_factory)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (scripts/apt-test-packages.txt)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


#: The screenshots docs/dashboards.md and the README show (``make screenshots``).
DOCS_SHOTS = {"customer-consumption", "customer-releases", "customer-revoke-focus", "customer-dr",
              "utility-verification", "utility-settlement", "utility-fraud", "utility-dr"}


def _shoot(pg, name: str, shots: list[Path], *, full_page: bool = True) -> None:
    for n, d in enumerate(shots):
        if n == 0 or name in DOCS_SHOTS:
            pg.screenshot(path=str(d / f"{name}.png"), full_page=full_page)


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    out = [tmp_path_factory.getbasetemp() / "dashboard-screenshots"]
    out[0].mkdir(exist_ok=True)
    if os.environ.get("METERHUB_SCREENSHOTS"):
        out.append(Path(os.environ["METERHUB_SCREENSHOTS"]))
        out[1].mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = copy_of(demo_dir(tmp_path_factory), tmp_path_factory.mktemp("browser") / "data")
    install_export(d)
    return d


@pytest.fixture(scope="module")
def customer(data):
    from meterhub.web.customer import create_customer_app, open_household

    s = _Server(create_customer_app(open_household(data, METER)))
    yield s.url
    s.stop()


@pytest.fixture(scope="module")
def utility(data):
    from meterhub.service.app import create_app
    from meterhub.service.keys import ApiKeys

    keys = ApiKeys({})
    key = keys.add("grid-op", "grid")
    s = _Server(create_app(str(data / "utility.sqlite"), keys))
    yield s.url, key
    s.stop()


@pytest.fixture(scope="module")
def ctx(browser):
    """One context per module: plotly.min.js (4.8 MB) is fetched and cached once."""
    c = browser.new_context(viewport={"width": 1280, "height": 900})
    yield c
    c.close()


@pytest.fixture
def page(ctx):
    pg = ctx.new_page()
    pg.problems = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.problems.append(f"console: {m.text}"))
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: pg.problems.append(f"failed: {r.url} {r.failure}"))
    pg.on("response", lambda r: r.status >= 400 and pg.problems.append(f"HTTP {r.status}: {r.url}"))
    yield pg
    pg.close()


def _visit(pg, url: str, name: str, shots: list[Path], *, min_charts: int = 1) -> None:
    pg.goto(url, wait_until="load")
    charts = pg.locator("div.chart[data-spec]")
    n = charts.count()
    assert n >= min_charts, f"{url}: {n} charts"
    pg.wait_for_function("() => [...document.querySelectorAll('div.chart[data-spec]')]"
                         ".every(e => e.getAttribute('data-rendered') === '1')", timeout=30000)
    points = pg.evaluate("() => [...document.querySelectorAll('div.chart[data-spec]')].map("
                         "e => e.querySelectorAll('svg.main-svg .point, svg.main-svg path.js-line').length)")
    assert all(p > 0 for p in points), f"{url}: a chart without data points {points}"
    assert pg.problems == [], pg.problems
    _shoot(pg, name, shots)


@pytest.mark.parametrize(("path", "name", "charts"), [
    ("/", "customer-consumption", 1), ("/?view=week", "customer-week", 1), ("/?view=month", "customer-month", 1),
    ("/bills", "customer-bills", 0), ("/releases", "customer-releases", 1), ("/consents", "customer-consents", 0),
    ("/dr", "customer-dr", 1),
])
def test_customer_pages(page, customer, shots, path, name, charts):
    _visit(page, customer + path, name, shots, min_charts=charts)
    assert page.title().endswith(f"home of {METER}")


def test_utility_pages_after_login(page, utility, shots):
    url, key = utility
    page.goto(url + "/dashboard/")
    assert page.locator("#api_key").count() == 1  # 401: the login form
    page.problems.clear()  # the 401 itself is expected
    page.fill("#api_key", key)
    with page.expect_navigation(timeout=60000):
        page.click("main form button[type=submit]")
    assert page.locator("#api_key").count() == 0
    for path, name in (("/dashboard/", "utility-verification"), ("/dashboard/settlement", "utility-settlement"),
                       ("/dashboard/fraud", "utility-fraud"), ("/dashboard/dr", "utility-dr")):
        _visit(page, url + path, name, shots)
        assert "Signed in as grid-op" in page.inner_text("header")


def test_keyboard_revoke_refuses_the_export(page, customer, data, shots):
    last = START + timedelta(days=2)
    page.goto(customer + "/consents")
    page.fill("#consent_id", "advice-kb")
    page.fill("#purpose", "energy advice")
    page.fill("#period_from", str(START))
    page.fill("#period_to", str(last))
    page.fill("#expires", str(START + timedelta(days=60)))
    page.select_option("#recipient", "third-party")
    page.click("button:has-text('Sign and grant')")
    page.wait_for_url("**/consents?granted=advice-kb")
    assert export(data, "advice-kb", START, last).startswith(b"<?xml")
    # Keyboard only: the first Tab reaches the skip link, then Tab on to the button.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "revoke-advice-kb":
            break
    else:
        pytest.fail("Tab never reached the revoke button")
    _shoot(page, "customer-revoke-focus", shots, full_page=False)
    page.keyboard.press("Enter")
    page.wait_for_url("**/consents?revoked=advice-kb")
    assert "Consent advice-kb revoked" in page.inner_text("main")
    assert page.problems == [], page.problems
    with pytest.raises(HubRefused) as e:
        export(data, "advice-kb", START, last)
    assert e.value.sw == 0x6982


def test_tables_work_without_javascript(browser, customer):
    ctx = browser.new_context(java_script_enabled=False)
    try:
        pg = ctx.new_page()
        pg.goto(customer + "/?view=month")
        assert pg.locator("#consumption-table tbody tr").count() == 20
        assert "The chart needs JavaScript" in pg.inner_text("noscript") or pg.locator("noscript").count() == 1
    finally:
        ctx.close()
