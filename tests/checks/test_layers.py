"""The import contracts in ``.importlinter`` hold (docs/architecture.md, "Layers").

Runs import-linter over the working tree's sources in a fresh interpreter, so CI
(``bash .ci/run`` runs pytest) fails on any new layer violation, on sockets, asyncio or
sqlite3 imported outside the transport and storage modules, and on an ignore entry
that no longer matches an import.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"


def _lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--config", str(config), "--no-cache"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(CONFIG)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    # The guard itself must be able to fail: a contract the tree does break (crypto may not
    # import hashlib, which it does) makes lint-imports exit non-zero.
    broken = tmp_path / "broken.ini"
    broken.write_text(
        "[importlinter]\nroot_package = meterhub\ninclude_external_packages = True\n\n"
        "[importlinter:contract:c]\nname = crypto without hashlib\ntype = forbidden\n"
        "source_modules =\n    meterhub.crypto\nforbidden_modules =\n    hashlib\n"
        "allow_indirect_imports = True\n"
    )
    result = _lint_imports(broken)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
