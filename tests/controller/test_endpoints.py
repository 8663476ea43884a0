"""Probe connections shared per endpoint and credential, against a real Redis."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from harness.redis_server import RedisServer
from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.endpoints import MAX_IN_FLIGHT, EndpointPool
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.probing.result import ProbeResult, QueueKey


def clients(server: RedisServer) -> list[dict[str, str]]:
    """Client connections on ``server`` other than the one asking."""
    return [c for c in server.client_list() if c.get("cmd") != "client|list"]


def commands(server: RedisServer, name: str) -> int:
    with server.admin() as admin:
        stats = admin.info("commandstats").get(f"cmdstat_{name}") or {}
    return int(stats.get("calls", 0))


async def test_many_probes_of_one_endpoint_share_a_small_pool_and_each_ping(
    redis_server: RedisServer,
) -> None:
    pool = EndpointPool()
    contract = redis_server.contract()
    probes = [
        Probe(contract, namespace="shared", name=f"q{i}", timeout=2, endpoints=pool)
        for i in range(50)
    ]
    assert len(pool) == 1
    before = commands(redis_server, "ping")
    results = await asyncio.gather(*(p.check() for p in probes))
    assert all(r.ok for r in results)
    # Fifty RedisQueues asking in the same turn share one PING, and each keeps its own series.
    assert commands(redis_server, "ping") - before == 1
    for i in (0, 49):
        assert REGISTRY.get_sample_value("redisqueue_up", {"namespace": "shared", "name": f"q{i}"})
    assert 1 <= len(clients(redis_server)) <= MAX_IN_FLIGHT + 2

    for probe in probes:
        await probe.close()
    assert len(pool) == 0
    assert clients(redis_server) == []


async def test_other_credentials_get_their_own_endpoint(redis_server: RedisServer) -> None:
    pool = EndpointPool()
    good = redis_server.contract()
    wrong = ConnectionContract(host=redis_server.host, port=redis_server.port, password="nope")
    right = Probe(good, namespace="creds", name="right", timeout=2, endpoints=pool)
    rejected = Probe(wrong, namespace="creds", name="wrong", timeout=2, endpoints=pool)
    assert len(pool) == 2
    assert (await right.check()).ok
    assert (await rejected.check()).reason == "auth_failed"
    await right.close()
    await rejected.close()
    assert len(pool) == 0


def list_probes(server: RedisServer, namespace: str, count: int) -> list[Probe]:
    """``count`` probes sharing one endpoint: ``q{i}`` watches the list ``{namespace}:{i}``,
    which holds ``i + 1`` items."""
    with server.admin() as admin:
        for i in range(count):
            admin.rpush(f"{namespace}:{i}", *range(i + 1))
    pool = EndpointPool()
    contract = server.contract()
    return [
        Probe(
            contract,
            namespace=namespace,
            name=f"q{i}",
            timeout=2,
            queues=[QueueKey(f"{namespace}:{i}", "list")],
            endpoints=pool,
        )
        for i in range(count)
    ]


def unread_depths(namespace: str, count: int) -> list[str]:
    """The probes of :func:`list_probes` whose depth metric does not show their list's length."""
    return [
        f"q{i}"
        for i in range(count)
        if REGISTRY.get_sample_value(
            "redisqueue_queue_depth",
            {"namespace": namespace, "name": f"q{i}", "key": f"{namespace}:{i}", "type": "list"},
        )
        != i + 1
    ]


async def test_depth_reads_of_one_turn_go_out_as_one_pipeline(redis_server: RedisServer) -> None:
    probes = list_probes(redis_server, "batched", 10)
    info_before = commands(redis_server, "info")
    await asyncio.gather(*(p.collect_details() for p in probes))
    assert unread_depths("batched", 10) == []
    # One INFO for the ten of them (the admin's own INFO call above is counted too).
    assert commands(redis_server, "info") - info_before == 1 + 1
    for probe in probes:
        await probe.close()


async def test_a_closed_probe_records_nothing_even_if_its_ping_finishes_later(
    redis_server: RedisServer,
) -> None:
    pool = EndpointPool()
    contract = redis_server.contract()
    keeper = Probe(contract, namespace="late", name="keeper", timeout=2, endpoints=pool)
    leaving = Probe(contract, namespace="late", name="leaving", timeout=2, endpoints=pool)
    pending = asyncio.ensure_future(leaving.check())
    await leaving.close()  # deleted while its PING is on the wire
    await pending
    assert (await keeper.check()).ok
    labels = {"namespace": "late", "name": "leaving", "outcome": "ok"}
    assert REGISTRY.get_sample_value("redisqueue_probes_total", labels) is None
    await keeper.close()


async def test_a_slow_redis_never_runs_the_probes_out_of_their_own_connections(
    redis_server: RedisServer,
) -> None:
    """After a restart, reconciles arrive one per turn of the event loop, each with a PING and
    a detail read. While Redis is slow to answer (here: paused for real with CLIENT PAUSE),
    the detail reads must wait for the one in flight instead of each taking a connection:
    a probe that finds its own small pool used up would report a healthy Redis as
    unreachable."""
    probes = list_probes(redis_server, "slow", 20)
    assert (await probes[0].check()).ok  # a connection is open before Redis slows down
    admin = redis_server.admin()
    admin.client_pause(300, all=True)
    admin.close()
    reads: list[asyncio.Future[None]] = []
    for probe in probes:  # one RedisQueue per turn of the event loop
        reads.append(asyncio.ensure_future(probe.collect_details()))
        await asyncio.sleep(0)
    checks: list[asyncio.Future[ProbeResult]] = []
    for probe in probes:
        checks.append(asyncio.ensure_future(probe.check()))
        await asyncio.sleep(0)
    await asyncio.gather(*reads)
    results = await asyncio.gather(*checks)
    assert [r.reason for r in results if not r.ok] == []
    assert unread_depths("slow", 20) == []
    assert len(clients(redis_server)) <= MAX_IN_FLIGHT + 2
    for probe in probes:
        await probe.close()
