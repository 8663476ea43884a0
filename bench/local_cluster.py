"""What the operator benchmarks on the local control plane share.

The control plane of tests/controlplane with the CRD and the operator's RBAC installed, one
redis-server with a password, namespaces holding that password in the Secret ``redis-auth``,
external-mode RedisQueues that inject into an app Secret, and the operator's memory.

Importing this module puts ``tests/`` (the harness) and ``operator/`` on the import path, so
a benchmark imports it before anything from either.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "operator"))

from harness.kube_controlplane import ControlPlane  # noqa: E402
from harness.operator_harness import apply_secret, install_crd_and_rbac  # noqa: E402
from harness.redis_server import RedisServer  # noqa: E402
from redisqueue.controller.api.kube import Kube  # noqa: E402

#: The namespace the RedisQueues under test live in.
NAMESPACE = "bench"
#: The Secret (key ``password``) that holds the Redis password in each namespace.
AUTH_SECRET = "redis-auth"


@contextmanager
def control_plane() -> Iterator[tuple[ControlPlane, Path]]:
    """The running control plane with the CRD and RBAC installed, and a work directory."""
    with tempfile.TemporaryDirectory() as tmp, ControlPlane() as plane:
        install_crd_and_rbac(plane)
        yield plane, Path(tmp)


def start_redis(workdir: Path) -> RedisServer:
    """A password-protected redis-server under ``workdir``; the caller stops it."""
    return RedisServer(workdir / "redis", password="bench-password-0123").start()


async def create_namespace(
    plane: ControlPlane, kube: Kube, server: RedisServer, namespace: str = NAMESPACE
) -> None:
    """``namespace``, with the password of ``server`` in its auth Secret."""
    plane.kubectl("create", "namespace", namespace)
    await apply_secret(kube, namespace, AUTH_SECRET, {"password": server.password or ""})


def external_spec(server: RedisServer, inject: str) -> dict[str, Any]:
    """An external-mode spec on ``server`` that injects into the app Secret ``inject``."""
    return {
        "redis": {"external": {"host": server.host, "port": server.port}},
        "auth": {"secretRef": {"name": AUTH_SECRET, "key": "password"}},
        "inject": [{"secretName": inject}],
    }


def is_ready(rq: dict[str, Any] | None) -> bool:
    """Whether the RedisQueue shows the condition Ready=True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in ((rq or {}).get("status") or {}).get("conditions") or []
    )


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (or, with ``field="VmHWM"``, its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")
