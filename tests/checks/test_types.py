"""The annotations hold: mypy over ``src/meterhub`` with the ``[tool.mypy]`` settings of
pyproject.toml reports no error (docs/architecture.md), so CI (``bash .ci/run`` runs
pytest) fails on a new type error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_mypy_reports_no_error() -> None:
    result = _mypy()  # files and settings from pyproject.toml
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout


def test_a_type_error_is_reported(tmp_path: Path) -> None:
    # The guard itself must be able to fail.
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x: int) -> str:\n    return x\n")
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), str(bad))
    assert result.returncode == 1 and "Incompatible return value type" in result.stdout
