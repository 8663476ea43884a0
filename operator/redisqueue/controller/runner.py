"""``redisqueue operator``: kopf plus the health/metrics server in one event loop.

With leader election, every replica serves health and metrics and probes every RedisQueue;
only the replica holding the Lease runs kopf, the only thing that writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Collection

import kopf
from aiohttp import web

from . import handlers  # noqa: F401 - registers the kopf handlers
from .follower import Follower, follow
from .health import create_app
from .kube import Kube, login, object_path
from .leader import LeaderElector
from .leader import LeaseSettings as Election
from .policy import OperatorPolicy, PolicyError

__all__ = ["Election", "run_operator", "serve_operator"]
from .probe import ProbeRegistry
from .reconciler import Reconciler

log = logging.getLogger("redisqueue.operator")

# kopf logs in exactly as the operator's own client does (ClusterIP from the environment).
kopf.on.login()(login)

#: A probe this late past its interval means the probe schedule stopped.
STALL_GRACE_SECONDS = 60.0


class Liveness:
    """Liveness that fails when the operator stops doing its job, not only when it dies."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.operator_task: asyncio.Task[None] | None = None
        self.schedule_task: asyncio.Task[None] | None = None

    def __call__(self) -> tuple[bool, str]:
        task = self.operator_task
        if task is not None and task.done():
            return False, "the operator's event processing has stopped"
        if self.schedule_task is not None and self.schedule_task.done():
            return False, "the probe schedule has stopped"
        overdue = self.reconciler.overdue_probe(STALL_GRACE_SECONDS)
        if overdue is not None:
            return False, overdue
        return True, f"processing {len(self.reconciler.states)} RedisQueue(s)"


async def serve_operator(  # noqa: PLR0915 - the operator's life, read top to bottom
    *,
    namespaces: Collection[str],
    host: str,
    port: int,
    standalone: bool,
    stop: asyncio.Event | None = None,
    election: Election | None = None,
    policy: OperatorPolicy | None = None,
) -> int:
    """Serve health and metrics, and run kopf: at once, or (with ``election``) only while
    this replica holds the Lease; until then it probes from a read-only watch.

    Returns the exit status: 1 when leadership was lost (a restart makes it a standby)."""
    policy = policy or OperatorPolicy()
    probes = ProbeRegistry()
    kube = await _connect()
    reconciler = Reconciler(kube, probes, policy=policy)
    _log_policy(policy)
    kopf_ready = asyncio.Event()
    follower = Follower(kube, probes, namespaces, policy) if election is not None else None
    elector = LeaderElector(kube, election) if election is not None else None
    liveness = Liveness(reconciler)

    def readiness() -> tuple[bool, str]:
        if kopf_ready.is_set():
            return True, "leading" if elector is not None else "watching"
        if follower is not None and follower.synced.is_set():
            return True, "standing by, probing every RedisQueue"
        return False, "starting"

    app = create_app(probes, liveness=liveness, readiness=readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "health and metrics on http://%s:%d (/api/health/redis, /metrics, /healthz)", host, port
    )
    background: list[asyncio.Task[None]] = []
    status = 0
    try:
        if elector is not None and follower is not None:
            following = asyncio.create_task(follower.run(), name="follower")
            campaign = asyncio.create_task(elector.run(), name="leader election")
            background += [following, campaign]
            if not await _first(elector.leading, stop):
                return 0
            following.cancel()  # the leader's reconciler owns the probes from here on
        background += _follow_referenced_secrets(kube, reconciler, namespaces)
        kopf_stop = asyncio.Event()
        operator = asyncio.create_task(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                standalone=standalone,
                memo=kopf.Memo(reconciler=reconciler),
                ready_flag=kopf_ready,
                stop_flag=kopf_stop,
            )
        )
        schedule = asyncio.create_task(reconciler.run_probe_schedule(), name="probe schedule")
        background.append(schedule)
        liveness.operator_task = operator
        liveness.schedule_task = schedule
        waits = [w for w in (stop, elector.lost if elector else None) if w is not None]
        watcher = asyncio.create_task(_first(*waits)) if waits else None
        await asyncio.wait(
            [t for t in (operator, watcher) if t is not None], return_when=asyncio.FIRST_COMPLETED
        )
        if elector is not None and elector.lost.is_set():
            log.error("leadership lost: stopping the writers and exiting to start as a standby")
            status = 1
        kopf_stop.set()
        schedule.cancel()
        await asyncio.gather(schedule, return_exceptions=True)
        await operator
        if watcher is not None:
            watcher.cancel()
    finally:
        if elector is not None:
            await elector.release()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await runner.cleanup()
        for probe in list(probes):
            with contextlib.suppress(Exception):
                await probe.close()
        await probes.endpoints.close()
        await kube.close()
    return status


async def _connect() -> Kube:
    """The API client, once the API server has answered."""
    kube = await Kube.connect()
    try:
        server_version = await kube.check_reachable()
    except BaseException:
        await kube.close()
        raise
    log.info("connected to the Kubernetes API at %s (%s)", kube.host, server_version)
    return kube


def _log_policy(policy: OperatorPolicy) -> None:
    log.info(
        "policy: external hosts %s; %d denied host rules; provision images %s",
        policy.describe_allowed() or "any not denied",
        len(policy.denied.suffixes) + len(policy.denied.networks),
        ", ".join(policy.allowed_images) or "any (non-default ones need the author's rights)",
    )


def _follow_referenced_secrets(
    kube: Kube, reconciler: Reconciler, namespaces: Collection[str]
) -> list[asyncio.Task[None]]:
    """Watch Secrets for the reconciler, filtered in memory against its index of referenced
    ones: a plain watch costs less than kopf's per-object machinery for every Secret."""
    scopes: list[str | None] = [*namespaces] or [None]
    return [
        asyncio.create_task(
            follow(kube, object_path("v1", "Secret", scope), reconciler.secret_event),
            name=f"secrets {scope or 'cluster-wide'}",
        )
        for scope in scopes
    ]


async def _first(*flags: asyncio.Event | None) -> bool:
    """Wait until one of ``flags`` is set; True when it was the first one."""
    waits = {asyncio.ensure_future(f.wait()): i for i, f in enumerate(flags) if f is not None}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return any(waits[t] == 0 for t in done)


def run_operator(
    *,
    namespaces: Collection[str],
    host: str,
    port: int,
    standalone: bool,
    election: Election | None = None,
) -> int:
    try:
        policy = OperatorPolicy.from_env(os.environ)
    except PolicyError as exc:
        print(f"redisqueue operator: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        status = asyncio.run(
            serve_operator(
                namespaces=namespaces,
                host=host,
                port=port,
                standalone=standalone,
                election=election,
                policy=policy,
            )
        )
    except KeyboardInterrupt:
        pass
    return status
