"""The writes any controller must make for a new RedisQueue, as the floors make them.

bench/scale.py's floors and bench/kopf_floor.py's operator make exactly these after each
create, so every baseline writes the same bodies with the same client. Nothing here imports
a Kubernetes client library (the kopf floor keeps kubernetes_asyncio out, as the operator
does).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from redisqueue.contract import ConnectionContract
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.objects.appsecret import build_injected_secret_apply
from redisqueue.controller.resource.identity import API_VERSION, FINALIZER
from redisqueue.controller.resource.names import QueueNames, inject_field_manager


def floor_status(generation: int, endpoint: str, now: str) -> dict[str, Any]:
    """A Ready status of the shape and size the operator writes."""
    conditions = (
        ("Ready", "Ready", f"Redis at {endpoint} answered PING"),
        ("Reachable", "PingSucceeded", f"PING answered in 0.4 ms at {endpoint}"),
        ("Injected", "Injected", "connection contract injected into 1 Secret(s)"),
    )
    return {
        "phase": "Ready",
        "mode": "external",
        "endpoint": endpoint,
        "latencyMs": 0.4,
        "lastProbeTime": now,
        "observedGeneration": generation,
        "conditions": [
            {
                "type": kind,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": now,
                "observedGeneration": generation,
            }
            for kind, reason, message in conditions
        ],
    }


async def write_rest(
    kube: Kube, namespace: str, created: Mapping[str, Any], contract: ConnectionContract
) -> None:
    """The writes any controller must make for the RedisQueue ``created``, after its create:
    a finalizer (to remove injected keys on delete), the app Secret with ``contract``,
    status, and the Event for the first Ready."""
    endpoint = f"{contract.host}:{contract.port}"
    name = created["metadata"]["name"]
    names = QueueNames(namespace, name, created["metadata"]["uid"])
    path = object_path(API_VERSION, "RedisQueue", namespace, name)
    await kube.merge_patch(path, {"metadata": {"finalizers": [FINALIZER]}})
    # The app Secret the operator applies to a new RedisQueue's target: the same body and
    # field manager, as an Opaque Secret (steps/inject.py).
    target = created["spec"]["inject"][0]["secretName"]
    body = build_injected_secret_apply(target, namespace, contract, source=names)
    await kube.apply({**body, "type": "Opaque"}, field_manager=inject_field_manager(name))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = floor_status(int(created["metadata"]["generation"]), endpoint, now)
    await kube.merge_patch(path + "/status", {"status": status})
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "RedisQueue",
                "name": name,
                "namespace": namespace,
                "uid": created["metadata"]["uid"],
            },
            "reason": "Ready",
            "message": f"Ready (Redis at {endpoint} answered PING)",
            "type": "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
    )
