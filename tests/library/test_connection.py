"""Blocking commands against a real redis-server: their own deadline, empty results, and what
a lost connection does to each kind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
import redis

from harness.library import retrying_settings, sample, settings_for
from harness.redis_server import RedisServer
from redisqueue.client import (
    BlockingCommandInterrupted,
    CommandMayHaveRun,
    create_async_client,
    create_client,
    reply_timeout,
)
from redisqueue.commands import blocking
from redisqueue.settings import RedisSettings


@pytest.mark.parametrize(
    ("args", "seconds", "retry_safe"),
    [
        (("BLPOP", "a", "b", 7), 7.0, False),
        (("brpop", "a", 0), 0.0, False),
        ((b"BZPOPMIN", b"z", b"1.5"), 1.5, False),
        (("BLMPOP", 3, 2, "a", "b", "LEFT", "COUNT", 2), 3.0, False),
        (("BZMPOP", 2, 1, "z", "MIN"), 2.0, False),
        (("BLMOVE", "jobs", "processing", "RIGHT", "LEFT", 30), 30.0, True),
        (("BRPOPLPUSH", "jobs", "processing", 0), 0.0, True),
        (("XREAD", "COUNT", 10, "BLOCK", 2500, "STREAMS", "s", "$"), 2.5, True),
        (("XREADGROUP", "GROUP", "BLOCK", "c", "BLOCK", 100, "STREAMS", "s", ">"), 0.1, True),
        (("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "NOACK", "STREAMS", "s", ">"), 0.0, False),
        (("WAIT", 1, 500), 0.5, True),
        (("WAITAOF", 1, 0, 2000), 2.0, True),
    ],
)
def test_blocking_commands_are_recognised_with_their_block_time(
    args: tuple[object, ...], seconds: float, retry_safe: bool
) -> None:
    found = blocking(args)
    assert found is not None
    assert (found.seconds, found.retry_safe) == (seconds, retry_safe)
    expected = math.inf if seconds == 0 else seconds + 5
    assert found.deadline(5.0) == expected


@pytest.mark.parametrize(
    "args",
    [
        ("GET", "k"),
        ("XREAD", "STREAMS", "BLOCK", "0"),
        ("LPOP", "q"),
        ("BLPOP",),
        ("SET", "BLOCK", 1),
    ],
)
def test_other_commands_keep_the_socket_timeout(args: tuple[object, ...]) -> None:
    assert blocking(args) is None


async def test_a_consumer_blocked_longer_than_the_socket_timeout_gets_its_job(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisqueue.client")
    settings = settings_for(redis_server, REDIS_SOCKET_TIMEOUT_SECONDS="0.3")
    client = create_async_client(settings, name="long-block")
    producer = create_async_client(settings, name="long-block-producer")

    async def produce() -> None:
        await asyncio.sleep(1.2)  # four socket timeouts into the consumer's wait
        await producer.lpush("jobs", "job-1")

    pushing = asyncio.create_task(produce())
    popped = await client.blmove("jobs", "processing", timeout=5, src="RIGHT", dest="LEFT")
    await pushing
    assert popped == b"job-1"
    assert await client.lrange("processing", 0, -1) == [b"job-1"]
    stream_reply = await client.xread({"nothing": "$"}, block=900)  # three socket timeouts
    assert not stream_reply
    assert sample("redisqueue_client_retries_total", client="long-block") == 0
    assert "lost" not in caplog.text and "retrying" not in caplog.text
    await client.aclose()
    await producer.aclose()


def test_an_empty_queue_returns_none_without_retries_or_lost_logs(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redisqueue.client")
    client = create_client(
        settings_for(redis_server, REDIS_SOCKET_TIMEOUT_SECONDS="0.2"), name="empty-pop"
    )
    assert client.blpop(["empty"], timeout=0.8) is None
    assert client.brpoplpush("empty", "processing", timeout=1) is None
    client.xgroup_create("events", "workers", id="$", mkstream=True)
    assert not client.xreadgroup("workers", "w1", {"events": ">"}, block=700)
    assert sample("redisqueue_client_retries_total", client="empty-pop") == 0
    assert (
        sample(
            "redisqueue_client_commands_total", client="empty-pop", command="BLPOP", outcome="ok"
        )
        == 1
    )
    assert "lost" not in caplog.text and "retrying" not in caplog.text
    client.close()


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """SIGSTOP the server until the block ends: its connections stay open and answer nothing."""
    server.freeze()
    try:
        yield
    finally:
        server.thaw()


# A stopped (SIGSTOP) server keeps its connections open and answers nothing: what a half-open
# connection looks like from the client.
@pytest.mark.parametrize(
    ("name", "retry_attempts", "command", "error", "match"),
    [
        # Without a read timeout the GET would wait until the thaw.
        ("half-open", "0", lambda client: client.get("k"), redis.TimeoutError, None),
        # A pop fails after its block time plus the margin, and is not sent again.
        (
            "frozen-pop",
            "3",
            lambda client: client.blpop(["jobs"], timeout=1),
            BlockingCommandInterrupted,
            "stopped answering",
        ),
    ],
    ids=["read", "blocking-pop"],
)
def test_a_reply_that_never_comes_fails_after_the_socket_timeout(
    redis_server: RedisServer,
    name: str,
    retry_attempts: str,
    command: Callable[[redis.Redis], object],
    error: type[Exception],
    match: str | None,
) -> None:
    settings = settings_for(
        redis_server, REDIS_SOCKET_TIMEOUT_SECONDS="0.3", REDIS_RETRY_ATTEMPTS=retry_attempts
    )
    client = create_client(settings, name=name)
    assert client.set("k", "v") is True
    with frozen(redis_server), pytest.raises(error, match=match):
        command(client)
    assert sample("redisqueue_client_retries_total", client=name) == 0
    client.close()


async def test_a_wait_forever_pop_cut_by_a_restart_is_reported_not_retried(
    redis_server: RedisServer,
) -> None:
    settings = retrying_settings(redis_server, base=0.05, cap=0.2, attempts=50)
    client = create_async_client(settings, name="forever-pop")
    waiting = asyncio.create_task(client.blpop(["jobs"], timeout=0))
    while not any(c.get("cmd") == "blpop" for c in redis_server.client_list()):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.to_thread(redis_server.restart)
    with pytest.raises(BlockingCommandInterrupted, match="BLPOP") as caught:
        await waiting
    assert isinstance(caught.value, redis.ConnectionError)
    assert redis_server.password not in str(caught.value)
    # The app's next pop works on the restarted server.
    await client.lpush("jobs", "after-restart")
    assert await client.blpop(["jobs"], timeout=0) == (b"jobs", b"after-restart")
    await client.aclose()


async def test_async_pops_cut_by_a_kill_are_reported_and_never_take_later_jobs(
    redis_server: RedisServer,
) -> None:
    # Whatever redis-py version is installed, the async client must keep this policy: no
    # warning at creation, and the pops are not sent again to the restarted server.
    settings = retrying_settings(redis_server, base=0.05, cap=0.2, attempts=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = create_async_client(settings, name="killed-pops")
    consumers = [asyncio.create_task(client.blpop(["jobs"], timeout=0)) for _ in range(3)]
    while (  # noqa: ASYNC110
        sum(c.get("cmd") == "blpop" for c in await asyncio.to_thread(redis_server.client_list)) < 3
    ):
        await asyncio.sleep(0.02)
    await asyncio.to_thread(redis_server.kill)  # kill -9
    await asyncio.to_thread(redis_server.start)
    producer = redis_server.admin()
    producer.rpush("jobs", "job-1", "job-2", "job-3")  # jobs that arrive after the crash
    results = await asyncio.wait_for(asyncio.gather(*consumers, return_exceptions=True), timeout=10)
    assert all(isinstance(r, BlockingCommandInterrupted) for r in results), results
    assert not any(c.get("cmd") == "blpop" for c in redis_server.client_list())  # none re-blocked
    assert producer.lrange("jobs", 0, -1) == [b"job-1", b"job-2", b"job-3"]  # none taken
    assert sample("redisqueue_client_retries_total", client="killed-pops") == 0
    producer.close()
    await client.aclose()


def test_a_wait_forever_blmove_survives_a_restart(redis_server: RedisServer) -> None:
    settings = retrying_settings(redis_server, base=0.1, cap=0.3, attempts=50)
    client = create_client(settings, name="forever-move")
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(client.blmove("jobs", "processing", 0, "RIGHT", "LEFT"))
    )
    worker.start()
    while not any(c.get("cmd") == "blmove" for c in redis_server.client_list()):
        time.sleep(0.02)
    redis_server.stop()
    time.sleep(0.5)  # down for a while: the worker's reconnects are refused and backed off
    redis_server.start()
    producer = redis_server.admin()
    while not any(c.get("cmd") == "blmove" for c in redis_server.client_list()):
        time.sleep(0.02)  # the worker is blocked again, on the new server
    producer.lpush("jobs", "job-after-restart")
    worker.join(timeout=30)
    assert result == [b"job-after-restart"]
    assert producer.lrange("processing", 0, -1) == [b"job-after-restart"]
    assert sample("redisqueue_client_reconnects_total", client="forever-move") >= 1
    producer.close()
    client.close()


def test_an_idle_connection_is_checked_with_a_ping_before_reuse(redis_server: RedisServer) -> None:
    client = create_client(settings_for(redis_server), name="idle-check", health_check_interval=1)
    admin = redis_server.admin()

    def pings() -> int:
        return int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))

    client.set("k", "v")
    client.get("k")  # straight after: no check
    assert pings() == 0
    time.sleep(1.2)  # idle past the interval
    client.get("k")
    assert pings() == 1
    default = create_client(settings_for(redis_server), name="idle-default")
    assert default.connection_pool.connection_kwargs["health_check_interval"] == 30
    admin.close()
    client.close()
    default.close()


# --- A lost reply: what is sent again and what is not ------------------------------------

# Busy-waits ARGV[1] milliseconds, then pushes one element: a script slower than the deadline.
SLOW_PUSH = """
local start = redis.call('TIME')
local t0 = start[1] * 1000000 + start[2]
while true do
  local now = redis.call('TIME')
  if now[1] * 1000000 + now[2] - t0 >= tonumber(ARGV[1]) * 1000 then break end
