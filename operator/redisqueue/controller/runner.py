"""``redisqueue operator``: the read side, the health/metrics server and kopf in one loop.

Every replica runs the read side (:mod:`.readside`): it follows, checks and probes every
RedisQueue and serves health and metrics. With leader election, only the replica holding the
Lease runs kopf and the reconciler, the only things that write; the others follow
RedisQueues with a read-only watch until they take over.

A writer that stops for good (no other replica is there to take over: the install was
removed or scaled to zero) marks every RedisQueue's status as no longer checked, so
``kubectl get rq`` does not go on showing a Ready nobody vouches for.

Before acting on any RedisQueue every replica checks that the admission policies are in
force, and checks again every few minutes (:mod:`.readside.guard`); the installer may opt out
on a single-tenant cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Collection

import kopf
from aiohttp import web

from . import handlers  # noqa: F401 - registers the kopf handlers
from .api.gate import WRITE_GATE
from .api.kube import Kube, KubeError
from .api.lease import LeaderElector
from .api.lease import LeaseSettings as Election
from .api.login import identify, login, share_pool
from .api.paths import object_path
from .readside.guard import PEERS_ENV, AdmissionGuard, Safeguards
from .readside.side import ReadSide
from .reconciler import Reconciler
from .resource.admission import ENV_REQUIRED, PolicyNamesError, policy_names
from .resource.policy import OperatorPolicy, PolicyError
from .serving.auth import TokenAuthorizer
from .serving.health import create_app
from .telemetry import memory, metrics

__all__ = ["Election", "run_operator", "serve_operator"]

log = logging.getLogger("redisqueue.operator")

# kopf logs in exactly as the operator's own client does (ClusterIP from the environment).
kopf.on.login()(login)

#: A probe this late past its interval means the probe schedule stopped.
STALL_GRACE_SECONDS = 60.0


class Liveness:
    """Liveness that fails when the operator stops doing its job, not only when it dies."""

    def __init__(self, side: ReadSide) -> None:
        self.side = side
        self.operator_task: asyncio.Task[None] | None = None
        self.schedule_task: asyncio.Task[None] | None = None

    def __call__(self) -> tuple[bool, str]:
        task = self.operator_task
        if task is not None and task.done():
            return False, "the operator's event processing has stopped"
        if self.schedule_task is not None and self.schedule_task.done():
            return False, "the probe schedule has stopped"
        overdue = self.side.overdue_probe(STALL_GRACE_SECONDS)
        if overdue is not None:
            return False, overdue
        return True, f"processing {len(self.side.registry)} RedisQueue(s)"


async def serve_operator(  # noqa: PLR0915 - the operator's life, read top to bottom
    *,
    namespaces: Collection[str],
    host: str,
    port: int,
    standalone: bool,
    stop: asyncio.Event | None = None,
    election: Election | None = None,
    policy: OperatorPolicy | None = None,
    safeguards: Safeguards | None = None,
    auth: bool = False,
) -> int:
    """Serve health and metrics and run the read side; run kopf at once, or (with
    ``election``) only while this replica holds the Lease. ``safeguards`` default to the
    shipped admission policies under their plain-install names; ``auth`` requires a token
    for health and metrics.

    Returns the exit status: 1 when leadership was lost (a restart makes it a standby)."""
    policy = policy or OperatorPolicy()
    safeguards = safeguards or Safeguards(policy_names(None))
    stop = stop or _stop_on_signals()
    identify(election.identity if election is not None else os.environ.get("HOSTNAME", ""))
    kube = await _connect()
    share_pool(kube.connector())  # kopf's requests and ours over one bounded pool
    guard = None
    if safeguards.admission_policies is not None:
        guard = AdmissionGuard(
            kube, safeguards.admission_policies, interval=safeguards.admission_interval
        )
        await guard.update()  # before anything is admitted
    else:
        log.warning(
            "admission policies not required (%s=false): RedisQueue authors are not checked; "
            "only for clusters with a single tenant",
            ENV_REQUIRED,
        )
    side = ReadSide(kube, policy=policy, namespaces=namespaces, guard=guard)
    instance = election.identity if election is not None else None
    reconciler = Reconciler(kube, side, instance=instance, peer=safeguards.peer)
    _log_policy(policy)
    kopf_ready = asyncio.Event()
    elector = LeaderElector(kube, election) if election is not None else None
    if elector is not None:
        WRITE_GATE.fence(elector.may_write, elector.write_deadline)
    else:
        metrics.LEADER.set(1)
    liveness = Liveness(side)

    def readiness() -> tuple[bool, str]:
        if kopf_ready.is_set():
            return True, "leading" if elector is not None else "watching"
        if elector is not None and side.synced.is_set():
            return True, "standing by, probing every RedisQueue"
        return False, "starting"

    authorizer = TokenAuthorizer(kube) if auth else None
    app = create_app(side, liveness=liveness, readiness=readiness, authorizer=authorizer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info(
        "health and metrics on http://%s:%d (/api/health/redis, /metrics, /healthz)%s",
        host,
        port,
        "; a bearer token is required but for /healthz and /readyz" if auth else "",
    )
    background = [
        asyncio.create_task(side.follow_secrets(), name="secrets"),
        asyncio.create_task(side.run_schedule(), name="probe schedule"),
        asyncio.create_task(side.run_guard(), name="admission policies"),
        asyncio.create_task(memory.return_freed_memory(), name="memory"),
    ]
    liveness.schedule_task = background[1]
    status = 0
    wrote = False
    try:
        if elector is not None:
            following = asyncio.create_task(side.follow_queues(), name="redisqueues")
            campaign = asyncio.create_task(elector.run(), name="leader election")
            background += [following, campaign]
            if not await _first(elector.leading, stop):
                return 0
            following.cancel()  # kopf feeds the read side from here on
        side.writer = reconciler
        wrote = True
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
        liveness.operator_task = operator
        waits = [w for w in (stop, elector.lost if elector else None) if w is not None]
        watcher = asyncio.create_task(_first(*waits))
        await asyncio.wait([operator, watcher], return_when=asyncio.FIRST_COMPLETED)
        watcher.cancel()
        if elector is not None and elector.lost.is_set():
            log.error("leadership lost: writes stopped; exiting to start again as a standby")
            side.writer = None
            operator.cancel()  # at once: the write gate is closed, nothing is left to finish
            await asyncio.gather(operator, return_exceptions=True)
            return 1
        kopf_stop.set()
        await asyncio.gather(operator, return_exceptions=True)
        side.writer = None
        if await _nobody_takes_over(kube, elector):
            await _mark_unchecked(reconciler)
    finally:
        if elector is not None and wrote:
            await elector.release()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await reconciler.close()
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await side.close()
        share_pool(None)
        await kube.close()
    return status


async def _nobody_takes_over(kube: Kube, elector: LeaderElector | None) -> bool:
    """Whether no other replica is there to take over when this writer stops: without
    leader election nobody is; with it, a ready, not terminating pod of the install
    (``REDISQUEUE_PEER_SELECTOR``) is. Without that selector, assume a standby is there."""
    if elector is None:
        return True
    selector = os.environ.get(PEERS_ENV, "")
    if not selector:
        return False
    path = object_path("v1", "Pod", elector.settings.namespace)
    try:
        async with asyncio.timeout(5):
            pods = await kube.list(path, label_selector=selector)
    except (KubeError, OSError, TimeoutError) as exc:
        log.warning("could not look for another replica (%s); leaving status as it is", exc)
        return False
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("name") == elector.settings.identity or meta.get("deletionTimestamp"):
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return False
    return True


async def _mark_unchecked(reconciler: Reconciler) -> None:
    """Tell every RedisQueue's status that nobody checks it any more."""
    states = [s for s in reconciler.side.registry if s.status_seen]
    log.info("no other replica takes over: marking %d RedisQueue(s) as unchecked", len(states))
    semaphore = asyncio.Semaphore(20)

    async def mark(state: object) -> None:
        async with semaphore:
            with contextlib.suppress(Exception):
                await reconciler.report.stopped(state)  # type: ignore[arg-type]

    await asyncio.gather(*(mark(s) for s in states))


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


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (kopf takes the signals over while it runs, and
    stops on them itself)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


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
    auth: bool = False,
) -> int:
    try:
        policy = OperatorPolicy.from_env(os.environ)
        safeguards = Safeguards.from_env(os.environ)
    except (PolicyError, PolicyNamesError, ValueError) as exc:
        print(f"redisqueue operator: {exc}", file=sys.stderr)
        return 2
    status = 0
    memory.freeze_startup_heap()
    try:
        status = asyncio.run(
            serve_operator(
                namespaces=namespaces,
                host=host,
                port=port,
                standalone=standalone,
                election=election,
                policy=policy,
                safeguards=safeguards,
                auth=auth,
            )
        )
    except KeyboardInterrupt:
        pass
    return status
