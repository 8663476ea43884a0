"""Password rotation against the real API server: who may ask for restarts (admission), what
the operator's token may change in an app's workload (its object-shape policy), and a rotation
of an external Redis run by the operator under exactly the install's permissions.

The control plane has no Deployment controller, so a restarted Deployment never reports a
finished rollout here: the operator waits for it until twice the grace period and retires the
old password anyway (the real rollout is proven on the test node, tests/node/test_node_rotation.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from test_tenancy_e2e import (
    APP_TEAM_RULES,
    TENANT_RULES,
    external,
    policy_active,
    refused,
)

from harness.e2e_users import AsUser
from harness.operator_harness import (
    OperatorProcess,
    OperatorToken,
    apply_secret,
    condition,
    create_rq,
    dry_run_patch,
    events_for,
    eventually,
    external_spec,
    read_secret,
    rq_path,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path

pytestmark = pytest.mark.k8s

RESTART_ANNOTATION = "redisqueue.dev/restartedAt"


def deployment(namespace: str, name: str, **meta: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
            },
        },
    }


def statefulset(namespace: str, name: str) -> dict[str, Any]:
    body = deployment(namespace, name)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = name
    return body


async def test_restarting_a_workload_needs_the_authors_patch_on_it(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    as_user: AsUser,
) -> None:
    await kube.create(deployment(namespace, "worker"))
    spec = external(
        redis_server.host,
        redis_server.port,
        inject=[
            {
                "secretName": "app-redis",
                "restart": [
                    {"kind": "Deployment", "name": "worker"},
                    {"kind": "StatefulSet", "name": "db"},
                ],
            }
        ],
    )
    async with as_user("tenant", TENANT_RULES) as tenant:
        await policy_active(tenant, namespace)
    async with as_user("team", APP_TEAM_RULES) as team:
        message = await refused(team, namespace, "restarter", spec)
        # One workload per check, each named with the right it lacks.
        assert (
            f"spec.inject[].restart: you may not patch Deployment/worker in namespace {namespace}"
            in message
        )
        assert "patch deployments.apps" in message
    allowed = [
        *APP_TEAM_RULES,
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["patch"]},
    ]
    async with as_user("owner", allowed) as owner:
        await create_rq(owner, namespace, "restarter", spec)
    # Someone who may patch only the Deployment may not add the StatefulSet.
    only_deployments = [
        *APP_TEAM_RULES,
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["worker"],
            "verbs": ["patch"],
        },
    ]
    async with as_user("half", only_deployments) as half:
        one = external(
            redis_server.host,
            redis_server.port,
            inject=[
                {"secretName": "app-redis", "restart": [{"kind": "Deployment", "name": "worker"}]}
            ],
        )
        await create_rq(half, namespace, "only-worker", one)
        message = await refused(half, namespace, "with-db", spec)
        assert "you may not patch StatefulSet/db" in message
        assert "Deployment/worker" not in message


async def test_the_operators_token_may_change_an_apps_workload_only_to_restart_it(
    operator_token: OperatorToken, kube: Kube, namespace: str
) -> None:
    cp, token = operator_token
    await kube.create(deployment(namespace, "web"))
    await kube.create(statefulset(namespace, "db"))
    restart = {"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: "t1"}}}}}
    for kind, name in (("deployment", "web"), ("statefulset", "db")):
        result = dry_run_patch(cp, token, kind, namespace, name, restart)
        assert result.returncode == 0, (kind, result.stderr)

    def forbidden(name: str) -> dict[str, Any]:
        return {
            "image": {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {RESTART_ANNOTATION: "t2"}},
                        "spec": {
                            "containers": [{"name": "app", "image": "registry.example/evil:1"}]
                        },
                    }
                }
            },
            "replicas": {"spec": {"replicas": 5}},
            "template-labels": {
                "spec": {"template": {"metadata": {"labels": {"app": name, "x": "y"}}}}
            },
            "other-annotation": {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}},
            "claim-it": {
                "metadata": {"labels": {"app.kubernetes.io/managed-by": "redisqueue-operator"}}
            },
            "owner-annotation": {"metadata": {"annotations": {"note": "x"}}},
        }

    for kind, name in (("deployment", "web"), ("statefulset", "db")):
        for what, patch in forbidden(name).items():
            result = dry_run_patch(cp, token, kind, namespace, name, patch)
            assert result.returncode != 0, (kind, what)
            assert "redisqueue-operator-restarts" in result.stderr, (kind, what, result.stderr)
            assert "redisqueue.dev/restartedAt" in result.stderr
    # Neither create nor delete an app's Deployment (no RBAC for it at all).
    deleted = cp.run(
        "kubectl",
        f"--kubeconfig={token}",
        "delete",
        "deployment",
        "web",
        "-n",
        namespace,
        "--dry-run=server",
        check=False,
    )
    assert deleted.returncode != 0 and "forbidden" in deleted.stderr.lower()
    # The operator's own StatefulSets stay under the object-shape policy.
    own = statefulset(namespace, "own")
    own["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "redisqueue-operator"}
    own["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    await kube.create(own)
    escape = {"spec": {"template": {"spec": {"hostNetwork": True}}}}
    result = dry_run_patch(cp, token, "statefulset", namespace, "own", escape)
    assert result.returncode != 0 and "redisqueue-operator-object-shapes" in result.stderr


async def test_an_external_rotation_stays_ready_restarts_the_opted_in_app_and_ends_quietly(
    operator: OperatorProcess, kube: Kube, namespace: str, redis_server: RedisServer
) -> None:
    old = redis_server.password or ""
    await kube.create(deployment(namespace, "env-app"))
    await apply_secret(kube, namespace, "redis-auth", {"password": old})
    await create_rq(
        kube,
        namespace,
        "jobs",
        external_spec(
            redis_server,
            inject=[
                {"secretName": "app-redis", "restart": [{"kind": "Deployment", "name": "env-app"}]}
            ],
            rotation={"gracePeriodSeconds": 10},
        ),
    )
    await wait_for_ready(kube, namespace, "jobs")
    path = object_path("apps/v1", "Deployment", namespace, "env-app")

    def stamp(live: dict[str, Any] | None) -> str | None:
        template = ((live or {}).get("spec") or {}).get("template") or {}
        return ((template.get("metadata") or {}).get("annotations") or {}).get(RESTART_ANNOTATION)

    created_stamp = stamp(await kube.get(path))
    assert created_stamp is not None  # the app Secret was new: the app restarted once

    # ROTATE: the Redis accepts both; then the Secret gets the new one.
    new = "rotated-" + old[-8:]
    with redis.Redis(host=redis_server.host, port=redis_server.port, password=old) as admin:
        admin.execute_command("ACL", "SETUSER", "default", f">{new}")
    changed_at = time.monotonic()
    await apply_secret(kube, namespace, "redis-auth", {"password": new})

    seen: list[tuple[str | None, str | None]] = []

    async def finished() -> dict[str, Any] | None:
        rq = await kube.get(rq_path(namespace, "jobs"))
        rotation = ((rq or {}).get("status") or {}).get("rotation") or {}
        seen.append((condition(rq, "Ready").get("status"), rotation.get("phase")))
        return rq if rotation.get("phase") == "ReadyToRemoveOld" else None

    rq = await eventually(finished, timeout=90, interval=0.5, what="ReadyToRemoveOld")
    took = time.monotonic() - changed_at
    assert {ready for ready, _ in seen} == {"True"}, seen  # Ready throughout
    assert "Overlap" in {phase for _, phase in seen}
    assert took >= 19, took  # no rollout is ever reported here: twice the grace period
    assert (await read_secret(kube, namespace, "app-redis") or {})["REDIS_PASSWORD"] == new
    assert stamp(await kube.get(path)) not in (None, created_stamp)
    steps = {"RotationStarted", "RotationRestartOverdue", "RotationReadyToRemoveOld"}

    # Each step's Event follows the status write of that step, so it can come a moment later.
    async def step_events() -> set[str] | None:
        reasons = {e["reason"] for e in await events_for(kube, namespace, "jobs")}
        return reasons if steps <= reasons else None

    await eventually(step_events, timeout=30, what=f"the Events {sorted(steps)}")
    assert "SET" in rq["status"]["rotation"]["message"]
    logs = operator.logs()
    assert new not in logs and old not in logs
    # Quiet at rest: once over, the status is not written again.
    version = rq["metadata"]["resourceVersion"]
    await wait_for_ready(kube, namespace, "jobs")
    await asyncio.sleep(3)
    again = await kube.get(rq_path(namespace, "jobs"))
    assert again is not None and again["metadata"]["resourceVersion"] == version
