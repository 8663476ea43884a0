"""The product the way a user runs it, on a real node: images built here, the chart and the
plain manifests installed, the provisioned Redis running as a pod, apps reaching it through
CoreDNS and a ClusterIP. Everything runs on the node of ``tests/harness/kube_node.py``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ecosystem_fixtures import APP_SECRET, app_redis, in_toolbox, wait_until
from harness.kube_controlplane import CommandError
from harness.kube_node import (
    BRIDGE,
    BRIDGE_MAC,
    GATEWAY,
    GUARD_CHAIN,
    NODE_NAME,
    SERVICE_CIDR,
    Node,
)
from harness.node_fixtures import CHART, OPERATOR_NS, chart_installed, live_pods

pytestmark = [pytest.mark.node, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
OPERATOR_SVC = f"http://redisqueue-operator.{OPERATOR_NS}.svc:8080"
TEST_NET_ADDRESS = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never a real host


# --------------------------------------------------------------------------- helpers


HTTP_GET = """
import json, sys, urllib.request, urllib.error
url = json.load(sys.stdin)["url"]
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        print(json.dumps({"code": r.status, "body": json.loads(r.read())}))
except urllib.error.HTTPError as e:
    print(json.dumps({"code": e.code, "body": json.loads(e.read())}))
"""


def http_get(node: Node, url: str) -> tuple[int, dict[str, Any]]:
    # CoreDNS keeps answers for up to 5 s (`cache 5`), so a name asked for just before its
    # Service existed can stay unresolved (EAI_AGAIN) that long: that one error is retried
    # for a bounded time; any other failure, or a lasting one, fails the test.
    deadline = time.monotonic() + 30
    while True:
        proc = in_toolbox(node, HTTP_GET, {"url": url})
        transient = "Temporary failure in name resolution" in proc.stderr
        if proc.returncode == 0 or not transient or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    return int(answer["code"]), answer["body"]


def guard_drops(table: str) -> int:
    """Packets dropped by the egress guard's DROP rules in ``table``."""
    out = subprocess.run(
        ["iptables", "-w", "-t", table, "-L", GUARD_CHAIN, "-v", "-x", "-n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(
        int(line.split()[0]) for line in out.splitlines()[2:] if line.split()[2:3] == ["DROP"]
    )


def jsonpath(node: Node, *args: str) -> str:
    return node.kubectl("get", *args).stdout.strip()


def wait_pod_ready(node: Node, namespace: str, pod: str) -> None:
    """Wait until ``pod`` is Ready again (at most two minutes)."""
    ready = "--for=condition=Ready"
    node.kubectl("wait", "-n", namespace, ready, f"pod/{pod}", "--timeout=120s", timeout=150)


def pod_field(node: Node, namespace: str, pod: str, path: str, *flags: str) -> str:
    """The field of ``pod`` at the JSONPath ``path``."""
    return jsonpath(node, "pod", "-n", namespace, pod, "-o", f"jsonpath={path}", *flags)


def restart_count(node: Node, namespace: str, pod: str) -> int:
    """How often the first container of ``pod`` has restarted (0 before it has a status)."""
    return int(pod_field(node, namespace, pod, "{.status.containerStatuses[0].restartCount}") or 0)


def wait_for(what: str, probe: Any, timeout: float = 120.0, interval: float = 0.5) -> Any:
    return wait_until(what, probe, timeout, interval)


def probe_counts(node: Node, pod: str, namespace: str) -> dict[str, int]:
    """Successful kubelet probes of a pod's containers, from the kubelet's own metrics."""
    text = node.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/probes").stdout
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if (
            line.startswith("prober_probe_total{")
            and f'pod="{pod}"' in line
            and f'namespace="{namespace}"' in line
            and 'result="successful"' in line
        ):
            kind = line.split('probe_type="')[1].split('"')[0]
            counts[kind] = counts.get(kind, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def operator_pods(node: Node, namespace: str = OPERATOR_NS) -> list[dict[str, Any]]:
    # Pods of the replaced ReplicaSet (the manifests' registry image, never pulled here) may
    # still be terminating after the rollout; they are not the install.
    live = live_pods(node, namespace, "app.kubernetes.io/name=redisqueue-operator")
    assert live, f"no operator pod in {namespace}"
    return live


def assert_operator_running_as_installed(node: Node, service_account: str) -> None:
    # Every replica (the leader and its standby) runs as installed.
    for pod in operator_pods(node):
        _assert_pod_running_as_installed(node, pod, service_account)


def _assert_pod_running_as_installed(node: Node, pod: dict[str, Any], service_account: str) -> None:
    name = pod["metadata"]["name"]
    assert pod["spec"]["serviceAccountName"] == service_account
    assert pod["status"]["phase"] == "Running"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True
    assert status["image"].endswith(node.images["operator"].ref.split("/", 1)[1])
    # In-cluster configuration: the ServiceAccount token is mounted and nothing else is given.
    env = {e["name"] for e in pod["spec"]["containers"][0].get("env", [])}
    assert "KUBECONFIG" not in env
    # The kubelet itself ran both probes against /readyz and /healthz and they passed.
    counts = wait_for(
        "kubelet liveness and readiness probes of the operator",
        lambda: (
            (c := probe_counts(node, name, OPERATOR_NS)).get("Liveness", 0) > 0
            and c.get("Readiness", 0) > 0
            and c
        ),
        timeout=90,
    )
    assert counts["Readiness"] > 0 and counts["Liveness"] > 0
    assert status["restartCount"] == 0


# --------------------------------------------------------------------------- (0) the guard


def test_egress_guard_drops_a_pods_connection_to_an_outside_address(
    node: Node, toolbox: str
) -> None:
    code = f"""
import socket
for host, port in (("{TEST_NET_ADDRESS}", 80), ("kubernetes.default.svc", 443)):
    try:
        socket.create_connection((host, port), timeout=3).close()
        print(host, "connected")
    except OSError as exc:
        print(host, "failed", type(exc).__name__)
"""
    before = guard_drops("mangle")
    proc = in_toolbox(node, code)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines[TEST_NET_ADDRESS].startswith("failed")
    assert guard_drops("mangle") > before, "the packet was not dropped by the guard"
    # The same pod reaches the API server through its ClusterIP and CoreDNS: the network
    # works, only the way out is closed.
    assert lines["kubernetes.default.svc"] == "connected"


def test_egress_guard_drops_host_traffic_to_an_unprogrammed_cluster_address(node: Node) -> None:
    # 198.19.255.254 is in the Service range but no Service has it: without the guard the
    # host would route it to its default gateway.
    before = guard_drops("filter")
    with pytest.raises(OSError), socket.create_connection(("198.19.255.254", 80), timeout=2):
        pass
    assert guard_drops("filter") > before


def test_pods_reach_the_gateway_at_a_bridge_address_that_never_moves(
    node: Node, toolbox: str
) -> None:
    # A bridge left to choose its MAC takes its lowest port's and moves when that pod goes;
    # pods would then send to the gateway (CoreDNS, the API server) at a MAC that is gone
    # until their ARP entry is found stale. Set by hand (addr_assign_type 3), it stays.
    sysfs = Path("/sys/class/net", BRIDGE)
    assert (sysfs / "address").read_text().strip() == BRIDGE_MAC
    assert (sysfs / "addr_assign_type").read_text().strip() == "3"
    code = """
import socket
socket.getaddrinfo("kubernetes.default.svc", 443)
print(open("/proc/net/arp").read())
"""
    proc = in_toolbox(node, code)
    assert proc.returncode == 0, proc.stderr
    gateway = [line.split() for line in proc.stdout.splitlines() if line.startswith(f"{GATEWAY} ")]
    assert gateway and gateway[0][3] == BRIDGE_MAC, proc.stdout


def test_a_failed_wait_says_why_the_pod_is_not_ready(node: Node) -> None:
    # A wait that times out in CI shows only its own output unless the harness adds what
    # `kubectl describe` would: the pod, its container's waiting reason, the Events.
    pod = "never-pulled"
    node.kubectl(
        "run",
        pod,
        "--image=localhost/redisqueue-absent:none",
        "--image-pull-policy=Never",
        "--restart=Never",
    )
    try:
        path = "{.status.containerStatuses[0].state.waiting.reason}"
        wait_until(
            "the kubelet to refuse the image",
            lambda: pod_field(node, "default", pod, path) == "ErrImageNeverPull",
            timeout=60,
        )
        with pytest.raises(CommandError) as failed:
            node.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=1s")
        report = str(failed.value).split("--- the cluster at that moment ---", 1)[1]
        assert f"pod default/{pod}: Pending" in report
        assert "ErrImageNeverPull" in report
        assert f"event Pod default/{pod}: ErrImageNeverPull" in report
    finally:
        node.kubectl("delete", "pod", pod, "--wait=false", "--ignore-not-found")


def test_a_failed_wait_names_the_taint_that_keeps_a_pod_off_the_node(node: Node) -> None:
    # DiskPressure and the like show as node conditions and taints, not on the pod.
    taint = "redisqueue.test/hold=report:NoSchedule"
    pod = "never-scheduled"
    node.kubectl("taint", "node", NODE_NAME, taint)
    try:
        node.kubectl(
            "run",
            pod,
            f"--image={node.images['redis'].ref}",
            "--image-pull-policy=Never",
            "--restart=Never",
        )
        with pytest.raises(CommandError) as failed:
            node.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "--timeout=3s")
        report = str(failed.value).split("--- the cluster at that moment ---", 1)[1]
        assert (
            f"node {NODE_NAME}: conditions as expected; taints redisqueue.test/hold:NoSchedule"
            in report
        )
        assert f"pod default/{pod}: Pending" in report
        assert "PodScheduled=False Unschedulable" in report
    finally:
        node.kubectl("taint", "node", NODE_NAME, f"{taint}-", check=False)
        node.kubectl("delete", "pod", pod, "--wait=false", "--ignore-not-found")


# --------------------------------------------------------------------------- (1) install


def test_kubectl_apply_install_runs_the_operator_with_its_service_account(
    node: Node, toolbox: str
) -> None:
    node.kubectl("apply", "-f", str(REPO / "crds"), "-f", str(REPO / "manifests" / "operator"))
    try:
        node.kubectl(
            "-n",
            OPERATOR_NS,
            "set",
            "image",
            "deploy/redisqueue-operator",
            f"operator={node.images['operator'].ref}",
        )
        node.kubectl(
            "-n",
            OPERATOR_NS,
            "rollout",
            "status",
            "deploy/redisqueue-operator",
            "--timeout=180s",
            timeout=200,
        )
        assert_operator_running_as_installed(node, "redisqueue-operator")
        code, body = http_get(node, f"{OPERATOR_SVC}/api/health/redis")
        assert code == 200, body
        assert body["status"] == "connected"
    finally:
        node.kubectl(
            "delete",
            "-f",
            str(REPO / "manifests" / "operator"),
            "--wait=true",
            "--timeout=180s",
            "--ignore-not-found",
            check=False,
            timeout=200,
        )


@pytest.fixture(scope="module")
def helm_operator(node: Node) -> Iterator[str]:
    """The chart installed as its README says, with the image built here (never pulled)."""
    with chart_installed(node) as release:
        yield release


def test_helm_install_runs_the_operator_and_serves_health_through_its_service(
    node: Node, helm_operator: str, toolbox: str
) -> None:
    sa = jsonpath(
        node,
        "deploy",
        "-n",
        OPERATOR_NS,
        helm_operator,
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    )
    assert sa and jsonpath(node, "sa", "-n", OPERATOR_NS, sa, "-o", "name")
    assert_operator_running_as_installed(node, sa)
    code, body = http_get(node, f"{OPERATOR_SVC}/api/health/redis")
    assert code == 200, body
    assert body["status"] == "connected"
    # The chart's own `helm test` hook: a pod on the operator image asks /readyz.
    tested = node.helm("test", helm_operator, "-n", OPERATOR_NS, "--timeout", "120s", timeout=150)
    assert "Phase:          Succeeded" in tested.stdout or "Phase: Succeeded" in tested.stdout, (
        tested.stdout
    )


# --------------------------------------------------------------------------- (2) provision


def provision_manifest(node: Node, *, adopt: bool = False) -> str:
    """manifests/examples/provision.yaml with the Redis image built here instead of Docker
    Hub's (and, with ``adopt``, taking back the data a deleted one retained)."""
    doc = yaml.safe_load((REPO / "manifests" / "examples" / "provision.yaml").read_text())
    doc["spec"]["redis"]["provision"]["image"] = node.images["redis"].ref
    if adopt:
        doc["spec"]["redis"]["provision"]["adoptRetained"] = True
    return yaml.safe_dump(doc)


def apply_provision(node: Node, namespace: str, *, adopt: bool = False) -> float:
    """Apply the example and return the seconds from apply to Ready=True."""
    started = time.monotonic()
    manifest = provision_manifest(node, adopt=adopt)
    apply_manifest(node, namespace, manifest)
    node.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Ready",
        "redisqueue/analysis-jobs",
        "--timeout=180s",
        timeout=200,
    )
    return time.monotonic() - started


