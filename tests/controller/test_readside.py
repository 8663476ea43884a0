"""The read side every replica runs, as a standby runs it (no writer), against the in-memory
API (fast tier) and real redis-servers: the same rules as the leader, and nothing written."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from harness.fake_kube import FakeKube
from harness.fast_tier import NAMESPACE, MakeQueue, secret
from harness.redis_server import RedisServer
from redisqueue.controller.readside.side import ReadSide
from redisqueue.controller.resource.identity import QueueRef
from redisqueue.controller.resource.policy import OperatorPolicy

ORDERS = QueueRef(NAMESPACE, "orders")


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a condition on plain state
            await asyncio.sleep(0.01)


def series(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": NAMESPACE, "name": "orders", **labels})


async def test_a_standby_probes_what_it_observes_and_writes_nothing(
    fake_kube: FakeKube, side: ReadSide, make_queue: MakeQueue
) -> None:
    await side.observe(make_queue())
    state = side.registry.get(ORDERS)
    assert state is not None and state.probe is not None
    result = await side.probe(state)
    assert result is not None and result.ok
    assert series("redisqueue_up") == 1.0
    assert [p.name for p, labels in side.probes() if labels == {"team": "a"}] == ["orders"]
    assert fake_kube.writes() == []


@pytest.mark.parametrize(
    "denied",
    ["127.0.0.0/8", "127.0.0.1/32", "::ffff:127.0.0.0/104"],
)
async def test_a_host_the_policy_refuses_is_never_probed_on_a_standby(
    side: ReadSide, make_queue: MakeQueue, denied: str
) -> None:
    side.policy = OperatorPolicy.from_env({"REDISQUEUE_DENIED_HOSTS": denied})
    await side.observe(make_queue())
    state = side.registry.get(ORDERS)
    assert state is not None and state.probe is None and state.contract is None
    assert state.refused is not None and state.refused.reason == "PolicyRefused"
    assert side.probes() == []
    assert series("redisqueue_up") is None


async def test_an_invalid_spec_is_not_probed(side: ReadSide, make_queue: MakeQueue) -> None:
    await side.observe(make_queue(pool={"maxConnections": 0}))
    state = side.registry.get(ORDERS)
    assert state is not None and state.probe is None
    assert state.refused is not None and "spec.pool.maxConnections" in state.refused.message


async def test_a_deleted_redisqueue_leaves_no_probe_connection_or_series(
    side: ReadSide, make_queue: MakeQueue, redis_server: RedisServer
) -> None:
    await side.observe(make_queue(queues=[{"key": "jobs"}]))
    state = side.registry.get(ORDERS)
    assert state is not None
    await side.probe(state)
    assert series("redisqueue_queue_depth", key="jobs", type="list") == 0.0
    await side.forget(ORDERS)
    assert side.registry.get(ORDERS) is None and len(side.endpoints) == 0
    assert series("redisqueue_up") is None
    assert series("redisqueue_queue_depth", key="jobs", type="list") is None


async def test_editing_the_queue_keys_drops_the_old_keys_series(
    side: ReadSide, make_queue: MakeQueue
) -> None:
    for keys in (["a", "b"], ["b", "c"], ["d"]):
        await side.observe(make_queue(queues=[{"key": k} for k in keys]))
        state = side.registry.get(ORDERS)
        assert state is not None
        await side.probe(state)
    depths = [
        s.labels["key"]
        for family in REGISTRY.collect()
        if family.name == "redisqueue_queue_depth"
        for s in family.samples
        if s.labels.get("name") == "orders"
    ]
    assert depths == ["d"]


async def test_the_standby_follows_redisqueues_through_its_own_watch(
    fake_kube: FakeKube, side: ReadSide, make_queue: MakeQueue
) -> None:
    make_queue("first")
    following = asyncio.create_task(side.follow_queues())
    try:
        await asyncio.wait_for(side.synced.wait(), 5)
        assert side.registry.get(QueueRef(NAMESPACE, "first")) is not None
        make_queue("second")
        await until(lambda: side.registry.get(QueueRef(NAMESPACE, "second")) is not None)
        await fake_kube.delete(
            f"/apis/redisqueue.dev/v1alpha1/namespaces/{NAMESPACE}/redisqueues/first"
        )
        await until(lambda: side.registry.get(QueueRef(NAMESPACE, "first")) is None)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
    assert fake_kube.writes() == [
        r
        for r in fake_kube.writes()
        if "redisqueues" in r.path  # only the test's own delete
    ]


async def test_a_rotated_password_reaches_the_standbys_probe_through_the_metadata_watch(
    fake_kube: FakeKube, side: ReadSide, make_queue: MakeQueue, redis_server: RedisServer
) -> None:
    await side.observe(make_queue())
    watching = asyncio.create_task(side.follow_secrets())
    try:
        state = side.registry.get(ORDERS)
        assert state is not None and state.contract is not None
        with redis_server.admin() as admin:
            admin.config_set("requirepass", "rotated-pw")
        await asyncio.sleep(0.1)  # the watch is open
        fake_kube.put(secret("redis-auth", password="rotated-pw"))
        await until(lambda: state.contract is not None and state.contract.password == "rotated-pw")
        result = await side.probe(state)
        assert result is not None and result.ok
        # The watch carried metadata only: the rotated value came from one GET of that Secret.
        gets = [
            r for r in fake_kube.requests if r.method == "GET" and r.path.endswith("/redis-auth")
        ]
        assert len(gets) == 2  # the first read, and the read after the change
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
