"""Helpers of the controller's fast tier (see tests/controller/conftest.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from redisqueue.controller.resource.identity import API_VERSION, KIND
from redisqueue.controller.resource.policy import (
    DEFAULT_DENIED_HOSTS,
    ENV_DENIED_HOSTS,
    OperatorPolicy,
)

NAMESPACE = "shop"

#: The tests' Redis servers listen on loopback, which the default policy refuses: the tests'
#: install denies what the default denies but loopback (as an installer may).
LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
LOOPBACK_ALLOWED = OperatorPolicy.from_env(
    {ENV_DENIED_HOSTS: ",".join(h for h in DEFAULT_DENIED_HOSTS if h not in LOOPBACK)}
)

#: Stores a RedisQueue in the in-memory API and returns it.
MakeQueue = Callable[..., dict[str, Any]]


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def redisqueue(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    """A RedisQueue ``name`` of the test namespace with ``spec`` (and ``metadata`` such as
    labels)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NAMESPACE, **metadata},
        "spec": spec,
    }


def decoded(obj: dict[str, Any] | None, key: str) -> str | None:
    if obj is None or key not in (obj.get("data") or {}):
        return None
    return base64.b64decode(obj["data"][key]).decode()
