"""On the node: whom a provisioned Redis's NetworkPolicy selects and lets in, and whose
Service endpoints a RedisQueue can join.

The chart installed as its README says (two replicas, its admission policies), a provisioned
Redis running as a pod, app pods beside it. The node's network plugin (the Debian CNI
bridge) does not enforce NetworkPolicy, so what is proven here is what a plugin that does
enforce would act on: the policy selects exactly the Redis pod, and its rules select
exactly the chosen app pods and the running operator pods (the API server's own label
selection, on pods the kubelet runs). That traffic is then dropped is not claimed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_node_cluster import wait_for

from harness.kube_node import Node
from harness.node_fixtures import OPERATOR_NS, chart_installed

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def chart(node: Node) -> Iterator[str]:
    with chart_installed(node) as release:
        yield release


def get(node: Node, *args: str) -> Any:
    return json.loads(node.kubectl("get", *args, "-o", "json").stdout)


def running(node: Node, namespace: str, selector: dict[str, Any]) -> set[str]:
    """The running pods of ``namespace`` that ``selector`` (matchLabels) selects."""
    labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    args = ["pods", "-n", namespace] + (["-l", labels] if labels else [])
    return {
        p["metadata"]["name"]
        for p in get(node, *args)["items"]
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


def endpoints(node: Node, namespace: str, service: str) -> set[str]:
    """The pod names behind ``service`` (its EndpointSlices)."""
    slices = get(
        node, "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )
    return {
        e["targetRef"]["name"]
        for s in slices["items"]
        for e in s.get("endpoints") or []
        if e.get("targetRef")
    }


def app_pod(node: Node, namespace: str, name: str, labels: dict[str, str]) -> None:
    node.kubectl(
        "run",
        name,
        "-n",
        namespace,
        f"--image={node.images['pause'].ref}",
        "--image-pull-policy=Never",
        "--restart=Never",
        "--labels=" + ",".join(f"{k}={v}" for k, v in labels.items()),
    )


def test_the_redis_policy_selects_its_pod_and_lets_in_exactly_the_chosen_pods(
    node: Node, chart: str, node_namespace: str
) -> None:
    ns = node_namespace
    app_pod(node, ns, "worker", {"app": "worker"})
    app_pod(node, ns, "web", {"app": "web"})
    node.kubectl("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:80")
    node.kubectl("set", "selector", "service/web", "app=web", "-n", ns)
    queue = {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {"name": "cache", "namespace": ns},
        "spec": {
            "redis": {
                "provision": {
                    "image": node.images["redis"].ref,
                    "networkPolicy": {
                        "allowFrom": [{"podSelector": {"matchLabels": {"app": "worker"}}}]
                    },
                }
            }
        },
    }
    node.kubectl("apply", "-f", "-", input=json.dumps(queue))
    node.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "redisqueue/cache", "--timeout=180s", timeout=200
    )
    node.kubectl(
        "wait", "-n", ns, "--for=condition=Ready", "pod/worker", "pod/web", "--timeout=120s"
    )

    policy = get(node, "networkpolicy", "cache-redis", "-n", ns)["spec"]
    assert running(node, ns, policy["podSelector"]) == {"cache-redis-0"}
    apps, operator = policy["ingress"]
    assert running(node, ns, apps["from"][0]["podSelector"]) == {"worker"}
    peer = operator["from"][0]
    selected_namespaces = {
        n["metadata"]["name"]
        for n in get(
            node,
            "namespaces",
            "-l",
            ",".join(f"{k}={v}" for k, v in peer["namespaceSelector"]["matchLabels"].items()),
        )["items"]
    }
    assert selected_namespaces == {OPERATOR_NS}
    operator_pods = running(
        node, OPERATOR_NS, {"matchLabels": {"app.kubernetes.io/name": "redisqueue-operator"}}
    )
    assert len(operator_pods) == 2  # the leader and the standby, both probing
    assert running(node, OPERATOR_NS, peer["podSelector"]) == operator_pods
    # The Redis Service's endpoints are its pod; the app's Service's its own pod.
    assert endpoints(node, ns, "cache-redis") == {"cache-redis-0"}
    assert endpoints(node, ns, "web") == {"web"}


def test_a_tenant_cannot_put_its_redis_behind_another_apps_service(
    node: Node, chart: str, node_namespace: str
) -> None:
    ns = node_namespace
    app_pod(node, ns, "web", {"app": "web"})
    node.kubectl("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:80")
    node.kubectl("set", "selector", "service/web", "app=web", "-n", ns)
    node.kubectl("create", "serviceaccount", "tenant", "-n", ns)
    node.kubectl(
        "create", "role", "tenant", "-n", ns, "--verb=*", "--resource=redisqueues.redisqueue.dev"
    )
    node.kubectl(
        "create",
        "rolebinding",
        "tenant",
        "-n",
        ns,
        "--role=tenant",
        f"--serviceaccount={ns}:tenant",
    )
    queue = {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {"name": "joiner", "namespace": ns},
        "spec": {"redis": {"provision": {"podLabels": {"app": "web"}}}},
    }
    refused = node.kubectl(
        "create",
        "-f",
        "-",
        f"--as=system:serviceaccount:{ns}:tenant",
        input=json.dumps(queue),
        check=False,
    )
    assert refused.returncode != 0
    assert "spec.redis.provision.podLabels: app" in refused.stderr
    node.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/web", "--timeout=120s")
    wait_for(
        "the web Service's endpoints", lambda: endpoints(node, ns, "web") == {"web"}, timeout=60
    )
    assert get(node, "statefulsets", "-n", ns)["items"] == []
