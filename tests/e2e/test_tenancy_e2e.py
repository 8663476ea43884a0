"""Tenancy end to end: what a RedisQueue author can and cannot make the operator do.

Real kube-apiserver with the admission policy from crds/ and the RBAC from manifests/operator;
the real operator process with its ServiceAccount token. Two users act through their own
ServiceAccount tokens:

* a *tenant* who may only manage RedisQueues in one namespace (no Secrets, no StatefulSets);
* an *app team* who may also read, create and patch Secrets and create StatefulSets there.

The hostile endpoints are fakes on loopback (tests/harness/hostile_redis.py): a real redis-server
cannot be made to answer PING with 160 MB or INFO with strings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.e2e_users import AsUser
from harness.hostile_redis import HostileRedis
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    OperatorToken,
    apply_secret,
    condition,
    create_rq,
    dry_run_patch,
    eventually,
    external_spec,
    read_secret,
    rq_path,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube, KubeError
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.objects.workload import build_statefulset
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import parse_spec

pytestmark = pytest.mark.k8s

TENANT_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["redisqueue.dev"], "resources": ["redisqueues"], "verbs": ["*"]},
]
APP_TEAM_RULES: list[dict[str, Any]] = [
    *TENANT_RULES,
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "patch"]},
    {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["create", "get"]},
]


async def refused(kube: Kube, namespace: str, name: str, spec: dict[str, Any]) -> str:
    """Create a RedisQueue that must be refused; the API server's message."""
    with pytest.raises(KubeError) as info:
        await create_rq(kube, namespace, name, spec)
    assert info.value.status in (403, 422), info.value
    assert await kube_get_quiet(kube, namespace, name) is None
    return info.value.message