end
return redis.call('RPUSH', KEYS[1], 'done')
"""


def stall_settings(server: RedisServer) -> RedisSettings:
    # Without the rule, these retries would have sent the command again within the stall.
    return retrying_settings(
        server, base=0.05, cap=0.2, attempts=40, REDIS_SOCKET_TIMEOUT_SECONDS="0.5"
    )


def settled(admin: redis.Redis, read: Callable[[], object], seconds: float = 10.0) -> object:
    """``read()`` once the server answers again (after a thaw, or a script that ends)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return read()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def stalled(server: RedisServer, seconds: float) -> Iterator[None]:
    """SIGSTOP the server for ``seconds`` (as a fork or a disk stall does), in the background."""
    with frozen(server):
        timer = threading.Timer(seconds, server.thaw)
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def test_a_push_whose_reply_is_late_runs_once_and_says_it_may_have_run(
    redis_server: RedisServer,
) -> None:
    client = create_client(stall_settings(redis_server), name="late-push")
    client.ping()
    with stalled(redis_server, 2.0), pytest.raises(CommandMayHaveRun) as caught:
        client.rpush("jobs", "job-1")
    admin = redis_server.admin()
    assert settled(admin, lambda: admin.lrange("jobs", 0, -1)) == [b"job-1"]  # exactly one
    message = str(caught.value)
    assert "RPUSH" in message and "may have run" in message and "reply_timeout" in message
    assert "job-1" not in message and redis_server.password not in message
    assert caught.value.command == "RPUSH"
    assert isinstance(caught.value, redis.ConnectionError)
    assert sample("redisqueue_client_retries_total", client="late-push") == 0
    admin.close()
    client.close()


