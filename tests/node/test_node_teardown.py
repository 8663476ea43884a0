"""The node leaves the host as it found it: iptables rules and chains (both families),
network links, mounts, cgroups, sysctls, the paths its tools create elsewhere and its own
work dir. Both by ``stop()`` and for a node whose owner is gone (what a killed test run
leaves), from the state file alone. Each node of the test starts on a fresh host: with the
node lock held, what earlier nodes left outside their work dirs is removed first
(``fresh_host``), so the paths a first node creates, and their missing parents, are part of
the proof. The session's node is restarted afterwards for any later test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.kube_node import NODE_TREES, STATE_FILE, Node, host_snapshot

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]

KUBE_NODE = Path(__file__).resolve().parents[1] / "harness" / "kube_node.py"


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


def _kube_node(*command: str, timeout: float) -> str:
    """``kube_node.py up|down`` in a process of its own; its stdout."""
    done = subprocess.run(
        [sys.executable, str(KUBE_NODE), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _up(kube_cache: Path) -> dict[str, str]:
    """Start a node on a fresh host from a process that exits at once, as a killed run
    leaves one."""
    out = _kube_node("up", "--fresh-host", timeout=600)
    assert STATE_FILE.exists()
    # kubectl's discovery cache stays out of the home directory, as the harness keeps it.
    env = {**os.environ, "KUBECACHEDIR": str(kube_cache)}
    for line in out.splitlines():
        if line.startswith("export KUBECONFIG="):
            env["KUBECONFIG"] = line.split("=", 1)[1]
    return env


def _run_pod(kubectl: str, env: dict[str, str], node: Node) -> None:
    """A Redis pod, Ready: containers, their network and logs, as the tests' pods have."""
    subprocess.run(
        [
            kubectl,
            "run",
            "leftover",
            f"--image={node.images['redis'].ref}",
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


def test_stop_and_a_killed_runs_cleanup_leave_the_host_as_it_was(
    node: Node, tmp_path: Path
) -> None:
    node.stop()
    restarted = False
    try:
        fresh = Node(fresh_host=True)
        fresh.start()
        try:
            before = fresh.host_before
            # Nothing of an earlier node is left outside a work dir (a tree someone else
            # owns would have been kept, and is then compared like any other path).
            kept = {entry.split()[0] for entry in fresh.kept_trees}
            assert {t for t in NODE_TREES if t in before["paths"]} == kept
            # While it runs a pod, the node has changed the host, paths outside its work dir
            # among it (so the comparisons below can fail).
            _run_pod(str(fresh.plane.bin_dir / "kubectl"), fresh.plane.env, fresh)
            running = differences(before, host_snapshot())
            assert running
            assert running["paths"]["left"], running.get("paths")
        finally:
            fresh.stop()
        assert differences(before, host_snapshot()) == {}

        # A node whose owner is gone, with a pod running, taken down from its state file.
        env = _up(tmp_path / "kube-cache")
        _run_pod(str(node.plane.bin_dir / "kubectl"), env, node)
        _kube_node("down", timeout=300)
        assert not STATE_FILE.exists()
        assert differences(before, host_snapshot()) == {}

        # A killed run's node still up when the next run starts: the start cleans it up
        # before it records the host, so that record is the clean host, not the leftovers;
        # its work dir (the images it imported, some hundred MiB) goes too.
        killed = Path(_up(tmp_path / "kube-cache")["KUBECONFIG"]).parents[1]
        assert str(killed) in host_snapshot()["workdirs"]
        assert differences(before, host_snapshot())
        node.start()
        restarted = True
        assert not killed.exists()
        assert differences(before, node.host_at_start) == {}
    finally:
        if not restarted:
            node.start()
