"""Run the real operator as a subprocess against the test control plane (a pytest plugin).

The operator authenticates with a token of the ServiceAccount from ``manifests/operator``
and so has exactly the permissions the install path grants, no more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.kube_controlplane import ControlPlane
from harness.redis_server import RedisServer, free_port
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.resource.policy import DEFAULT_DENIED_HOSTS

REPO = Path(__file__).resolve().parents[2]
OPERATOR_NAMESPACE = "redisqueue-system"
OPERATOR_SERVICE_ACCOUNT = "redisqueue-operator"
#: The tests' Redis servers listen on loopback, which the shipped policy refuses: the tests'
#: install denies everything the shipped one does but loopback (as an installer may).
LOOPBACK = ("127.0.0.0/8", "::1/128")
TEST_DENIED_HOSTS = ",".join(h for h in DEFAULT_DENIED_HOSTS if h not in LOOPBACK)


def _allow_loopback(doc: dict[str, Any]) -> dict[str, Any]:
    """The operator policy of 70-operator-policy.yaml without loopback in its denied CIDRs."""
    for variable in doc["spec"]["variables"]:
        if variable["name"] == "deniedCIDRs":
            cidrs = [c for c in variable["expression"].strip("[] \n").split(",") if c.strip()]
            kept = [c.strip() for c in cidrs if c.strip().strip("'") not in LOOPBACK]
            variable["expression"] = "[" + ", ".join(kept) + "]"
    return doc


T = TypeVar("T")


def install_crd_and_rbac(
    plane: ControlPlane, *, allow_loopback: bool = True, policies: bool = True
) -> None:
    """kubectl apply the CRD and the operator's namespace, ServiceAccount, RBAC and (unless
    ``policies`` is False) admission policies (the operator policy, unless ``allow_loopback``
    is False, without loopback in its denied networks: the tests' Redis servers are there)."""
    crds = REPO / "crds"
    plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",  # puts back what a test changed
        "-f",
        str(crds if policies else crds / "redisqueue.dev_redisqueues.yaml"),
    )
    plane.wait_established("redisqueues.redisqueue.dev")
    docs: list[dict[str, Any]] = []
    for path in sorted((REPO / "manifests" / "operator").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    wanted = {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    if not policies:
        wanted -= {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    selected = [d for d in docs if d.get("kind") in wanted]
    if allow_loopback:
        selected = [
            _allow_loopback(d)
            if d["kind"] == "ValidatingAdmissionPolicy"
            and d["metadata"]["name"] == "redisqueue-operator-policy"
            else d
            for d in selected
        ]
    assert any(d["kind"] == "ClusterRole" for d in selected), "manifests lack the ClusterRole"
    # Server-side, forcing: puts back whatever a test changed, however it changed it.
    plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=test-install",
        "-f",
        "-",
        input=yaml.safe_dump_all(selected),
    )


class OperatorToken(NamedTuple):
    """A kubeconfig with a token of the operator's ServiceAccount, and the control plane that
    issued it."""

    cp: ControlPlane
    kubeconfig: Path


def token_kubeconfig(
    plane: ControlPlane,
    namespace: str,
    account: str,
    directory: Path,
    *,
    user: str | None = None,
    duration: str = "1h",
) -> Path:
    """A kubeconfig that authenticates with a bound token of the ServiceAccount
    ``namespace/account`` only: ``<user>.kubeconfig`` in ``directory``, its user and context
    named ``user`` (by default the account)."""
    token = plane.kubectl(
        "create", "token", account, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    name = user or account
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "test", "user": name}}],
        "current-context": name,
    }
    path = directory / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def service_account_kubeconfig(plane: ControlPlane, directory: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (bound token)."""
    return token_kubeconfig(
        plane,
        OPERATOR_NAMESPACE,
        OPERATOR_SERVICE_ACCOUNT,
        directory,
        user="operator",
        duration="4h",
    )


class OperatorProcess:
    """``redisqueue operator`` in a subprocess; logs go to a file the tests can read."""

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        namespaces: Sequence[str] = (),
        *,
        log_level: str = "DEBUG",
        identity: str = "redisqueue-operator-test",
        extra_args: Sequence[str] = ("--standalone",),
        wait_for: str = "/readyz",
        operator_args: Sequence[str] = (),
        environ: dict[str, str] | None = None,
        command_prefix: Sequence[str] = (),
    ) -> None:
        # The test install's policy names loopback, where the tests' Redis servers listen, so
        # their failures are reported with the cause (tests/e2e/test_tenancy_e2e.py runs one that
        # names nothing).
        self.environ = {
            "REDISQUEUE_ALLOWED_HOSTS": "127.0.0.0/8,::1/128,localhost",
            "REDISQUEUE_DENIED_HOSTS": TEST_DENIED_HOSTS,
        }
        self.environ.update(environ or {})
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.namespaces = tuple(namespaces)
        #: Extra flags after the ``operator`` subcommand (global ones work there too).
        self.operator_args = tuple(operator_args)
        self.log_level = log_level
        self.identity = identity
        self.extra_args = tuple(extra_args)
        self.wait_for = wait_for
        #: Runs the process through another command (e.g. tests/harness/local_dns.py's isolation).
        self.command_prefix = tuple(command_prefix)
        self.port = free_port()
        self.log_path = workdir / f"{identity}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "KUBE"))}
        env.update(self.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HOSTNAME"] = self.identity
        # The child keeps its own copy of the descriptor; ours is closed at once.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *self.command_prefix,
                    sys.executable,
                    "-m",
                    "redisqueue.controller",
                    "--log-level",
                    self.log_level,
                    "operator",
                    *self.operator_args,
                    *(
                        [arg for ns in self.namespaces for arg in ("--namespace", ns)]
                        or ["--all-namespaces"]
                    ),
                    *self.extra_args,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.logs()[-3000:]}")
            if self.http(self.wait_for)[0] == 200:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"operator not ready after {timeout} s:\n{self.logs()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return 0, ""

    def health(self, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        status, body = self.http(f"/api/health/redis/{namespace}/{name}")
        return status, json.loads(body) if body else {}


async def eventually(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def dry_run_patch(
    plane: ControlPlane,
    kubeconfig: Path,
    kind: str,
    namespace: str,
    name: str,
    patch: Any,
    *,
    patch_type: str = "merge",
) -> subprocess.CompletedProcess[str]:
    """``kubectl patch --dry-run=server`` of one object as the user of ``kubeconfig``: what
    authorization and admission decide, with nothing written."""
    return plane.run(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        "patch",
        kind,
        name,
        "-n",
        namespace,
        f"--type={patch_type}",
        "--dry-run=server",
        "-p",
        json.dumps(patch),
        check=False,
    )


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def unb64(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


# --- pytest fixtures and helpers shared by the operator's end-to-end tests ------------------

API = "redisqueue.dev/v1alpha1"


@contextlib.contextmanager
def installed_operator(
    plane: ControlPlane, workdir: Path, **options: Any
) -> Iterator[OperatorProcess]:
    """The install path (CRD, RBAC, admission policies) applied, and one operator running with
    its ServiceAccount (``options`` go to :class:`OperatorProcess`); stopped on exit."""
    install_crd_and_rbac(plane)
    with OperatorProcess(service_account_kubeconfig(plane, workdir), workdir, **options) as process:
        yield process


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, running with the install path's ServiceAccount, for one test module."""
    with installed_operator(control_plane, tmp_path_factory.mktemp("operator")) as process:
        yield process


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Kube]:
    """The project's own API access layer, as the admin."""
    kube = Kube.from_kubeconfig(kubeconfig)
    try:
        yield kube
    finally:
        await kube.close()


