"""Password rotation with zero downtime: two valid passwords while the apps move.

Long on purpose: the phases, what each waits for and what it tells, in the order they happen.

When the password in a RedisQueue's auth Secret changes, the rotation goes through phases
that status shows (``status.rotation``) and Events mark:

1. **Overlap** (Event ``RotationStarted``). A provisioned Redis accepts the new password
   next to the old one at once (ACL SETUSER on the running Redis, no restart); the new
   contract is injected; the workloads in ``spec.inject[].restart`` are restarted. Apps that
   read ``REDIS_PASSWORD_FILE`` pick the new password up when the kubelet refreshes the
   mounted Secret; their connections stay authenticated meanwhile. For an external Redis the
   overlap is the one its owner opened (ElastiCache: ``auth_token_update_strategy`` ROTATE).
2. **Complete** (Event ``RotationCompleted``): once ``spec.rotation.gracePeriodSeconds`` have
   passed and every restarted workload has rolled out, the old password is removed from the
   provisioned Redis. A rollout that is still not done after twice the grace period is
   reported (Warning ``RotationRestartOverdue``) and the old password goes anyway: a stuck
   rollout must not keep an old password valid for ever. For an external Redis the phase
   is **ReadyToRemoveOld** (Event ``RotationReadyToRemoveOld``): the operator cannot remove
   the old token there; whoever manages it does (ElastiCache: SET).

"Clients have moved" is known from the grace period (longer than the kubelet's refresh of
mounted Secrets) and from the restarted workloads' rollouts; Redis cannot tell which password
a connection used, and connections opened before the change stay authenticated after it
(``CLIENT LIST`` counts them for the completion Event).

During an overlap the operator checks every :data:`RECHECK_SECONDS` that the new password is
still accepted (a Redis restarted in between comes back with its mounted file's password) and
how the restarts progress; once a rotation is over it writes nothing more. The state of a
rotation lives in status, so a new leader resumes it. Nothing here writes a password
anywhere: Redis gets hashes, status and Events get words.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Final

from redisqueue.contract import ConnectionContract

from ..api.gate import WriteFenced
from ..api.kube import Kube, KubeError
from ..objects.acl import APP_USER, password_hash, probe_key_rules
from ..objects.restart import restart_stamp
from ..readside.registry import QueueState
from ..readside.side import ReadSide
from ..resource.errors import SetupError
from ..resource.identity import QueueRef
from ..resource.names import REDIS_PORT, QueueNames
from ..resource.spec import RedisQueueSpec, RestartTarget
from ..resource.status import MAX_MESSAGE_LENGTH, RotationStatus
from ..telemetry.logs import about
from .report import Reporter, warn
from .restart import restart, still_rolling
from .users import RedisUsers, UsersUnavailable, admin_password

log = logging.getLogger("redisqueue.operator")

#: During an overlap: how often the new password and the restarts are checked.
RECHECK_SECONDS: Final = 10.0
#: While restarted workloads roll out after the grace period: how often they are checked.
ROLLOUT_CHECK_SECONDS: Final = 2.0
#: After a failed step (Redis or the API unreachable): the wait before the next try.
RETRY_SECONDS: Final = 5.0

#: Where the admin connection goes for a RedisQueue: its Service, unless told otherwise.
Address = Callable[[QueueNames], tuple[str, int]]
Clock = Callable[[], datetime.datetime]


def _service(names: QueueNames) -> tuple[str, int]:
    return names.service_host, REDIS_PORT


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def restart_targets(spec: RedisQueueSpec) -> list[RestartTarget]:
    """Every workload any inject target asks to restart, once each."""
    seen: dict[tuple[str, str], RestartTarget] = {}
    for target in spec.inject:
        for workload in target.restart:
            seen.setdefault((workload.kind, workload.name), workload)
    return list(seen.values())


def _fit(message: str) -> str:
    """A message as status can hold it."""
    return message[:MAX_MESSAGE_LENGTH]


def _when(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Rotations:
    """The password rotations of every RedisQueue, for the leader."""

    def __init__(
        self,
        kube: Kube,
        side: ReadSide,
        report: Reporter,
        *,
        address: Address | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.kube = kube
        self.side = side
        self.report = report
        self.address = address or _service
        self.now = clock or _now
        self._tasks: dict[QueueRef, asyncio.Task[None]] = {}

    # -- the admin connection ------------------------------------------------------------------
    async def _users(self, state: QueueState) -> RedisUsers:
        names = state.names
        secret = await self.side.secrets.get(
            names.namespace, names.acl_secret, "the operator's admin user"
        )
        host, port = self.address(names)
        return RedisUsers(host, port, admin_password(secret, names))

    async def _accept(self, state: QueueState, contract: ConnectionContract) -> frozenset[str]:
        """Make the provisioned Redis accept ``contract``'s password (keeping the others);
        returns the hashes of the other passwords it still accepts."""
        users = await self._users(state)
        try:
            return await self._accept_with(users, state, contract)
        finally:
            await users.close()

    async def _accept_with(
        self, users: RedisUsers, state: QueueState, contract: ConnectionContract
    ) -> frozenset[str]:
        if contract.password is None:
            return frozenset()
        wanted = password_hash(contract.password)
        live = await users.user(APP_USER)
        if wanted not in live.passwords:
            await users.add_password(APP_USER, wanted)
            log.info(
                "%s: the new password is accepted next to the old one",
                state.ref,
                extra=about(state.namespace, state.name),
            )
        return live.passwords - {wanted}

    # -- a password changed (secret_changed, under the state's lock) ----------------------------
    async def begin(
        self, state: QueueState, spec: RedisQueueSpec, contract: ConnectionContract
    ) -> str:
        """Open the overlap for the new password in ``contract``; returns the restart stamp
        of this rotation. A provisioned Redis accepts the new password before the caller
        injects it (when Redis cannot be reached now, the next check adds it)."""
        if spec.mode == "provision":
            try:
                await self._accept(state, contract)
            except (UsersUnavailable, SetupError) as exc:
                warn(state, "the new password could not be added to Redis yet (%s); retrying", exc)
        self._open(state, spec)
        assert state.rotation is not None
        return restart_stamp(state.rotation.started_at)

    def _open(self, state: QueueState, spec: RedisQueueSpec) -> None:
        started = self.now()
        grace = spec.rotation.grace_period_seconds
        remove_after = started + datetime.timedelta(seconds=grace)
        targets = restart_targets(spec)
        restarting = f"; restarting {', '.join(f'{t.kind}/{t.name}' for t in targets)}"
        what = "accepted" if spec.mode == "provision" else "used"
        state.rotation = RotationStatus(
            phase="Overlap",
            started_at=started,
            remove_after=remove_after,
            message=_fit(
                f"the password changed: the old and the new one are {what} until at least "
                f"{_when(remove_after)} (spec.rotation.gracePeriodSeconds {grace})"
                + (restarting if targets else "")
            ),
        )
        log.info(
            "%s: password rotation started (grace period %d s)",
            state.ref,
            grace,
            extra=about(state.namespace, state.name),
        )

    async def announce(self, state: QueueState) -> None:
        """The Event that marks the start of the rotation now in ``state``."""
        if state.rotation is not None and state.rotation.phase == "Overlap":
            await self.report.event(state, "RotationStarted", state.rotation.message)

    # -- reconcile: users in line with the spec, a rotation that was under way resumed ---------
    async def reconcile(self, state: QueueState, spec: RedisQueueSpec) -> bool:
        """Bring the users of a provisioned Redis in line (the probe's keys, the current
        password) and resume a rotation status shows; returns True when a rotation began
        here (the password changed while no operator watched), so status must be written.
        Call under the state's lock, after a probe found Redis answering."""
        began = False
        contract = state.contract
        if spec.mode == "provision" and contract is not None:
            try:
                users = await self._users(state)
                try:
                    others = await self._accept_with(users, state, contract)
                    await users.set_probe_keys(probe_key_rules(spec.queues))
                finally:
                    await users.close()
            except (UsersUnavailable, SetupError) as exc:
                log.debug("%s: users not checked (%s)", state.ref, getattr(exc, "message", exc))
                others = frozenset()
            overlapping = state.rotation is not None and state.rotation.phase == "Overlap"
            if others and not overlapping:
                self._open(state, spec)
                began = True
        if state.rotation is not None and state.rotation.phase == "Overlap":
            self.drive(state)
        return began

    # -- the overlap, until it ends ----------------------------------------------------------------
    def drive(self, state: QueueState) -> None:
        """Follow the rotation of ``state`` in the background until it is over."""
        task = self._tasks.get(state.ref)
        if task is not None and not task.done():
            return
        self._tasks[state.ref] = asyncio.create_task(
            self._drive(state), name=f"rotation {state.ref}"
        )

    async def _drive(self, state: QueueState) -> None:
        while True:
            try:
                async with state.lock:
                    if self.side.registry.get(state.ref, state.names.uid) is not state:
                        return  # deleted meanwhile
                    wait = await self.step(state)
            except WriteFenced:
                return  # no longer the leader: the next one resumes from status
            except Exception:  # a bug must not leave an old password valid for ever unnoticed
                log.exception(
                    "%s: rotation step failed", state.ref, extra=about(state.namespace, state.name)
                )
                wait = RETRY_SECONDS
            if wait is None:
                return
            await asyncio.sleep(wait)

    async def step(self, state: QueueState) -> float | None:
        """One check of the rotation in ``state``: seconds until the next, None when over.
        Call under the state's lock (two steps at once would both retire the old password)."""
        spec, rotation, contract = state.spec, state.rotation, state.contract
        if spec is None or contract is None or rotation is None or rotation.phase != "Overlap":
            return None
        namespace, name = state.namespace, state.name
        stamp = restart_stamp(rotation.started_at)
        targets = restart_targets(spec)
        problems = await restart(self.kube, namespace, name, targets, stamp)
        if spec.mode == "provision":
            try:
                await self._accept(state, contract)
            except (UsersUnavailable, SetupError) as exc:
                warn(state, "rotation: %s", exc)
                return RETRY_SECONDS
        now = self.now()
        if now < rotation.remove_after:
            return min(RECHECK_SECONDS, (rotation.remove_after - now).total_seconds())
        try:
            pending = await still_rolling(self.kube, namespace, targets, stamp)
        except KubeError:
            return RETRY_SECONDS
        grace = datetime.timedelta(seconds=spec.rotation.grace_period_seconds)
        if pending and now < rotation.started_at + 2 * grace:
            message = _fit(
                f"the grace period is over; waiting for {', '.join(pending)} to roll out "
                f"before the old password is removed (at the latest at "
                f"{_when(rotation.started_at + 2 * grace)})"
            )
            if message != rotation.message:
                state.rotation = rotation.model_copy(update={"message": message})
                await self._write(state)
            return ROLLOUT_CHECK_SECONDS
        if pending:
            await self.report.event(
                state,
                "RotationRestartOverdue",
                f"{', '.join(pending)} had not rolled out {2 * grace.total_seconds():.0f} s "
                "after the password changed; the old password is retired anyway",
                warning=True,
            )
        return await self._finish(state, spec, rotation, problems, now)

    async def _finish(
        self,
        state: QueueState,
        spec: RedisQueueSpec,
        rotation: RotationStatus,
        problems: list[str],
        now: datetime.datetime,
    ) -> float | None:
        """Retire the old password (provision) or say it may go (external); None when done,
        else seconds until the next try."""
        took = (now - rotation.started_at).total_seconds()
        contract = state.contract
        assert contract is not None
        if spec.mode == "provision":
            try:
                users = await self._users(state)
                try:
                    others = (await users.user(APP_USER)).passwords - (
                        {password_hash(contract.password)} if contract.password else set()
                    )
                    await users.remove_passwords(APP_USER, others)
                    # The moment the old password went (connecting may have taken a while).
                    now = self.now()
                    took = (now - rotation.started_at).total_seconds()
                    kept = await users.connections_older_than(APP_USER, took)
                finally:
                    await users.close()
            except (UsersUnavailable, SetupError) as exc:
                warn(state, "rotation: %s", exc)
                return RETRY_SECONDS
            phase, reason = "Complete", "RotationCompleted"
            message = (
                f"the old password was removed {took:.0f} s after the change; "
                f"{kept} connection(s) opened before it are still open and stay authenticated"
            )
        else:
            phase, reason = "ReadyToRemoveOld", "RotationReadyToRemoveOld"
            message = (
                f"apps have used the new password for {took:.0f} s; remove the old one where "
                'it is managed (ElastiCache: apply with auth_token_update_strategy = "SET")'
            )
        if problems:
            message += "; " + "; ".join(problems)
        state.rotation = rotation.model_copy(
            update={"phase": phase, "completed_at": now, "message": _fit(message)}
        )
        log.info(
            "%s: password rotation %s after %.0f s",
            state.ref,
            phase,
            took,
            extra=about(state.namespace, state.name),
        )
        await self._write(state)
        await self.report.event(state, reason, message)
        return None

    async def _write(self, state: QueueState) -> None:
        last = state.probe.last if state.probe is not None else None
        await self.report.write(state, last)

    # -- the end ----------------------------------------------------------------------------------
    async def forget(self, ref: QueueRef) -> None:
        """Stop following the rotation of ``ref`` (deleted)."""
        task = self._tasks.pop(ref, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Stop following every rotation (the leader stops; status keeps where each was)."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
