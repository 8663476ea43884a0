"""What the leader does for one RedisQueue, as a list of steps; each step lives elsewhere.

The :class:`Reconciler` is the leader's :class:`~.readside.side.Writer`: the read side
(:mod:`.readside`) follows, checks and probes every RedisQueue on every replica; on the
leader, the kopf handlers (:mod:`.handlers`) and the read side call these:

* :meth:`Reconciler.reconcile` on create, update and resume: parse the spec, check it
  against the operator's policy, provision (provision mode), resolve the contract, inject
  it, (re)make the probe, PING and report;
* :meth:`Reconciler.after_probe` after each scheduled probe: write status when something
  changed (no API request otherwise);
* :meth:`Reconciler.secret_changed` when a Secret a RedisQueue reads changed: re-resolve
  the contract, so a rotated password is re-injected at once, without polling; a changed
  password starts a rotation with two valid passwords (:mod:`.steps.rotation`);
* :meth:`Reconciler.finalize` on delete: stop probing and remove what it wrote;
* :meth:`Reconciler.refuse` and :meth:`Reconciler.readmit` when the admission policies go
  missing and come back (:mod:`.readside.guard`).

Status is the truth about the last PING and the last write; an event is posted on every
change of ``Ready``, not per probe. Nothing written anywhere carries a credential.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from redisqueue.contract import ConnectionContract

from .api.gate import WriteFenced
from .api.kube import Kube, KubeError
from .objects.network import OperatorPeer
from .objects.restart import restart_stamp
from .probing.result import ProbeResult
from .readside.contracts import resolve_contract
from .readside.registry import NOT_INJECTED, QueueState
from .readside.side import ReadSide, read_spec
from .resource.errors import InvalidSpecError, SetupError
from .resource.names import QueueNames
from .resource.spec import RedisQueueSpec, SpecError, parse_spec
from .resource.status import ConditionValue, Reason, RedisQueueStatus
from .steps.inject import inject_contract, release_all
from .steps.provision import (
    delete_data,
    ensure_provisioned,
    statefulset_readiness,
)
from .steps.report import Reporter
from .steps.restart import restart
from .steps.rotation import Address, Clock, Rotations
from .telemetry.logs import about

log = logging.getLogger("redisqueue.operator")


class Reconciler:
    """The leader's writes for all RedisQueues, on top of the read side."""

    def __init__(
        self,
        kube: Kube,
        side: ReadSide,
        *,
        instance: str | None = None,
        redis_address: Address | None = None,
        clock: Clock | None = None,
        peer: OperatorPeer | None = None,
    ) -> None:
        self.kube = kube
        self.side = side
        #: The operator's pods, let in by each provisioned Redis's NetworkPolicy.
        self.peer = peer or OperatorPeer()
        self.report = Reporter(kube, instance or os.environ.get("HOSTNAME", "redisqueue-operator"))
        # ``redis_address`` and ``clock`` exist for tests (a provisioned Redis outside a
        # cluster, a grace period without waiting).
        self.rotations = Rotations(kube, side, self.report, address=redis_address, clock=clock)

    # -- create / update / resume ----------------------------------------------------------
    async def reconcile(self, body: Mapping[str, Any], *, created: bool = False) -> None:
        """Converge one RedisQueue. Raises SetupError (retry) or InvalidSpecError (stop).

        ``created``: the object is new, so no Secret can hold a contract it dropped from
        ``spec.inject`` and the search for such Secrets is skipped; until its first injection
        has gone through, its targets are written without being read first.
        """
        state = await self.side.track(body)
        if not state.status_seen:
            state.status = RedisQueueStatus.read(body.get("status"))
            state.rotation = state.status.rotation
            state.status_seen = True
        async with state.lock:
            try:
                spec = read_spec(state, body)
            except SpecError as exc:
                await self._refuse(state, ConditionValue("False", Reason.INVALID_SPEC, str(exc)))
                raise InvalidSpecError(str(exc)) from None
            refused = await self.side.admit(spec)
            if refused is not None:
                await self._refuse(state, refused)
                raise InvalidSpecError(refused.message)
            state.spec = spec
            state.names = state.names.with_spec(spec)
            try:
                first = created and state.injected is NOT_INJECTED
                contract = await self._set_up(state, spec, first=first)
                credential = await self.side.probe_credential(state, spec, contract)
            except SetupError as exc:
                state.setup_problem = ConditionValue("False", exc.reason, exc.message)
                await self.report.write(state, None, force=True)
                raise
            state.setup_problem = state.refused = None
            await self.side.ensure_probe(state, spec, contract, credential=credential)
        await self._probe_and_report(state)
        await self._check_users(state)

    async def _check_users(self, state: QueueState) -> None:
        """Users of a provisioned Redis in line with spec and Secrets, and a rotation that
        status shows under way followed again (only while Redis answers the probe)."""
        probe = state.probe
        answering = probe is not None and probe.last is not None and probe.last.ok
        if state.spec is None or (state.spec.mode == "provision" and not answering):
            if state.rotation is not None and state.rotation.phase == "Overlap":
                self.rotations.drive(state)
            return
        async with state.lock:
            if state.spec is None:
                return
            began = await self.rotations.reconcile(state, state.spec)
        if began:
            await self._probe_and_report(state)
            await self.rotations.announce(state)

    async def readmit(self, body: Mapping[str, Any]) -> None:
        """Reconcile ``body`` again outside kopf (the admission policies are back, and kopf
        has set aside the RedisQueues it was refused for)."""
        try:
            await self.reconcile(body)
        except (InvalidSpecError, SetupError, KubeError, WriteFenced) as exc:
            names = QueueNames.of(body)
            log.info(
                "%s: not taken up again: %s",
                names.ref,
                getattr(exc, "message", None) or exc,
                extra=about(names.namespace, names.name),
            )

    async def refuse(self, state: QueueState, why: ConditionValue) -> None:
        """Stop acting on ``state``: no probe, and ``why`` in its status."""
        await self._refuse(state, why)

    async def _refuse(self, state: QueueState, why: ConditionValue) -> None:
        state.spec = None
        state.setup_problem = why
        await self.side.stop_probing(state, why)
        await self.report.write(state, None, force=True)

    async def _set_up(
        self, state: QueueState, spec: RedisQueueSpec, *, first: bool
    ) -> ConnectionContract:
        """Provision (provision mode), resolve the contract and inject it."""
        # Follow the Secrets this spec reads before reading them: a change from now on
        # reaches secret_changed (which waits for the lock this runs under).
        self.side.follow(state, spec)
        if spec.mode == "provision":
            await ensure_provisioned(self.kube, state.names, spec, self.side.secrets, self.peer)
        contract = await resolve_contract(state.names, spec, self.side.secrets)
        await self._inject(state, spec, contract, first=first)
        return contract

    async def _inject(
        self,
        state: QueueState,
        spec: RedisQueueSpec,
        contract: ConnectionContract,
        *,
        first: bool = False,
        stamp: str | None = None,
    ) -> None:
        """Inject ``contract``; restart the opted-in workloads of the Secrets it changed
        (for the change ``stamp``, a rotation's, else now)."""
        changed: list[str] = []
        try:
            state.injected = await inject_contract(
                self.kube,
                state.names,
                spec,
                contract,
                first=first,
                changed=changed,
            )
        except SetupError as exc:
            state.injected = ConditionValue("False", exc.reason, exc.message)
            raise
        finally:
            await self._restart_changed(state, spec, changed, stamp)

    async def _restart_changed(
        self, state: QueueState, spec: RedisQueueSpec, changed: list[str], stamp: str | None
    ) -> None:
        """Restart the workloads that opted in for the Secrets whose contract just changed."""
        stamp = stamp or restart_stamp(self.rotations.now())
        for target in spec.inject:
            if target.secret_name in changed and target.restart:
                problems = await restart(
                    self.kube, state.namespace, state.name, target.restart, stamp
                )
                for problem in problems:
                    log.warning(
                        "%s: %s", state.ref, problem, extra=about(state.namespace, state.name)
                    )

    async def _probe_and_report(self, state: QueueState, *, force: bool = False) -> None:
        if self.side.registry.get(state.ref, state.names.uid) is not state:
            return  # deleted (finalized) meanwhile: write nothing, record nothing
        result = await self.side.probe(state)
        await self.report.write(state, result, force=force)

    # -- after a scheduled probe -------------------------------------------------------------
    async def after_probe(self, state: QueueState, result: ProbeResult | None) -> None:
        """Report a scheduled probe. Sends no API request unless the status must change."""
        if state.spec is None:
            return
        if state.spec.mode == "provision" and not (
            result is not None
            and result.ok
            and (state.provisioned is not None and state.provisioned.status == "True")
        ):
            # The StatefulSet is read only while something is wrong: a Redis that answered
            # its PING, in a StatefulSet last seen ready, costs no API request per tick.
            async with state.lock:
                state.provisioned = await statefulset_readiness(self.kube, state.names)
        await self.report.write(state, result)

    # -- a Secret it reads changed ------------------------------------------------------------
    async def secret_changed(self, state: QueueState) -> None:
        """Re-resolve the contract of ``state``; re-inject, swap the probe and report when it
        changed. A changed password opens a rotation: both passwords stay valid while the
        apps move (:mod:`.steps.rotation`); a provisioned Redis is never restarted for it."""
        rotating = False
        async with state.lock:
            spec = state.spec
            if spec is None or self.side.registry.get(state.ref, state.names.uid) is not state:
                return
            before = (state.contract, state.setup_problem)
            try:
                contract = await resolve_contract(state.names, spec, self.side.secrets)
                if contract != state.contract:
                    log.info(
                        "%s: credentials or endpoint changed; re-injecting",
                        state.ref,
                        extra=about(state.namespace, state.name),
                    )
                    stamp = None
                    previous = state.contract
                    if (
                        previous is not None
                        and contract.password is not None
                        and previous.password != contract.password
                    ):
                        # A provisioned Redis accepts the new password before any app is
                        # told it, and keeps the old one until the apps have moved.
                        stamp = await self.rotations.begin(state, spec, contract)
                        rotating = True
                    await self._inject(state, spec, contract, stamp=stamp)
                    credential = await self.side.probe_credential(state, spec, contract)
                    await self.side.ensure_probe(state, spec, contract, credential=credential)
                state.setup_problem = state.refused = None
            except SetupError as exc:
                # Without its credentials there is nothing honest to PING (as on a standby):
                # the probe stops until the Secret is back.
                state.setup_problem = ConditionValue("False", exc.reason, exc.message)
                await self.side.stop_probing(state, state.setup_problem)
            except KubeError as exc:
                log.warning(
                    "%s: API error while refreshing: %s",
                    state.ref,
                    exc.message,
                    extra=about(state.namespace, state.name),
                )
        if (state.contract, state.setup_problem) != before or rotating:
            await self._probe_and_report(state)
        if rotating:
            await self.rotations.announce(state)
            self.rotations.drive(state)

    async def close(self) -> None:
        """Stop following rotations (the leader stops; status keeps where each one was)."""
        await self.rotations.close()

    # -- delete ----------------------------------------------------------------------------------
    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Stop probing and remove what this RedisQueue wrote (per its deletionPolicy)."""
        names = QueueNames.of(body)
        await self.rotations.forget(names.ref)
        await self.side.forget(names.ref)
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError:
            return
        guard = self.side.guard
        if guard is not None and guard.problem is not None:
            # Whatever this RedisQueue names was not checked against its author: touch none
            # of it. Injected keys and retained data stay where they are.
            log.warning(
                "%s: deleted while the admission policies are not in force; nothing it named "
                "is released or deleted",
                names.ref,
                extra=about(names.namespace, names.name),
            )
            return
        await release_all(self.kube, names, spec)
        if spec.mode == "provision" and spec.deletion_policy == "Delete":
            await delete_data(self.kube, names, spec)
        log.info(
            "%s: cleaned up (deletionPolicy %s)",
            names.ref,
            spec.deletion_policy,
            extra=about(names.namespace, names.name),
        )
