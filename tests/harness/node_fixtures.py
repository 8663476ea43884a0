"""pytest plugin: a real single-node cluster (``tests/harness/kube_node.py``) for the tests
marked ``node``.

Fixtures
--------
``node`` (session)
    A started :class:`kube_node.Node`: ``kubectl(...)``, ``helm(...)``, ``kubeconfig``,
    ``images`` (name -> locally built image: ``pause``, ``redis``, ``python``,
    ``operator``), ``host_before`` (the host as the first start found it, once any killed
    run's node was cleaned up), ``startup_seconds`` and ``timings``.
``node_namespace`` (function)
    A fresh namespace on the node; deleted afterwards without waiting.
``toolbox`` (session)
    Name of a long-running pod (namespace ``default``) from the operator image, to run
    client commands inside the cluster with ``node.kubectl("exec", toolbox, "--", ...)``.

Tests that use them are marked ``node`` automatically. The binaries and images are built
(or found in ``.cache/``) right after collection, outside per-test timeouts. The node needs
root and the Debian packages of ``tests/node/packages.txt`` (``tests/run.sh`` installs them
unless ``REDISQUEUE_NO_SYSTEM_PACKAGES=1``); without them the tests are skipped with the
reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kube_controlplane import REPO_ROOT, scratch_namespace
from harness.kube_node import Node, NodeError, ensure_node_artifacts
from harness.prebuild import PreBuild

NODE_FIXTURES = frozenset({"node", "node_namespace", "toolbox"})
PACKAGES = Path(__file__).resolve().parents[1] / "node" / "packages.txt"

CHART = REPO_ROOT / "charts" / "redisqueue-operator"
OPERATOR_NS = "redisqueue-system"
RELEASE = "redisqueue-operator"


def live_pods(node: Node, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods of ``namespace`` that match the label ``selector`` and are not being deleted."""
    pods = json.loads(
        node.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def image_values(node: Node) -> list[str]:
    """``--set`` flags pointing the chart at the operator image built here (never pulled)."""
    registry, rest = node.images["operator"].ref.split("/", 1)
    repository, tag = rest.rsplit(":", 1)
    return [
        "--set",
        f"image.registry={registry}",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
    ]


def install_chart(node: Node, *, wait_seconds: int = 180) -> str:
    """The chart of this checkout installed as its README says, with the operator image built
    here, waiting up to ``wait_seconds`` for it to be ready; returns the release."""
    node.helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        *image_values(node),
        "--wait",
        f"--timeout={wait_seconds}s",
        timeout=wait_seconds + 60,
    )
    return RELEASE


@contextlib.contextmanager
def chart_installed(node: Node, *, wait_seconds: int = 180) -> Iterator[str]:
    """:func:`install_chart`, and the release uninstalled on exit."""
    install_chart(node, wait_seconds=wait_seconds)
    try:
        yield RELEASE
    finally:
        node.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", check=False)


def missing_packages() -> list[str]:
    """The node's Debian packages that are not installed (all of them without dpkg)."""
    lines = PACKAGES.read_text().splitlines()
    wanted = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *wanted],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError:
        return wanted
    installed = {
        line.split()[0].split(":")[0] for line in out.splitlines() if line.endswith(" installed")
    }
    return [p for p in wanted if p not in installed]


def skip_reason() -> str | None:
    """Why the node cannot run here, or None."""
    if os.geteuid() != 0:
        return "the test node needs root (containerd, iptables, mounts)"
    missing = missing_packages()
    if missing:
        return (
            f"the test node needs the Debian packages {' '.join(missing)} "
            f"(apt-get install -y {' '.join(missing)}; ./tests/run.sh installs them as root "
            "unless REDISQUEUE_NO_SYSTEM_PACKAGES=1)"
        )
    return None


def _needs_node(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & NODE_FIXTURES) or item.get_closest_marker("node") is not None


_BUILD = PreBuild(_needs_node, pytest.mark.node, NodeError)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _BUILD.mark(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _BUILD.needed(session) and skip_reason() is None:
        _BUILD.run(session, ensure_node_artifacts)


@pytest.fixture(scope="session")
def node(pytestconfig: pytest.Config) -> Iterator[Node]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    _BUILD.raise_failure(pytestconfig)
    started = Node()
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def node_namespace(node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_namespace(node.kubectl, request.node.name, "n") as name:
        yield name


TOOLBOX = "toolbox"


@pytest.fixture(scope="session")
def toolbox(node: Node) -> str:
    """A pod with Python and redis-py (the operator image) that sleeps, for exec."""
    ensure_toolbox(node)
    return TOOLBOX


def ensure_toolbox(node: Node) -> None:
    image = node.images["operator"].ref
    node.kubectl(
        "run",
        TOOLBOX,
        "-n",
        "default",
        f"--image={image}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--command",
        "--",
        "sleep",
        "infinity",
        check=False,
    )
    node.kubectl(
        "wait", "-n", "default", "--for=condition=Ready", f"pod/{TOOLBOX}", "--timeout=120s"
    )
