"""The cache of referenced Secrets against the real API server."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kube_controlplane import ControlPlane
from redisqueue.controller.kube import Kube, object_path
from redisqueue.controller.secretcache import SecretCache
from redisqueue.controller.spec import JSON
from redisqueue.controller.state import SecretReferences


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


async def test_many_readers_of_one_secret_share_one_get(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = CountingKube(Kube.from_kubeconfig(control_plane.kubeconfig).info)
    try:
        await kube.create(secret(namespace, "shared"))
        references = SecretReferences()
        for i in range(50):
            references.set(namespace, f"q{i}", frozenset({"shared"}))
        cache = SecretCache(kube, references)
        answers = await asyncio.gather(*(cache.read(namespace, ["shared"]) for _ in range(50)))
        assert kube.gets == 1
        assert all(a["shared"]["metadata"]["name"] == "shared" for a in answers)
        await cache.read(namespace, ["shared"])
        assert kube.gets == 1  # from the cache now

        cache.update(namespace, "shared", None)  # the watch saw it deleted
        assert (namespace, "shared") not in cache
        assert await cache.read(namespace, ["absent"]) == {}
        assert kube.gets == 2
        assert "shared" in await cache.read(namespace, ["shared"])
        assert kube.gets == 3  # read again once the watch dropped it
    finally:
        await kube.close()


async def test_special_secrets_are_never_kept_and_unreferenced_ones_are_pruned(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = Kube.from_kubeconfig(control_plane.kubeconfig)
    try:
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
        references = SecretReferences()
        references.set(namespace, "q", frozenset({"tls-one", "plain"}))
        cache = SecretCache(kube, references)
        found = await cache.read(namespace, ["tls-one", "plain"])
        assert set(found) == {"plain"}
        assert (namespace, "tls-one") not in cache and len(cache) == 1
        live = await kube.get(object_path("v1", "Secret", namespace, "plain"))
        assert live is not None
        cache.update(namespace, "plain", live | {"type": "kubernetes.io/dockerconfigjson"})
        assert len(cache) == 0  # now special: dropped
        cache.update(namespace, "plain", live)
        references.forget(namespace, "q")
        cache.prune()
        assert len(cache) == 0
    finally:
        await kube.close()
