"""Shared fixtures and the hypothesis profile.

The tests mirror ``src/meterhub`` (docs/architecture.md, "Tests"). Every test directory is
put on ``sys.path`` here, before collection, so that test modules keep their plain names
(``test_settlement``) wherever they live: pytest imports them by basename (the default
``prepend`` import mode, no ``__init__.py``), the shared helper modules (``helpers``,
``gurux_link``, ``dashboard_setup``) import from any directory, and a second test file with
an existing basename is a collection error rather than a silent shadow. ``tests/leaks/``
(attacks that still work, run one by one) stays off the path and is never collected.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

_TESTS = Path(__file__).resolve().parent
for _dir in sorted({p.parent for p in _TESTS.rglob("*.py")}):
    if _dir != _TESTS and "leaks" not in _dir.relative_to(_TESTS).parts and str(_dir) not in sys.path:
        sys.path.append(str(_dir))

from helpers import History, make_history  # noqa: E402

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def history() -> History:
    # 2027-03-27..29 spans the spring DST change (a 92-interval day).
    return make_history()


# -- hub cards (meterhub.demo.hubs: the demo, the benchmarks and the tests share one factory) --
@pytest.fixture
def demo_hub(tmp_path):
    """Make provisioned demo hub cards in this test's ``tmp_path``:
    ``demo_hub("billing", "settlement", name="hub.sqlite", policy=..., supplier=...)`` is
    :func:`meterhub.demo.hubs.provision_demo_hub` (security domains under the demo keys, the
    privacy guard, the named applets installed by their parties' TSMs). The same ``name``
    again reopens that card. Every card made is closed after the test."""
    from meterhub.demo.hubs import provision_demo_hub

    made = []

    def make(*applets: str, name: str = "hub.sqlite", **kwargs):
        card = provision_demo_hub(tmp_path / name, applets, **kwargs)
        made.append(card)
        return card

    yield make
    for card in made:
        if not card.store.closed:
            card.close()


@pytest.fixture
def settlement_hub(tmp_path):
    """Make :class:`helpers.SettlementHub` hubs (the settlement and profiling applets, paired
    with a test history) in this test's ``tmp_path``: ``settlement_hub(h, policy=None,
    name="hub.sqlite")``. Every card made is closed after the test."""
    from helpers import SettlementHub

    made = []

    def make(h: History, policy=None, *, name: str = "hub.sqlite") -> SettlementHub:
        hub = SettlementHub(tmp_path / name, h, policy)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        if not hub.card.store.closed:
            hub.card.close()


# -- PostgreSQL (docs/service.md): the same storage tests run on SQLite and PostgreSQL ----
def _pg_admin_dsn() -> str:
    """The test server's DSN: $MH_PG_DSN, else .pgdsn written by scripts/postgres.sh,
    which is run every session: it leaves a server that answers at the recorded DSN
    alone and starts a new one if that server is gone (a .pgdsn left from before a
    reboot). No server is a test FAILURE, never a skip."""
    import os
    import subprocess
    from pathlib import Path

    dsn = os.environ.get("MH_PG_DSN")
    if dsn:
        return dsn
    root = Path(__file__).resolve().parent.parent
    f = root / ".pgdsn"
    r = subprocess.run(["bash", str(root / "scripts/postgres.sh")], capture_output=True, text=True)
    if r.returncode != 0 or not f.exists():
        pytest.fail(f"PostgreSQL is unavailable (scripts/postgres.sh: {r.stderr.strip()})")
    return f.read_text().strip()


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    return _pg_admin_dsn()


@pytest.fixture()
def pg_dsn(pg_admin_dsn: str):
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    import secrets

    import psycopg

    name = f"mh_test_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(pg_admin_dsn, autocommit=True, connect_timeout=5) as c:
            c.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is unavailable at {pg_admin_dsn}: {exc}")
    base, _, _db = pg_admin_dsn.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def utility_db(request, tmp_path) -> str:
    """A utility store location: a SQLite file or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "utility.sqlite")
    return request.getfixturevalue("pg_dsn")
