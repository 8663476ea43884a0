"""The operator end to end: real kube-apiserver, real redis-servers, the real operator process.

The operator runs as a subprocess with the ServiceAccount and RBAC from manifests/operator.
Provision-mode pods cannot run here (no kubelet): where a test needs a "ready" StatefulSet
it patches the StatefulSet's status itself, and says so.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    events_for,
    eventually,
    fake_claim,
    read_secret,
    rq_path,
    unb64,
    wait_for_ready,
)
from harness.operator_harness import external_spec as shared_external_spec
from harness.redis_server import RedisServer, TLSFiles
from redisqueue.client import create_client
from redisqueue.controller.api.kube import Kube, KubeError
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.resource.identity import FINALIZER
from redisqueue.settings import load_settings

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]


def external_spec(server: RedisServer, **extra: Any) -> dict[str, Any]:
    """The shared external spec, injecting into the Secret ``app-redis`` unless told otherwise."""
    return shared_external_spec(server, **{"inject": [{"secretName": "app-redis"}], **extra})


# --- external mode ---------------------------------------------------------------------------


async def test_external_mode_is_ready_injects_a_working_contract_and_serves_health(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    control_plane: ControlPlane,
) -> None:
    assert redis_server.password
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password})
    await create_rq(
        kube,
        namespace,
        "jobs",
        external_spec(
            redis_server, environment="production", queues=[{"key": "phase1:jobs", "type": "list"}]
        ),
    )
    rq = await wait_for_ready(kube, namespace, "jobs")
    status = rq["status"]
    assert status["phase"] == "Ready" and status["mode"] == "external"
    assert status["endpoint"] == redis_server.endpoint
    assert status["observedGeneration"] == rq["metadata"]["generation"]
    assert status["latencyMs"] >= 0 and status["lastProbeTime"].endswith("Z")
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Reachable", "Injected"}

    # The app connects with the client library using only the injected Secret.
    env = await read_secret(kube, namespace, "app-redis")
    assert env is not None
    assert env["REDIS_POOL_MAX_CONNECTIONS"] == "100"  # production default
    app = create_client(load_settings(env, env_file=None), name="e2e-app")
    app.lpush("phase1:jobs", "a", "b", "c")
    assert app.llen("phase1:jobs") == 3
    app.close()

    code, body = operator.health(namespace, "jobs")
    assert code == 200 and body["status"] == "connected"
    # The aggregate covers every RedisQueue in the cluster (other tests' too): this one
    # must not be among the failed.
    code, text = operator.http("/api/health/redis")
    aggregate = json.loads(text)
    assert code in {200, 503} and aggregate["checked"] >= 1
    assert f"{namespace}/jobs" not in aggregate.get("failed", [])

    async def depth_metric() -> str | None:
        text = operator.http("/metrics")[1]
        line = (
            f'redisqueue_queue_depth{{key="phase1:jobs",name="jobs",'
            f'namespace="{namespace}",type="list"}} 3.0'
        )
        return text if line in text else None

    metrics = await eventually(depth_metric, timeout=20, what="queue depth metric")
    assert f'redisqueue_up{{name="jobs",namespace="{namespace}"}} 1.0' in metrics
    assert "redisqueue_redis_connected_clients{" in metrics

    table = control_plane.kubectl("get", "redisqueues", "-n", namespace).stdout
    assert re.search(r"jobs\s+external\s+" + re.escape(redis_server.endpoint) + r"\s+True", table)

    everything = yaml.safe_dump(rq) + operator.logs() + metrics + str(body)
    everything += str(await events_for(kube, namespace, "jobs"))
    assert redis_server.password not in everything


async def test_outage_turns_not_ready_with_one_event_and_recovers(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    await external_queue("flaky", external_spec(redis_server))
    redis_server.stop()
    rq = await wait_for_ready(kube, namespace, "flaky", "False", "Unreachable")
    assert rq["status"]["phase"] == "Unreachable"
    assert redis_server.endpoint in condition(rq, "Reachable")["message"]
    assert operator.health(namespace, "flaky")[0] == 503
    await asyncio.sleep(3)  # several probes fail: still one transition event
    warnings = [e for e in await events_for(kube, namespace, "flaky") if e["type"] == "Warning"]
    assert len(warnings) == 1 and warnings[0]["reason"] == "Unreachable"
    redis_server.start()
    await wait_for_ready(kube, namespace, "flaky")
    assert operator.health(namespace, "flaky")[0] == 200

    # The Event follows the status write that made it news, so it can come a moment later.
    async def both_ready_events() -> list[str] | None:
        reasons = [e["reason"] for e in await events_for(kube, namespace, "flaky")]
        return reasons if reasons.count("Ready") >= 2 else None

    reasons = await eventually(both_ready_events, timeout=30, what="the second Ready Event")
    assert reasons.count("Ready") == 2 and reasons.count("Unreachable") == 1


async def test_tls_mode_verifies_the_certificate_against_the_referenced_ca(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    tls_redis_server: RedisServer,
    tls_files: TLSFiles,
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": tls_redis_server.password or ""})
    await apply_secret(kube, namespace, "redis-ca", {"ca.crt": tls_files.ca_pem})
    tls_spec = {
        "redis": {
            "external": {
                "host": "localhost",
                "port": tls_redis_server.port,
                "tls": {"enabled": True, "caSecretRef": {"name": "redis-ca", "key": "ca.crt"}},
            }
        }
    }
    await create_rq(kube, namespace, "secure", external_spec(tls_redis_server, **tls_spec))
    await wait_for_ready(kube, namespace, "secure")
    env = await read_secret(kube, namespace, "app-redis")
    assert env is not None and env["REDIS_URL"].startswith("rediss://")
    assert env["REDIS_TLS_CA_CERT"] == tls_files.ca_pem
    app = create_client(load_settings(env, env_file=None), name="e2e-tls")
    assert app.ping() is True
    app.close()

    # The same server without the CA: the system trust store does not know the test CA.
    untrusted = {
        "redis": {
            "external": {
                "host": "localhost",
                "port": tls_redis_server.port,
                "tls": {"enabled": True},
            }
        },
        "inject": [{"secretName": "other-app"}],
    }
    await create_rq(kube, namespace, "untrusted", external_spec(tls_redis_server, **untrusted))
    rq = await wait_for_ready(kube, namespace, "untrusted", "False", "TLSError")
    assert "certificate verify failed" in condition(rq, "Ready")["message"]


async def test_wrong_password_reports_auth_failure_and_leaks_it_nowhere(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    wrong = "wrong-password-e2e-7f3a"
    await apply_secret(kube, namespace, "redis-auth", {"password": wrong})
    await create_rq(kube, namespace, "badauth", external_spec(redis_server))
    rq = await wait_for_ready(kube, namespace, "badauth", "False", "AuthFailed")
    assert rq["status"]["phase"] == "AuthError"
    code, body = operator.health(namespace, "badauth")
    assert code == 503 and "authentication failed" in body["error"]
    events = await eventually(
        lambda: events_for(kube, namespace, "badauth"), timeout=30, what="the AuthFailed Event"
    )
    assert events[0]["type"] == "Warning"
    text = (
        yaml.safe_dump(rq)
        + str(events)
        + str(body)
        + operator.logs()
        + operator.http("/metrics")[1]
    )
    assert wrong not in text


async def test_missing_secret_is_reported_then_picked_up_when_created(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    await create_rq(kube, namespace, "early", external_spec(redis_server))
    rq = await wait_for_ready(kube, namespace, "early", "False", "SecretNotFound")
    assert "redis-auth" in condition(rq, "Ready")["message"]
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await wait_for_ready(kube, namespace, "early", timeout=90)


async def test_injection_keeps_app_keys_follows_rotation_and_deletion_removes_only_its_own(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    old = redis_server.password or ""
    await apply_secret(kube, namespace, "redis-auth", {"password": old})
    await apply_secret(kube, namespace, "app-redis", {"APP_MODE": "worker", "OTHER": "1"})
    await create_rq(kube, namespace, "shared", external_spec(redis_server))
    await wait_for_ready(kube, namespace, "shared")
    env = await read_secret(kube, namespace, "app-redis")
    assert env is not None and env["APP_MODE"] == "worker" and env["OTHER"] == "1"
    assert env["REDIS_PASSWORD"] == old

    # Rotation: the server takes a new password, then the Secret; the operator re-injects.
    new = "rotated-" + old[-6:]
    admin = redis.Redis(host=redis_server.host, port=redis_server.port, password=old)
    admin.config_set("requirepass", new)
    admin.close()
    await apply_secret(kube, namespace, "redis-auth", {"password": new})

    async def rotated() -> dict[str, str] | None:
        current = await read_secret(kube, namespace, "app-redis")
        return current if current and current.get("REDIS_PASSWORD") == new else None

    env = await eventually(rotated, timeout=30, what="re-injected password")
    assert env["APP_MODE"] == "worker"
    await wait_for_ready(kube, namespace, "shared")

    await kube.delete(rq_path(namespace, "shared"))

    async def released() -> dict[str, str] | None:
        current = await read_secret(kube, namespace, "app-redis")
        return current if current and not any(k.startswith("REDIS_") for k in current) else None

    env = await eventually(released, timeout=30, what="contract keys removed")
    assert env == {"APP_MODE": "worker", "OTHER": "1"}


async def test_a_secret_dropped_from_spec_inject_loses_the_contract(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await apply_secret(kube, namespace, "old-app", {"KEEP": "me"})
    await create_rq(
        kube, namespace, "moving", external_spec(redis_server, inject=[{"secretName": "old-app"}])
    )
    await wait_for_ready(kube, namespace, "moving")
    old = await read_secret(kube, namespace, "old-app")
    assert old is not None and "REDIS_URL" in old
    await kube.merge_patch(
        rq_path(namespace, "moving"), {"spec": {"inject": [{"secretName": "new-app"}]}}
    )

    async def moved() -> bool:
        before = await read_secret(kube, namespace, "old-app")
        after = await read_secret(kube, namespace, "new-app")
        return before == {"KEEP": "me"} and after is not None and "REDIS_URL" in after

    await eventually(moved, timeout=30, what="contract moved from old-app to new-app")


async def test_the_operator_writes_no_bookkeeping_and_catches_up_on_changes_made_while_down(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    """The last handled spec lives in the operator's memory, not in annotations: a new
    RedisQueue gets its finalizer and status and nothing else, and a restarted operator
    (with nothing remembered) still sees what changed while it was away."""
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await create_rq(
        kube, namespace, "kept", external_spec(redis_server, inject=[{"secretName": "first-app"}])
    )
    rq = await wait_for_ready(kube, namespace, "kept")
    meta = rq["metadata"]
    assert meta.get("finalizers") == ["redisqueue.dev/finalizer"]
    assert not [k for k in meta.get("annotations") or {} if k.startswith("redisqueue.dev/")]
    assert "REDIS_URL" in (await read_secret(kube, namespace, "first-app") or {})

    operator.stop()
    await kube.merge_patch(
        rq_path(namespace, "kept"), {"spec": {"inject": [{"secretName": "second-app"}]}}
    )
    operator.start()

    async def moved() -> dict[str, Any] | None:
        first = await read_secret(kube, namespace, "first-app")
        second = await read_secret(kube, namespace, "second-app")
        rq = await kube.get(rq_path(namespace, "kept"))
        if first is None and second is not None and "REDIS_URL" in second and rq:
            return rq if rq["status"].get("observedGeneration") == 2 else None
        return None

    rq = await eventually(moved, timeout=60, what="contract moved to second-app after restart")
    assert condition(rq, "Ready")["status"] == "True"
    annotations = rq["metadata"].get("annotations") or {}
    assert not [k for k in annotations if k.startswith("redisqueue.dev/")], annotations


async def json_patch(kube: Kube, path: str, ops: list[dict[str, Any]]) -> None:
    """What ``kubectl patch --type=json`` sends."""
    await kube.request("PATCH", path, body=ops, content_type="application/json-patch+json")


async def test_a_finalizer_taken_off_comes_back_and_deletion_still_cleans_up(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    """The operator's finalizer sits beside any other: taken off by hand it is put back, and
    deleting the RedisQueue waits for the clean-up, takes only the operator's finalizer off
    and leaves the others'."""
    theirs = "example.com/backup"
    path = rq_path(namespace, "held")
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await apply_secret(kube, namespace, "held-app", {"KEEP": "me"})
    await create_rq(
        kube, namespace, "held", external_spec(redis_server, inject=[{"secretName": "held-app"}])
    )
    rq = await wait_for_ready(kube, namespace, "held")
    assert rq["metadata"].get("finalizers") == [FINALIZER]
    await json_patch(kube, path, [{"op": "add", "path": "/metadata/finalizers/-", "value": theirs}])
    # How a finalizer is taken off by hand to force a deletion through.
    await json_patch(
        kube,
        path,
        [
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ],
    )

    async def held_again() -> list[str] | None:
        rq = await kube.get(path)
        finalizers = list((rq or {}).get("metadata", {}).get("finalizers") or [])
        return finalizers if FINALIZER in finalizers else None

    finalizers = await eventually(held_again, timeout=30, what="the operator's finalizer back")
    assert finalizers == [theirs, FINALIZER]

    await kube.delete(path)

    async def cleaned_up() -> dict[str, Any] | None:
        rq = await kube.get(path)
        env = await read_secret(kube, namespace, "held-app")
        if rq is None or FINALIZER in (rq["metadata"].get("finalizers") or []):
            return None
        return {"finalizers": rq["metadata"]["finalizers"], "env": env}

    left = await eventually(cleaned_up, timeout=30, what="the clean-up done, its finalizer off")
    assert left == {"finalizers": [theirs], "env": {"KEEP": "me"}}
    await json_patch(kube, path, [{"op": "remove", "path": "/metadata/finalizers/0"}])

    async def gone() -> bool | None:
        return True if await kube.get(path) is None else None

    await eventually(gone, timeout=30, what="the RedisQueue gone once its last finalizer is")


