"""``redisqueue operator``: kopf plus the health/metrics server in one event loop."""

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
from .health import create_app
from .kube import Kube
from .policy import OperatorPolicy, PolicyError
from .probe import ProbeRegistry
from .reconciler import Reconciler

log = logging.getLogger("redisqueue.operator")

#: A daemon that has not ticked for this long past its interval means processing stopped.
STALL_GRACE_SECONDS = 60.0


class Liveness:
    """Liveness that fails when the operator stops doing its job, not only when it dies."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.operator_task: asyncio.Task[None] | None = None

    def __call__(self) -> tuple[bool, str]:
        task = self.operator_task
        if task is not None and task.done():
            return False, "the operator's event processing has stopped"
        overdue = self.reconciler.overdue_probe(STALL_GRACE_SECONDS)
        if overdue is not None:
            return False, overdue
        return True, f"processing {len(self.reconciler.states)} RedisQueue(s)"


async def serve_operator(
    *,
    namespaces: Collection[str],
    host: str,
    port: int,
    standalone: bool,
    stop: asyncio.Event | None = None,
    policy: OperatorPolicy | None = None,
) -> None:
    policy = policy or OperatorPolicy()
    probes = ProbeRegistry()
    kube = await Kube.connect()
    try:
        server_version = await kube.check_reachable()
    except BaseException:
        await kube.close()
        raise
    log.info(
        "connected to the Kubernetes API at %s (%s)", kube.api.configuration.host, server_version
    )
    reconciler = Reconciler(kube, probes, policy=policy)
    log.info(
        "policy: external hosts %s; %d denied host rules; provision images %s",
        policy.describe_allowed() or "any not denied",
        len(policy.denied.suffixes) + len(policy.denied.networks),
        ", ".join(policy.allowed_images) or "any (non-default ones need the author's rights)",
    )
    ready = asyncio.Event()
    liveness = Liveness(reconciler)
    app = create_app(
        probes,
        liveness=liveness,
        readiness=lambda: (ready.is_set(), "watching" if ready.is_set() else "starting"),
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "health and metrics on http://%s:%d (/api/health/redis, /metrics, /healthz)", host, port
    )
    operator = asyncio.create_task(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=standalone,
            memo=kopf.Memo(reconciler=reconciler),
            ready_flag=ready,
            stop_flag=stop,
        )
    )
    liveness.operator_task = operator
    try:
        await operator
    finally:
        await runner.cleanup()
        for probe in list(probes):
            with contextlib.suppress(Exception):
                await probe.close()
        await kube.close()


def run_operator(*, namespaces: Collection[str], host: str, port: int, standalone: bool) -> int:
    try:
        policy = OperatorPolicy.from_env(os.environ)
    except PolicyError as exc:
        print(f"redisqueue operator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            serve_operator(
                namespaces=namespaces, host=host, port=port, standalone=standalone, policy=policy
            )
        )
    except KeyboardInterrupt:
        pass
    return 0
