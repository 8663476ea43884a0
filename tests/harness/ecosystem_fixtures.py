"""pytest plugin: the ecosystem a user runs next to the chart, on the test node.

prometheus-operator (with the Prometheus it manages) and KEDA (operator and external metrics
API server), each built from its own Go module at the version pinned in
``tests/node/versions.env`` and run from images built here (``tests/node/ecosystem/``).
What is installed comes from the pinned module itself, read from the Go module cache:
prometheus-operator's CRDs (``example/prometheus-operator-crd/``) and its example RBAC and
Deployment (``example/rbac/``), KEDA's ``config/minimal`` kustomization. Only the image
references (and ``imagePullPolicy: Never``) are changed, and the Prometheus resource is ours.

Fixtures
--------
``prometheus_operator`` (module)
    A running prometheus-operator and a ``Prometheus`` it manages (:class:`PromStack`): it
    selects ServiceMonitors and PrometheusRules labelled ``release: kube-prometheus-stack``
    (as kube-prometheus-stack's Prometheus does) and every PodMonitor, in every namespace.
``keda`` (module)
    KEDA's operator and metrics API server, the ``external.metrics.k8s.io`` APIService
    Available.

The binaries and images are built (or found in ``.cache/``) right after collection, outside
per-test timeouts, when a selected test uses a fixture of this plugin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.kube_controlplane import REPO_ROOT
from harness.kube_node import Image, Node, NodeError, _run_script
from harness.polling import poll

ECOSYSTEM_DIR = REPO_ROOT / "tests" / "node" / "ecosystem"
VERSIONS_FILE = REPO_ROOT / "tests" / "node" / "versions.env"
PROMETHEUS_GO_MOD = REPO_ROOT / "tests" / "tools" / "prometheus" / "go.mod"
COMPONENTS = {"prometheus_operator": "prometheus-operator", "keda": "keda"}

#: Where prometheus-operator's example RBAC puts it, and the Prometheus it manages.
MONITORING_NS = "default"
PROMETHEUS_NAME = "k8s"
#: The label kube-prometheus-stack's Prometheus selects ServiceMonitors and rules by.
RELEASE_LABEL = {"release": "kube-prometheus-stack"}
KEDA_NS = "keda"
#: How often the test Prometheus evaluates alerting rules (scrape intervals are the monitors').
EVALUATION_SECONDS = 5

_IMAGES = pytest.StashKey[dict[str, dict[str, Image]]]()
_BUILD_ERROR = pytest.StashKey[str]()


# --------------------------------------------------------------------------- building


def pinned_versions() -> dict[str, str]:
    """``tests/node/versions.env`` as a dict."""
    versions = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def prometheus_version() -> str:
    """The Prometheus release tests/tools/prometheus builds (module v0.3MM.P is v3.MM.P)."""
    match = re.search(
        r"^\s*github\.com/prometheus/prometheus v0\.(\d)(\d\d)\.(\d+)",
        PROMETHEUS_GO_MOD.read_text(),
        re.MULTILINE,
    )
    assert match, f"no github.com/prometheus/prometheus version in {PROMETHEUS_GO_MOD}"
    return f"v{match[1]}.{int(match[2])}.{match[3]}"


def ensure_ecosystem_images(component: str, *, stream_output: bool = True) -> dict[str, Image]:
    """Build (or find cached) the component's binaries and images: name -> Image."""
    images = {}
    lines = _run_script([str(ECOSYSTEM_DIR / "images.sh"), component], stream_output)
    for line in lines:
        name, ref, tarball = line.split()
        images[name] = Image(name, ref, Path(tarball))
    return images


def module_dir(module: str, version: str) -> Path:
    """The pinned module's source in the Go module cache (downloaded when missing)."""
    env = {**os.environ, "GOFLAGS": ""}
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=env,
    )
    if proc.returncode != 0:
        raise NodeError(f"go mod download {module}@{version}: {proc.stdout}{proc.stderr}")
    return Path(json.loads(proc.stdout)["Dir"])


def _uses(item: pytest.Item) -> set[str]:
    return set(getattr(item, "fixturenames", ())) & set(COMPONENTS)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or os.geteuid() != 0:
        return
    wanted = {COMPONENTS[f] for item in session.items for f in _uses(item)}
    if not wanted:
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    built: dict[str, dict[str, Image]] = {}
    try:
        for component in sorted(wanted):
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    built[component] = ensure_ecosystem_images(component)
            else:
                built[component] = ensure_ecosystem_images(component)
    except NodeError as exc:
        session.config.stash[_BUILD_ERROR] = str(exc)
    session.config.stash[_IMAGES] = built


