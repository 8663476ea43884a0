"""Small Go tools the tests build from pinned Go modules (tests/tools/<name>/go.mod).

``go_tool("actionlint")`` returns the binary's path, running ``tests/tools/<name>/build.sh``
(a no-op on a warm cache: it only checks that the binary is there) unless the environment
already names the bin dir (``REDISQUEUE_ACTIONLINT_BIN``, ``REDISQUEUE_TERRAFORM_DOCS_BIN``;
tests/run.sh builds the tools in a step of its own and sets them).

``REDISQUEUE_NO_GO_BUILDS=1`` (set by ``./tests/run.sh --fast`` and ``--no-go``) turns every
request for a Go-built binary into an error that names the marker the test lacks: those paths
leave out the tests marked ``k8s``, ``node`` and ``gotools``, and an unmarked test that needs such a
binary fails there instead of building for minutes or passing by luck of a warm cache.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


NO_GO_BUILDS_ENV = "REDISQUEUE_NO_GO_BUILDS"


def refuse_go_builds(what: str, marker: str, error: type[Exception] = RuntimeError) -> None:
    """Raise ``error`` when Go builds are turned off; ``what`` is built from Go."""
    if os.environ.get(NO_GO_BUILDS_ENV) == "1":
        raise error(
            f"{what} is built from a Go module, and {NO_GO_BUILDS_ENV}=1 "
            "(./tests/run.sh --fast or --no-go) "
            f"builds nothing from Go: a test that needs it must be marked `{marker}`"
        )


def run_build_script(script: Path, error: type[Exception], *, stream_output: bool) -> Path:
    """Run a cached Go build script and return the bin dir it prints last. Its progress goes
    to the terminal when ``stream_output``, otherwise into the ``error`` it raises on failure."""
    proc = subprocess.run(
        ["bash", str(script)],
        stdout=subprocess.PIPE,
        stderr=None if stream_output else subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr or "(its output is above, on the terminal)"
        raise error(f"{script} failed with exit code {proc.returncode}\n{detail}")
    lines = proc.stdout.strip().splitlines()
    return Path(lines[-1]) if lines else Path()


def _env_name(name: str) -> str:
    return "REDISQUEUE_" + name.upper().replace("-", "_") + "_BIN"


def go_tool(name: str) -> Path:
    """Path of the tool's binary, built from ``tests/tools/<name>/`` when not cached."""
    refuse_go_builds(name, "gotools")
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
