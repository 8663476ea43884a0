"""The store of referenced Secrets against the real API server."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from harness.kube_controlplane import ControlPlane
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.readside.registry import Registry
from redisqueue.controller.readside.secrets import SecretStore
from redisqueue.controller.resource.errors import SetupError
from redisqueue.controller.resource.identity import JSON, QueueRef
from redisqueue.controller.resource.names import QueueNames


class CountingKube(Kube):
    """The real client, counting the GETs it sends."""

    gets = 0

    async def get(self, path: str) -> JSON | None:
        self.gets += 1
        return await super().get(path)


def secret(namespace: str, name: str, kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": namespace},
        "data": {"password": base64.b64encode(b"s3cret-value").decode()},
    }


def readers(namespace: str, count: int, *secrets: str) -> Registry:
    """A registry of ``count`` RedisQueues that all read ``secrets``."""
    registry = Registry()
    for i in range(count):
        registry.add(QueueNames(namespace, f"q{i}", f"uid-{i}"))
        state = registry.get(QueueRef(namespace, f"q{i}"))
        assert state is not None
        registry.set_reads(state, frozenset(secrets))
    return registry


async def test_many_readers_of_one_secret_share_one_get(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = CountingKube(Kube.from_kubeconfig(control_plane.kubeconfig).info)
    try:
        await kube.create(secret(namespace, "shared"))
        store = SecretStore(kube, readers(namespace, 50, "shared", "absent"))
        answers = await asyncio.gather(
            *(store.get(namespace, "shared", "password") for _ in range(50))
        )
        assert kube.gets == 1
        assert all(a["metadata"]["name"] == "shared" for a in answers)
        assert "managedFields" not in answers[0]["metadata"]  # only what the contract needs
        await store.get(namespace, "shared", "password")
        assert kube.gets == 1  # from the store now

        store.drop(namespace, "shared")  # the watch saw it deleted
        assert (namespace, "shared") not in store
        with pytest.raises(SetupError, match="does not exist"):
            await store.get(namespace, "absent", "password")
        assert kube.gets == 2
        await store.get(namespace, "shared", "password")
        assert kube.gets == 3  # read again once the watch dropped it
    finally:
        await kube.close()


async def test_special_secrets_are_never_kept_and_unreferenced_ones_are_pruned(
    kube: Kube, namespace: str
) -> None:
    await kube.create(
        secret(namespace, "tls-one", "kubernetes.io/tls")
        | {
            "data": {
                "tls.crt": base64.b64encode(b"crt").decode(),
                "tls.key": base64.b64encode(b"key").decode(),
            }
        }
    )
    await kube.create(secret(namespace, "plain"))
    registry = readers(namespace, 1, "tls-one", "plain")
    store = SecretStore(kube, registry)
    with pytest.raises(SetupError, match=r"kubernetes\.io/tls"):
        await store.get(namespace, "tls-one", "password")
    await store.get(namespace, "plain", "password")
    assert (namespace, "tls-one") not in store and len(store) == 1
    live = await kube.get(object_path("v1", "Secret", namespace, "plain"))
    assert live is not None
    assert store.is_current(namespace, "plain", live["metadata"]["resourceVersion"])
    registry.forget(QueueRef(namespace, "q0"))
    store.prune()
    assert len(store) == 0