async def test_a_secret_created_by_the_operator_is_removed_with_the_redisqueue(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    await external_queue("solo", external_spec(redis_server))
    assert await read_secret(kube, namespace, "app-redis") is not None
    await kube.delete(rq_path(namespace, "solo"))

    async def gone() -> bool:
        return (
            await kube.get(rq_path(namespace, "solo")) is None
            and await read_secret(kube, namespace, "app-redis") is None
        )

    await eventually(gone, timeout=30, what="RedisQueue and its Secret gone")


async def test_two_redisqueues_writing_one_secret_conflict_instead_of_clobbering(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    await external_queue("first", external_spec(redis_server))
    before = await read_secret(kube, namespace, "app-redis")
    second = external_spec(redis_server, backoff={"baseSeconds": 2, "capSeconds": 20})
    await create_rq(kube, namespace, "second", second)
    rq = await wait_for_ready(kube, namespace, "second", "False", "InjectConflict")
    assert "app-redis" in condition(rq, "Injected")["message"]
    assert await read_secret(kube, namespace, "app-redis") == before


# --- provision mode ------------------------------------------------------------------------


def provision_spec(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"provision": {"storage": {"size": "1Gi"}}},
        "inject": [{"secretName": "app-redis"}],
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
    }
    spec.update(extra)
    return spec


async def _objects(kube: Kube, namespace: str, name: str) -> tuple[Any, Any, Any]:
    sts = await kube.get(object_path("apps/v1", "StatefulSet", namespace, f"{name}-redis"))
    svc = await kube.get(object_path("v1", "Service", namespace, f"{name}-redis"))
    auth = await kube.get(object_path("v1", "Secret", namespace, f"{name}-redis-auth"))
    return sts, svc, auth


async def test_provision_mode_creates_owned_objects_and_reports_provisioning(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
) -> None:
    created = await create_rq(kube, namespace, "cache", provision_spec())
    uid = created["metadata"]["uid"]

    async def objects() -> tuple[Any, Any, Any] | None:
        found = await _objects(kube, namespace, "cache")
        return found if all(found) else None

    sts, svc, auth = await eventually(objects, what="StatefulSet, Service and auth Secret")
    for obj in (sts, svc):
        refs = obj["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == uid and refs[0]["controller"] is True
    assert not auth["metadata"].get("ownerReferences")  # Retain: the password outlives it
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    password = unb64(auth["data"])["password"]
    assert password not in yaml.safe_dump(sts)
    rq = await wait_for_ready(kube, namespace, "cache", "False", "Provisioning")
    assert rq["status"]["endpoint"] == f"cache-redis.{namespace}.svc:6379"
    env = await read_secret(kube, namespace, "app-redis")
    assert env is not None and env["REDIS_HOST"] == f"cache-redis.{namespace}.svc"
    assert env["REDIS_PASSWORD"] == password and env["REDIS_POOL_MAX_CONNECTIONS"] == "50"

    # No kubelet here: play the StatefulSet controller and report the pod ready. The
    # operator then PINGs the Service name, which does not resolve outside a cluster, and
    # says so instead of pretending.
    await kube.merge_patch(
        object_path("apps/v1", "StatefulSet", namespace, "cache-redis", "status"),
        {"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}},
    )
    rq = await wait_for_ready(kube, namespace, "cache", "False", "Unreachable")
    assert f"cache-redis.{namespace}.svc:6379" in condition(rq, "Reachable")["message"]

    # A spec change updates the StatefulSet in place and never touches the claim template.
    generation = sts["metadata"]["generation"]
    rq = await kube.get(rq_path(namespace, "cache"))
    assert rq is not None
    await kube.merge_patch(
        rq_path(namespace, "cache"),
        {"spec": {"redis": {"provision": {"resources": {"limits": {"memory": "512Mi"}}}}}},
    )

    async def updated() -> Any:
        live = await kube.get(object_path("apps/v1", "StatefulSet", namespace, "cache-redis"))
        return live if live and live["metadata"]["generation"] > generation else None

    live = await eventually(updated, what="StatefulSet updated in place")
    assert live["metadata"]["uid"] == sts["metadata"]["uid"]
    assert live["spec"]["volumeClaimTemplates"] == sts["spec"]["volumeClaimTemplates"]
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "512Mi"


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
async def test_deletion_policy_decides_the_fate_of_volume_and_password(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    policy: str,
) -> None:
    await create_rq(kube, namespace, "data", provision_spec(deletionPolicy=policy))

    async def provisioned() -> bool:
        return all(await _objects(kube, namespace, "data"))

    await eventually(provisioned, what="provisioned objects")
    await fake_claim(kube, namespace, "data")
    await kube.delete(rq_path(namespace, "data"))
    pvc_path = object_path("v1", "PersistentVolumeClaim", namespace, "data-data-redis-0")

    async def settled() -> bool:
        sts, svc, auth = await _objects(kube, namespace, "data")
        if await kube.get(rq_path(namespace, "data")) is not None or sts or svc:
            return False  # the RedisQueue, then its StatefulSet and Service (GC) must go
        claim = await kube.get(pvc_path)
        claim_gone = claim is None or bool(claim["metadata"].get("deletionTimestamp"))
        if policy == "Retain":
            return auth is not None and not claim_gone
        return auth is None and claim_gone

    await eventually(settled, timeout=60, what=f"{policy}: objects settled")
    assert await read_secret(kube, namespace, "app-redis") is None


async def test_operator_restart_converges_without_duplicates(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await create_rq(kube, namespace, "steady", external_spec(redis_server))
    await create_rq(kube, namespace, "made", provision_spec(inject=[{"secretName": "made-app"}]))
    await wait_for_ready(kube, namespace, "steady")
    await wait_for_ready(kube, namespace, "made", "False", "Provisioning")
    _, _, auth_before = await _objects(kube, namespace, "made")
    events_before = await events_for(kube, namespace, "steady")

    operator.stop()
    await kube.merge_patch(rq_path(namespace, "steady"), {"spec": {"pool": {"maxConnections": 7}}})
    operator.start()

    async def converged() -> dict[str, Any] | None:
        rq = await kube.get(rq_path(namespace, "steady"))
        env = await read_secret(kube, namespace, "app-redis")
        if (
            rq
            and env
            and env.get("REDIS_POOL_MAX_CONNECTIONS") == "7"
            and rq["status"].get("observedGeneration") == rq["metadata"]["generation"]
        ):
            return rq
        return None

    rq = await eventually(converged, timeout=60, what="spec change picked up after restart")
    assert condition(rq, "Ready")["status"] == "True"
    _, _, auth_after = await _objects(kube, namespace, "made")
    assert auth_after["data"] == auth_before["data"]  # the password was not regenerated
    for kind, plural in (("StatefulSet", "statefulsets"), ("Service", "services")):
        api = "apps/v1" if kind == "StatefulSet" else "v1"
        items = await kube.list(object_path(api, kind, namespace))
        names = [i["metadata"]["name"] for i in items if i["metadata"]["name"].startswith("made")]
        assert names == ["made-redis"], (plural, names)
    # Ready stayed Ready across the restart: no new transition event.
    after = await events_for(kube, namespace, "steady")
    assert len(after) == len(events_before), [
        (e["lastTimestamp"], e["message"], e.get("count"), e["reportingInstance"]) for e in after
    ]


async def test_liveness_and_metrics_of_the_operator(operator: OperatorProcess) -> None:
    assert operator.http("/healthz")[0] == 200
    text = operator.http("/metrics")[1]
    assert 'redisqueue_reconcile_total{outcome="success"}' in text
    assert "redisqueue_reconcile_duration_seconds_bucket" in text


# --- the API server rejects invalid resources ---------------------------------------------


def _invalid_cases() -> list[Any]:
    table = yaml.safe_load((REPO / "tests" / "fixtures" / "invalid_redisqueues.yaml").read_text())
    return [pytest.param(case, id=case["name"]) for case in table]


@pytest.mark.parametrize("case", _invalid_cases())
async def test_invalid_manifest_is_rejected_by_the_api_server(
    operator: OperatorProcess, kube: Kube, namespace: str, case: dict[str, Any]
) -> None:
    obj = dict(case["object"])
    obj["metadata"] = {**obj.get("metadata", {}), "namespace": namespace}
    obj["metadata"].setdefault("name", "invalid")
    with pytest.raises(KubeError) as caught:
        await kube.create(obj)
    assert caught.value.status == 422, caught.value
    assert case["expect"] in caught.value.message, caught.value.message


def _invalid_updates() -> list[Any]:
    path = REPO / "tests" / "fixtures" / "invalid_redisqueue_updates.yaml"
    return [pytest.param(case, id=case["name"]) for case in yaml.safe_load(path.read_text())]


@pytest.mark.parametrize("case", _invalid_updates())
async def test_invalid_update_is_rejected_by_the_api_server(
    operator: OperatorProcess, kube: Kube, namespace: str, case: dict[str, Any]
) -> None:
    before = dict(case["before"])
    before["metadata"] = {**before["metadata"], "namespace": namespace}
    live = await kube.create(before)
    path = rq_path(namespace, live["metadata"]["name"])
    for _ in range(20):  # the operator adds its finalizer meanwhile: retry on 409
        current = await kube.get(path)
        assert current is not None
        with pytest.raises(KubeError) as caught:
            await kube.request("PUT", path, body={**current, "spec": case["object"]["spec"]})
        if caught.value.status != 409:
            break
    assert caught.value.status == 422, caught.value
    assert case["expect"] in caught.value.message, caught.value.message


def test_kubectl_explain_teaches_the_fields(
    operator: OperatorProcess, control_plane: ControlPlane
) -> None:
    text = control_plane.kubectl("explain", "redisqueue.spec.pool").stdout
    assert "maxConnections" in text and "50" in text
    tls = control_plane.kubectl("explain", "redisqueue.spec.redis.external.tls").stdout
    assert "insecureSkipVerify" in tls and "caSecretRef" in tls


@pytest.mark.parametrize("example", ["provision.yaml", "external-elasticache-tls.yaml"])
async def test_examples_apply_as_they_are(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    control_plane: ControlPlane,
    example: str,
) -> None:
    path = REPO / "manifests" / "examples" / example
    result = control_plane.kubectl("apply", "-n", namespace, "-f", str(path))
    assert "created" in result.stdout
    names = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == "RedisQueue"
    ]
    for name in names:
        # Accepted and acted on; not Ready here (no pods run, no ElastiCache reachable).
        rq = await wait_for_ready(kube, namespace, name, "False")
        assert rq["status"]["observedGeneration"] == rq["metadata"]["generation"]


async def test_an_operator_scoped_to_namespaces_leaves_the_others_alone(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    other = namespace[:50] + "-other"
    control_plane.kubectl("create", "namespace", other)
    scoped = OperatorProcess(operator.kubeconfig, tmp_path, namespaces=[namespace])
    operator.stop()  # one operator at a time: the shared one would serve both namespaces
    try:
        scoped.start()
        for ns in (namespace, other):
            await apply_secret(kube, ns, "redis-auth", {"password": redis_server.password or ""})
            await create_rq(kube, ns, "scoped", external_spec(redis_server))
        await wait_for_ready(kube, namespace, "scoped")
        await asyncio.sleep(3)
        untouched = await kube.get(rq_path(other, "scoped"))
        assert untouched is not None and not untouched.get("status")
        assert not (untouched["metadata"].get("finalizers") or [])
    finally:
        scoped.stop()
        operator.start()
    try:
        await wait_for_ready(kube, other, "scoped")  # the cluster-wide operator picks it up
    finally:
        # Only now: a namespace deleted earlier could take the RedisQueue with it first.
        control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_kustomize_install_renders_the_crd_and_the_operator(control_plane: ControlPlane) -> None:
    rendered = control_plane.kubectl("kustomize", str(REPO / "manifests" / "operator")).stdout
    kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d}
    assert ("CustomResourceDefinition", "redisqueues.redisqueue.dev") in kinds
    assert ("Deployment", "redisqueue-operator") in kinds
    assert ("ClusterRole", "redisqueue-operator") in kinds


# --- placement of a provisioned Redis ------------------------------------------------------------


async def test_placement_fields_are_accepted_and_reach_the_statefulset(
    operator: OperatorProcess, kube: Kube, namespace: str, control_plane: ControlPlane
) -> None:
    knobs: dict[str, Any] = {
        "nodeSelector": {"node-pool": "queues"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 50,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}},
                        },
                    }
                ]
            }
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "registry-cred"}],
        "podAnnotations": {"backup.example.com/skip": "true"},
        "podLabels": {"team": "marketplace"},
        "extraConfig": {"slowlog-log-slower-than": "5000"},
    }
    spec = provision_spec()
    spec["redis"]["provision"].update(knobs)
    await create_rq(kube, namespace, "placed", spec)

    async def statefulset() -> dict[str, Any] | None:
        return await kube.get(object_path("apps/v1", "StatefulSet", namespace, "placed-redis"))

    sts = await eventually(statefulset, what="the StatefulSet of a RedisQueue with placement")
    template = sts["spec"]["template"]
    pod = template["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == knobs[key], key
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "placed"
    assert template["metadata"]["labels"]["team"] == "marketplace"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "placed"
    assert template["metadata"]["annotations"]["backup.example.com/skip"] == "true"
    (redis,) = pod["containers"]
    assert "slowlog-log-slower-than 5000" in redis["command"][-1]
    # No kubelet runs the pod here: the API server's own validation of the pod it would
    # create (affinity terms, tolerations, priority class) stands in (server dry run).
    # The StatefulSet controller would add the "data" claim's volume; an emptyDir stands in.
    volumes = [*pod["volumes"], {"name": "data", "emptyDir": {}}]
    dry_run = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "placed-redis-check", "namespace": namespace},
        "spec": {**pod, "volumes": volumes},
    }
    admitted = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(dry_run)
    )
    assert "created (server dry run)" in admitted.stdout, admitted.stderr

    # A change of placement is an in-place update of the StatefulSet.
    await kube.merge_patch(
        rq_path(namespace, "placed"),
        {"spec": {"redis": {"provision": {"nodeSelector": {"node-pool": "fast"}}}}},
    )

    async def moved() -> dict[str, Any] | None:
        current = await statefulset()
        selector = (current or {}).get("spec", {}).get("template", {}).get("spec", {})
        return current if selector.get("nodeSelector") == {"node-pool": "fast"} else None

    await eventually(moved, what="the StatefulSet to take the new nodeSelector")


