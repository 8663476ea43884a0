"""The package's layers, as import-linter contracts in pyproject.toml.

The client library never imports the operator (nor kopf, kubernetes-asyncio, aiohttp,
PyYAML); the operator's modules import only downwards; the pure core imports no I/O.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, package_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_every_import_contract_is_kept() -> None:
    result = _lint_imports(REPO, REPO / "operator")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_a_library_module_importing_the_operator_breaks_the_contract(tmp_path: Path) -> None:
    # The same check on a copy where the client imports the reconciler must fail.
    shutil.copytree(REPO / "operator" / "redisqueue", tmp_path / "src" / "redisqueue")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    client = tmp_path / "src" / "redisqueue" / "client.py"
    client.write_text(client.read_text() + "\nfrom redisqueue.controller import reconciler\n")
    result = _lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert "The client library never imports the operator BROKEN" in result.stdout
    assert "redisqueue.client -> redisqueue.controller.reconciler" in result.stdout


def test_an_upward_import_in_the_operator_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(REPO / "operator" / "redisqueue", tmp_path / "src" / "redisqueue")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    status = tmp_path / "src" / "redisqueue" / "controller" / "resource" / "status.py"
    status.write_text(status.read_text() + "\nfrom .. import reconciler\n")
    result = _lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0
    assert "The operator's layers, from the entry points down to the resource BROKEN" in (
        result.stdout
    )


def test_no_module_is_long_without_saying_why() -> None:
    # A module over ~350 lines states at its top why it is one module.
    for path in sorted((REPO / "operator" / "redisqueue").rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > 350:
            head = "\n".join(lines[:30])
            assert "Long on purpose" in head, f"{path.relative_to(REPO)}: {len(lines)} lines"
