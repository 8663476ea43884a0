"""pytest plugin: a real Kubernetes control plane for tests marked ``k8s``.

Load it from the top-level conftest with ``pytest_plugins = ["kube_fixtures"]``.

Fixtures
--------
``control_plane`` (session)
    A started :class:`kube_controlplane.ControlPlane`: ``kubeconfig`` (Path), ``server``
    (URL), ``bin_dir`` (Path with kubectl, helm, ...), ``env`` (os.environ plus
    KUBECONFIG and the bin dir on PATH), ``kubectl(*args, check=True, input=None)`` and
    ``helm(*args, check=True, input=None)`` returning ``CompletedProcess[str]``.
``kubeconfig`` (session)
    The admin kubeconfig path (a member of system:masters).
``namespace`` (function)
    A fresh namespace with a unique name; deleted afterwards without waiting for it to
    finish terminating.
``kube_api`` (function, async)
    A ``kubernetes_asyncio.client.ApiClient`` configured from the kubeconfig; closed
    afterwards.

Building
--------
When the selected tests include any that use the control plane, the binaries are
built (or found in the cache) once, right after collection, outside any per-test
timeout, with the Go build's progress shown on the terminal. A cold build takes tens
of minutes on two cores; later runs find the cache and start in seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config

from harness.kube_controlplane import (
    ControlPlane,
    ControlPlaneError,
    ensure_binaries,
    scratch_namespace,
)

CONTROL_PLANE_FIXTURES = frozenset({"control_plane", "kubeconfig", "namespace", "kube_api"})


def _needs_control_plane(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & CONTROL_PLANE_FIXTURES) or item.get_closest_marker("k8s") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test that uses the control plane is a k8s test, marked or not, so that
    # `-m "not k8s"` really leaves out everything that needs it.
    for item in items:
        if _needs_control_plane(item) and item.get_closest_marker("k8s") is None:
            item.add_marker(pytest.mark.k8s)


_BUILD_ERROR = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any(_needs_control_plane(item) for item in session.items):
        return
    # The build's progress goes to the terminal, past pytest's capture.
    capture = session.config.pluginmanager.getplugin("capturemanager")
    uncaptured = (
        capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
    )
    try:
        with uncaptured:
            ensure_binaries()
    except ControlPlaneError as exc:
        # Reported by every test that needs the control plane; the others still run.
        session.config.stash[_BUILD_ERROR] = str(exc)


@pytest.fixture(scope="session")
def control_plane(pytestconfig: pytest.Config) -> Iterator[ControlPlane]:
    build_error = pytestconfig.stash.get(_BUILD_ERROR, None)
    if build_error is not None:
        raise ControlPlaneError(build_error)
    with ControlPlane() as plane:
        yield plane


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    with scratch_namespace(control_plane.kubectl, request.node.name, "t") as name:
        yield name


@pytest_asyncio.fixture
async def kube_api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    try:
        yield api
    finally:
        await api.close()