@pytest.fixture
def provisioned(
    node: Node, helm_operator: str, toolbox: str, node_namespace: str
) -> Iterator[tuple[str, float]]:
    seconds = apply_provision(node, node_namespace)
    yield node_namespace, seconds


def test_provision_example_runs_redis_non_root_read_only_on_a_bound_volume(
    node: Node, provisioned: tuple[str, float], record_property: Any
) -> None:
    namespace, seconds = provisioned
    record_property("apply_to_ready_seconds", round(seconds, 2))
    print(f"provision.yaml apply -> Ready=True: {seconds:.1f} s")
    pod = json.loads(
        node.kubectl("get", "pod", "-n", namespace, "analysis-jobs-redis-0", "-o", "json").stdout
    )
    assert pod["status"]["phase"] == "Running"
    uid = node.kubectl("exec", "-n", namespace, "analysis-jobs-redis-0", "--", "id", "-u")
    assert uid.stdout.strip() == "999"
    write = node.kubectl(
        "exec",
        "-n",
        namespace,
        "analysis-jobs-redis-0",
        "--",
        "sh",
        "-c",
        "touch /probe",
        check=False,
    )
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    pvc = json.loads(
        node.kubectl(
            "get", "pvc", "-n", namespace, "data-analysis-jobs-redis-0", "-o", "json"
        ).stdout
    )
    assert pvc["status"]["phase"] == "Bound"
    pv = json.loads(node.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    assert "local" in pv["spec"]


def test_provisioned_redis_is_probed_through_coredns_and_its_cluster_ip(
    node: Node, provisioned: tuple[str, float]
) -> None:
    namespace, _ = provisioned
    rq = json.loads(
        node.kubectl("get", "redisqueue", "-n", namespace, "analysis-jobs", "-o", "json").stdout
    )
    ready = next(c for c in rq["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    host = f"analysis-jobs-redis.{namespace}.svc"
    assert host in rq["status"]["endpoint"]
    cluster_ip = jsonpath(
        node, "svc", "-n", namespace, "analysis-jobs-redis", "-o", "jsonpath={.spec.clusterIP}"
    )
    import ipaddress

    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(SERVICE_CIDR)
    # The name the operator probes resolves, through the cluster's CoreDNS, to that ClusterIP.
    proc = in_toolbox(node, f"import socket; print(socket.gethostbyname({host!r}))")
    assert proc.stdout.strip() == cluster_ip, proc.stderr
    code, body = http_get(node, f"{OPERATOR_SVC}/api/health/redis/{namespace}/analysis-jobs")
    assert code == 200, body
    assert body["status"] == "connected"
    # And an app holding the injected Secret reaches Redis the same way.
    assert app_redis(node, namespace, "print(json.dumps(r.ping()))") is True


# --------------------------------------------------------------------------- (3) persistence


#: Writes older than this survive a crash of Redis under appendfsync everysec (see below).
LOSS_WINDOW = 5.0


def container_id(node: Node, namespace: str, pod: str) -> str:
    cid = pod_field(node, namespace, pod, "{.status.containerStatuses[0].containerID}")
    return cid.split("://", 1)[1]


def test_acknowledged_jobs_survive_a_redis_crash_and_a_pod_delete(
    node: Node, provisioned: tuple[str, float]
) -> None:
    """What ``appendonly yes`` + ``appendfsync everysec`` promises, and nothing more.

    Redis appends each write to the AOF buffer and write()s it to the file before replying,
    except while the previous second's background fsync is still running: then it may hold
    the buffer for up to 2 s while already replying. So a crash of Redis (SIGKILL, OOM kill)
    or of the machine loses at most the writes of the last few seconds before it (the 2 s are
    counted in whole seconds, so up to about 3; plus the last fsync interval for a machine
    crash); a pod delete (SIGTERM) loses nothing, since Redis flushes and fsyncs the AOF on
    shutdown. The test checks exactly that: jobs older than ``LOSS_WINDOW`` survive a SIGKILL,
    and every acknowledged job survives a pod delete."""
    namespace, _ = provisioned
    pod = "analysis-jobs-redis-0"
    push = (
        "n = cfg['n']; p = cfg['prefix']\n"
        "acked = [r.lpush('phase1:jobs', f'{p}-{i}') for i in range(n)]\n"
        "print(json.dumps(len(acked)))\n"
    )
    assert app_redis(node, namespace, push, {"n": 500, "prefix": "before-crash"}) == 500
    time.sleep(LOSS_WINDOW)  # past the window in which everysec may hold writes in memory
    # A real crash: SIGKILL to redis-server from the host.
    restarts = restart_count(node, namespace, pod)
    node.kill_container(container_id(node, namespace, pod))
    wait_for(
        "the Redis container to restart",
        lambda: restart_count(node, namespace, pod) > restarts,
    )
    wait_pod_ready(node, namespace, pod)
    assert app_redis(node, namespace, "print(json.dumps(r.llen('phase1:jobs')))") == 500

    assert app_redis(node, namespace, push, {"n": 300, "prefix": "before-delete"}) == 300
    uid = pod_field(node, namespace, pod, "{.metadata.uid}")
    node.kubectl("delete", "pod", "-n", namespace, pod, "--wait=false")
    wait_for(
        "a new Redis pod",
        lambda: (
            pod_field(node, namespace, pod, "{.metadata.uid}", "--ignore-not-found")
            not in ("", uid)
        ),
    )
    wait_pod_ready(node, namespace, pod)
    jobs = app_redis(node, namespace, "print(json.dumps(r.lrange('phase1:jobs', 0, -1)))")
    assert sorted(jobs) == sorted(
        [f"before-crash-{i}" for i in range(500)] + [f"before-delete-{i}" for i in range(300)]
    )


# --------------------------------------------------------------------------- (4) an app

WORKER = REPO / "tests" / "node" / "worker.py"
#: How long a consumer's BLMOVE blocks: far past the client's 5 s socket timeout, which a
#: blocking command's own read deadline (block time plus margin) replaces.
BLOCK_SECONDS = 30
JOBS = 300


def worker_manifest(
    node: Node,
    name: str,
    mode: str,
    replicas: int,
    env: dict[str, str],
    *,
    from_file: bool = False,
) -> str:
    """A Deployment of tests/node/worker.py on the operator image (Python + the client
    library): its configuration comes only from the injected Secret. ``from_file``: the
    password comes from that Secret mounted as a volume (REDIS_PASSWORD_FILE), the host from a
    plain variable in ``env``, and nothing from the Secret reaches the environment; otherwise
    the whole contract comes with ``envFrom``."""
    container: dict[str, Any] = {
        "name": "worker",
        "image": node.images["operator"].ref,
        "imagePullPolicy": "Never",
        "command": ["python3", "/app/worker.py", mode],
        "volumeMounts": [{"name": "app", "mountPath": "/app"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "app", "configMap": {"name": "worker"}}]
    if from_file:
        env = {**env, "REDIS_PASSWORD_FILE": "/etc/redis-contract/REDIS_PASSWORD"}
        container["volumeMounts"].append(
            {"name": "contract", "mountPath": "/etc/redis-contract", "readOnly": True}
        )
        volumes.append({"name": "contract", "secret": {"secretName": APP_SECRET}})
    else:
        container["envFrom"] = [{"secretRef": {"name": APP_SECRET}}]
    container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
            },
        }
    )


def apply_manifest(node: Node, namespace: str, manifest: str) -> None:
    node.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def start_consumers(node: Node, namespace: str, replicas: int) -> None:
    """The worker script as a ConfigMap and a Deployment of ``replicas`` consumers, rolled out."""
    node.kubectl("create", "configmap", "worker", "-n", namespace, f"--from-file={WORKER}")
    consumer_env = {"BLOCK_SECONDS": str(BLOCK_SECONDS)}
    apply_manifest(
        node, namespace, worker_manifest(node, "consumers", "consume", replicas, consumer_env)
    )
    node.kubectl(
        "rollout", "status", "-n", namespace, "deploy/consumers", "--timeout=120s", timeout=150
    )


def test_workers_process_every_job_while_redis_is_killed(
    node: Node, provisioned: tuple[str, float]
) -> None:
    namespace, _ = provisioned
    start_consumers(node, namespace, 3)
    producer_env = {"JOBS": str(JOBS), "RATE": "20", "RUN": "run1"}
    apply_manifest(node, namespace, worker_manifest(node, "producer", "produce", 1, producer_env))

    def done() -> int:
        try:
            return int(app_redis(node, namespace, "print(json.dumps(r.scard('phase1:jobs:done')))"))
        except AssertionError:  # this check's own client, while Redis is down
            return 0

    wait_for("the first jobs to be processed", lambda: done() >= 50, timeout=120)
    pod = "analysis-jobs-redis-0"
    killed_at = time.time()
    node.kill_container(container_id(node, namespace, pod))  # mid-run: a Redis crash
    wait_for(f"all {JOBS} jobs processed", lambda: done() >= JOBS, timeout=300, interval=2)
    recovered_by = time.time()

    def settled() -> dict[str, Any] | None:
        try:
            summary: dict[str, Any] = app_redis(
                node,
                namespace,
                """
keys = r.keys('phase1:jobs:processing:*')
print(json.dumps({
    "done": sorted(r.smembers('phase1:jobs:done')),
    "attempts": sorted(m.split()[0] for m in r.smembers('phase1:jobs:attempts')),
    "raw_attempts": sorted(r.smembers('phase1:jobs:attempts')),
    "queued": r.llen('phase1:jobs'),
    "in_flight": sum(r.llen(k) for k in keys),
}))
""",
            )
        except AssertionError:
            return None
        return summary if summary["queued"] == 0 and summary["in_flight"] == 0 else None

    # A BLMOVE whose reply the crash cut off left its job in that consumer's processing
    # list; the consumer puts it back when its retried BLMOVE returns (at most one block
    # time later), and it is processed again (at-least-once).
    summary = wait_for(
        "no job left queued or in flight", settled, timeout=BLOCK_SECONDS + 60, interval=2
    )
    assert summary["done"] == sorted(f"run1-{n}" for n in range(JOBS)), "jobs were lost"
    # At-least-once, so some jobs may have been processed twice; never one acknowledged
    # long before the crash.
    twice = sorted({job for job in summary["attempts"] if summary["attempts"].count(job) > 1})
    # Each member is "<job> <consumer> <time> <id>". A job is processed again only when its
    # acknowledgement was in flight or among the writes a crash may lose (LOSS_WINDOW, see
    # the persistence test), or when the producer's retried push queued it twice.
    for job in twice:
        first = min(float(m.split()[2]) for m in summary["raw_attempts"] if m.split()[0] == job)
        assert killed_at - LOSS_WINDOW <= first <= recovered_by, (job, first, killed_at)
    print(f"{JOBS} jobs, {len(twice)} processed more than once")
    restarts = jsonpath(
        node,
        "pods",
        "-n",
        namespace,
        "-l",
        "app=consumers",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
    )
    assert restarts.split() == ["0", "0", "0"], "a consumer crashed instead of riding it out"
    logs = node.kubectl("logs", "-n", namespace, "-l", "app=consumers", "--tail=-1").stdout
    # They met the outage (the client's backoff) and came back (its recovery line).
    assert "retrying in" in logs, logs[-2000:]
    windows = [float(w) for w in re.findall(r"recovered after ([0-9.]+) s", logs)]
    assert windows, logs[-2000:]
    print(f"consumers' failure window after a Redis kill: {max(windows):.1f} s")


# --------------------------------------------------------------------------- (6) outage


def rendered_alert_expr(node: Node, alert: str) -> str:
    """The expression of one of the chart's alerts, as helm renders it."""
    proc = node.helm(
        "template",
        "redisqueue-operator",
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--set",
        "metrics.prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    )
    (rule,) = [d for d in yaml.safe_load_all(proc.stdout) if d]
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert]
    return str(rules[0]["expr"])


def ready_status(node: Node, namespace: str) -> str:
    return jsonpath(
        node,
        "redisqueue",
        "-n",
        namespace,
        "analysis-jobs",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
    )


def events(node: Node, namespace: str, field_selector: str) -> list[dict[str, Any]]:
    """The events in ``namespace`` that ``field_selector`` selects."""
    listed = node.kubectl(
        "get", "events", "-n", namespace, "--field-selector", field_selector, "-o", "json"
    )
    return list(json.loads(listed.stdout)["items"])


def warning_events(node: Node, namespace: str) -> list[dict[str, Any]]:
    return events(node, namespace, "involvedObject.kind=RedisQueue,type=Warning")


def test_outage_is_told_by_status_event_health_and_the_alert_expression(
    node: Node, provisioned: tuple[str, float], prometheus_server: Any
) -> None:
    namespace, _ = provisioned
    cluster_ip = jsonpath(
        node, "svc", "-n", OPERATOR_NS, "redisqueue-operator", "-o", "jsonpath={.spec.clusterIP}"
    )
    # A real Prometheus on the host scrapes the operator through its Service's ClusterIP.
    prom = prometheus_server([f"{cluster_ip}:8080"])
    selector = f'{{namespace="{namespace}",name="analysis-jobs"}}'
    expr = rendered_alert_expr(node, "RedisQueueDown")
    prom.wait_for(f"redisqueue_up{selector} == 1", timeout=60)
    assert prom.query(f"({expr}) and on(namespace, name) redisqueue_up{selector}") == []
    warnings_before = len(warning_events(node, namespace))

    node.kubectl("scale", "statefulset", "-n", namespace, "analysis-jobs-redis", "--replicas=0")
    wait_for("Ready=False", lambda: ready_status(node, namespace) == "False", timeout=120)
    code, body = http_get(node, f"{OPERATOR_SVC}/api/health/redis/{namespace}/analysis-jobs")
    assert code == 503 and body["status"] == "disconnected", body
    code, _ = http_get(node, f"{OPERATOR_SVC}/api/health/redis")
    assert code == 503
    prom.wait_for(f"({expr}) and on(namespace, name) redisqueue_up{selector}", timeout=90)
    # Repeated failed probes are one story: a single Warning event, not one per PING.
    time.sleep(25)
    new = warning_events(node, namespace)[warnings_before:]
    assert len(new) == 1, [(e["reason"], e["message"], e.get("count")) for e in new]

    node.kubectl("scale", "statefulset", "-n", namespace, "analysis-jobs-redis", "--replicas=1")
    wait_for("Ready=True again", lambda: ready_status(node, namespace) == "True", timeout=180)
    code, body = http_get(node, f"{OPERATOR_SVC}/api/health/redis/{namespace}/analysis-jobs")
    assert code == 200, body
    prom.wait_for(f"redisqueue_up{selector} == 1", timeout=60)


# --------------------------------------------------------------------------- (7) deletion


def set_deletion_policy(node: Node, namespace: str, policy: str) -> None:
    node.kubectl(
        "patch",
        "redisqueue",
        "-n",
        namespace,
        "analysis-jobs",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"deletionPolicy": policy}}),
    )


def test_retain_keeps_volume_and_jobs_and_delete_removes_them(
    node: Node, provisioned: tuple[str, float]
) -> None:
    namespace, _ = provisioned
    pvc = "data-analysis-jobs-redis-0"
    app_redis(node, namespace, "print(json.dumps(r.rpush('phase1:jobs', 'kept-1', 'kept-2')))")
    # Retain (the example's policy): the RedisQueue goes, the volume and its jobs stay.
    node.kubectl(
        "delete", "redisqueue", "-n", namespace, "analysis-jobs", "--timeout=120s", timeout=150
    )
    wait_for(
        "the StatefulSet to be garbage-collected",
        lambda: (
            jsonpath(node, "statefulset", "-n", namespace, "--ignore-not-found", "-o", "name") == ""
        ),
        timeout=120,
    )
    assert jsonpath(node, "pvc", "-n", namespace, pvc, "-o", "jsonpath={.status.phase}") == "Bound"
    # Re-created, and asked to adopt them, it finds the old jobs on the old volume.
    apply_provision(node, namespace, adopt=True)
    jobs = app_redis(node, namespace, "print(json.dumps(r.lrange('phase1:jobs', 0, -1)))")
    assert jobs == ["kept-1", "kept-2"]

    # Delete: the controller-manager's garbage collector removes the volume claim.
    set_deletion_policy(node, namespace, "Delete")
    wait_for(
        "the PVC to be owned for deletion",
        lambda: (
            jsonpath(
                node,
                "pvc",
                "-n",
                namespace,
                pvc,
                "-o",
                "jsonpath={.metadata.ownerReferences[*].kind}",
            )
            != ""
        ),
        timeout=120,
    )
    node.kubectl(
        "delete", "redisqueue", "-n", namespace, "analysis-jobs", "--timeout=120s", timeout=150
    )
    wait_for(
        "the PVC to be garbage-collected",
        lambda: jsonpath(node, "pvc", "-n", namespace, "--ignore-not-found", "-o", "name") == "",
        timeout=180,
    )
    assert (
        jsonpath(
            node,
            "secret",
            "-n",
            namespace,
            "analysis-jobs-redis-auth",
            "--ignore-not-found",
            "-o",
            "name",
        )
        == ""
    )


# (5) Password rotation: tests/node/test_node_rotation.py.
