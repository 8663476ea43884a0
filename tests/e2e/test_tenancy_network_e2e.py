"""Who reaches a provisioned Redis, and who reads the operator's health and metrics.

Real kube-apiserver with the install path's CRD, RBAC and policies; the real operator.

* Each provisioned Redis gets a NetworkPolicy (on by default) that selects exactly its Redis
  pod and lets in only ``networkPolicy.allowFrom`` (default: its own namespace) and the
  operator's pods. There is no kubelet or network plugin here: the policy's selectors are
  proven against pod objects by the API server's own label selection; on the node
  (tests/node/test_node_networkpolicy.py) against running pods. Enforcement is the network
  plugin's: the test node's bridge plugin does not enforce NetworkPolicy, and no test claims
  it does.
* With ``--auth`` health and metrics need a token whose user may get the path.
* However many health requests arrive, an endpoint gets at most ten PINGs a second.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OPERATOR_NAMESPACE,
    ExternalQueue,
    OperatorProcess,
    apply_secret,
    create_rq,
    eventually,
    external_spec,
    installed_operator,
    rq_path,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path

pytestmark = pytest.mark.k8s

#: The operator's pods, as the install labels them and tells the operator.
OPERATOR_LABELS = {
    "app.kubernetes.io/name": "redisqueue-operator",
    "app.kubernetes.io/component": "operator",
}


@pytest.fixture(scope="module")
def in_cluster_operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator with what the install's downward API gives it: its namespace and labels."""
    with installed_operator(
        control_plane,
        tmp_path_factory.mktemp("operator"),
        identity="network",
        environ={
            "POD_NAMESPACE": OPERATOR_NAMESPACE,
            "REDISQUEUE_PEER_SELECTOR": ",".join(f"{k}={v}" for k, v in OPERATOR_LABELS.items()),
        },
    ) as process:
        yield process


def np_path(namespace: str, name: str) -> str:
    return object_path("networking.k8s.io/v1", "NetworkPolicy", namespace, f"{name}-redis")


async def selected(kube: Kube, namespace: str | None, selector: dict[str, Any]) -> set[str]:
    """Names of the pods ``selector`` (a LabelSelector's matchLabels) selects, as the API server
    selects them."""
    labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    pods = await kube.list(object_path("v1", "Pod", namespace), label_selector=labels or None)
    return {p["metadata"]["name"] for p in pods}