async def kube_get_quiet(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await kube.get(rq_path(namespace, name))
    except KubeError:
        return None


async def policy_active(tenant: Kube, namespace: str) -> None:
    """Wait until the admission policy is enforced (it is loaded asynchronously after apply)."""
    spec = {
        "redis": {"external": {"host": "127.0.0.1", "port": 1}},
        "auth": {"secretRef": {"name": "nobody-may-read-this", "key": "password"}},
    }

    async def check() -> bool:
        try:
            await create_rq(tenant, namespace, "policy-check", spec)
        except KubeError as exc:
            return "you may not get Secret" in exc.message
        await tenant.delete(rq_path(namespace, "policy-check"))
        return False

    await eventually(check, timeout=30, what="the author-permissions policy to be enforced")


def external(host: str, port: int, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "redis": {"external": {"host": host, "port": port}},
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
    }
    spec.update(extra)
    return spec


# --- authorization at admission -----------------------------------------------------------------


async def test_a_tenant_cannot_make_the_operator_read_write_or_run_for_them(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    as_user: AsUser,
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await apply_secret(kube, namespace, "app-config", {"DATABASE_URL": "postgres://db/app"})
    before = await kube.get(object_path("v1", "Secret", namespace, "app-config"))
    async with as_user("tenant", TENANT_RULES) as tenant:
        await policy_active(tenant, namespace)

        # Reading a Secret through spec.auth (the operator would send it in AUTH).
        message = await refused(
            tenant,
            namespace,
            "steal-password",
            external("127.0.0.1", 1, auth={"secretRef": {"name": "redis-auth", "key": "password"}}),
        )
        assert "spec.auth.secretRef.name: you may not get Secret redis-auth" in message
        assert "get secrets" in message

        # Reading a Secret through the CA reference.
        message = await refused(
            tenant,
            namespace,
            "steal-ca",
            {
                "redis": {
                    "external": {
                        "host": "127.0.0.1",
                        "port": 1,
                        "tls": {"enabled": True, "caSecretRef": {"name": "app-config"}},
                    }
                }
            },
        )
        assert "caSecretRef.name: you may not get Secret app-config" in message

        # Writing into an app's Secret.
        message = await refused(
            tenant,
            namespace,
            "hijack-app",
            external("127.0.0.1", 1, inject=[{"secretName": "app-config"}]),
        )
        assert "spec.inject[0].secretName: you may not patch Secret app-config" in message

        # Running an image of the tenant's choice with the password in its environment.
        message = await refused(
            tenant,
            namespace,
            "own-image",
            {"redis": {"provision": {"image": "registry.example/evil:1"}}},
        )
        assert "you may not create StatefulSets" in message

        # The same through an update of a RedisQueue someone with the rights created.
        await create_rq(kube, namespace, "shared", external_spec(redis_server))
        await wait_for_ready(kube, namespace, "shared")
        with pytest.raises(KubeError) as info:
            await tenant.merge_patch(
                rq_path(namespace, "shared"), {"spec": {"inject": [{"secretName": "app-config"}]}}
            )
        # The whole spec is checked against the editor's rights, not only what changed.
        assert "you may not get Secret redis-auth" in info.value.message
        assert (await kube.get(rq_path(namespace, "shared")) or {})["spec"].get("inject") is None

        # What the tenant may do: a RedisQueue that needs no Secret, with the default image.
        await create_rq(tenant, namespace, "plain", {"redis": {"provision": {}}})
        await tenant.merge_patch(rq_path(namespace, "plain"), {"metadata": {"labels": {"a": "b"}}})

    after = await kube.get(object_path("v1", "Secret", namespace, "app-config"))
    assert after is not None and before is not None
    assert after["data"] == before["data"]
    assert (after["metadata"].get("labels") or {}) == (before["metadata"].get("labels") or {})


async def test_a_user_with_the_rights_sees_no_change(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    as_user: AsUser,
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    await apply_secret(kube, namespace, "app-redis", {"APP_KEY": "kept"})
    async with as_user("team", APP_TEAM_RULES) as team:
        await create_rq(
            team,
            namespace,
            "jobs",
            external_spec(
                redis_server,
                inject=[{"secretName": "app-redis"}, {"secretName": "new-app-redis"}],
            ),
        )
        await create_rq(
            team, namespace, "custom", {"redis": {"provision": {"image": "redis:7.4-bookworm"}}}
        )
        rq = await wait_for_ready(team, namespace, "jobs")
    assert condition(rq, "Injected")["status"] == "True"
    injected = await read_secret(kube, namespace, "app-redis")
    assert injected is not None
    assert injected["APP_KEY"] == "kept"
    assert injected["REDIS_PASSWORD"] == redis_server.password
    assert (await read_secret(kube, namespace, "new-app-redis") or {}).get("REDIS_HOST")


# --- the operator's own refusals ----------------------------------------------------------------


async def test_the_operator_never_reads_or_writes_special_secrets(
    operator: OperatorProcess, kube: Kube, namespace: str, redis_server: RedisServer
) -> None:
    pull = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()},
    }
    await kube.create(pull)
    # The token controller deletes a token Secret whose ServiceAccount does not exist yet,
    # and a fresh namespace gets its "default" ServiceAccount a moment after it is created.
    for _ in range(300):
        if await kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no default ServiceAccount in {namespace}")
    token = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sa-token",
            "namespace": namespace,
            "annotations": {"kubernetes.io/service-account.name": "default"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    await kube.create(token)
    # Even an admin (who passes the admission policy) cannot aim the operator at them.
    await create_rq(
        kube,
        namespace,
        "via-token",
        external(
            redis_server.host,
            redis_server.port,
            auth={"secretRef": {"name": "sa-token", "key": "token"}},
        ),
    )
    await create_rq(
        kube,
        namespace,
        "into-pull",
        external(redis_server.host, redis_server.port, inject=[{"secretName": "pull"}]),
    )
    rq = await wait_for_ready(kube, namespace, "via-token", "False", "SecretRefused")
    assert "kubernetes.io/service-account-token" in condition(rq, "Ready")["message"]
    rq = await wait_for_ready(kube, namespace, "into-pull", "False", "SecretRefused")
    live = await kube.get(object_path("v1", "Secret", namespace, "pull"))
    assert live is not None
    assert set(live["data"]) == {".dockerconfigjson"}
    assert not (live["metadata"].get("labels") or {})


# --- one tenant must not take the operator down ---------------------------------------------------


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


HOSTILE = ("huge_bulk_ping", "huge_line_ping", "huge_error_ping", "bad_length_ping", "huge_info")


async def test_hostile_endpoints_leave_memory_logs_and_other_tenants_alone(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    external_queue: ExternalQueue,
    as_user: AsUser,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert operator.proc is not None
    pid = operator.proc.pid
    await external_queue("good")
    rss_before = _peak_rss_kib(pid)
    log_before = operator.log_path.stat().st_size
    async with contextlib.AsyncExitStack() as stack:
        fakes = [await stack.enter_async_context(HostileRedis(mode)) for mode in HOSTILE]
        async with as_user("tenant", TENANT_RULES) as tenant:
            for fake in fakes:
                await create_rq(
                    tenant, namespace, fake.mode.replace("_", "-"), external(fake.host, fake.port)
                )
        # Each hostile RedisQueue gets a status of its own, naming the fault, not the bytes.
        for fake in fakes:
            name = fake.mode.replace("_", "-")
            expect = ("True", None) if fake.mode == "huge_info" else ("False", "ProbeFailed")
            rq = await wait_for_ready(kube, namespace, name, *expect)
            assert len(condition(rq, "Ready")["message"]) < 300
        # Let every hostile endpoint be probed many times while the good one is watched.
        probes_before = sum(len(f.commands) for f in fakes)
        for _ in range(20):
            good = await kube.get(rq_path(namespace, "good"))
            assert condition(good, "Ready")["status"] == "True"
            assert operator.health(namespace, "good")[0] == 200
            await asyncio.sleep(0.5)
        probed = sum(len(f.commands) for f in fakes) - probes_before
        sent = sum(f.sent for f in fakes)
    rss_growth = _peak_rss_kib(pid) - rss_before
    log_growth = operator.log_path.stat().st_size - log_before
    with capsys.disabled():
        print(
            f"\nhostile endpoints: {len(fakes)}, commands answered {probed}, bytes sent "
            f"{sent / 2**20:.1f} MiB; operator peak RSS {rss_before / 1024:.1f} MiB before, "
            f"+{rss_growth / 1024:.1f} MiB after; log +{log_growth} bytes"
        )
    assert probed >= 2 * len(fakes)  # the endpoints really were probed again and again
    assert rss_growth < 32 * 1024, f"peak RSS grew by {rss_growth} KiB"
    assert log_growth < 256 * 1024, f"log grew by {log_growth} bytes"
    everything = operator.logs()
    for fake in fakes:
        rq = await kube.get(rq_path(namespace, fake.mode.replace("_", "-")))
        everything += yaml.safe_dump(rq)
    assert "xxxxxxxx" not in everything


# --- a leaked operator token ------------------------------------------------------------------


def _as_operator(
    plane: ControlPlane, kubeconfig: Path, obj: dict[str, Any], *verb: str
) -> subprocess.CompletedProcess[str]:
    """``kubectl <verb> --dry-run=server`` of ``obj`` with the operator's own token."""
    return plane.run(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        *(verb or ("create",)),
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps(obj),
        check=False,
    )


def _statefulset(namespace: str, **pod: Any) -> dict[str, Any]:
    """The StatefulSet the operator builds for a RedisQueue ``x``, with ``pod`` fields set."""
    names = QueueNames(namespace, "x", str(uuid.uuid4()))
    spec = parse_spec({"redis": {"provision": {}}})
    body = build_statefulset(names.with_spec(spec), spec)
    body["spec"]["template"]["spec"].update(pod)
    return body


async def test_a_leaked_operator_token_creates_only_objects_of_the_operators_shape(
    operator_token: OperatorToken, kube: Kube, namespace: str
) -> None:
    cp, token = operator_token
    await apply_secret(kube, namespace, "app-config", {"DATABASE_URL": "postgres://db/app"})

    # The shape the operator builds passes (the e2e tests run it under this policy, too).
    allowed = _as_operator(cp, token, _statefulset(namespace))
    assert allowed.returncode == 0, allowed.stderr

    refusals = {
        "kube-system": _statefulset("kube-system"),
        "hostNetwork": _statefulset(namespace, hostNetwork=True),
        "token": _statefulset(namespace, automountServiceAccountToken=True),
        "privileged": _statefulset(
            namespace,
            containers=[{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
        ),
        "hostPath": _statefulset(
            namespace,
            volumes=[
                {"name": "config", "hostPath": {"path": "/"}} if v["name"] == "config" else v
                for v in _statefulset(namespace)["spec"]["template"]["spec"]["volumes"]
            ],
        ),
        "unlabelled": {
            **_statefulset(namespace),
            "metadata": {"name": "y-redis", "namespace": namespace},
        },
        "nodePort": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "x",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "redisqueue-operator"},
            },
            "spec": {"type": "NodePort", "ports": [{"port": 6379}]},
        },
        "tlsSecret": {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "t",
                "namespace": namespace,
                "labels": {"redisqueue.dev/redisqueue": "q"},
            },
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""},
        },
    }
    for what, obj in refusals.items():
        result = _as_operator(cp, token, obj)
        assert result.returncode != 0, what
        assert "redisqueue-operator-object-shapes" in result.stderr, (what, result.stderr)

    # An app Secret: REDIS_* keys may be written, the app's own keys not.
    def patch_app_config(key: str, value: bytes) -> subprocess.CompletedProcess[str]:
        data = {"data": {key: base64.b64encode(value).decode()}}
        return dry_run_patch(
            cp, token, "secret", namespace, "app-config", data, patch_type="strategic"
        )

    result = patch_app_config("DATABASE_URL", b"postgres://evil")
    assert result.returncode != 0
    assert "changes only REDIS_* keys" in result.stderr
    result = patch_app_config("REDIS_HOST", b"redis")
    assert result.returncode == 0, result.stderr


