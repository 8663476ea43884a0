"""The fair pool against a real redis-server: arrival order, exhaustion, and its metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
import redis.asyncio

from harness.library import pool_settings, sample, settings_for
from harness.redis_server import RedisServer
from redisqueue.client import PoolExhaustedError, create_async_client, create_client


async def greedy_and_polite(client: redis.asyncio.Redis) -> list[str]:
    """One task keeps taking the only connection for short blocking pops, back to back; a
    second task asks once, while the first is busy. Returns what happened to the second."""
    stop = asyncio.Event()

    async def greedy() -> None:
        while not stop.is_set():
            await client.blpop(["nothing"], timeout=0.05)

    outcome: list[str] = []

    async def polite() -> None:
        try:
            await client.ping()
            outcome.append("served")
        except redis.ConnectionError as exc:
            outcome.append(f"failed: {exc}")

    hog = asyncio.create_task(greedy())
    await asyncio.sleep(0.02)  # the greedy task holds the connection now
    await polite()
    stop.set()
    await hog
    return outcome


async def test_a_waiting_caller_is_served_before_a_caller_that_comes_back(
    redis_server: RedisServer,
) -> None:
    ours = create_async_client(
        pool_settings(redis_server, max_connections=1, timeout=1), name="fair-async"
    )
    assert await greedy_and_polite(ours) == ["served"]
    await ours.aclose()


async def test_redis_pys_stock_pool_fails_the_same_scenario(redis_server: RedisServer) -> None:
    # The baseline the test above is measured against: redis-py's BlockingConnectionPool lets
    # the greedy task take the connection back every time, and the polite one times out.
    stock = redis_server.stock_async_client(max_connections=1, timeout=1)
    try:
        outcome = await greedy_and_polite(stock)
    finally:
        await stock.aclose()
        await stock.connection_pool.disconnect()  # a pool handed in is not the client's to close
    assert len(outcome) == 1 and outcome[0].startswith("failed: No connection available")


async def test_waiters_get_connections_in_arrival_order(redis_server: RedisServer) -> None:
    client = create_async_client(
        pool_settings(redis_server, max_connections=1, timeout=30), name="fifo-async"
    )
    pool = client.connection_pool
    served: list[int] = []
    holder = asyncio.create_task(client.blpop(["hold"], timeout=0.3))
    await asyncio.sleep(0.05)

    async def caller(i: int) -> None:
        await client.rpush("order", i)
        served.append(i)

    callers = []
    for i in range(20):
        callers.append(asyncio.create_task(caller(i)))
        while pool.waiting() < i + 1:  # type: ignore[attr-defined]  # noqa: ASYNC110
            await asyncio.sleep(0)
    await asyncio.gather(holder, *callers)
    assert served == list(range(20))
    assert [int(x) for x in await client.lrange("order", 0, -1)] == list(range(20))
    await client.aclose()


async def test_1000_tasks_sharing_50_connections_all_finish_within_the_pool_timeout(
    redis_server: RedisServer,
) -> None:
    client = create_async_client(
        pool_settings(redis_server, max_connections=50, timeout=5), name="oversubscribed"
    )

    async def job(i: int) -> None:
        await client.blpop([f"empty:{i % 7}"], timeout=0.05)  # holds a connection 50 ms
        await client.incr("done")

    results = await asyncio.gather(*(job(i) for i in range(1000)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert int(await client.get("done")) == 1000
    assert sample("redisqueue_client_pool_exhausted_total", client="oversubscribed") == 0
    # every command waited for its connection, and the histogram saw real queueing
    assert sample("redisqueue_client_pool_wait_seconds_count", client="oversubscribed") >= 2000
    assert sample("redisqueue_client_pool_wait_seconds_sum", client="oversubscribed") > 0
    await client.aclose()


def test_sync_waiters_get_connections_in_arrival_order(redis_server: RedisServer) -> None:
    client = create_client(
        pool_settings(redis_server, max_connections=1, timeout=30), name="fifo-sync"
    )
    pool = client.connection_pool
    holder = threading.Thread(target=lambda: client.blpop(["hold"], timeout=0.5))
    holder.start()
    while not any(c.get("cmd") == "blpop" for c in redis_server.client_list()):
        time.sleep(0.01)
    threads = []
    for i in range(10):
        t = threading.Thread(target=client.rpush, args=("order", i))
        t.start()
        threads.append(t)
        while pool.waiting() < i + 1:  # type: ignore[attr-defined]
            time.sleep(0.001)
    holder.join()
    for t in threads:
        t.join()
    assert [int(x) for x in client.lrange("order", 0, -1)] == list(range(10))
    client.close()


def test_sync_greedy_threads_cannot_starve_a_waiting_one(redis_server: RedisServer) -> None:
    client = create_client(
        pool_settings(redis_server, max_connections=2, timeout=1), name="fair-sync"
    )
    stop = threading.Event()

    def greedy() -> None:
        while not stop.is_set():
            client.blpop(["nothing"], timeout=0.05)

    hogs = [threading.Thread(target=greedy) for _ in range(4)]
    for t in hogs:
        t.start()
    try:
        for _ in range(5):
            assert client.ping() is True  # each waits behind the hogs, never past 1 s
    finally:
        stop.set()
        for t in hogs:
            t.join()
    assert sample("redisqueue_client_pool_exhausted_total", client="fair-sync") == 0
    client.close()


Run = Callable[[], Awaitable[object]]


async def test_exhaustion_is_its_own_error_and_metric_never_a_lost_connection(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisqueue.client")
    client = create_async_client(
        pool_settings(redis_server, max_connections=1, timeout=0.2), name="exhausted"
    )
    await client.ping()
    holder = asyncio.create_task(client.blpop(["hold"], timeout=1))
    await asyncio.sleep(0.05)
    with pytest.raises(PoolExhaustedError) as caught:
        await client.get("k")
    holder.cancel()
    message = str(caught.value)
    assert "all 1 connections" in message and "0.2 s" in message
    assert "REDIS_POOL_MAX_CONNECTIONS" in message
    assert isinstance(caught.value, redis.ConnectionError)
    assert sample("redisqueue_client_pool_exhausted_total", client="exhausted") == 1
    assert sample("redisqueue_client_retries_total", client="exhausted") == 0
    assert "connection lost" not in caplog.text
    await client.aclose()


def test_sync_exhaustion_raises_pool_exhausted_error(redis_server: RedisServer) -> None:
    client = create_client(
        pool_settings(redis_server, max_connections=1, timeout=0.2), name="exhausted-sync"
    )
    holder = threading.Thread(target=lambda: client.blpop(["hold"], timeout=1))
    holder.start()
    while not any(c.get("cmd") == "blpop" for c in redis_server.client_list()):
        time.sleep(0.01)
    with pytest.raises(PoolExhaustedError, match="all 1 connections"):
        client.ping()
    holder.join()
    assert client.ping() is True  # the pool is whole again
    assert sample("redisqueue_client_pool_exhausted_total", client="exhausted-sync") == 1
    client.close()


async def test_a_cancelled_waiter_leaves_the_queue(redis_server: RedisServer) -> None:
    client = create_async_client(
        pool_settings(redis_server, max_connections=1, timeout=2), name="cancelled-waiter"
    )
    pool = client.connection_pool
    holder = asyncio.create_task(client.blpop(["hold"], timeout=0.3))
    await asyncio.sleep(0.05)
    impatient = asyncio.create_task(client.get("k"))
    while pool.waiting() < 1:  # type: ignore[attr-defined]  # noqa: ASYNC110
        await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert pool.waiting() == 0  # type: ignore[attr-defined]
    await holder
    # the free connection goes to the next caller at once, not to the departed one
    assert await client.ping() is True
    assert sample("redisqueue_client_pool_exhausted_total", client="cancelled-waiter") == 0
    await client.aclose()


def _ours(server: RedisServer, name: str) -> int:
    return sum(c.get("name") == name for c in server.client_list())


def _wait_for_count(server: RedisServer, name: str, expected: int, seconds: float = 3.0) -> int:
    # The server drops a closed connection from CLIENT LIST once it has read the close.
    deadline = time.monotonic() + seconds
    count = _ours(server, name)
    while count != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = _ours(server, name)
    return count


@pytest.mark.parametrize("way", ["close", "with"])
def test_closing_a_sync_client_closes_every_connection_of_its_pool(
    redis_server: RedisServer, way: str
) -> None:
    name = f"owned-sync-{way}"
    client = create_client(settings_for(redis_server), name=name, client_name=name)
    threads = [
        threading.Thread(target=lambda i=i: client.blpop([f"nothing:{i}"], timeout=0.5))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _ours(redis_server, name) == 3  # three idle connections in the pool
    if way == "close":
        client.close()
    else:
        with client:
            client.ping()
    assert _wait_for_count(redis_server, name, 0) == 0


@pytest.mark.parametrize("way", ["aclose", "async with"])
async def test_closing_an_async_client_closes_every_connection_of_its_pool(
    redis_server: RedisServer, way: str
) -> None:
    name = f"owned-async-{way.replace(' ', '-')}"
    client = create_async_client(settings_for(redis_server), name=name, client_name=name)
    await asyncio.gather(*(client.blpop([f"nothing:{i}"], timeout=0.5) for i in range(3)))
    assert await asyncio.to_thread(_ours, redis_server, name) == 3
    if way == "aclose":
        await client.aclose()
    else:
        async with client:
            await client.ping()
    assert await asyncio.to_thread(_wait_for_count, redis_server, name, 0) == 0
