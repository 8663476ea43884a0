"""Where an object lives on the API server: its REST path. Pure."""

from __future__ import annotations

from typing import Final

from ..resource.identity import PLURAL

_PLURALS: Final = {
    "Secret": "secrets",
    "Service": "services",
    "ConfigMap": "configmaps",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "StatefulSet": "statefulsets",
    "Deployment": "deployments",
    "Event": "events",
    "Lease": "leases",
    "Pod": "pods",
    "NetworkPolicy": "networkpolicies",
    "RedisQueue": PLURAL,
}


def object_path(
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a (namespaced) object or collection."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{_PLURALS[kind]}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path
