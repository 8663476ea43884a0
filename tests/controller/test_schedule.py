"""The probe schedule: each RedisQueue on its own interval, never twice at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from redisqueue.controller.api.kube import KubeError
from redisqueue.controller.readside.registry import QueueState, Registry
from redisqueue.controller.readside.schedule import run_schedule
from redisqueue.controller.resource.identity import QueueRef
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import DEFAULT_HEALTH_INTERVAL_SECONDS


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a condition on plain state
            await asyncio.sleep(0.01)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def states_named(*names: str) -> Registry:
    states = Registry()
    for name in names:
        states.add(QueueNames("ns", name, name))
    return states


async def test_each_redisqueue_is_probed_on_its_own_interval() -> None:
    states = states_named("fast", "slow")
    calls: list[str] = []

    async def probe_once(state: QueueState) -> float:
        calls.append(state.name)
        return 0.05 if state.name == "fast" else 10.0

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01))
    await until(lambda: calls.count("fast") >= 4)
    await stop(task)
    assert calls.count("slow") == 1


async def test_a_slow_probe_is_not_started_again_and_does_not_hold_up_the_others() -> None:
    states = states_named("stuck", "other")
    started: list[str] = []
    release = asyncio.Event()

    async def probe_once(state: QueueState) -> float:
        started.append(state.name)
        if state.name == "stuck":
            await release.wait()
        return 0.02

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01, stop_grace=1.0))
    await until(lambda: started.count("other") >= 4)
    assert started.count("stuck") == 1
    release.set()
    await until(lambda: started.count("stuck") >= 2)  # rescheduled once it returned
    await stop(task)


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        (KubeError(500, "InternalError", "etcd is away"), "probe tick failed: etcd is away"),
        (RuntimeError("a bug"), "probe tick failed\nTraceback"),
    ],
)
async def test_a_failed_probe_is_logged_and_runs_again_a_default_interval_later(
    error: Exception, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    states = states_named("q")

    async def probe_once(state: QueueState) -> float:
        raise error

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01))
    state = states.get(QueueRef("ns", "q"))
    assert state is not None
    await until(lambda: 0 < state.next_probe_at < float("inf"))
    await stop(task)
    remaining = state.next_probe_at - loop.time()
    assert DEFAULT_HEALTH_INTERVAL_SECONDS - 1 < remaining <= DEFAULT_HEALTH_INTERVAL_SECONDS
    assert f"ns/q: {logged}" in caplog.text


async def test_stopping_lets_a_probe_under_way_finish_within_the_grace() -> None:
    states = states_named("q")
    finished = asyncio.Event()

    async def probe_once(state: QueueState) -> float:
        await asyncio.sleep(0.1)
        finished.set()
        return 10.0

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01, stop_grace=5.0))
    await until(lambda: states.get(QueueRef("ns", "q")).next_probe_at == float("inf"))  # type: ignore[union-attr]
    await stop(task)
    assert finished.is_set()
