"""The probe schedule: one loop that probes every RedisQueue on its own phase.

A thousand RedisQueues cost a thousand timestamps (``QueueState.next_probe_at``), not a
thousand sleeping tasks. Each due probe runs as its own task, so one that is slow to answer
delays only its own RedisQueue, and it is never started twice at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from ..api.gate import WriteFenced
from ..api.kube import KubeError
from ..resource.spec import DEFAULT_HEALTH_INTERVAL_SECONDS
from ..telemetry.logs import about
from .registry import QueueState, Registry

log = logging.getLogger("redisqueue.operator")

#: How long a stopping schedule lets the probes under way finish before cancelling them.
STOP_GRACE_SECONDS = 10.0

#: One scheduled probe of one RedisQueue; returns seconds until its next one.
ProbeOnce = Callable[[QueueState], Awaitable[float]]


async def run_schedule(
    states: Registry,
    probe_once: ProbeOnce,
    *,
    tick: float = 1.0,
    stop_grace: float = STOP_GRACE_SECONDS,
) -> None:
    """Run ``probe_once`` for each state whose ``next_probe_at`` has come, until cancelled."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            now = loop.time()
            for state in states:
                if state.next_probe_at <= now:
                    state.next_probe_at = math.inf  # in flight: not started twice
                    task = asyncio.create_task(_scheduled(state, probe_once))
                    running.add(task)
                    task.add_done_callback(running.discard)
            await asyncio.sleep(tick)
    finally:
        # Let PINGs and status writes under way finish briefly rather than cut them off.
        if running:
            await asyncio.wait(list(running), timeout=stop_grace)
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def _scheduled(state: QueueState, probe_once: ProbeOnce) -> None:
    loop = asyncio.get_running_loop()
    try:
        delay = await probe_once(state)
    except WriteFenced:
        delay = DEFAULT_HEALTH_INTERVAL_SECONDS  # leadership is ending: the runner stops this
    except KubeError as exc:
        log.warning(
            "%s/%s: probe tick failed: %s",
            state.namespace,
            state.name,
            exc.message,
            extra=about(state.namespace, state.name),
        )
        delay = DEFAULT_HEALTH_INTERVAL_SECONDS
    except Exception:  # a bug must not stop this RedisQueue's probes for good
        log.exception(
            "%s/%s: probe tick failed",
            state.namespace,
            state.name,
            extra=about(state.namespace, state.name),
        )
        delay = DEFAULT_HEALTH_INTERVAL_SECONDS
    state.next_probe_at = loop.time() + delay
