"""The annotations hold: mypy over ``src/meterhub`` with the ``[tool.mypy]`` settings of
pyproject.toml reports no error (docs/architecture.md), so CI (``bash .ci/run`` runs
pytest) fails on a new type error. ``meterhub.crypto`` and ``meterhub.protocols`` are
checked in strict mode (every per-module flag of ``mypy --strict``, set by an override
in pyproject.toml), so a strict error there fails CI too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mypy.main import process_options
from mypy.options import PER_MODULE_OPTIONS, Options

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


STRICT_PACKAGES = ("meterhub.crypto", "meterhub.protocols")


def _options(tmp_path: Path, *args: str) -> Options:
    empty = tmp_path / "empty.ini"
    empty.write_text("[mypy]\n")
    return process_options([*args, "--config-file", str(empty), "x.py"])[1]


def test_the_strict_packages_get_every_per_module_flag_of_strict(tmp_path: Path) -> None:
    # What `mypy --strict` turns on, from mypy itself (so a flag a new mypy adds to
    # --strict shows up here), against what pyproject.toml gives each strict package.
    strict, lenient = _options(tmp_path, "--strict"), _options(tmp_path)
    flags = sorted(k for k in PER_MODULE_OPTIONS if getattr(strict, k) != getattr(lenient, k))
    assert "disallow_untyped_defs" in flags and "warn_return_any" in flags
    config = process_options(["--config-file", str(ROOT / "pyproject.toml")])[1]
    for package in STRICT_PACKAGES:
        module = config.clone_for_module(f"{package}.anything.below")
        missing = [k for k in flags if getattr(module, k) != getattr(strict, k)]
        assert not missing, f"{package}: not strict for {missing}"
    # The global-only flags of --strict are set globally.
    assert config.warn_redundant_casts and config.warn_unused_configs


def test_the_strict_packages_pass_mypy_strict() -> None:
    # Cross-check with mypy's own --strict over the two packages.
    result = _mypy("--strict", "src/meterhub/crypto", "src/meterhub/protocols")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


UNTYPED = """\
from typing import Any


def scale(x, k: int):
    return x * k


def first(items: list) -> int:
    value: Any = items[0]
    return value
"""


def test_an_untyped_module_in_a_strict_package_is_rejected(tmp_path: Path) -> None:
    # The guard itself must be able to fail: the same untyped module, placed in each
    # strict package and in the lenient model package, checked with the pyproject config.
    packages = [*STRICT_PACKAGES, "meterhub.model"]
    for dotted in packages:
        parts = dotted.split(".")
        for level in range(1, len(parts) + 1):
            tmp_path.joinpath(*parts[:level]).mkdir(exist_ok=True)
            tmp_path.joinpath(*parts[:level], "__init__.py").touch()
        tmp_path.joinpath(*parts, "untyped.py").write_text(UNTYPED)
    files = [str(tmp_path.joinpath(*p.split("."), "untyped.py")) for p in packages]
    result = _mypy("--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".cache"), *files)
    assert result.returncode == 1, result.stdout
    for package, file in zip(packages, files, strict=True):
        errors = [line for line in result.stdout.splitlines() if line.startswith(file + ":")]
        if package in STRICT_PACKAGES:
            for code in ("[no-untyped-def]", "[type-arg]", "[no-any-return]"):
                assert any(code in line for line in errors), (package, code, result.stdout)
        else:
            assert errors == [], result.stdout