async def test_an_async_push_whose_reply_is_late_runs_once(redis_server: RedisServer) -> None:
    client = create_async_client(stall_settings(redis_server), name="late-push-async")
    await client.ping()
    with stalled(redis_server, 2.0):
        with pytest.raises(CommandMayHaveRun, match="RPUSH"):
            await client.rpush("jobs", "job-1")
        await asyncio.sleep(0)
    admin = redis_server.admin()
    assert settled(admin, lambda: admin.lrange("jobs", 0, -1)) == [b"job-1"]
    admin.close()
    await client.aclose()


def test_a_read_during_a_stall_is_sent_again_and_succeeds(redis_server: RedisServer) -> None:
    client = create_client(stall_settings(redis_server), name="stalled-get")
    client.set("k", "v")
    with stalled(redis_server, 1.5):
        assert client.get("k") == b"v"
    assert sample("redisqueue_client_retries_total", client="stalled-get") >= 1
    client.close()


def test_a_transaction_whose_reply_is_late_is_not_sent_again(redis_server: RedisServer) -> None:
    client = create_client(stall_settings(redis_server), name="late-multi")
    client.set("k", "v")
    with stalled(redis_server, 2.0), pytest.raises(CommandMayHaveRun, match="MULTI/EXEC"):
        client.pipeline(transaction=True).rpush("jobs", "job-1").incr("count").execute()
    admin = redis_server.admin()
    assert settled(admin, lambda: admin.lrange("jobs", 0, -1)) == [b"job-1"]
    assert admin.get("count") == b"1"
    # A pipeline of reads only is sent again, and succeeds.
    with stalled(redis_server, 1.5):
        assert client.pipeline().get("k").llen("jobs").execute() == [b"v", 1]
    admin.close()
    client.close()


