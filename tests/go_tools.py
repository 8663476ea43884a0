"""Small Go tools the tests build from pinned Go modules (tests/tools/<name>/go.mod).

``go_tool("actionlint")`` returns the binary's path, running ``tests/tools/<name>/build.sh``
(a no-op on a warm cache: it only checks that the binary is there) unless the environment
already names the bin dir (``REDISQUEUE_ACTIONLINT_BIN``, ``REDISQUEUE_TERRAFORM_DOCS_BIN``;
tests/run.sh builds the tools in a step of its own and sets them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / "tools"


def _env_name(name: str) -> str:
    return "REDISQUEUE_" + name.upper().replace("-", "_") + "_BIN"


def go_tool(name: str) -> Path:
    """Path of the tool's binary, built from ``tests/tools/<name>/`` when not cached."""
    preset = os.environ.get(_env_name(name))
    if preset and os.access(Path(preset) / name, os.X_OK):
        return Path(preset) / name
    script = TOOLS / name / "build.sh"
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    binary = Path(proc.stdout.strip().splitlines()[-1]) / name
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"{script} reported {binary.parent}, but {binary} is missing")
    return binary