# --- the operator's policy --------------------------------------------------------------------


async def test_metadata_and_link_local_endpoints_are_refused(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
) -> None:
    # At admission (manifests/operator/70-operator-policy.yaml), for everyone.
    for host in ("169.254.169.254", "fd00:ec2::254", "metadata.google.internal"):
        message = await refused(kube, namespace, "meta", external(host, 80))
        assert f"spec.redis.external.host: {host} is" in message
        assert "refuses" in message
    # What CEL cannot see (an IPv4-mapped IPv6 address), the operator refuses itself.
    await create_rq(kube, namespace, "mapped", external("::ffff:169.254.169.254", 80))
    rq = await wait_for_ready(kube, namespace, "mapped", "False", "PolicyRefused")
    assert "is in a network the operator refuses" in condition(rq, "Ready")["message"]
    assert operator.health(namespace, "mapped")[0] == 404  # never probed


async def test_a_redisqueue_with_a_long_name_injects(
    operator: OperatorProcess, kube: Kube, namespace: str, redis_server: RedisServer
) -> None:
    await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
    names = ["q" * 70 + "-one", "q" * 70 + "-two"]
    for name, target in zip(names, ("app-one", "app-two"), strict=True):
        await create_rq(
            kube,
            namespace,
            name,
            external_spec(
                redis_server,
                inject=[{"secretName": target}],
            ),
        )
    seen: set[str] = set()
    for name, target in zip(names, ("app-one", "app-two"), strict=True):
        rq = await wait_for_ready(kube, namespace, name)
        assert condition(rq, "Injected")["status"] == "True"
        injected = await kube.get(object_path("v1", "Secret", namespace, target))
        assert injected is not None
        label = injected["metadata"]["labels"]["redisqueue.dev/redisqueue"]
        assert len(label) <= 63
        managers = {m["manager"] for m in injected["metadata"]["managedFields"]}
        assert len(managers) == 1 and all(len(m) <= 128 for m in managers)
        seen |= managers
    assert len(seen) == 2  # two long names, two field managers
    # Dropping the target releases it: the label finds the Secret again.
    await kube.merge_patch(rq_path(namespace, names[0]), {"spec": {"inject": []}})

    async def released() -> bool:
        return await read_secret(kube, namespace, "app-one") is None

    await eventually(released, what="app-one released by its long-named RedisQueue")
