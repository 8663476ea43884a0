"""Run a benchmark from ``bench/`` as docs/performance.md tells a user, and read its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench_report(script: str, *args: str, timeout: float) -> str:
    """What ``python bench/<script> <args>`` printed; fails the test unless it exited 0."""
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout
