"""Workers scaled on queue depth by KEDA, with the shipped example, on the test node.

KEDA's operator and its external metrics API server (an aggregated API behind the
``v1beta1.external.metrics.k8s.io`` APIService) are built from KEDA's Go module
(``ecosystem_fixtures``). ``manifests/examples/keda-scaledobject.yaml`` is applied exactly as
shipped next to a provisioned RedisQueue and a worker Deployment at zero replicas: queued jobs
wake it, the HPA KEDA made adds workers through the external metrics API, the workers drain
the list and the Deployment returns to zero. After a password rotation (the RedisQueue's auth
Secret changes, the operator re-injects the app Secret, Redis restarts with the new password)
the scaler reads the new password and scales again.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from harness.ecosystem_fixtures import (
    APP_SECRET,
    LIST_KEY,
    QUEUE_NAME,
    REPO_ROOT,
    STREAM,
    app_redis,
    deploy_worker,
    ensure_namespace,
    provision_queue,
    wait_until,
    worker_deployment,
)
from harness.kube_node import Node
from harness.node_fixtures import CHART, OPERATOR_NS, image_values, live_pods

pytestmark = [pytest.mark.timeout(900)]  # the tests using `node` are marked node by it

EXAMPLE = REPO_ROOT / "manifests" / "examples" / "keda-scaledobject.yaml"
WORKER_LABELS = {"app.kubernetes.io/name": "analysis-worker"}
JOBS = 300


def example() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def test_keda_example_reads_the_injected_secret_and_has_a_trigger_per_queue() -> None:
    """The example matches provision.yaml's contract: the TriggerAuthentication takes the
    connection from the injected Secret's keys (through the API, so apps that mount the
    password as a file are served too), one `redis` trigger per list, one `redis-streams`
    trigger on pending entries per stream."""
    auth, scaled = example()
    assert auth["kind"] == "TriggerAuthentication"
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "host": (APP_SECRET, "REDIS_HOST"),
        "port": (APP_SECRET, "REDIS_PORT"),
        "password": (APP_SECRET, "REDIS_PASSWORD"),
    }
    assert scaled["kind"] == "ScaledObject"
    assert scaled["spec"]["minReplicaCount"] == 0
    provision = yaml.safe_load(
        (REPO_ROOT / "manifests" / "examples" / "provision.yaml").read_text()
    )
    assert provision["spec"]["inject"] == [{"secretName": APP_SECRET}]
    lists = [q["key"] for q in provision["spec"]["queues"] if q["type"] == "list"]
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers if t["type"] == "redis"] == lists
    (streams,) = [t for t in triggers if t["type"] == "redis-streams"]
    assert streams["metadata"]["stream"] == STREAM["key"]
    assert streams["metadata"]["consumerGroup"] == STREAM["group"]
    assert "pendingEntriesCount" in streams["metadata"]
    for trigger in triggers:
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        # Never the worker's environment: a file-mounting app has no password variable.
        assert not any(k.endswith("FromEnv") for k in trigger["metadata"]), trigger


@pytest.fixture(scope="module")
def keda_app(node: Node, keda: str, toolbox: str) -> Iterator[str]:
    """The chart, a provisioned RedisQueue with a list and a stream, the worker Deployment at
    zero replicas and the KEDA example, in a namespace of their own."""
    ensure_namespace(node, OPERATOR_NS)
    node.helm(
        "upgrade",
        "--install",
        "redisqueue-operator",
        str(CHART),
        "--namespace",
        OPERATOR_NS,
        *image_values(node),
        "--wait",
        "--timeout=180s",
        timeout=240,
    )
    namespace = f"n-keda-{secrets.token_hex(3)}"
    ensure_namespace(node, namespace)
    try:
        provision_queue(node, namespace)
        key, group = STREAM["key"], STREAM["group"]
        app_redis(
            node,
            namespace,
            f"r.xgroup_create({key!r}, {group!r}, id='$', mkstream=True)\nprint('true')",
        )
        deploy_worker(
            node,
            namespace,
            worker_deployment(
                node,
                "analysis-worker",
                0,
                {"BLOCK_SECONDS": "5", "WORK_SECONDS": "0.2"},
                WORKER_LABELS,
            ),
        )
        node.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))  # exactly as shipped
        wait_until(
            "the ScaledObject Ready",
            lambda: scaled_condition(node, namespace, "Ready") == "True",
            timeout=120,
        )
        yield namespace
    finally:
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        node.helm(
            "uninstall", "redisqueue-operator", "--namespace", OPERATOR_NS, "--wait", check=False
        )


def scaled_condition(node: Node, namespace: str, kind: str) -> str:
    return node.kubectl(
        "get",
        "scaledobject",
        "-n",
        namespace,
        "analysis-worker",
        "-o",
        f"jsonpath={{.status.conditions[?(@.type=='{kind}')].status}}",
    ).stdout.strip()


def worker_pods(node: Node, namespace: str) -> list[str]:
    pods = live_pods(node, namespace, "app.kubernetes.io/name=analysis-worker")
    return [p["metadata"]["name"] for p in pods]


def spec_replicas(node: Node, namespace: str) -> int:
    return int(
        node.kubectl(
            "get", "deploy", "-n", namespace, "analysis-worker", "-o", "jsonpath={.spec.replicas}"
        ).stdout.strip()
        or 0
    )


def external_metric(node: Node, namespace: str) -> float:
    """The list trigger's value as the HPA reads it: through the aggregated external metrics
    API, served by KEDA's metrics API server."""
    hpa = json.loads(
        node.kubectl("get", "hpa", "-n", namespace, "keda-hpa-analysis-worker", "-o", "json").stdout
    )
    # KEDA names each trigger's metric s<index>-<type>-<key>: the list is trigger 0.
    (metric,) = [
        m["external"]["metric"]
        for m in hpa["spec"]["metrics"]
        if m["external"]["metric"]["name"].startswith("s0-redis-")
    ]
    selector = urllib.parse.quote(
        ",".join(f"{k}={v}" for k, v in metric["selector"]["matchLabels"].items()), safe=""
    )
    raw = node.kubectl(
        "get",
        "--raw",
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric['name']}"
        f"?labelSelector={selector}",
    ).stdout
    (item,) = json.loads(raw)["items"]
    quantity = str(item["value"])
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def queue_jobs(node: Node, namespace: str, run: str, jobs: int) -> None:
    pushed = app_redis(
        node,
        namespace,
        f"print(json.dumps(r.lpush({LIST_KEY!r}, *[f'{run}-{{n}}' for n in range({jobs})])))",
    )
    assert pushed >= jobs


def drained(node: Node, namespace: str, run: str, jobs: int) -> bool:
    state = app_redis(
        node,
        namespace,
        f"done = [j for j in r.smembers({LIST_KEY!r} + ':done') if j.startswith({run!r} + '-')]\n"
        f"print(json.dumps({{'queued': r.llen({LIST_KEY!r}), 'done': len(done)}}))",
    )
    return bool(state["queued"] == 0 and state["done"] == jobs)


def scale_cycle(node: Node, namespace: str, run: str) -> dict[str, float]:
    """Queue JOBS jobs on an idle, zero-replica worker Deployment; follow it up to more than
    one worker, through the drained queue, back to zero. Returns the timings."""
    assert spec_replicas(node, namespace) == 0 and worker_pods(node, namespace) == []
    queued = time.monotonic()
    queue_jobs(node, namespace, run, JOBS)
    wait_until("a worker pod", lambda: worker_pods(node, namespace), timeout=120, interval=0.5)
    first_pod = time.monotonic() - queued
    # The HPA KEDA made reads the depth through the external metrics API and adds workers.
    depth = external_metric(node, namespace)
    assert depth > 0, depth
    most = 0

    def done() -> bool:
        nonlocal most
        most = max(most, spec_replicas(node, namespace))
        return drained(node, namespace, run, JOBS)

    wait_until(f"all {JOBS} jobs of {run} done", done, timeout=300, interval=2)
    empty = time.monotonic()
    assert most >= 2, f"the HPA never added a worker (at most {most})"
    wait_until(
        "the workers scaled back to zero",
        lambda: spec_replicas(node, namespace) == 0 and not worker_pods(node, namespace),
        timeout=240,
        interval=1,
    )
    to_zero = time.monotonic() - empty
    assert external_metric(node, namespace) == 0
    return {"first_pod": first_pod, "to_zero": to_zero, "most": most, "depth": depth}


def test_keda_scales_workers_from_zero_drains_the_queue_and_returns_to_zero(
    node: Node, keda_app: str
) -> None:
    namespace = keda_app
    # Idle: nothing queued, no worker, and KEDA reports the scaler inactive, not failing.
    time.sleep(15)  # more than one pollingInterval
    assert worker_pods(node, namespace) == []
    assert scaled_condition(node, namespace, "Active") == "False"
    assert scaled_condition(node, namespace, "Ready") == "True"
    timings = scale_cycle(node, namespace, "first")
    print(
        f"KEDA: {JOBS} jobs queued -> first worker pod {timings['first_pod']:.1f} s; "
        f"up to {timings['most']:.0f} workers (external metric {timings['depth']:.0f}); "
        f"empty queue -> zero workers {timings['to_zero']:.1f} s "
        "(pollingInterval 10 s, cooldownPeriod 60 s)"
    )


def test_keda_scaler_authenticates_after_a_password_rotation(node: Node, keda_app: str) -> None:
    namespace = keda_app
    wait_until(
        "the workers at zero",
        lambda: spec_replicas(node, namespace) == 0 and not worker_pods(node, namespace),
        timeout=240,
    )

    def app_password() -> str:
        value = node.kubectl(
            "get", "secret", "-n", namespace, APP_SECRET, "-o", "jsonpath={.data.REDIS_PASSWORD}"
        ).stdout
        return base64.b64decode(value).decode()

    old = app_password()
    new = "rotated-" + secrets.token_hex(12)
    node.kubectl(
        "patch",
        "secret",
        "-n",
        namespace,
        f"{QUEUE_NAME}-redis-auth",
        "--type=merge",
        "-p",
        json.dumps({"stringData": {"password": new}}),
    )
    wait_until("the app Secret re-injected", lambda: app_password() == new, timeout=120)
    assert old != new

    def accepts_new() -> bool:
        try:
            return bool(app_redis(node, namespace, "print(json.dumps(r.ping()))"))
        except AssertionError:
            return False

    wait_until("Redis to accept the new password", accepts_new, timeout=180, interval=2)
    # The scaler's connection used the old password, which Redis no longer takes: KEDA must
    # read the rotated Secret to see the queue at all.
    timings = scale_cycle(node, namespace, "rotated")
    assert scaled_condition(node, namespace, "Ready") == "True"
    print(
        f"after rotation: first worker pod {timings['first_pod']:.1f} s after queueing, "
        f"zero workers {timings['to_zero']:.1f} s after the queue emptied"
    )
