"""The probe's scheduled details: queue depths and the server's INFO, from a real Redis."""

from __future__ import annotations

from prometheus_client import REGISTRY

from harness.redis_server import RedisServer
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.probing.result import QueueKey


def value(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


async def test_depth_of_lists_and_streams_and_pending_of_a_consumer_group(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.admin()
    admin.rpush("jobs", "a", "b", "c")
    for i in range(5):
        admin.xadd("events", {"n": i})
    admin.xgroup_create("events", "workers", id="0")
    admin.xreadgroup("workers", "w1", {"events": ">"}, count=2)  # delivered, not acked
    probe = Probe(
        redis_server.contract(),
        namespace="ns",
        name="depths",
        queues=[
            QueueKey("jobs", "list"),
            QueueKey("events", "stream", "workers"),
            QueueKey("missing", "stream", "nobody"),
        ],
    )
    assert (await probe.check()).ok
    await probe.collect_details()
    assert (
        value("redisqueue_queue_depth", namespace="ns", name="depths", key="jobs", type="list") == 3
    )
    assert (
        value("redisqueue_queue_depth", namespace="ns", name="depths", key="events", type="stream")
        == 5
    )
    assert (
        value(
            "redisqueue_queue_pending", namespace="ns", name="depths", key="events", group="workers"
        )
        == 2
    )
    assert (
        value(
            "redisqueue_queue_pending", namespace="ns", name="depths", key="missing", group="nobody"
        )
        == 0
    )
    clients = value("redisqueue_redis_connected_clients", namespace="ns", name="depths")
    assert clients is not None and clients >= 2
    processed = value("redisqueue_redis_commands_processed_total", namespace="ns", name="depths")
    assert processed is not None and processed > 10
    admin.close()
    await probe.close()


async def test_details_keep_the_last_values_when_redis_goes_away(
    redis_server: RedisServer,
) -> None:
    probe = Probe(
        redis_server.contract(),
        namespace="ns",
        name="gone",
        queues=[QueueKey("q", "list")],
    )
    await probe.collect_details()
    assert value("redisqueue_queue_depth", namespace="ns", name="gone", key="q", type="list") == 0
    redis_server.stop()
    await probe.collect_details()  # must not raise
    assert value("redisqueue_queue_depth", namespace="ns", name="gone", key="q", type="list") == 0
    assert not (await probe.check()).ok
    await probe.close()
