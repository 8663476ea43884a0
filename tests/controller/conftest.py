"""The controller's fast tier: the reconciler, the read side and the steps against the
in-memory API of :mod:`harness.fake_kube` (no Go-built binary), and real redis-servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.fake_kube import FakeKube
from harness.fast_tier import LOOPBACK_ALLOWED, MakeQueue, redisqueue, secret
from harness.redis_server import RedisServer
from redisqueue.controller.api.gate import WRITE_GATE
from redisqueue.controller.readside.side import ReadSide
from redisqueue.controller.reconciler import Reconciler


@pytest.fixture
def fake_kube() -> FakeKube:
    WRITE_GATE.fence(None)
    return FakeKube()


@pytest.fixture
async def side(fake_kube: FakeKube) -> AsyncIterator[ReadSide]:
    read_side = ReadSide(fake_kube, policy=LOOPBACK_ALLOWED)  # type: ignore[arg-type]
    yield read_side
    await read_side.close()


@pytest.fixture
def reconciler(fake_kube: FakeKube, side: ReadSide) -> Reconciler:
    writer = Reconciler(fake_kube, side, instance="test-replica")  # type: ignore[arg-type]
    side.writer = writer
    return writer


@pytest.fixture
def make_queue(fake_kube: FakeKube, redis_server: RedisServer) -> MakeQueue:
    """Store an external-mode RedisQueue for the test's redis-server (and its auth Secret)."""
    fake_kube.put(secret("redis-auth", password=redis_server.password or ""))

    def make(name: str = "orders", **spec: Any) -> dict[str, Any]:
        external = {
            "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
            "auth": {"secretRef": {"name": "redis-auth"}},
            "inject": [{"secretName": f"{name}-app"}],
            "healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 1},
        }
        return fake_kube.put(redisqueue(name, external | spec, labels={"team": "a"}))

    return make
