"""The status a RedisQueue should show, and when it must be written: pure functions.

:func:`compose_status` turns what the operator knows (a :class:`QueueState`) and the last
PING (a :class:`ProbeResult`) into the status object: ``phase``, ``endpoint``,
``latencyMs``, ``lastProbeTime``, ``observedGeneration`` and the ``Ready``, ``Reachable``
and ``Injected`` conditions. Nothing in it carries a credential.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from redisqueue.contract import format_endpoint

from .builders import endpoint_for
from .probe_result import ProbeResult
from .spec import CONDITION_INJECTED, CONDITION_REACHABLE, CONDITION_READY, JSON
from .state import ConditionValue, QueueState, Reason

#: Status is rewritten at least this often even when nothing changed, so lastProbeTime
#: stays honest without a write per probe.
STATUS_REFRESH_SECONDS: Final = 60.0

#: A probe outcome as the Reachable condition's reason.
OUTCOME_REASONS: Final = {
    "unreachable": Reason.UNREACHABLE,
    "auth_failed": Reason.AUTH_FAILED,
    "timeout": Reason.TIMEOUT,
    "tls_error": Reason.TLS_ERROR,
    "error": Reason.PROBE_FAILED,
}

#: The longest condition message written (the API server's own limit is 32 KiB).
MAX_MESSAGE_LENGTH: Final = 2000


def now_utc() -> datetime.datetime:
    """The current time in UTC, to the second (as status and events show it)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def rfc3339(moment: datetime.datetime | float) -> str:
    """``2026-01-02T03:04:05Z`` for a datetime or a Unix timestamp."""
    if isinstance(moment, float | int):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def reachable_condition(result: ProbeResult | None) -> ConditionValue:
    """The Reachable condition for the last PING (Unknown before the first)."""
    if result is None:
        return ConditionValue("Unknown", Reason.NOT_PROBED, "no PING sent yet")
    if result.ok:
        ms = result.latency_ms or 0.0
        return ConditionValue(
            "True", Reason.PING_SUCCEEDED, f"PONG from {result.endpoint} in {ms:.1f} ms"
        )
    return ConditionValue(
        "False",
        OUTCOME_REASONS.get(result.reason, Reason.PROBE_FAILED),
        result.error or result.reason,
    )


def ready_condition(state: QueueState, reachable: ConditionValue) -> ConditionValue:
    """Ready is the first thing that is not fine, in the order a user must fix them."""
    if state.setup_problem is not None:
        return state.setup_problem
    if state.provisioned is not None and state.provisioned.status != "True":
        return state.provisioned
    if state.injected.status != "True":
        return state.injected
    if reachable.status != "True":
        return reachable
    where = state.contract.endpoint if state.contract else "?"
    return ConditionValue(
        "True", Reason.READY, f"Redis at {where} answers and apps have the connection contract"
    )


def phase(ready: ConditionValue, reachable: ConditionValue) -> str:
    """One word for ``kubectl get``: Ready, Invalid, Provisioning, Pending, AuthError, ..."""
    if ready.status == "True":
        return "Ready"
    if ready.reason == Reason.INVALID_SPEC:
        return "Invalid"
    if ready.reason in {Reason.PROVISIONING, Reason.STATEFULSET_MISSING}:
        return "Provisioning"
    if ready.reason == Reason.NOT_PROBED:
        return "Pending"
    if ready.reason in {Reason.AUTH_FAILED, Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_NOT_FOUND}:
        return "AuthError"
    if ready.reason.startswith("Inject"):
        return "InjectError"
    if reachable.status == "False":
        return "Unreachable"
    return "Error"


def compose_status(state: QueueState, result: ProbeResult | None, now: datetime.datetime) -> JSON:
    """The status a RedisQueue should show at ``now``.

    A condition's ``lastTransitionTime`` moves only when its status changes.
    """
    reachable = reachable_condition(result)
    ready = ready_condition(state, reachable)
    previous = {c["type"]: c for c in state.status.get("conditions", []) or []}
    stamp = rfc3339(now)
    conditions = []
    for kind, value in (
        (CONDITION_READY, ready),
        (CONDITION_REACHABLE, reachable),
        (CONDITION_INJECTED, state.injected),
    ):
        before = previous.get(kind)
        changed = before is None or before.get("status") != value.status
        conditions.append(
            {
                "type": kind,
                "status": value.status,
                "reason": value.reason,
                "message": value.message[:MAX_MESSAGE_LENGTH],
                "lastTransitionTime": (
                    stamp if changed or before is None else before["lastTransitionTime"]
                ),
                "observedGeneration": state.generation,
            }
        )
    return {
        "phase": phase(ready, reachable),
        "mode": state.spec.mode if state.spec else state.status.get("mode"),
        "endpoint": state.contract.endpoint if state.contract else _spec_endpoint(state),
        "latencyMs": round(result.latency_ms or 0.0, 3) if result and result.ok else None,
        "lastProbeTime": rfc3339(result.at) if result else state.status.get("lastProbeTime"),
        "observedGeneration": state.generation,
        "conditions": conditions,
    }


def _spec_endpoint(state: QueueState) -> str | None:
    if state.spec is None:
        return state.status.get("endpoint")
    return format_endpoint(*endpoint_for(state.name, state.namespace, state.spec))


def status_needs_write(
    written: Mapping[str, Any], wanted: Mapping[str, Any], seconds_since_write: float
) -> bool:
    """Write when anything but latency and probe time changed, or the last write is old."""
    return seconds_since_write >= STATUS_REFRESH_SECONDS or _significant_fields(
        written
    ) != _significant_fields(wanted)


def _significant_fields(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be written at once when it changes (not latency or probe time)."""
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
        for c in status.get("conditions", []) or []
    )
    return (
        status.get("phase"),
        status.get("endpoint"),
        status.get("observedGeneration"),
        conditions,
    )