def pod(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "pause",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


async def test_a_provisioned_redis_admits_only_the_chosen_apps_and_the_operator(
    in_cluster_operator: OperatorProcess, control_plane: ControlPlane, kube: Kube, namespace: str
) -> None:
    await create_rq(
        kube,
        namespace,
        "jobs",
        {
            "redis": {
                "provision": {
                    "networkPolicy": {
                        "allowFrom": [{"podSelector": {"matchLabels": {"app": "worker"}}}]
                    }
                }
            }
        },
    )

    async def policy() -> dict[str, Any] | None:
        return await kube.get(np_path(namespace, "jobs"))

    found = await eventually(policy, what="the NetworkPolicy of jobs")
    rq = await kube.get(rq_path(namespace, "jobs"))
    assert rq is not None
    owner = found["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "RedisQueue",
        rq["metadata"]["uid"],
        True,
    )
    spec = found["spec"]
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    sts = await kube.get(object_path("apps/v1", "StatefulSet", namespace, "jobs-redis"))
    assert sts is not None
    assert spec["podSelector"] == sts["spec"]["selector"]  # exactly the Redis pod's selector
    assert [rule["ports"] for rule in spec["ingress"]] == [[{"port": 6379, "protocol": "TCP"}]] * 2
    apps, operator = spec["ingress"]
    assert apps["from"] == [{"podSelector": {"matchLabels": {"app": "worker"}}}]
    assert operator["from"] == [
        {
            "namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": OPERATOR_NAMESPACE}
            },
            "podSelector": {"matchLabels": OPERATOR_LABELS},
        }
    ]

    # Pods as the StatefulSet, the apps and the operator's Deployment would make them: the API
    # server's own label selection picks exactly the intended ones.
    template_labels = sts["spec"]["template"]["metadata"]["labels"]
    for name, labels in (
        ("jobs-redis-0", template_labels),
        ("worker", {"app": "worker"}),
        ("web", {"app": "web"}),
        ("other-redis", {**template_labels, "app.kubernetes.io/instance": "other"}),
    ):
        await kube.create(pod(namespace, name, labels))
    await kube.create(pod(OPERATOR_NAMESPACE, f"operator-{namespace[-6:]}", OPERATOR_LABELS))
    assert await selected(kube, namespace, spec["podSelector"]) == {"jobs-redis-0"}
    assert await selected(kube, namespace, apps["from"][0]["podSelector"]) == {"worker"}
    peer = operator["from"][0]
    namespaces = await kube.list(
        "/api/v1/namespaces",
        label_selector=",".join(
            f"{k}={v}" for k, v in peer["namespaceSelector"]["matchLabels"].items()
        ),
    )
    assert [n["metadata"]["name"] for n in namespaces] == [OPERATOR_NAMESPACE]
    assert f"operator-{namespace[-6:]}" in await selected(
        kube, OPERATOR_NAMESPACE, peer["podSelector"]
    )
    await kube.delete(object_path("v1", "Pod", OPERATOR_NAMESPACE, f"operator-{namespace[-6:]}"))

    # Without allowFrom, the RedisQueue's own namespace; turned off, the policy goes.
    await kube.merge_patch(
        rq_path(namespace, "jobs"),
        {"spec": {"redis": {"provision": {"networkPolicy": {"allowFrom": None}}}}},
    )

    async def namespace_wide() -> bool:
        live = await kube.get(np_path(namespace, "jobs"))
        return bool(live) and live["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]

    await eventually(namespace_wide, what="the policy opened to the namespace")
    await kube.merge_patch(
        rq_path(namespace, "jobs"),
        {"spec": {"redis": {"provision": {"networkPolicy": {"enabled": False}}}}},
    )

    async def removed() -> bool:
        return await kube.get(np_path(namespace, "jobs")) is None

    await eventually(removed, what="the policy removed")


async def test_the_default_image_is_pinned_to_a_patch_release(
    in_cluster_operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    await create_rq(kube, namespace, "pinned", {"redis": {"provision": {}}})

    async def statefulset() -> dict[str, Any] | None:
        return await kube.get(object_path("apps/v1", "StatefulSet", namespace, "pinned-redis"))

    sts = await eventually(statefulset, what="the StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "redis:7.2.11-alpine"
    assert container["imagePullPolicy"] == "IfNotPresent"


# --- health and metrics ---------------------------------------------------------------------


@pytest.fixture
def authenticating(control_plane: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    with installed_operator(
        control_plane, tmp_path, identity="authenticating", operator_args=("--auth",)
    ) as process:
        yield process


def _token(cp: ControlPlane, namespace: str, account: str) -> str:
    cp.kubectl("create", "serviceaccount", account, "-n", namespace)
    return cp.kubectl("create", "token", account, "-n", namespace).stdout.strip()


def _get(process: OperatorProcess, path: str, token: str | None = None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(process.url + path)  # noqa: S310 - the test's own server
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


async def test_with_auth_only_users_allowed_the_path_read_health_and_metrics(
    authenticating: OperatorProcess,
    control_plane: ControlPlane,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    cp = control_plane
    spec = {
        "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
    }
    await external_queue("watched", spec)
    one = f"/api/health/redis/{namespace}/watched"
    for path in ("/metrics", "/api/health/redis", one):
        status, body = _get(authenticating, path)
        assert status == 401 and "bearer token is required" in body, (path, status)
        assert namespace not in body
    assert _get(authenticating, "/healthz")[0] == 200  # the kubelet's probes stay open
    assert _get(authenticating, "/readyz")[0] == 200
    assert _get(authenticating, "/metrics", "not-a-token")[0] == 401

    nobody = _token(cp, namespace, "nobody")
    status, body = _get(authenticating, "/metrics", nobody)
    assert (
        status == 403 and f"system:serviceaccount:{namespace}:nobody may not get /metrics" in body
    )

    reader = f"metrics-reader-{namespace[-6:]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": reader},
        "rules": [
            {
                "nonResourceURLs": ["/metrics", "/api/health/redis", "/api/health/redis/*"],
                "verbs": ["get"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": reader},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": namespace}],
    }
    cp.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}),
    )
    scraper = _token(cp, namespace, "scraper")
    try:
        for path in ("/metrics", "/api/health/redis", one):

            async def allowed(p: str = path) -> bool:
                return _get(authenticating, p, scraper)[0] == 200

            await eventually(allowed, timeout=20, what=f"{path} for the scraper")
        assert "redisqueue_up" in _get(authenticating, "/metrics", scraper)[1]
        assert _get(authenticating, "/metrics", nobody)[0] == 403
    finally:
        cp.kubectl("delete", "clusterrolebinding,clusterrole", reader, "--ignore-not-found")


async def test_a_flood_of_health_requests_shares_pings_sent_one_at_a_time(
    in_cluster_operator: OperatorProcess, kube: Kube, namespace: str, redis_server: RedisServer
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    spec = external_spec(redis_server, healthCheck={"intervalSeconds": 60, "timeoutSeconds": 2})
    for name in ("a", "b", "c"):  # three RedisQueues on one endpoint share its PINGs
        await create_rq(kube, namespace, name, spec)
    for name in ("a", "b", "c"):
        await wait_for_ready(kube, namespace, name)
    admin = redis_server.admin()

    def pings() -> int:
        stats = admin.info("commandstats")
        return int(stats.get("cmdstat_ping", {}).get("calls", 0))

    before, started = pings(), time.monotonic()
    answered = 0
    urls = [f"/api/health/redis/{namespace}/{n}" for n in ("a", "b", "c")]
    urls += [f"/api/health/redis?namespace={namespace}"]
    async with aiohttp.ClientSession(in_cluster_operator.url) as session:

        async def ask(url: str) -> None:
            nonlocal answered
            while time.monotonic() - started < 3.0:
                async with session.get(url) as response:
                    assert response.status == 200
                    answered += 1

        await asyncio.gather(*(ask(url) for url in urls for _ in range(8)))
    elapsed = time.monotonic() - started
    sent = pings() - before
    admin.close()
    print(f"\n{answered} health answers in {elapsed:.1f} s cost {sent} PINGs")
    assert answered > 100  # a real flood
    # One PING out at a time, shared by every request that arrived while the one before it
    # was out: answers outnumber PINGs several times over (one PING per request without it).
    assert sent * 4 <= answered, f"{answered} answers cost {sent} PINGs"