def _images(config: pytest.Config, component: str) -> dict[str, Image]:
    error = config.stash.get(_BUILD_ERROR, None)
    if error is not None:
        raise NodeError(error)
    built = config.stash.get(_IMAGES, {})
    return built.get(component) or ensure_ecosystem_images(component)


# --------------------------------------------------------------------------- helpers


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    def failure(_: Any) -> str:
        return f"timed out after {timeout:.0f} s waiting for {what}"

    return poll(probe, bool, timeout, interval, failure)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _apply(node: Node, docs: list[dict[str, Any]], *, server_side: bool = False) -> None:
    args = ["apply", "-f", "-"]
    if server_side:
        args += ["--server-side", "--force-conflicts"]
    node.kubectl(*args, input="\n---\n".join(json.dumps(d) for d in docs), timeout=180)


def _never_pull(pod_spec: dict[str, Any]) -> None:
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        container["imagePullPolicy"] = "Never"


# --------------------------------------------------------------------------- Prometheus


@dataclass
class PromStack:
    """prometheus-operator and the Prometheus it manages, queried through its pod's address."""

    node: Node
    images: dict[str, Image]
    source: Path
    installed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        ip = self.node.kubectl(
            "get",
            "pod",
            "-n",
            MONITORING_NS,
            f"prometheus-{PROMETHEUS_NAME}-0",
            "-o",
            "jsonpath={.status.podIP}",
        ).stdout.strip()
        assert ip, "the Prometheus pod has no address"
        return f"http://{ip}:9090"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=15) as response:  # noqa: S310 - test cluster
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"GET {url}: {exc.code} {exc.read()[:500]!r}") from exc
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def wait_for(
        self,
        expr: str,
        check: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 120.0,
        interval: float = 2.0,
    ) -> list[dict[str, Any]]:
        """Poll ``query(expr)`` until ``check(result)``; the passing result."""

        def failure(result: list[dict[str, Any]]) -> str:
            targets = [
                (t["scrapePool"], t["health"], t.get("lastError"))
                for t in self.api("targets", state="active")["activeTargets"]
            ]
            return f"{expr!r}: last result {result} after {timeout:.0f} s; targets {targets}"

        return poll(lambda: self.query(expr), check, timeout, interval, failure)


def _prometheus_operator_docs(source: Path, images: dict[str, Image]) -> list[dict[str, Any]]:
    """The module's example RBAC and Deployment, with the images built here."""
    docs: list[dict[str, Any]] = []
    for path in sorted((source / "example" / "rbac" / "prometheus-operator").glob("*.yaml")):
        docs += [d for d in _docs(path) if d["kind"] != "ServiceMonitor"]
    for path in sorted((source / "example" / "rbac" / "prometheus").glob("*.yaml")):
        docs += [d for d in _docs(path) if d["kind"] != "Prometheus"]
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        container["image"] = images["prometheus-operator"].ref
        container["args"] = [
            a
            for a in container["args"]
            if not a.startswith(("--prometheus-config-reloader=", "--kubelet-"))
        ] + [f"--prometheus-config-reloader={images['prometheus-config-reloader'].ref}"]
        _never_pull(pod)
    return docs


def _prometheus_resource(images: dict[str, Image]) -> dict[str, Any]:
    everywhere: dict[str, Any] = {}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": PROMETHEUS_NAME, "namespace": MONITORING_NS},
        "spec": {
            "image": images["prometheus"].ref,
            "version": prometheus_version(),
            "imagePullPolicy": "Never",
            "serviceAccountName": "prometheus",
            "replicas": 1,
            "serviceMonitorSelector": {"matchLabels": RELEASE_LABEL},
            "serviceMonitorNamespaceSelector": everywhere,
            "ruleSelector": {"matchLabels": RELEASE_LABEL},
            "ruleNamespaceSelector": everywhere,
            "podMonitorSelector": everywhere,
            "podMonitorNamespaceSelector": everywhere,
            "evaluationInterval": f"{EVALUATION_SECONDS}s",
            "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}},
        },
    }


