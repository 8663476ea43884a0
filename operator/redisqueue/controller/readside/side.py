"""The read side: what every replica does for every RedisQueue, leader and standby alike.

One :class:`ReadSide` per process keeps the :class:`Registry`, the Secrets the RedisQueues
read (:class:`SecretStore`, fed by a metadata-only watch), the shared probe pools, and the
probe schedule. It is the one place where a probe is created, and so where the operator's
policy is enforced (:meth:`ReadSide.admit`, :meth:`ReadSide.ensure_probe`): no role can probe
a host the policy refuses, and every connection a probe opens checks the addresses it is
about to dial again (:mod:`..probing.dial`). While the admission policies are not in force
(:class:`AdmissionGuard`) it admits nothing. A deleted RedisQueue's probe, Secrets and metric
series go with it on every replica (:meth:`ReadSide.forget`).

The roles differ only in who feeds it and what follows a probe:

* a standby follows RedisQueues with its own list+watch (:meth:`ReadSide.follow_queues`)
  and :meth:`ReadSide.observe`\\ s each; it writes nothing;
* the leader's kopf handlers feed it through the :class:`Writer` (the reconciler), which it
  calls after each scheduled probe and each change of a Secret a RedisQueue reads, so the
  leader writes status, injections and provisioned objects.

A standby that becomes the leader keeps its registry, probes and schedule: it stops its own
RedisQueue watch and installs the writer.

Long on purpose: this is the one path every role's reading takes (admission against the
policies, the one place a probe is made with every rule that guards it, the watches that feed
them); split, a role could go round a rule.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, Protocol

from redisqueue.contract import ConnectionContract

from ..api.kube import Kube
from ..api.paths import object_path
from ..api.watch import follow
from ..probing.endpoints import EndpointPool
from ..probing.probe import Probe
from ..probing.result import ProbeResult, QueueKey
from ..resource.errors import SetupError
from ..resource.identity import API_VERSION, KIND, QueueRef
from ..resource.names import QueueNames
from ..resource.policy import IPAddress, OperatorPolicy, host_address
from ..resource.spec import (
    DEFAULT_IMAGE,
    RedisQueueSpec,
    SpecError,
    parse_spec,
    validate_resource_name,
)
from ..resource.status import ConditionValue, Reason
from ..telemetry import metrics
from .contracts import resolve_contract, resolve_probe_credential
from .guard import AdmissionGuard
from .registry import QueueState, Registry
from .schedule import run_schedule
from .secrets import SecretStore

log = logging.getLogger("redisqueue.operator")

#: How long the policy check waits for a host name to resolve.
RESOLVE_TIMEOUT_SECONDS: Final = 2.0


class Writer(Protocol):
    """What the leader adds to the read side: writes after probes and Secret changes."""

    async def after_probe(self, state: QueueState, result: ProbeResult | None) -> None:
        """A scheduled probe of ``state`` is done (its lock is free)."""

    async def secret_changed(self, state: QueueState) -> None:
        """A Secret ``state`` reads changed or went away."""

    async def readmit(self, body: Mapping[str, Any]) -> None:
        """Take the RedisQueue in ``body`` up again (the admission policies are back)."""

    async def refuse(self, state: QueueState, why: ConditionValue) -> None:
        """Stop acting on ``state`` and say ``why`` in its status."""


def read_spec(state: QueueState, body: Mapping[str, Any]) -> RedisQueueSpec:
    """Note the generation of the RedisQueue in ``body`` and return its checked spec.

    Raises SpecError naming the field when the spec or the name is not acceptable.
    """
    state.generation = int(body["metadata"].get("generation") or 0)
    spec = parse_spec(body.get("spec"))
    validate_resource_name(state.name, spec)
    return spec


class ReadSide:
    """Every RedisQueue in ``namespaces`` (all when empty), probed under ``policy``."""

    def __init__(
        self,
        kube: Kube,
        *,
        policy: OperatorPolicy | None = None,
        namespaces: Collection[str] = (),
        guard: AdmissionGuard | None = None,
    ) -> None:
        self.kube = kube
        self.policy = policy or OperatorPolicy()
        self.scopes: list[str | None] = list(namespaces) or [None]
        self.registry = Registry()
        self.secrets = SecretStore(kube, self.registry)
        # Every dial of every probe connection is checked against the policy as it is then.
        self.endpoints = EndpointPool(dial_check=self._dial_check)
        #: The admission policies' guard; None when the installer opted out (or in tests).
        self.guard = guard
        #: The leader's writes; None on a standby.
        self.writer: Writer | None = None
        #: Set once a standby has listed every RedisQueue in its scopes.
        self.synced = asyncio.Event()
        self._synced_scopes: set[str | None] = set()

    # -- the registry -------------------------------------------------------------------------
    async def track(self, body: Mapping[str, Any]) -> QueueState:
        """The state of the RedisQueue in ``body``; a new one when its uid changed."""
        meta = body["metadata"]
        ref, uid = QueueRef(meta["namespace"], meta["name"]), str(meta.get("uid") or "")
        state = self.registry.get(ref, uid)
        if state is None:
            state, replaced = self.registry.add(QueueNames(ref.namespace, ref.name, uid))
            if replaced is not None:  # deleted and made again under the same name
                await self._release(replaced)
                metrics.forget_queue(ref.namespace, ref.name)
        state.labels = dict(meta.get("labels") or {})
        return state

    async def forget(self, ref: QueueRef) -> QueueState | None:
        """Stop following a deleted RedisQueue: its probe, Secrets and metric series go."""
        state = self.registry.forget(ref)
        if state is not None:
            await self._release(state)
        self.secrets.prune()
        metrics.forget_queue(ref.namespace, ref.name)
        return state

    async def _release(self, state: QueueState) -> None:
        probe, state.probe = state.probe, None
        if probe is not None:
            await probe.close()

    def probes(self) -> list[tuple[Probe, Mapping[str, str]]]:
        """Each probe with its RedisQueue's labels (what the health server answers for)."""
        return [(s.probe, s.labels) for s in self.registry if s.probe is not None]

    def probe_of(self, namespace: str, name: str) -> Probe | None:
        """The probe of one RedisQueue, if it is probed."""
        state = self.registry.get(QueueRef(namespace, name))
        return None if state is None else state.probe

    # -- the rules that guard reading ---------------------------------------------------------
    def _dial_check(self, host: str, address: IPAddress) -> str | None:
        return self.policy.address_problem(host, address)

    async def admit(self, spec: RedisQueueSpec) -> ConditionValue | None:
        """Why the operator refuses ``spec`` (its admission policies are not in force, or its
        own policy refuses the host or image), or None."""
        if self.guard is not None and (refusal := self.guard.refusal) is not None:
            return ConditionValue("False", Reason.ADMISSION_POLICIES_MISSING, refusal)
        external, provision = spec.redis.external, spec.redis.provision
        problem: str | None = None
        if provision is not None:
            problem = self.policy.image_problem(provision.image, DEFAULT_IMAGE)
        elif external is not None:
            resolved: list[IPAddress] = []
            if host_address(external.host) is None:
                try:
                    async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                        infos = await asyncio.get_running_loop().getaddrinfo(external.host, None)
                    resolved = [ipaddress.ip_address(info[4][0]) for info in infos]
                except (OSError, TimeoutError, ValueError):
                    pass  # unresolvable now: the probe reports it; the name rules still apply
            problem = self.policy.host_problem(external.host, resolved)
        return None if problem is None else ConditionValue("False", Reason.POLICY_REFUSED, problem)

    def follow(self, state: QueueState, spec: RedisQueueSpec) -> None:
        """Follow the Secrets ``spec`` reads from now on (a change reaches the writer, or the
        standby's refresh); forget those no RedisQueue reads any more."""
        reads = state.names.reads
        if reads != state.reads:
            self.registry.set_reads(state, reads)
            self.secrets.prune()

    async def probe_credential(
        self, state: QueueState, spec: RedisQueueSpec, contract: ConnectionContract
    ) -> ConnectionContract:
        """What the probe connects with (see :func:`.contracts.resolve_probe_credential`)."""
        return await resolve_probe_credential(state.names, spec, contract, self.secrets)

    async def ensure_probe(
        self,
        state: QueueState,
        spec: RedisQueueSpec,
        contract: ConnectionContract,
        *,
        credential: ConnectionContract | None = None,
    ) -> Probe:
        """The probe for ``contract``, connecting with ``credential`` when given; a changed
        one, timeout or key list replaces (and closes) the old one. Series of queue keys no
        longer configured are dropped."""
        app_contract, contract = contract, credential or contract
        current = state.probe
        queues = tuple(QueueKey(q.key, q.type, q.group) for q in spec.queues)
        timeout = spec.health_check.timeout_seconds
        # The operator built a provisioned Redis itself; an external one is the author's choice.
        detailed = spec.mode == "provision" or self.policy.trusted(contract.host)
        if (
            current is not None
            and current.contract == contract
            and current.timeout == timeout
            and current.queues == queues
            and current.detailed_errors == detailed
        ):
            state.contract = app_contract  # the apps' password may change under one probe
            return current
        probe = Probe(
            contract,
            namespace=state.namespace,
            name=state.name,
            timeout=timeout,
            queues=queues,
            detailed_errors=detailed,
            endpoints=self.endpoints,
        )
        if current is not None:
            probe.last = current.last
            await current.close()
            metrics.forget_queue_keys(state.namespace, state.name, keep=queues)
        state.probe, state.contract = probe, app_contract
        return probe

    async def stop_probing(self, state: QueueState, why: ConditionValue) -> None:
        """``state`` may not be probed (``why``): drop its probe and contract."""
        state.refused = why
        state.contract = None
        await self._release(state)
        metrics.forget_queue(state.namespace, state.name)

    # -- the admission policies come and go ------------------------------------------------------
    async def run_guard(self) -> None:
        """Re-check the admission policies periodically (see :class:`AdmissionGuard`)."""
        if self.guard is not None:
            await self.guard.run(self.guard_changed)

    async def guard_changed(self, problem: str | None) -> None:
        """The admission policies went missing (``problem``) or are back (None)."""
        if problem is not None:
            refusal = self.guard.refusal if self.guard is not None else problem
            why = ConditionValue("False", Reason.ADMISSION_POLICIES_MISSING, refusal or problem)
            for state in self.registry:
                async with state.lock:
                    state.spec = None
                    if self.writer is not None:
                        await self.writer.refuse(state, why)
                    else:
                        await self.stop_probing(state, why)
            return
        for scope in self.scopes:
            async for page, _ in self.kube.list_pages(object_path(API_VERSION, KIND, scope)):
                for body in page:
                    if self.writer is not None:
                        await self.writer.readmit(body)
                    else:
                        await self.observe(body)

    # -- a standby's RedisQueues ---------------------------------------------------------------
    async def observe(self, body: Mapping[str, Any]) -> None:
        """Follow the RedisQueue in ``body`` as a standby: parse, check, resolve, probe."""
        state = await self.track(body)
        async with state.lock:
            try:
                spec = read_spec(state, body)
            except SpecError as exc:
                state.spec = None
                await self.stop_probing(
                    state, ConditionValue("False", Reason.INVALID_SPEC, str(exc))
                )
                return
            refused = await self.admit(spec)
            if refused is not None:
                state.spec = None
                await self.stop_probing(state, refused)
                return
            state.spec = spec
            state.names = state.names.with_spec(spec)
            self.follow(state, spec)
            await self._refresh(state, spec)

    async def _refresh(self, state: QueueState, spec: RedisQueueSpec) -> None:
        try:
            contract = await resolve_contract(state.names, spec, self.secrets)
            credential = await self.probe_credential(state, spec, contract)
        except SetupError as exc:
            # Without credentials there is nothing honest to PING; the leader reports why.
            log.debug("%s: not probed on this replica (%s)", state.ref, exc.message)
            await self.stop_probing(state, ConditionValue("False", exc.reason, exc.message))
            return
        state.refused = None
        await self.ensure_probe(state, spec, contract, credential=credential)

    async def follow_queues(self) -> None:
        """A standby's list+watch of RedisQueues in every scope, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for scope in self.scopes:
                path = object_path(API_VERSION, KIND, scope)
                group.create_task(
                    follow(self.kube, path, self._queue_event, self._lister(scope)),
                    name=f"redisqueues {scope or 'cluster-wide'}",
                )

    def _lister(self, scope: str | None) -> Any:
        async def listed(items: Sequence[Mapping[str, Any]]) -> None:
            seen = set()
            for obj in items:
                seen.add(QueueRef(obj["metadata"]["namespace"], obj["metadata"]["name"]))
                await self.observe(obj)
            for ref in self.registry.refs(scope):
                if ref not in seen:
                    await self.forget(ref)
            self._synced_scopes.add(scope)
            if len(self._synced_scopes) == len(self.scopes):
                self.synced.set()

        return listed

    async def _queue_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        if kind == "DELETED":
            await self.forget(QueueRef(meta["namespace"], meta["name"]))
        else:
            await self.observe(obj)

    # -- the Secrets RedisQueues read -----------------------------------------------------------
    async def follow_secrets(self) -> None:
        """Follow Secrets as metadata in every scope, until cancelled; a change of one that a
        RedisQueue reads is read again and re-resolves its readers' contracts."""
        async with asyncio.TaskGroup() as group:
            for scope in self.scopes:
                group.create_task(
                    follow(
                        self.kube,
                        object_path("v1", "Secret", scope),
                        self.secret_event,
                        metadata_only=True,
                    ),
                    name=f"secrets {scope or 'cluster-wide'}",
                )

    async def secret_event(self, kind: str, secret: Mapping[str, Any]) -> None:
        """One event of the Secret watch (metadata only)."""
        meta = secret.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name or not self.registry.reads_secret(namespace, name):
            return
        if kind == "DELETED":
            self.secrets.drop(namespace, name)
        elif self.secrets.is_current(namespace, name, meta.get("resourceVersion")):
            return  # already read at this version (a relist, or our own read)
        else:
            await self.secrets.reread(namespace, name)
        for state in self.registry.readers(namespace, name):
            if self.writer is not None:
                await self.writer.secret_changed(state)
            elif state.spec is not None:
                async with state.lock:
                    if state.spec is not None:
                        await self._refresh(state, state.spec)

    # -- probing --------------------------------------------------------------------------------
    async def probe(self, state: QueueState) -> ProbeResult | None:
        """PING ``state``'s Redis now (and read its details when it answers)."""
        probe = state.probe
        if probe is None:
            return None
        state.pinged_at = asyncio.get_running_loop().time()
        result = await probe.check()
        if result.ok:
            await probe.collect_details()
        return result

    async def run_schedule(self) -> None:
        """Probe every RedisQueue every ``healthCheck.intervalSeconds`` (see :mod:`.schedule`)."""
        await run_schedule(self.registry, self._probe_once)

    async def _probe_once(self, state: QueueState) -> float:
        """One scheduled probe; returns seconds until the next one. A PING sent moments ago
        (by a reconcile or a rotation) counts as this tick's."""
        if self.registry.get(state.ref, state.names.uid) is not state:
            return state.interval  # deleted meanwhile
        if state.lock.locked():
            return state.interval  # a reconcile is under way and reports when done
        loop_time = asyncio.get_running_loop().time()
        state.probed_at = loop_time
        since = loop_time - state.pinged_at
        if since < state.interval / 2:
            return state.interval - since
        result = await self.probe(state)
        if self.writer is not None:
            await self.writer.after_probe(state, result)
        return state.interval

    def overdue_probe(self, grace: float) -> str | None:
        """A sentence naming a RedisQueue whose probe stalled, or None (for liveness)."""
        return self.registry.most_overdue_probe(grace, asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Close every probe and pool (shutdown)."""
        for state in self.registry:
            await self._release(state)
        await self.endpoints.close()