# --- many RedisQueues: sharing and clean churn -------------------------------------------------


def _operator_clients(server: RedisServer) -> list[dict[str, Any]]:
    """Client connections on ``server`` other than the one asking."""
    with server.admin() as r:
        return [c for c in r.client_list() if c.get("cmd") != "client|list"]


async def test_many_redisqueues_share_one_small_pool_and_leave_nothing_behind(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    control_plane: ControlPlane,
) -> None:
    count = 12
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    # Half the app Secrets exist already with a key of the app's own; the rest are created.
    for i in range(0, count, 2):
        await apply_secret(kube, namespace, f"app-{i}", {"APP_KEY": "kept"})
    for i in range(count):
        await create_rq(
            kube,
            namespace,
            f"q{i}",
            external_spec(
                redis_server,
                inject=[{"secretName": f"app-{i}"}],
                queues=[{"key": f"jobs:{i}", "type": "list"}],
            ),
        )
    for i in range(count):
        await wait_for_ready(kube, namespace, f"q{i}")

    # One endpoint and one credential: one small pool, not a connection per RedisQueue.
    async def probed_everything() -> list[dict[str, Any]] | None:
        clients = _operator_clients(redis_server)
        _, text = operator.http("/metrics")
        depths = re.findall(rf'redisqueue_queue_depth{{[^}}]*namespace="{namespace}"', text)
        return clients if len(depths) == count else None

    clients = await eventually(probed_everything, timeout=30, what="every queue depth read")
    assert 1 <= len(clients) <= 4, clients

    control_plane.kubectl("delete", "redisqueues", "--all", "-n", namespace, "--wait=false")

    async def all_gone() -> bool:
        return not await kube.list(rq_path(namespace))

    await eventually(all_gone, timeout=60, what="every RedisQueue deleted (finalizers removed)")

    async def clean() -> dict[str, Any] | None:
        _, text = operator.http("/metrics")
        series = [line for line in text.splitlines() if f'namespace="{namespace}"' in line]
        secrets = {
            s["metadata"]["name"]: s
            for s in await kube.list(object_path("v1", "Secret", namespace))
            if s["metadata"]["name"].startswith("app-")
        }
        leftovers = {
            "series": series,
            "contract keys": [
                n
                for n, s in secrets.items()
                if any(k.startswith("REDIS_") for k in s.get("data") or {})
            ],
            "labels": [n for n, s in secrets.items() if s["metadata"].get("labels")],
            "connections": _operator_clients(redis_server),
        }
        return None if any(leftovers.values()) else {"secrets": sorted(secrets)}

    remaining = await eventually(clean, timeout=30, what="nothing left behind")
    # The app's own Secrets stay with only the app's key; the ones the operator made are gone.
    assert remaining["secrets"] == sorted(f"app-{i}" for i in range(0, count, 2))
    for i in range(0, count, 2):
        assert await read_secret(kube, namespace, f"app-{i}") == {"APP_KEY": "kept"}
    assert "Will escalate" not in operator.logs()
