"""What the operator does for one RedisQueue, as a list of steps; each step lives elsewhere.

The kopf handlers (:mod:`.handlers`), the probe schedule and the Secret watch call these:

* :meth:`Reconciler.reconcile` on create, update and resume: parse the spec, provision
  (provision mode), resolve the contract (the Secrets it reads come through
  :mod:`.secretcache`), inject it, swap in a probe, PING and report;
* :meth:`Reconciler.probe_once` from the probe schedule (:mod:`.schedule`), for each
  RedisQueue every ``healthCheck.intervalSeconds``: PING, and write status when something
  changed (no API request unless the status must change);
* :meth:`Reconciler.secret_changed` from the Secret watch, for Secrets a RedisQueue reads
  (filtered by :meth:`Reconciler.reads_secret`): re-resolve the contract from the new
  Secret, so a rotated password is re-injected at once, without polling;
* :meth:`Reconciler.finalize` on delete: stop probing and remove what it wrote.

Long on purpose: the four entry points share the per-RedisQueue lock and state, and reading
their steps side by side is the point; every step itself lives in its own module.

Status is the truth about the last PING and the last write; an event is posted on every
change of ``Ready``, not per probe. Nothing written anywhere carries a credential.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
from collections.abc import Mapping
from typing import Any

from redisqueue.contract import ConnectionContract

from . import metrics
from .credentials import referenced_secrets, resolve_contract
from .errors import InvalidSpecError, SetupError
from .events import build_ready_event, ready_transition_is_news
from .inject import inject_contract, release_all
from .kube import Kube, KubeError, object_path
from .logs import about
from .policy import IPAddress, OperatorPolicy, host_address
from .probe import Probe, ProbeRegistry
from .probe_result import ProbeResult, QueueKey
from .provision import delete_data, ensure_provisioned, statefulset_readiness
from .schedule import run_schedule
from .secretcache import SecretCache
from .spec import (
    API_VERSION,
    DEFAULT_IMAGE,
    KIND,
    RedisQueueSpec,
    SpecError,
    parse_spec,
    validate_resource_name,
)
from .state import DEFAULT_INTERVAL_SECONDS, ConditionValue, QueueState, QueueStates, Reason
from .status import compose_status, now_utc, status_needs_write

log = logging.getLogger("redisqueue.operator")

#: How long the policy check waits for a host name to resolve.
RESOLVE_TIMEOUT_SECONDS = 2.0


class Reconciler:
    """The operator's work for all RedisQueues, shared by the kopf handlers."""

    def __init__(
        self,
        kube: Kube,
        probes: ProbeRegistry,
        *,
        instance: str | None = None,
        policy: OperatorPolicy | None = None,
    ) -> None:
        self.kube = kube
        self.probes = probes
        self.policy = policy or OperatorPolicy()
        self.states = QueueStates()
        #: Referenced Secrets as last read or watched; only those a RedisQueue reads.
        self.secret_cache = SecretCache(kube, self.states.secrets)
        self.instance = instance or os.environ.get("HOSTNAME", "redisqueue-operator")

    # -- create / update / resume ----------------------------------------------------------
    async def reconcile(self, body: Mapping[str, Any], *, created: bool = False) -> None:
        """Converge one RedisQueue. Raises SetupError (retry) or InvalidSpecError (stop).

        ``created``: the object is new, so no Secret can hold a contract it dropped from
        ``spec.inject`` and the search for such Secrets is skipped.
        """
        state = self.states.for_body(body, asyncio.get_running_loop().time())
        async with state.lock:
            state.generation = int(body["metadata"].get("generation") or 0)
            try:
                spec = parse_spec(body.get("spec"))
                validate_resource_name(state.name, spec)
            except SpecError as exc:
                state.spec = None
                state.setup_problem = ConditionValue("False", Reason.INVALID_SPEC, str(exc))
                await self._write_status(state, body, None, force=True)
                raise InvalidSpecError(str(exc)) from None
            refused = await self._policy_problem(spec)
            if refused is not None:
                state.spec = None
                state.setup_problem = ConditionValue("False", Reason.POLICY_REFUSED, refused)
                stale = self.probes.remove(state.namespace, state.name)
                if stale is not None:
                    await stale.close()
                await self._write_status(state, body, None, force=True)
                raise InvalidSpecError(refused)
            state.spec = spec
            # Follow the Secrets this spec reads before reading them: a change from now on
            # reaches secret_changed (which waits for this lock).
            self.states.secrets.set(
                state.namespace, state.name, referenced_secrets(state.name, spec)
            )
            self.secret_cache.prune()
            try:
                secrets_read = (
                    await ensure_provisioned(self.kube, body, spec)
                    if spec.mode == "provision"
                    else {}
                )
                contract = await resolve_contract(
                    self.kube,
                    state.namespace,
                    state.name,
                    spec,
                    {
                        **await self.secret_cache.read(
                            state.namespace, referenced_secrets(state.name, spec)
                        ),
                        **secrets_read,
                    },
                )
                await self._inject(state, spec, contract, release_dropped=not created)
                state.setup_problem = None
            except SetupError as exc:
                state.setup_problem = ConditionValue("False", exc.reason, exc.message)
                await self._write_status(state, body, None, force=True)
                raise
            await self._ensure_probe(state, spec, contract)
            self.probes.set_labels(
                state.namespace, state.name, body["metadata"].get("labels") or {}
            )
        await self._probe_and_report(state, body)

    async def _policy_problem(self, spec: RedisQueueSpec) -> str | None:
        """Why the operator's policy refuses ``spec`` (host or image), or None."""
        external, provision = spec.redis.external, spec.redis.provision
        if provision is not None:
            return self.policy.image_problem(provision.image, DEFAULT_IMAGE)
        if external is None:
            return None
        resolved: list[IPAddress] = []
        if host_address(external.host) is None:
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                    infos = await asyncio.get_running_loop().getaddrinfo(external.host, None)
                resolved = [ipaddress.ip_address(info[4][0]) for info in infos]
            except (OSError, TimeoutError, ValueError):
                pass  # unresolvable now: the probe reports it; the name rules still apply
        return self.policy.host_problem(external.host, resolved)

    async def _inject(
        self,
        state: QueueState,
        spec: RedisQueueSpec,
        contract: ConnectionContract,
        *,
        release_dropped: bool = True,
    ) -> None:
        state.contract = contract
        try:
            state.injected = await inject_contract(
                self.kube,
                state.namespace,
                state.name,
                spec,
                contract,
                release_dropped=release_dropped,
            )
        except SetupError as exc:
            state.injected = ConditionValue("False", exc.reason, exc.message)
            raise

    async def _ensure_probe(
        self, state: QueueState, spec: RedisQueueSpec, contract: ConnectionContract
    ) -> Probe:
        """The probe for this contract; a changed contract replaces (and closes) the old one."""
        current = self.probes.get(state.namespace, state.name)
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
            return current
        probe = Probe(
            contract,
            namespace=state.namespace,
            name=state.name,
            timeout=timeout,
            queues=queues,
            detailed_errors=detailed,
            endpoints=self.probes.endpoints,
        )
        if current is not None:
            probe.last = current.last
        replaced = self.probes.add(probe)
        if replaced is not None:
            await replaced.close()
        return probe

    # -- the probe schedule --------------------------------------------------------------------
    async def run_probe_schedule(self) -> None:
        """Probe every RedisQueue every ``healthCheck.intervalSeconds`` (see :mod:`.schedule`)."""
        await run_schedule(self.states, self.probe_once)

    async def probe_once(self, state: QueueState) -> float:
        """One scheduled probe. Returns seconds until the next one.

        Sends no API request unless the status must change: Secrets are followed by the
        watch (:meth:`secret_changed`), not re-read here. A PING sent moments ago (by the
        reconcile that just ran, or a rotation) counts as this tick's.
        """
        if self.states.get(state.namespace, state.name, state.uid) is not state:
            return DEFAULT_INTERVAL_SECONDS  # deleted meanwhile
        if state.spec is None or state.contract is None or state.lock.locked():
            # invalid, or a reconcile is under way (it reports when done): skip this tick
            return state.interval
        loop_time = asyncio.get_running_loop().time()
        state.probed_at = loop_time
        since = loop_time - state.pinged_at
        if since < state.interval / 2:
            return state.interval - since
        if state.spec.mode == "provision" and not self._healthy(state):
            # The StatefulSet is read only while something is wrong: a Redis that answered
            # its last PING, in a StatefulSet last seen ready, costs no API request per tick.
            async with state.lock:
                state.provisioned = await statefulset_readiness(
                    self.kube, state.namespace, state.name
                )
        await self._probe_and_report(state, state.involved)
        return state.interval

    def _healthy(self, state: QueueState) -> bool:
        """Whether the last PING was answered and the Redis was last seen provisioned."""
        probe = self.probes.get(state.namespace, state.name)
        last = probe.last if probe is not None else None
        ready = state.provisioned is not None and state.provisioned.status == "True"
        return ready and last is not None and last.ok

    # -- the Secret watch -------------------------------------------------------------------------
    def reads_secret(self, namespace: str, name: str) -> bool:
        """Whether some RedisQueue reads Secret ``namespace/name`` (the watch's filter)."""
        return (namespace, name) in self.states.secrets

    async def secret_event(self, kind: str, secret: Mapping[str, Any]) -> None:
        """One event of the Secret watch; only Secrets some RedisQueue reads are acted on."""
        meta = secret["metadata"]
        namespace, name = meta.get("namespace"), meta.get("name")
        if namespace and name and self.reads_secret(namespace, name):
            await self.secret_changed(namespace, name, None if kind == "DELETED" else secret)

    async def secret_changed(
        self, namespace: str, secret_name: str, secret: Mapping[str, Any] | None
    ) -> None:
        """Re-resolve the contract of every RedisQueue that reads this Secret (``None``: it
        was deleted); re-inject, swap the probe and report when the contract changed."""
        self.secret_cache.update(namespace, secret_name, secret)
        already_read = {} if secret is None else {secret_name: dict(secret)}
        for name in self.states.secrets.readers(namespace, secret_name):
            state = self.states.get(namespace, name)
            if state is None or state.spec is None:
                continue
            await self._refresh(state, state.spec, already_read)

    async def _refresh(
        self, state: QueueState, spec: RedisQueueSpec, already_read: Mapping[str, Any]
    ) -> None:
        async with state.lock:
            before = (state.contract, state.setup_problem)
            try:
                contract = await resolve_contract(
                    self.kube, state.namespace, state.name, spec, already_read
                )
                if contract != state.contract:
                    log.info(
                        "%s/%s: credentials or endpoint changed; re-injecting",
                        state.namespace,
                        state.name,
                        extra=about(state.namespace, state.name),
                    )
                    if spec.mode == "provision":
                        # Redis reads its password only at start: re-apply the StatefulSet so
                        # the new Secret revision in its pod template rolls the pod.
                        await ensure_provisioned(self.kube, state.involved, spec)
                    await self._inject(state, spec, contract)
                    await self._ensure_probe(state, spec, contract)
                state.setup_problem = None
            except SetupError as exc:
                state.setup_problem = ConditionValue("False", exc.reason, exc.message)
            except KubeError as exc:
                log.warning(
                    "%s/%s: API error while refreshing: %s",
                    state.namespace,
                    state.name,
                    exc.message,
                    extra=about(state.namespace, state.name),
                )
        if (state.contract, state.setup_problem) != before:
            await self._probe_and_report(state, state.involved)

    def overdue_probe(self, grace: float) -> str | None:
        """A sentence naming a RedisQueue whose probe loop stalled, or None (for liveness)."""
        return self.states.most_overdue_probe(grace, asyncio.get_running_loop().time())

    async def _probe_and_report(
        self, state: QueueState, body: Mapping[str, Any], *, force: bool = False
    ) -> None:
        if self.states.get(state.namespace, state.name) is not state:
            return  # deleted (finalized) meanwhile: write nothing, record nothing
        probe = self.probes.get(state.namespace, state.name)
        result = None
        if probe is not None:
            state.pinged_at = asyncio.get_running_loop().time()
            result = await probe.check()
            if result.ok:
                await probe.collect_details()
        await self._write_status(state, body, result, force=force)

    # -- status and events ---------------------------------------------------------------------
    async def _write_status(
        self,
        state: QueueState,
        body: Mapping[str, Any],
        result: ProbeResult | None,
        *,
        force: bool = False,
    ) -> None:
        status = compose_status(state, result, now_utc())
        loop_time = asyncio.get_running_loop().time()
        if not force and not status_needs_write(state.status, status, loop_time - state.written_at):
            return
        path = object_path(API_VERSION, KIND, state.namespace, state.name, "status")
        try:
            await self.kube.merge_patch(path, {"status": status})
        except KubeError as exc:
            if not exc.not_found:
                log.warning(
                    "%s/%s: could not write status: %s",
                    state.namespace,
                    state.name,
                    exc.message,
                    extra=about(state.namespace, state.name),
                )
            return
        before = state.ready
        state.status = status
        state.written_at = loop_time
        ready = status["conditions"][0]
        if ready_transition_is_news(before, ready["status"], probed=result is not None):
            event = build_ready_event(body, ready, before, instance=self.instance, now=now_utc())
            try:
                await self.kube.create(event)
            except KubeError as exc:
                log.warning(
                    "%s/%s: could not post event: %s",
                    state.namespace,
                    state.name,
                    exc.message,
                    extra=about(state.namespace, state.name),
                )

    # -- delete ----------------------------------------------------------------------------------
    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Stop probing and remove what this RedisQueue wrote (per its deletionPolicy)."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        self.states.forget(namespace, name)
        self.secret_cache.prune()
        probe = self.probes.remove(namespace, name)
        if probe is not None:
            await probe.close()
        metrics.forget_queue(namespace, name)
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError:
            return
        await release_all(self.kube, namespace, name, spec)
        if spec.mode == "provision" and spec.deletion_policy == "Delete":
            await delete_data(self.kube, namespace, name, spec)
        log.info(
            "%s/%s: cleaned up (deletionPolicy %s)",
            namespace,
            name,
            spec.deletion_policy,
            extra=about(namespace, name),
        )