def install_prometheus_operator(node: Node, images: dict[str, Image]) -> PromStack:
    versions = pinned_versions()
    source = module_dir(
        "github.com/prometheus-operator/prometheus-operator",
        versions["PROMETHEUS_OPERATOR_VERSION"],
    )
    node.import_images(list(images.values()))
    stack = PromStack(node, images, source)
    crds = source / "example" / "prometheus-operator-crd"
    # Server-side: these CRDs are larger than client-side apply's annotation allows.
    node.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds), timeout=180)
    node.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds), timeout=90
    )
    docs = _prometheus_operator_docs(source, images)
    _apply(node, docs)
    node.kubectl(
        "rollout",
        "status",
        "-n",
        MONITORING_NS,
        "deploy/prometheus-operator",
        "--timeout=180s",
        timeout=200,
    )
    prometheus = _prometheus_resource(images)
    _apply(node, [prometheus])
    stack.installed = [*docs, prometheus]
    pod = f"prometheus-{PROMETHEUS_NAME}-0"

    def created() -> bool:
        found = node.kubectl(
            "get", "pod", "-n", MONITORING_NS, pod, "--ignore-not-found", "-o", "name"
        )
        return bool(found.stdout.strip())

    wait_until("the Prometheus pod", created, timeout=120)
    node.kubectl(
        "wait",
        "-n",
        MONITORING_NS,
        "--for=condition=Ready",
        f"pod/prometheus-{PROMETHEUS_NAME}-0",
        "--timeout=180s",
        timeout=200,
    )
    return stack


def uninstall_prometheus_operator(stack: PromStack) -> None:
    node = stack.node
    for doc in reversed(stack.installed):
        meta = doc["metadata"]
        ns = ["-n", meta["namespace"]] if meta.get("namespace") else []
        node.kubectl(
            "delete",
            doc["kind"],
            meta["name"],
            *ns,
            "--ignore-not-found",
            "--wait=false",
            check=False,
        )
    crds = stack.source / "example" / "prometheus-operator-crd"
    node.kubectl("delete", "-f", str(crds), "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def prometheus_operator(node: Node, request: pytest.FixtureRequest) -> PromStack:
    stack = install_prometheus_operator(node, _images(request.config, "prometheus-operator"))
    request.addfinalizer(lambda: uninstall_prometheus_operator(stack))
    return stack


# --------------------------------------------------------------------------- KEDA


def keda_manifests(images: dict[str, Image]) -> str:
    """KEDA's own ``config/minimal`` (CRDs, RBAC, operator, metrics API server, APIService)
    at the pinned version, rendered by kubectl's kustomize with the images built here."""
    source = module_dir("github.com/kedacore/keda/v2", pinned_versions()["KEDA_VERSION"])
    refs = {name: images[name].ref.rsplit(":", 1) for name in ("keda", "keda-adapter")}
    with tempfile.TemporaryDirectory(prefix="keda-overlay-") as overlay:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(source / "config" / "minimal", overlay)],
            "images": [
                {
                    "name": "ghcr.io/kedacore/keda",
                    "newName": refs["keda"][0],
                    "newTag": refs["keda"][1],
                },
                {
                    "name": "ghcr.io/kedacore/keda-metrics-apiserver",
                    "newName": refs["keda-adapter"][0],
                    "newTag": refs["keda-adapter"][1],
                },
            ],
            "patches": [
                {
                    "target": {"kind": "Deployment"},
                    "patch": json.dumps(
                        [
                            {
                                "op": "replace",
                                "path": "/spec/template/spec/containers/0/imagePullPolicy",
                                "value": "Never",
                            }
                        ]
                    ),
                }
            ],
        }
        Path(overlay, "kustomization.yaml").write_text(json.dumps(kustomization))
        return kustomization_build(overlay)


def kustomization_build(directory: str) -> str:
    from harness.kube_controlplane import ensure_binaries

    kubectl = ensure_binaries() / "kubectl"
    proc = subprocess.run(
        [str(kubectl), "kustomize", "--load-restrictor", "LoadRestrictionsNone", directory],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(f"kubectl kustomize {directory}: {proc.stderr}")
    return proc.stdout


def install_keda(node: Node, images: dict[str, Image]) -> str:
    node.import_images(list(images.values()))
    manifests = keda_manifests(images)
    # Server-side: the ScaledObject CRD is larger than client-side apply's annotation allows.
    node.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=manifests, timeout=180
    )
    for deploy in ("keda-operator", "keda-metrics-apiserver"):
        node.kubectl(
            "rollout", "status", "-n", KEDA_NS, f"deploy/{deploy}", "--timeout=240s", timeout=260
        )
    node.kubectl(
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.external.metrics.k8s.io",
        "--timeout=180s",
        timeout=200,
    )
    return manifests


def uninstall_keda(node: Node, manifests: str) -> None:
    node.kubectl(
        "delete", "-f", "-", "--ignore-not-found", "--wait=false", input=manifests, check=False
    )


@pytest.fixture(scope="module")
def keda(node: Node, request: pytest.FixtureRequest) -> str:
    manifests = install_keda(node, _images(request.config, "keda"))
    request.addfinalizer(lambda: uninstall_keda(node, manifests))
    return KEDA_NS