def test_a_script_longer_than_the_read_timeout_runs_once_and_says_so(
    redis_server: RedisServer,
) -> None:
    client = create_client(stall_settings(redis_server), name="slow-script")
    client.ping()
    with pytest.raises(CommandMayHaveRun, match="EVAL") as caught:
        client.eval(SLOW_PUSH, 1, "results", 1200)  # 1.2 s against a 0.5 s deadline
    assert "reply_timeout" in str(caught.value)
    admin = redis_server.admin()
    time.sleep(1.0)  # the script ends on the server
    assert settled(admin, lambda: admin.lrange("results", 0, -1)) == [b"done"]  # ran once
    admin.close()
    client.close()


async def test_reply_timeout_lets_a_script_longer_than_the_socket_timeout_succeed_once(
    redis_server: RedisServer,
) -> None:
    # The contract's defaults (5 s socket timeout) and a 5.5 s script.
    client = create_async_client(settings_for(redis_server), name="long-script")
    with reply_timeout(10):
        assert await client.eval(SLOW_PUSH, 1, "results", 5500) == 1
    assert await client.lrange("results", 0, -1) == [b"done"]
    assert sample("redisqueue_client_retries_total", client="long-script") == 0
    await client.aclose()


@pytest.mark.parametrize("seconds", [0, -1, math.inf, math.nan, "5", True])
def test_reply_timeout_refuses_what_is_not_a_positive_number(seconds: object) -> None:
    with (
        pytest.raises(ValueError, match="reply_timeout: seconds must be"),
        reply_timeout(seconds),  # type: ignore[arg-type]
    ):
        pass


async def test_an_async_read_past_its_reply_timeout_is_sent_again_never_answered_with_none(
    redis_server: RedisServer,
) -> None:
    # redis-py's own per-read timeout of the asyncio client answers None when it expires and
    # keeps the connection; reply_timeout must fail the read like the socket timeout does.
    client = create_async_client(stall_settings(redis_server), name="stalled-get-async")
    await client.set("k", "v")
    with stalled(redis_server, 1.5), reply_timeout(0.3):
        assert await client.get("k") == b"v"
    assert sample("redisqueue_client_retries_total", client="stalled-get-async") >= 1
    await client.aclose()
