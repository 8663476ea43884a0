"""Nothing foreign is touched: objects taken over by name, retained data, the operator's token.

Real kube-apiserver (with kube-controller-manager's garbage collector) with the install
path's CRD, RBAC and admission policies, and the real operator with its ServiceAccount token.
A *tenant* may only manage RedisQueues in its namespace; an *app team* may also read, patch
and create Secrets, read PersistentVolumeClaims and create StatefulSets.

The operator changes or deletes only objects it can prove it made for that RedisQueue (a
controller ownerReference to its uid, or its uid stamped on objects that outlive it);
anything else of the same name is left alone and the RedisQueue's status names it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import pytest
from test_tenancy_e2e import TENANT_RULES, _as_operator, policy_active

from harness.e2e_users import AsUser
from harness.operator_harness import (
    OperatorProcess,
    OperatorToken,
    condition,
    create_rq,
    dry_run_patch,
    eventually,
    fake_claim,
    rq_path,
    wait_for_ready,
)
from redisqueue.controller.api.kube import Kube, KubeError
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.objects.network import OperatorPeer, build_network_policy
from redisqueue.controller.objects.workload import build_service, build_statefulset
from redisqueue.controller.resource.identity import ANNOTATION_OWNER_UID
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import parse_spec

pytestmark = pytest.mark.k8s

PROVISION: dict[str, Any] = {"redis": {"provision": {}}}
#: An app team that owns its Secrets and volumes.
DATA_OWNER_RULES: list[dict[str, Any]] = [
    *TENANT_RULES,
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]},
]


def _service(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }


def _foreign_statefulset(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
            },
        },
    }


def _network_policy(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
    }


def _secret(namespace: str, name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"password": base64.b64encode(b"someone-elses").decode()},
    }


def _path(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


def _applied_by(obj: dict[str, Any] | None) -> list[str]:
    """The field managers that server-side applied to ``obj`` (the operator's way to write)."""
    fields = (obj or {})["metadata"].get("managedFields") or []
    return [m.get("manager", "") for m in fields if m.get("operation") == "Apply"]


async def _still_there_after_gc(kube: Kube, path: str, seconds: float = 6.0) -> dict[str, Any]:
    """``path`` outlives its would-be owner: the garbage collector had time to act."""
    for _ in range(int(seconds / 0.5)):
        live = await kube.get(path)
        assert live is not None, f"{path} was deleted"
        await asyncio.sleep(0.5)
    final = await kube.get(path)
    assert final is not None
    return final


# --- (1) objects taken over by name -------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [_service, _foreign_statefulset, _network_policy],
    ids=["Service", "StatefulSet", "NetworkPolicy"],
)
async def test_a_foreign_object_of_the_workload_name_is_neither_changed_nor_deleted(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    as_user: AsUser,
    make: Any,
) -> None:
    foreign = make(namespace, "jobs-redis")
    await kube.create(foreign)
    before = await kube.get(_path(foreign))
    assert before is not None
    async with as_user("tenant", TENANT_RULES) as tenant:
        await policy_active(tenant, namespace)
        await create_rq(tenant, namespace, "jobs", PROVISION)
        rq = await wait_for_ready(kube, namespace, "jobs", "False", "OwnershipConflict")
        message = condition(rq, "Ready")["message"]
        assert f"{foreign['kind']} {namespace}/jobs-redis exists and is not controlled by it" in (
            message
        )
        after = await kube.get(_path(foreign))
        assert after is not None
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert not after["metadata"].get("ownerReferences")
        assert _applied_by(after) == []
        # Deleting the RedisQueue leaves the object to its owner: nothing tied it to it.
        await tenant.delete(rq_path(namespace, "jobs"))
    final = await _still_there_after_gc(kube, _path(foreign))
    assert final["spec"] == before["spec"]