def external_spec(server: RedisServer, **extra: Any) -> dict[str, Any]:
    """An external-mode spec on ``server``, its password in the Secret ``redis-auth`` (key
    ``password``), probed every second; ``extra`` adds or replaces top-level fields."""
    return {
        "redis": {"external": {"host": server.host, "port": server.port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
        **extra,
    }


#: ``await external_queue(name, spec=None, status="True", reason=None)``, the fixture of
#: tests/e2e/conftest.py: the auth Secret, a RedisQueue, and its wait for Ready.
ExternalQueue = Callable[..., Awaitable[dict[str, Any]]]


def rq_path(namespace: str, name: str | None = None) -> str:
    return object_path(API, "RedisQueue", namespace, name)


async def apply_secret(kube: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    await kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: b64(v) for k, v in data.items()},
        },
        field_manager="test",
        force=True,
    )


async def read_secret(kube: Kube, namespace: str, name: str) -> dict[str, str] | None:
    secret = await kube.get(object_path("v1", "Secret", namespace, name))
    return None if secret is None else unb64(secret.get("data") or {})


async def fake_claim(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    """What the StatefulSet controller (not running here) would create for the pod of the
    provisioned RedisQueue ``name``: a claim with the template's labels and annotations (the
    RedisQueue's uid among them). Returns the template's metadata."""
    sts = await kube.get(object_path("apps/v1", "StatefulSet", namespace, f"{name}-redis"))
    assert sts is not None
    template = sts["spec"]["volumeClaimTemplates"][0]["metadata"]
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": f"data-{name}-redis-0",
                "namespace": namespace,
                "labels": template["labels"],
                "annotations": template.get("annotations") or {},
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    return dict(template)


async def create_rq(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return await kube.create(
        {
            "apiVersion": API,
            "kind": "RedisQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def condition(rq: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((rq or {}).get("status") or {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


async def wait_for_ready(
    kube: Kube,
    namespace: str,
    name: str,
    status: str = "True",
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        rq = await kube.get(rq_path(namespace, name))
        ready = condition(rq, "Ready")
        if ready.get("status") == status and (reason is None or ready.get("reason") == reason):
            return rq
        return None

    return await eventually(
        check, timeout=timeout, what=f"{namespace}/{name} Ready={status} {reason or ''}"
    )


async def events_for(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    items = await kube.list(object_path("v1", "Event", namespace))
    return [
        e
        for e in items
        if e["involvedObject"].get("name") == name
        and e["involvedObject"].get("kind") == "RedisQueue"
    ]


def elected_replica(
    kubeconfig: Path,
    workdir: Path,
    identity: str,
    *,
    lease_seconds: float = 15.0,
    **options: Any,
) -> OperatorProcess:
    """One replica with leader election through the Lease in the operator's namespace, as the
    install runs it (not started yet); ``options`` go to :class:`OperatorProcess`."""
    return OperatorProcess(
        kubeconfig,
        workdir,
        identity=identity,
        extra_args=(
            "--leader-election",
            "--lease-namespace",
            OPERATOR_NAMESPACE,
            "--lease-duration",
            str(lease_seconds),
        ),
        **options,
    )


async def leader_and_standby(
    plane: ControlPlane,
    workdir: Path,
    *,
    environ: dict[str, str] | None = None,
    lease_seconds: float = 15.0,
    **options: Any,
) -> tuple[OperatorProcess, OperatorProcess]:
    """Two replicas with leader election, as the install runs them; (leader, standby) once
    one holds the Lease. ``options`` go to :class:`OperatorProcess`. The caller stops both."""
    namespace = OPERATOR_NAMESPACE
    plane.kubectl("delete", "lease", "-n", namespace, "--all", check=False)
    kubeconfig = service_account_kubeconfig(plane, workdir)
    started = [
        elected_replica(
            kubeconfig, workdir, identity, lease_seconds=lease_seconds, environ=environ, **options
        ).start()
        for identity in ("replica-a", "replica-b")
    ]
    lease = object_path("coordination.k8s.io/v1", "Lease", namespace, "redisqueue-operator")
    kube = Kube.from_kubeconfig(plane.kubeconfig)
    try:

        async def holder() -> str | None:
            found = await kube.get(lease)
            return None if found is None else (found.get("spec") or {}).get("holderIdentity")

        leader = await eventually(holder, timeout=30, what="a Lease holder")
    finally:
        await kube.close()
    first, second = started
    return (first, second) if leader == first.identity else (second, first)


def peak_rss_mib(process: OperatorProcess) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    assert process.proc is not None
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def samples_of(
    process: OperatorProcess, namespace: str, name: str
) -> list[tuple[str, dict[str, str]]]:
    """Every sample (metric name, labels) of ``process``'s /metrics about RedisQueue ``name``."""
    status, text = process.http("/metrics")
    assert status == 200, status
    return [
        (sample.name, dict(sample.labels))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    ]
