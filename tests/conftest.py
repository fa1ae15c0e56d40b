"""Shared fixtures and the hypothesis profile."""

from __future__ import annotations

import pytest
from hypothesis import settings

from helpers import History, make_history

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def history() -> History:
    # 2027-03-27..29 spans the spring DST change (a 92-interval day).
    return make_history()
