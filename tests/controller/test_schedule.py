"""The probe schedule: each RedisQueue on its own interval, never twice at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from redisqueue.controller.kube import KubeError
from redisqueue.controller.schedule import run_schedule
from redisqueue.controller.state import DEFAULT_INTERVAL_SECONDS, QueueState, QueueStates


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - a condition on plain state
            await asyncio.sleep(0.01)


def states_named(*names: str) -> QueueStates:
    states = QueueStates()
    for name in names:
        states.for_body({"metadata": {"namespace": "ns", "name": name, "uid": name}})
    return states


async def test_each_redisqueue_is_probed_on_its_own_interval() -> None:
    states = states_named("fast", "slow")
    calls: list[str] = []

    async def probe_once(state: QueueState) -> float:
        calls.append(state.name)
        return 0.05 if state.name == "fast" else 10.0

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01))
    await until(lambda: calls.count("fast") >= 4)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
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
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_an_api_error_puts_the_next_probe_a_default_interval_away() -> None:
    states = states_named("q")

    async def probe_once(state: QueueState) -> float:
        raise KubeError(500, "InternalError", "etcd is away")

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01))
    state = states.get("ns", "q")
    assert state is not None
    await until(lambda: 0 < state.next_probe_at < float("inf"))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    remaining = state.next_probe_at - loop.time()
    assert DEFAULT_INTERVAL_SECONDS - 1 < remaining <= DEFAULT_INTERVAL_SECONDS


async def test_an_unexpected_error_is_logged_and_the_probe_stays_scheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    states = states_named("q")

    async def probe_once(state: QueueState) -> float:
        raise RuntimeError("a bug")

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01))
    state = states.get("ns", "q")
    assert state is not None
    await until(lambda: 0 < state.next_probe_at < float("inf"))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert "ns/q: probe tick failed" in caplog.text


async def test_stopping_lets_a_probe_under_way_finish_within_the_grace() -> None:
    states = states_named("q")
    finished = asyncio.Event()

    async def probe_once(state: QueueState) -> float:
        await asyncio.sleep(0.1)
        finished.set()
        return 10.0

    task = asyncio.create_task(run_schedule(states, probe_once, tick=0.01, stop_grace=5.0))
    await until(lambda: states.get("ns", "q").next_probe_at == float("inf"))  # type: ignore[union-attr]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert finished.is_set()