# --------------------------------------------------------------------------- the product


WORKER = REPO_ROOT / "tests" / "node" / "worker.py"
#: The provisioned RedisQueue of manifests/examples/provision.yaml and its app Secret.
QUEUE_NAME = "analysis-jobs"
APP_SECRET = "analysis-worker-redis"
LIST_KEY = "phase1:jobs"
#: The stream queue the KEDA example's redis-streams trigger (and the dashboard) read.
STREAM = {"key": "phase1:events", "type": "stream", "group": "workers"}


def ensure_namespace(node: Node, name: str) -> None:
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    node.kubectl("apply", "-f", "-", input=json.dumps(manifest))


def provision_queue(node: Node, namespace: str) -> None:
    """manifests/examples/provision.yaml with the Redis image built here and a stream queue
    next to its list; returns once the RedisQueue is Ready."""
    doc = yaml.safe_load((REPO_ROOT / "manifests" / "examples" / "provision.yaml").read_text())
    doc["spec"]["redis"]["provision"]["image"] = node.images["redis"].ref
    doc["spec"]["queues"].append(dict(STREAM))
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    wait_queue_ready(node, namespace)


def wait_queue_ready(node: Node, namespace: str) -> None:
    """Wait until the RedisQueue QUEUE_NAME in ``namespace`` is Ready (at most 3 minutes); if
    it is not, fail with its conditions and the operator's last log lines (status and logs
    carry no credential)."""
    waited = node.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        f"redisqueue/{QUEUE_NAME}",
        "--timeout=180s",
        timeout=200,
        check=False,
    )
    if waited.returncode == 0:
        return
    status = node.kubectl(
        "get", "redisqueue", QUEUE_NAME, "-n", namespace, "-o", "jsonpath={.status}", check=False
    ).stdout
    logs = node.kubectl(
        "logs",
        "-n",
        "redisqueue-system",
        "-l",
        "app.kubernetes.io/name=redisqueue-operator",
        "--tail=40",
        "--prefix",
        check=False,
    ).stdout
    raise AssertionError(
        f"RedisQueue {namespace}/{QUEUE_NAME} not Ready within 180 s: {waited.stderr.strip()}\n"
        f"status: {status}\noperator logs:\n{logs}"
    )


def in_toolbox(
    node: Node, code: str, stdin: dict[str, Any] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run Python in the toolbox pod; secrets travel on stdin, never in arguments."""
    return node.kubectl(
        "exec",
        "-i",
        "-n",
        "default",
        "toolbox",
        "--",
        "python3",
        "-c",
        code,
        input=json.dumps(stdin or {}),
        check=False,
        timeout=timeout,
    )


def app_redis(
    node: Node,
    namespace: str,
    code: str,
    extra: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> Any:
    """Run ``code`` in the toolbox pod with ``r``, a redis-py client configured from the app
    Secret as it is now; the code prints one JSON value. Secrets travel on stdin."""
    secret = json.loads(
        node.kubectl("get", "secret", "-n", namespace, APP_SECRET, "-o", "json").stdout
    )
    import base64

    env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    prelude = (
        "import json, sys, redis\n"
        "cfg = json.load(sys.stdin)\n"
        "r = redis.Redis.from_url(cfg['env']['REDIS_URL'], password=cfg['env']['REDIS_PASSWORD'],"
        " socket_timeout=10, decode_responses=True)\n"
    )
    proc = in_toolbox(node, prelude + code, {"env": env, **(extra or {})}, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def worker_deployment(
    node: Node, name: str, replicas: int, env: dict[str, str], labels: dict[str, str]
) -> dict[str, Any]:
    """tests/node/worker.py consuming the list, configured only by ``envFrom`` of the app
    Secret, serving its client metrics on a port named ``metrics`` (9100)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "worker",
                            "image": node.images["operator"].ref,
                            "imagePullPolicy": "Never",
                            "command": ["python3", "/app/worker.py", "consume"],
                            "envFrom": [{"secretRef": {"name": APP_SECRET}}],
                            "env": [
                                {"name": k, "value": v}
                                for k, v in {"METRICS_PORT": "9100", **env}.items()
                            ],
                            "ports": [{"name": "metrics", "containerPort": 9100}],
                            "volumeMounts": [{"name": "app", "mountPath": "/app"}],
                        }
                    ],
                    "volumes": [{"name": "app", "configMap": {"name": "worker"}}],
                },
            },
        },
    }


def deploy_worker(node: Node, namespace: str, deployment: dict[str, Any]) -> None:
    node.kubectl(
        "create", "configmap", "worker", "-n", namespace, f"--from-file={WORKER}", check=False
    )
    node.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(deployment))
