"""Writing what the operator found: a RedisQueue's status, and an Event when Ready changes.

Status is the truth about the last PING and the last reconcile; it is written when
something in it changed, not per probe. An Event is posted on every change of ``Ready``.
Nothing written carries a credential.
"""

from __future__ import annotations

import datetime
import logging

from ..api.gate import WriteFenced
from ..api.kube import Kube, KubeError
from ..api.paths import object_path
from ..objects.events import build_ready_event, build_rotation_event, ready_transition_is_news
from ..probing.result import ProbeResult, reachable_condition
from ..readside.registry import QueueState
from ..resource.identity import API_VERSION, JSON, KIND
from ..resource.status import (
    CONDITION_READY,
    Findings,
    Reason,
    RedisQueueStatus,
    compose_status,
    now_utc,
    status_needs_write,
    unchecked_status,
)
from ..telemetry.logs import about

log = logging.getLogger("redisqueue.operator")


def warn(state: QueueState, what: str, exc: BaseException) -> None:
    """Log a failure about ``state``; ``what`` holds one ``%s`` for the error's message."""
    log.warning(
        "%s: " + what,
        state.ref,
        getattr(exc, "message", exc),
        extra=about(state.namespace, state.name),
    )


def findings(state: QueueState, result: ProbeResult | None) -> Findings:
    """What the operator knows of ``state`` after ``result`` (None: not probed)."""
    spec = state.spec
    if state.contract is not None:
        endpoint: str | None = state.contract.endpoint
    elif spec is not None:
        endpoint = state.names.endpoint_text
    else:
        endpoint = None
    ok = result is not None and result.ok
    return Findings(
        generation=state.generation,
        mode=spec.mode if spec is not None else None,
        endpoint=endpoint,
        injected=state.injected,
        reachable=reachable_condition(result),
        setup_problem=state.setup_problem,
        provisioned=state.provisioned,
        latency_ms=(result.latency_ms or 0.0) if ok and result is not None else None,
        probed_at=result.at if result is not None else None,
        rotation=state.rotation,
    )


class Reporter:
    """Writes status and Ready Events for the leader."""

    def __init__(self, kube: Kube, instance: str) -> None:
        self.kube = kube
        self.instance = instance

    async def write(
        self, state: QueueState, result: ProbeResult | None, *, force: bool = False
    ) -> None:
        """Write the status ``state`` and ``result`` call for, if it differs from the one
        written (or ``force``), and an Event when Ready changed."""
        now = now_utc()
        wanted = compose_status(state.status, findings(state, result), now)
        if not force and not status_needs_write(state.status, wanted):
            return
        await self._write(state, wanted, now, probed=result is not None)

    async def stopped(self, state: QueueState) -> None:
        """Mark ``state``'s status as no longer checked (the operator stops for good)."""
        now = now_utc()
        await self._write(state, unchecked_status(state.status, now), now, probed=False)

    async def _write(
        self, state: QueueState, wanted: RedisQueueStatus, now: datetime.datetime, *, probed: bool
    ) -> None:
        path = object_path(API_VERSION, KIND, state.namespace, state.name, "status")
        try:
            await self.kube.merge_patch(path, {"status": wanted.to_patch()})
        except KubeError as exc:
            if not exc.not_found:
                log.warning(
                    "%s: could not write status: %s",
                    state.ref,
                    exc.message,
                    extra=about(state.namespace, state.name),
                )
            return
        previous = state.status.condition(CONDITION_READY)
        state.status = wanted
        ready = wanted.conditions[0]
        # The operator's own stop and start are not news about the Redis.
        bookkeeping = Reason.OPERATOR_STOPPED in {ready.reason, previous and previous.reason}
        before = previous.status if previous is not None else None
        if not bookkeeping and ready_transition_is_news(before, ready.status, probed=probed):
            event = build_ready_event(
                state.names.involved,
                ready.model_dump(mode="json"),
                before,
                instance=self.instance,
                now=now,
            )
            await self._post(state, event)

    async def event(
        self, state: QueueState, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Post an Event about ``state`` (a step of a rotation); failures are logged only."""
        event = build_rotation_event(
            state.names.involved,
            reason,
            message,
            warning=warning,
            instance=self.instance,
            now=now_utc(),
        )
        await self._post(state, event)

    async def _post(self, state: QueueState, event: JSON) -> None:
        try:
            await self.kube.create(event)
        except (KubeError, WriteFenced) as exc:
            warn(state, "could not post event: %s", exc)