async def test_nothing_is_written_before_every_object_is_checked(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    # Only the NetworkPolicy name is taken: no password Secret, Service or StatefulSet may be
    # made for a RedisQueue that cannot have all of them.
    await kube.create(_network_policy(namespace, "half-redis"))
    await create_rq(kube, namespace, "half", PROVISION)
    await wait_for_ready(kube, namespace, "half", "False", "OwnershipConflict")
    for api, kind, name in (
        ("v1", "Secret", "half-redis-auth"),
        ("v1", "Service", "half-redis"),
        ("apps/v1", "StatefulSet", "half-redis"),
    ):
        assert await kube.get(object_path(api, kind, namespace, name)) is None, kind


async def test_a_foreign_password_secret_is_never_used_or_deleted(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    # Unlabelled, and labelled as the operator's but never stamped with a RedisQueue's uid.
    plain = _secret(namespace, "plain-redis-auth")
    forged = _secret(
        namespace,
        "forged-redis-auth",
        **{"app.kubernetes.io/managed-by": "redisqueue-operator"},
        **{"app.kubernetes.io/instance": "forged"},
    )
    for secret in (plain, forged):
        await kube.create(secret)
        name = secret["metadata"]["name"].removesuffix("-redis-auth")
        await create_rq(kube, namespace, name, {**PROVISION, "deletionPolicy": "Delete"})
        rq = await wait_for_ready(kube, namespace, name, "False", "OwnershipConflict")
        assert f"Secret {namespace}/{name}-redis-auth" in condition(rq, "Ready")["message"]
        assert (
            await kube.get(object_path("apps/v1", "StatefulSet", namespace, f"{name}-redis"))
            is None
        )
        await kube.delete(rq_path(namespace, name))

        async def gone(n: str = name) -> bool:
            return await kube.get(rq_path(namespace, n)) is None

        await eventually(gone, what=f"{name} finalized")
        left = await kube.get(_path(secret))
        assert left is not None, f"{secret['metadata']['name']} was deleted"
        assert left["data"] == secret["data"]


async def _retained(kube: Kube, namespace: str, name: str) -> tuple[str, dict[str, Any]]:
    """A RedisQueue ``name`` made, then deleted under Retain: its uid and its password
    Secret, and a claim as the StatefulSet controller (not running here) would have left it."""
    made = await create_rq(kube, namespace, name, PROVISION)
    uid = made["metadata"]["uid"]
    secret_path = object_path("v1", "Secret", namespace, f"{name}-redis-auth")

    async def generated() -> dict[str, Any] | None:
        sts = await kube.get(object_path("apps/v1", "StatefulSet", namespace, f"{name}-redis"))
        return await kube.get(secret_path) if sts else None

    secret = await eventually(generated, what="the generated password and the StatefulSet")
    assert secret["metadata"]["annotations"][ANNOTATION_OWNER_UID] == uid
    template = await fake_claim(kube, namespace, name)
    assert template["annotations"][ANNOTATION_OWNER_UID] == uid
    await kube.delete(rq_path(namespace, name))

    async def gone() -> bool:
        if await kube.get(rq_path(namespace, name)) is not None:
            return False
        for api, kind in (
            ("apps/v1", "StatefulSet"),
            ("v1", "Service"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
        ):  # removed by the garbage collector, a moment after their owner
            if await kube.get(object_path(api, kind, namespace, f"{name}-redis")) is not None:
                return False
        return True

    await eventually(gone, what=f"{name} and the objects it controlled deleted")
    kept = await kube.get(secret_path)
    assert kept is not None
    return uid, kept


async def test_retained_data_is_reused_only_when_asked_by_an_author_who_may_read_it(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    as_user: AsUser,
) -> None:
    old_uid, secret = await _retained(kube, namespace, "keep")
    claim_path = object_path("v1", "PersistentVolumeClaim", namespace, "data-keep-redis-0")
    async with (
        as_user("tenant", TENANT_RULES) as tenant,
        as_user("owner", DATA_OWNER_RULES) as owner,
    ):
        await policy_active(tenant, namespace)
        # Re-created under the same name: the retained data is not silently adopted.
        await create_rq(tenant, namespace, "keep", PROVISION)
        rq = await wait_for_ready(kube, namespace, "keep", "False", "OwnershipConflict")
        assert "adoptRetained" in condition(rq, "Ready")["message"]
        assert (
            await kube.get(object_path("apps/v1", "StatefulSet", namespace, "keep-redis")) is None
        )

        # Asking for it, or for its deletion, needs the rights over it.
        for change, missing in (
            ({"redis": {"provision": {"adoptRetained": True}}}, "get persistentvolumeclaims"),
            ({"deletionPolicy": "Delete"}, "delete persistentvolumeclaims"),
        ):
            with pytest.raises(KubeError) as denied:
                await tenant.merge_patch(rq_path(namespace, "keep"), {"spec": change})
            assert f"missing RBAC: {missing}" in denied.value.message
        await tenant.delete(rq_path(namespace, "keep"))

        async def gone() -> bool:
            return await kube.get(rq_path(namespace, "keep")) is None

        await eventually(gone, what="the tenant's keep deleted")

        # An author who may read the data adopts it: both are stamped with the new uid.
        adopted = await create_rq(
            owner, namespace, "keep", {"redis": {"provision": {"adoptRetained": True}}}
        )
        new_uid = adopted["metadata"]["uid"]

        async def stamped() -> bool:
            live_secret = await kube.get(_path(secret))
            claim = await kube.get(claim_path)
            return bool(
                live_secret
                and claim
                and live_secret["metadata"]["annotations"][ANNOTATION_OWNER_UID] == new_uid
                and claim["metadata"]["annotations"][ANNOTATION_OWNER_UID] == new_uid
            )

        await eventually(stamped, what="the retained data stamped for its new RedisQueue")
        live = await kube.get(_path(secret))
        assert live is not None and live["data"] == secret["data"]  # the same password
        rq = await kube.get(rq_path(namespace, "keep"))
        assert condition(rq, "Ready").get("reason") != "OwnershipConflict"
    assert old_uid != new_uid


async def test_delete_removes_only_what_is_stamped_with_the_redisqueues_uid(
    operator: OperatorProcess, kube: Kube, namespace: str
) -> None:
    await _retained(kube, namespace, "old")
    # The admin re-creates "old" with Delete and adopts: the stamps move to the new uid, so
    # its deletion removes the data. A claim of the same name made by hand is never removed.
    made = await create_rq(
        kube,
        namespace,
        "old",
        {"redis": {"provision": {"adoptRetained": True}}, "deletionPolicy": "Delete"},
    )
    claim_path = object_path("v1", "PersistentVolumeClaim", namespace, "data-old-redis-0")

    async def adopted() -> bool:
        claim = await kube.get(claim_path)
        annotations = (claim or {}).get("metadata", {}).get("annotations") or {}
        return annotations.get(ANNOTATION_OWNER_UID) == made["metadata"]["uid"]

    await eventually(adopted, what="the claim adopted")
    await kube.delete(rq_path(namespace, "old"))

    async def removed() -> bool:
        claim = await kube.get(claim_path)
        secret = await kube.get(object_path("v1", "Secret", namespace, "old-redis-auth"))
        return (claim is None or bool(claim["metadata"].get("deletionTimestamp"))) and not secret

    await eventually(removed, what="the adopted data deleted with its RedisQueue")

    # A hand-made claim and Secret, labelled like the operator's, under another RedisQueue.
    labels = {
        "app.kubernetes.io/name": "redis",
        "app.kubernetes.io/instance": "mine",
        "app.kubernetes.io/managed-by": "redisqueue-operator",
    }
    await kube.create(_secret(namespace, "mine-redis-auth", **labels))
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-mine-redis-0", "namespace": namespace, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(claim)
    await create_rq(kube, namespace, "mine", {**PROVISION, "deletionPolicy": "Delete"})
    await wait_for_ready(kube, namespace, "mine", "False", "OwnershipConflict")
    await kube.delete(rq_path(namespace, "mine"))

    async def finalized() -> bool:
        return await kube.get(rq_path(namespace, "mine")) is None

    await eventually(finalized, what="mine finalized")
    await _still_there_after_gc(kube, _path(claim), seconds=3)
    assert await kube.get(object_path("v1", "Secret", namespace, "mine-redis-auth")) is not None


# --- (5) the operator's own token ---------------------------------------------------------------


def _operator_shaped(namespace: str, uid: str, name: str = "x") -> dict[str, dict[str, Any]]:
    """What the operator builds for the RedisQueue ``name`` with ``uid``."""
    spec = parse_spec(PROVISION)
    names = QueueNames(namespace, name, uid).with_spec(spec)
    return {
        "StatefulSet": build_statefulset(names, spec),
        "Service": build_service(names, spec),
        "NetworkPolicy": build_network_policy(names, spec, OperatorPeer()),
    }


def _refused_by_shapes(
    result: Any, what: str, policy: str = "redisqueue-operator-object-shapes"
) -> None:
    assert result.returncode != 0, what
    assert policy in result.stderr, (what, result.stderr)


async def test_a_leaked_operator_token_cannot_take_over_relabel_or_rewrite_foreign_workloads(
    operator_token: OperatorToken, kube: Kube, namespace: str
) -> None:
    cp, token = operator_token
    web = _foreign_statefulset(namespace, "web")
    await kube.create(web)
    await kube.create(_service(namespace, "web"))
    # What the operator builds passes, and is created for real to be changed below (owned by a
    # real RedisQueue, so that the garbage collector leaves it; external, so that the operator
    # itself makes none of it).
    owner_rq = await create_rq(kube, namespace, "x", {"redis": {"external": {"host": "x.invalid"}}})
    shaped = _operator_shaped(namespace, owner_rq["metadata"]["uid"])
    for body in shaped.values():
        result = _as_operator(cp, token, body)
        assert result.returncode == 0, (body["kind"], result.stderr)
        await kube.create(body)

    managed = {"app.kubernetes.io/managed-by": "redisqueue-operator"}
    owner = shaped["Service"]["metadata"]["ownerReferences"]
    attempts = {
        "relabel a foreign StatefulSet": ("statefulset", "web", {"metadata": {"labels": managed}}),
        "take over a foreign Service": (
            "service",
            "web",
            {"metadata": {"labels": {**managed, "app.kubernetes.io/instance": "web"}}},
        ),
        "own a foreign Service": (
            "service",
            "web",
            {"metadata": {"ownerReferences": owner}},
        ),
        "change a foreign StatefulSet's image": (
            "statefulset",
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil:1"}]}}}},
        ),
        "point its own Service at another app": (
            "service",
            "x-redis",
            {"spec": {"selector": {"app": "web"}}},
        ),
        "run its own StatefulSet as another ServiceAccount": (
            "statefulset",
            "x-redis",
            {"spec": {"template": {"spec": {"serviceAccountName": "admin"}}}},
        ),
        "hand its own Service to another RedisQueue": (
            "service",
            "x-redis",
            {"metadata": {"ownerReferences": [{**owner[0], "uid": str(uuid.uuid4())}]}},
        ),
        "open its own NetworkPolicy to an address block": (
            "networkpolicy",
            "x-redis",
            {"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}},
        ),
    }
    for what, (kind, name, patch) in attempts.items():
        # An update of an app's own StatefulSet is a restart or nothing: the restart policy
        # allows the operator's token only its restart annotation there.
        policy = "redisqueue-operator-" + (
            "restarts" if name == "web" and kind == "statefulset" else "object-shapes"
        )
        _refused_by_shapes(dry_run_patch(cp, token, kind, namespace, name, patch), what, policy)
    live = await kube.get(object_path("apps/v1", "StatefulSet", namespace, "web"))
    assert live is not None and "managed-by" not in json.dumps(live["metadata"].get("labels"))


async def test_a_leaked_operator_token_creates_only_restricted_pods(
    operator_token: OperatorToken, namespace: str
) -> None:
    cp, token = operator_token
    result = _as_operator(cp, token, _operator_shaped(namespace, str(uuid.uuid4()))["StatefulSet"])
    assert result.returncode == 0, result.stderr  # the operator's own pods are restricted

    def variant(change: Any) -> dict[str, Any]:
        body = _operator_shaped(namespace, str(uuid.uuid4()))["StatefulSet"]
        change(body["spec"]["template"]["spec"])
        return body

    def container(key: str, value: Any) -> Any:
        return lambda pod: pod["containers"][0]["securityContext"].__setitem__(key, value)

    def drop(key: str) -> Any:
        return lambda pod: pod["containers"][0]["securityContext"].pop(key)

    def pod(key: str, value: Any) -> Any:
        return lambda spec: spec["securityContext"].__setitem__(key, value)

    def unconfined(spec: dict[str, Any]) -> None:
        spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
        spec["containers"][0]["securityContext"].pop("seccompProfile")

    refusals = {
        "as root": container("runAsUser", 0),
        "runAsNonRoot false": container("runAsNonRoot", False),
        "pod as root": pod("runAsUser", 0),
        "seccomp Unconfined": unconfined,
        "seccomp Unconfined in the container": container("seccompProfile", {"type": "Unconfined"}),
        "privilege escalation unset": drop("allowPrivilegeEscalation"),
        "capabilities kept": container("capabilities", {"drop": ["NET_RAW"]}),
    }
    for what, change in refusals.items():
        result = _as_operator(cp, token, variant(change))
        _refused_by_shapes(result, what)


async def test_a_leaked_operator_token_deletes_only_the_operators_volume_claims(
    operator_token: OperatorToken, kube: Kube, namespace: str
) -> None:
    cp, token = operator_token
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    labels = {"app.kubernetes.io/managed-by": "redisqueue-operator"}
    claims = {
        (namespace, "app-data"): {},
        ("kube-system", f"system-{uuid.uuid4().hex[:6]}"): labels,
        (namespace, "data-x-redis-0"): labels,
    }
    for (ns, name), marks in claims.items():
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": ns, "labels": marks},
                "spec": spec,
            }
        )

    def delete(ns: str, name: str) -> Any:
        return cp.run(
            "kubectl",
            f"--kubeconfig={token}",
            "delete",
            "pvc",
            name,
            "-n",
            ns,
            "--dry-run=server",
            check=False,
        )

    for (ns, name), marks in claims.items():
        result = delete(ns, name)
        if ns == namespace and marks:
            assert result.returncode == 0, result.stderr  # its own, in a tenant namespace
        else:
            _refused_by_shapes(result, f"delete {ns}/{name}")
    # Nor may it relabel a claim to make it its own.
    result = dry_run_patch(
        cp, token, "pvc", namespace, "app-data", {"metadata": {"labels": labels}}
    )
    _refused_by_shapes(result, "relabel a claim")
    result = dry_run_patch(
        cp, token, "pvc", namespace, "data-x-redis-0", {"metadata": {"labels": {"a": "b"}}}
    )
    _refused_by_shapes(result, "relabel its own claim")
    for (ns, name), _ in claims.items():
        await kube.delete(object_path("v1", "PersistentVolumeClaim", ns, name))
