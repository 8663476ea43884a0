"""A standby replica's view: every RedisQueue probed from a read-only watch, nothing written.

While another replica leads, a standby still answers ``/api/health/redis`` and ``/metrics``
for every RedisQueue, so the cluster health probe survives losing the leader. It LISTs and
WATCHes RedisQueues, reads the Secrets they reference (and follows those through a watch
filtered by the same kind of index the leader keeps), and PINGs each Redis every
``healthCheck.intervalSeconds`` over the shared endpoint pools. It never writes: no
status, injection, Event, finalizer or Lease renewal comes from here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import aiohttp

from .credentials import referenced_secrets, resolve_contract
from .errors import SetupError
from .kube import Kube, KubeError, object_path
from .policy import OperatorPolicy
from .probe import Probe, ProbeRegistry
from .probe_result import QueueKey
from .spec import API_VERSION, KIND, RedisQueueSpec, SpecError, parse_spec
from .state import DEFAULT_INTERVAL_SECONDS, SecretReferences

log = logging.getLogger("redisqueue.follower")

#: Pause before listing again after the API server could not be reached.
RELIST_DELAY_SECONDS = 1.0


Handle = Callable[[str, Mapping[str, Any]], Awaitable[None]]


async def follow(
    kube: Kube,
    path: str,
    handle: Handle,
    listed: Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]] | None = None,
) -> None:
    """LIST ``path`` then WATCH it from there, for ever: ``listed`` gets the items of each
    LIST (else ``handle`` gets each as ADDED), ``handle`` every change after it. Nothing is
    kept: a caller that needs state keeps only what it needs. Relists after a 410 Gone or an
    API outage."""
    while True:
        try:
            items, version = await kube.list_with_version(path)
            if listed is not None:
                await listed(items)
            else:
                for item in items:
                    await handle("ADDED", item)
            while True:
                async for kind, obj in kube.watch(path, version):
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        await handle(kind, obj)
        except KubeError as exc:
            if exc.status != 410:  # 410: the version is too old; listing again is the cure
                log.warning("watch %s: %s", path, exc.message)
            await asyncio.sleep(RELIST_DELAY_SECONDS)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            log.warning("watch %s: %s", path, type(exc).__name__)
            await asyncio.sleep(RELIST_DELAY_SECONDS)


class Follower:
    """Keeps ``probes`` in step with the RedisQueues in ``namespaces`` (all when empty)."""

    def __init__(
        self,
        kube: Kube,
        probes: ProbeRegistry,
        namespaces: Collection[str],
        policy: OperatorPolicy | None = None,
    ) -> None:
        self.kube = kube
        self.policy = policy or OperatorPolicy()
        self.probes = probes
        self.scopes: list[str | None] = list(namespaces) or [None]
        self.specs: dict[tuple[str, str], RedisQueueSpec] = {}
        self.secrets = SecretReferences()
        self.synced = asyncio.Event()
        self._synced_scopes: set[str | None] = set()

    async def run(self) -> None:
        """Follow and probe until cancelled."""
        async with asyncio.TaskGroup() as group:
            for scope in self.scopes:
                group.create_task(self._follow(object_path(API_VERSION, KIND, scope), scope))
                group.create_task(self._follow(object_path("v1", "Secret", scope), scope))
            group.create_task(self._probe_loop())

    # -- list + watch ------------------------------------------------------------------------
    async def _follow(self, path: str, scope: str | None) -> None:
        if "/secrets" in path:
            await follow(self.kube, path, self._secret_event)
        else:
            await follow(self.kube, path, self._rq_event, lambda items: self._resync(items, scope))

    async def _rq_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "DELETED":
            await self._remove(obj["metadata"]["namespace"], obj["metadata"]["name"])
        else:
            await self._upsert(obj)

    async def _resync(self, items: Sequence[Mapping[str, Any]], scope: str | None) -> None:
        seen = set()
        for obj in items:
            meta = obj["metadata"]
            seen.add((meta["namespace"], meta["name"]))
            await self._upsert(obj)
        for key in [k for k in self.specs if (scope is None or k[0] == scope) and k not in seen]:
            await self._remove(*key)
        self._synced_scopes.add(scope)
        if len(self._synced_scopes) == len(self.scopes):
            self.synced.set()

    async def _upsert(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            spec = parse_spec(obj.get("spec"))
        except SpecError:
            await self._remove(namespace, name)
            return
        key = (namespace, name)
        if self.specs.get(key) == spec and self.probes.get(namespace, name) is not None:
            return
        self.specs[key] = spec
        self.probes.set_labels(namespace, name, meta.get("labels") or {})
        self.secrets.set(namespace, name, referenced_secrets(name, spec))
        await self._ensure_probe(namespace, name, spec, {})

    async def _remove(self, namespace: str, name: str) -> None:
        self.specs.pop((namespace, name), None)
        self.secrets.forget(namespace, name)
        probe = self.probes.remove(namespace, name)
        if probe is not None:
            await probe.close()

    async def _secret_event(self, kind: str, secret: Mapping[str, Any]) -> None:
        meta = secret["metadata"]
        namespace, secret_name = meta["namespace"], meta["name"]
        if (namespace, secret_name) not in self.secrets:
            return
        already_read = {} if kind == "DELETED" else {secret_name: dict(secret)}
        for name in self.secrets.readers(namespace, secret_name):
            spec = self.specs.get((namespace, name))
            if spec is not None:
                await self._ensure_probe(namespace, name, spec, already_read)

    async def _ensure_probe(
        self,
        namespace: str,
        name: str,
        spec: RedisQueueSpec,
        already_read: Mapping[str, Any],
    ) -> None:
        try:
            contract = await resolve_contract(self.kube, namespace, name, spec, already_read)
        except (SetupError, KubeError) as exc:
            # Without credentials there is nothing honest to PING; the leader reports why.
            log.debug("%s/%s: not probed on this replica (%s)", namespace, name, exc)
            return
        queues = tuple(QueueKey(q.key, q.type, q.group) for q in spec.queues)
        timeout = spec.health_check.timeout_seconds
        current = self.probes.get(namespace, name)
        if (
            current is not None
            and current.contract == contract
            and current.timeout == timeout
            and current.queues == queues
        ):
            return
        probe = Probe(
            contract,
            namespace=namespace,
            name=name,
            timeout=timeout,
            queues=queues,
            detailed_errors=spec.mode == "provision" or self.policy.trusted(contract.host),
            endpoints=self.probes.endpoints,
        )
        if current is not None:
            probe.last = current.last
        replaced = self.probes.add(probe)
        if replaced is not None:
            await replaced.close()

    # -- scheduled probes ---------------------------------------------------------------------
    async def _probe_loop(self) -> None:
        """PING every RedisQueue's Redis on its interval (one shared PING per endpoint)."""
        loop = asyncio.get_running_loop()
        due: dict[tuple[str, str], float] = {}
        while True:
            now = loop.time()
            batch = []
            for probe in self.probes:
                key = (probe.namespace, probe.name)
                if due.get(key, 0.0) <= now:
                    spec = self.specs.get(key)
                    interval = (
                        spec.health_check.interval_seconds if spec else DEFAULT_INTERVAL_SECONDS
                    )
                    due[key] = now + interval
                    batch.append(probe)
            for key in [k for k in due if k not in self.specs]:
                del due[key]
            if batch:
                results = await asyncio.gather(*(p.check() for p in batch), return_exceptions=True)
                answered = [
                    p
                    for p, r in zip(batch, results, strict=True)
                    if not isinstance(r, BaseException) and r.ok
                ]
                await asyncio.gather(
                    *(p.collect_details() for p in answered), return_exceptions=True
                )
            await asyncio.sleep(1.0)
