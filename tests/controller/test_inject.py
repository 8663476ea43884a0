"""When an app Secret is read before the contract is applied, and when re-applying it can be
skipped (real API server)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from harness.fast_tier import decoded
from harness.kube_controlplane import ControlPlane
from redisqueue.contract import ConnectionContract
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.objects.appsecret import build_injected_secret_apply
from redisqueue.controller.resource.errors import SetupError
from redisqueue.controller.resource.identity import JSON
from redisqueue.controller.resource.names import QueueNames, inject_field_manager
from redisqueue.controller.resource.spec import RedisQueueSpec, parse_spec
from redisqueue.controller.resource.status import Reason
from redisqueue.controller.steps.inject import already_applied, inject_contract


async def test_an_unchanged_contract_is_not_applied_again_and_any_difference_is(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = Kube.from_kubeconfig(control_plane.kubeconfig)
    manager = inject_field_manager("queue")
    path = object_path("v1", "Secret", namespace, "app")
    contract = ConnectionContract(host="redis.example", password="pw-1", username="worker")
    body = build_injected_secret_apply(
        "app", namespace, contract, source=QueueNames(namespace, "queue")
    )
    try:
        assert not already_applied(None, body, manager)  # no Secret yet
        await kube.apply(body, field_manager=manager)
        live = await kube.get(path)
        assert already_applied(live, body, manager)

        rotated = ConnectionContract(host="redis.example", password="pw-2", username="worker")
        changed = build_injected_secret_apply(
            "app", namespace, rotated, source=QueueNames(namespace, "queue")
        )
        assert not already_applied(live, changed, manager)

        # A key that left the contract (the username) is still there: the apply removes it.
        fewer = build_injected_secret_apply(
            "app",
            namespace,
            ConnectionContract(host="redis.example", password="pw-1"),
            source=QueueNames(namespace, "queue"),
        )
        assert not already_applied(live, fewer, manager)
        await kube.apply(fewer, field_manager=manager)
        live = await kube.get(path)
        assert live is not None and "REDIS_USERNAME" not in live["data"]
        assert already_applied(live, fewer, manager)

        # The same values written by someone else are not this RedisQueue's.
        assert not already_applied(live, fewer, inject_field_manager("other-queue"))
    finally:
        await kube.delete(path)
        await kube.close()


# --- a new RedisQueue's first injection: applied without reading the target first -------------


def _spec(*targets: str) -> RedisQueueSpec:
    return parse_spec(
        {
            "redis": {"external": {"host": "redis.example"}},
            "inject": [{"secretName": t} for t in targets],
        }
    )


async def _special(kube: Kube, namespace: str, name: str, kind: str, **data: bytes) -> JSON:
    """A Secret of type ``kind`` created by this test (so a manager owns its ``type``)."""
    return await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": kind,
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


async def test_a_new_redisqueue_writes_its_targets_unread_and_the_api_server_guards_the_type(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = _Counting.from_kubeconfig(control_plane.kubeconfig)
    kube.methods = []
    names = QueueNames(namespace, "queue")
    contract = ConnectionContract(host="redis.example", password="pw-1")
    pull = await _special(
        kube, namespace, "pull", "kubernetes.io/dockerconfigjson", **{".dockerconfigjson": b"{}"}
    )
    # A TLS Secret whose managedFields were cleared: no manager owns its type, so the unread
    # apply is not a conflict but an invalid update of an immutable field.
    tls = await _special(
        kube, namespace, "tls", "kubernetes.io/tls", **{"tls.crt": b"", "tls.key": b""}
    )
    tls_path = object_path("v1", "Secret", namespace, "tls")
    await kube.merge_patch(tls_path, {"metadata": {"managedFields": [{}]}})
    tls = await kube.get(tls_path) or {}
    assert not tls["metadata"].get("managedFields")
    custom = await _special(kube, namespace, "custom", "acme.example/config", APP_KEY=b"kept")
    try:
        # Absent: one request, the apply that creates it, Opaque.
        kube.methods = []
        changed: list[str] = []
        await inject_contract(kube, names, _spec("fresh"), contract, first=True, changed=changed)
        assert kube.methods == ["PATCH"]
        assert changed == ["fresh"]
        fresh = await kube.get(object_path("v1", "Secret", namespace, "fresh"))
        assert fresh is not None and fresh["type"] == "Opaque"
        assert set(fresh["data"]) == set(contract.to_env())

        # Special types: refused by name, and nothing in them changed.
        for name, before in (("pull", pull), ("tls", tls)):
            with pytest.raises(SetupError) as refused:
                await inject_contract(kube, names, _spec(name), contract, first=True)
            assert refused.value.reason == Reason.SECRET_REFUSED
            assert before["type"] in refused.value.message
            after = await kube.get(object_path("v1", "Secret", namespace, name))
            assert after is not None
            assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

        # A custom type is not the operator's to refuse: the contract goes in, the type stays.
        kube.methods = []
        await inject_contract(kube, names, _spec("custom"), contract, first=True)
        assert kube.methods == ["PATCH", "GET", "PATCH"]  # refused unread, then as usual
        live = await kube.get(object_path("v1", "Secret", namespace, "custom"))
        assert live is not None and live["type"] == "acme.example/config"
        assert decoded(live, "APP_KEY") == "kept"
        assert decoded(live, "REDIS_PASSWORD") == "pw-1"
        assert custom["metadata"]["uid"] == live["metadata"]["uid"]

        # Later injections read first, and the type the first one named is no trouble: the
        # next apply leaves it out, and the Secret stays Opaque.
        rotated = ConnectionContract(host="redis.example", password="pw-2")
        await inject_contract(kube, names, _spec("fresh"), rotated)
        fresh = await kube.get(object_path("v1", "Secret", namespace, "fresh"))
        assert fresh is not None and fresh["type"] == "Opaque"
        assert decoded(fresh, "REDIS_PASSWORD") == "pw-2"
    finally:
        await kube.close()


class _Counting(Kube):
    """The real client, recording the method of each request it sends."""

    methods: list[str]

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.methods.append(method)
        return await super().request(method, path, **kwargs)
