"""Helpers of the controller's fast tier (see tests/controller/conftest.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

NAMESPACE = "shop"

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


def decoded(obj: dict[str, Any] | None, key: str) -> str | None:
    if obj is None or key not in (obj.get("data") or {}):
        return None
    return base64.b64decode(obj["data"][key]).decode()
