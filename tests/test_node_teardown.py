"""The node leaves the host as it found it: iptables rules and chains (both families),
network links, mounts, cgroups, sysctls and the paths its tools create elsewhere. Both by
``stop()`` and for a node whose owner is gone (what a killed test run leaves), from the
state file alone. The session's node is restarted afterwards for any later test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kube_node import STATE_FILE, Node, host_snapshot

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

KUBE_NODE = Path(__file__).with_name("kube_node.py")


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    diff: dict[str, Any] = {}
    for key, old in before.items():
        new = after[key]
        if old == new:
            continue
        if isinstance(old, list):
            diff[key] = {"gone": sorted(set(old) - set(new)), "left": sorted(set(new) - set(old))}
        else:
            diff[key] = {"before": old, "after": new}
    return diff


def _kube_node(command: str, timeout: float) -> str:
    """``kube_node.py up|down`` in a process of its own; its stdout."""
    done = subprocess.run(
        [sys.executable, str(KUBE_NODE), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _up() -> dict[str, str]:
    """Start a node from a process that exits at once, as a killed run leaves one."""
    out = _kube_node("up", timeout=600)
    assert STATE_FILE.exists()
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("export KUBECONFIG="):
            env["KUBECONFIG"] = line.split("=", 1)[1]
    return env


def test_stop_and_a_killed_runs_cleanup_leave_the_host_as_it_was(node: Node) -> None:
    before = node.host_before
    assert before, "the first start records the host"
    # While it runs, the node has changed the host (so the comparisons below can fail).
    running = host_snapshot()
    assert differences(before, running)
    node.stop()
    restarted = False
    try:
        assert differences(before, host_snapshot()) == {}

        # A node whose owner is gone, with a pod running, taken down from its state file.
        env = _up()
        kubectl = str(node.plane.bin_dir / "kubectl")
        image = node.images["redis"].ref
        subprocess.run(
            [
                kubectl,
                "run",
                "leftover",
                f"--image={image}",
                "--image-pull-policy=Never",
                "--command",
                "--",
                "redis-server",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait = subprocess.run(
            [kubectl, "wait", "--for=condition=Ready", "pod/leftover", "--timeout=120s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        assert wait.returncode == 0, wait.stderr
        _kube_node("down", timeout=300)
        assert not STATE_FILE.exists()
        assert differences(before, host_snapshot()) == {}

        # A killed run's node still up when the next run starts: the start cleans it up
        # before it records the host, so that record is the clean host, not the leftovers.
        _up()
        assert differences(before, host_snapshot())
        node.start()
        restarted = True
        assert differences(before, node.host_at_start) == {}
    finally:
        if not restarted:
            node.start()
