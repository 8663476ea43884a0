"""Liveness: fails when the operator stops processing, not only when the process dies."""

from __future__ import annotations

import asyncio

import kopf

from redisqueue.controller.api.kube import Kube
from redisqueue.controller.readside.side import ReadSide
from redisqueue.controller.resource.identity import QueueRef
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import parse_spec
from redisqueue.controller.runner import STALL_GRACE_SECONDS, Liveness


def _reconciler() -> ReadSide:
    # An API client that is never called: liveness reads only in-memory state.
    return ReadSide(Kube(kopf.ConnectionInfo(server="https://127.0.0.1:1")))


def _watch(side: ReadSide, probed_ago: float) -> None:
    side.registry.add(QueueNames("shop", "orders", "uid-1"))
    state = side.registry.get(QueueRef("shop", "orders"))
    assert state is not None
    state.spec = parse_spec(
        {
            "redis": {"external": {"host": "cache"}},
            "healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 1},
        }
    )
    state.probed_at = asyncio.get_running_loop().time() - probed_ago


async def test_live_while_every_probe_loop_ticks_on_time() -> None:
    reconciler = _reconciler()
    _watch(reconciler, probed_ago=4)
    ok, message = Liveness(reconciler)()
    assert ok and "1 RedisQueue" in message
    await reconciler.kube.close()


async def test_not_live_when_a_probe_loop_has_stalled() -> None:
    reconciler = _reconciler()
    _watch(reconciler, probed_ago=5 + 3 * 5 + STALL_GRACE_SECONDS)
    ok, message = Liveness(reconciler)()
    assert not ok and "shop/orders" in message
    await reconciler.kube.close()


async def test_not_live_when_the_operator_loop_has_ended() -> None:
    reconciler = _reconciler()
    liveness = Liveness(reconciler)
    liveness.operator_task = asyncio.create_task(asyncio.sleep(0))
    await liveness.operator_task
    ok, message = liveness()
    assert not ok and "stopped" in message
    await reconciler.kube.close()
