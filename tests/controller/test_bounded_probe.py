"""The probe against hostile endpoints: huge and malformed replies are refused, not buffered.

The endpoints are fakes (tests/harness/hostile_redis.py) because a real redis-server cannot be
made to answer PING with 160 MB or INFO with strings; a real redis-server checks that the bounded
reader still reads everything a normal Redis says.
"""

from __future__ import annotations

import logging
import tracemalloc

import pytest
from prometheus_client import REGISTRY

from harness.hostile_redis import HUGE, HostileRedis
from harness.redis_server import RedisServer
from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.bounded import MAX_REPLY_BYTES
from redisqueue.controller.probing.probe import Probe

#: What may leave the fake before the probe hangs up: the reply cap plus socket buffers.
SENT_BOUND = 16 * 1024 * 1024
#: Python allocations one probe of a hostile endpoint may peak at.
MEMORY_BOUND = 4 * MAX_REPLY_BYTES + 1024 * 1024


def probe_of(fake: HostileRedis, name: str, *, password: str | None = None) -> Probe:
    contract = ConnectionContract(
        host=fake.host, port=fake.port, password=password, username="u" if password else None
    )
    return Probe(contract, namespace="hostile", name=name, timeout=5.0)


@pytest.mark.parametrize(
    "mode",
    ["huge_bulk_ping", "huge_line_ping", "huge_error_ping", "huge_array_ping", "bad_length_ping"],
)
async def test_a_huge_or_malformed_ping_reply_is_refused_without_buffering_it(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with HostileRedis(mode) as fake:
        probe = probe_of(fake, mode.replace("_", "-"))
        tracemalloc.start()
        try:
            result = await probe.check()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await probe.close()
    assert not result.ok
    assert result.reason == "error"
    assert result.error is not None
    assert len(result.error) < 200
    assert "xxxx" not in result.error
    assert peak < MEMORY_BOUND, f"probe peaked at {peak} bytes of Python memory"
    assert fake.sent < SENT_BOUND < HUGE
    assert "xxxx" not in caplog.text
    assert len(caplog.text) < 4096


async def test_a_ping_answered_with_something_else_than_pong_is_a_failure() -> None:
    async with HostileRedis("not_pong") as fake:
        probe = probe_of(fake, "not-pong")
        result = await probe.check()
        await probe.close()
    assert not result.ok
    assert result.reason == "error"
    assert result.error is not None
    assert "NOPE" not in result.error


async def test_a_bad_answer_to_the_handshake_is_a_failure_with_the_error_type_only() -> None:
    async with HostileRedis("bad_hello") as fake:
        probe = probe_of(fake, "bad-hello", password="pw")
        result = await probe.check()
        await probe.close()
    assert fake.commands[:1] == ["AUTH"]
    assert not result.ok
    assert result.reason == "error"
    assert result.error is not None
    assert "not-a-map" not in result.error
    assert result.error.startswith(f"redis at {fake.host}:{fake.port}: ")


@pytest.mark.parametrize("mode", ["garbage_info", "huge_info"])
async def test_garbage_or_huge_info_leaves_details_alone_and_the_probe_alive(mode: str) -> None:
    async with HostileRedis(mode) as fake:
        probe = probe_of(fake, f"info-{mode.replace('_', '-')}")
        assert (await probe.check()).ok
        tracemalloc.start()
        try:
            await probe.collect_details()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert "INFO" in fake.commands
        assert (await probe.check()).ok
        await probe.close()
    clients = REGISTRY.get_sample_value(
        "redisqueue_redis_connected_clients",
        {"namespace": "hostile", "name": f"info-{mode.replace('_', '-')}"},
    )
    assert clients in (None, 0.0)
    assert peak < MEMORY_BOUND
    assert fake.sent < SENT_BOUND


async def test_the_bounded_reader_still_reads_a_real_redis_in_full(
    redis_server: RedisServer,
) -> None:
    probe = Probe(
        redis_server.contract(),
        namespace="hostile",
        name="real",
    )
    assert (await probe.check()).ok
    await probe.collect_details()
    clients = REGISTRY.get_sample_value(
        "redisqueue_redis_connected_clients", {"namespace": "hostile", "name": "real"}
    )
    assert clients is not None and clients >= 1
    await probe.close()
