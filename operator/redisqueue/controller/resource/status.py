"""The status a RedisQueue shows: its typed model, the reasons it speaks in, and the pure
functions that compose it and decide when it must be written.

:func:`compose_status` turns what the operator found (a :class:`Findings`) into a
:class:`RedisQueueStatus`: ``phase``, ``endpoint``, ``latencyMs``, ``lastProbeTime``,
``observedGeneration`` and the ``Ready``, ``Reachable`` and ``Injected`` conditions, the
model the CRD's status schema is generated from, with ``rotation`` (the last password
rotation). Nothing in it carries a credential.

Long on purpose: the reasons, the model and the functions that compose and phrase it are one
vocabulary; kept apart, a reason could be added without its phase or its place in Ready, or
the status schema could drift from the functions that fill it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, ValidationError

from .spec import Mode, ResourceModel

ConditionStatus = Literal["True", "False", "Unknown"]
#: Overlap: the new password works and the old one still does, while apps move.
#: Complete: the old password was removed (a provisioned Redis).
#: ReadyToRemoveOld: apps have moved; the old password of an external Redis may be removed
#: by whoever manages it (ElastiCache: auth_token_update_strategy SET).
RotationPhase = Literal["Overlap", "Complete", "ReadyToRemoveOld"]

#: Condition types the operator maintains.
CONDITION_READY: Final = "Ready"
CONDITION_REACHABLE: Final = "Reachable"
CONDITION_INJECTED: Final = "Injected"

#: The longest condition message written (the API server's own limit is 32 KiB).
MAX_MESSAGE_LENGTH: Final = 2000


class Reason:
    """Every reason a condition can carry; users filter and alert on these words."""

    READY: Final = "Ready"
    PENDING: Final = "Pending"
    INVALID_SPEC: Final = "InvalidSpec"
    APPLY_FAILED: Final = "ApplyFailed"
    SECRET_UNREADABLE: Final = "SecretUnreadable"  # noqa: S105 - a reason, not a secret
    SECRET_NOT_FOUND: Final = "SecretNotFound"  # noqa: S105
    SECRET_KEY_NOT_FOUND: Final = "SecretKeyNotFound"  # noqa: S105
    SECRET_VALUE_INVALID: Final = "SecretValueInvalid"  # noqa: S105
    SECRET_REFUSED: Final = "SecretRefused"  # noqa: S105
    POLICY_REFUSED: Final = "PolicyRefused"
    OWNERSHIP_CONFLICT: Final = "OwnershipConflict"  # a same-named object not provably its own
    ADMISSION_POLICIES_MISSING: Final = "AdmissionPoliciesMissing"  # not installed as shipped
    INJECTED: Final = "Injected"
    NO_TARGETS: Final = "NoTargets"
    INJECT_CONFLICT: Final = "InjectConflict"
    INJECT_FORBIDDEN: Final = "InjectForbidden"
    INJECT_FAILED: Final = "InjectFailed"
    STATEFULSET_READY: Final = "StatefulSetReady"
    STATEFULSET_MISSING: Final = "StatefulSetMissing"
    STATEFULSET_UNKNOWN: Final = "StatefulSetUnknown"
    PROVISIONING: Final = "Provisioning"
    NOT_PROBED: Final = "NotProbed"
    PING_SUCCEEDED: Final = "PingSucceeded"
    UNREACHABLE: Final = "Unreachable"
    AUTH_FAILED: Final = "AuthFailed"
    TIMEOUT: Final = "Timeout"
    TLS_ERROR: Final = "TLSError"
    PROBE_FAILED: Final = "ProbeFailed"
    OPERATOR_STOPPED: Final = "OperatorStopped"


@dataclass(frozen=True, slots=True)
class ConditionValue:
    """The status, reason and message one condition should show."""

    status: ConditionStatus
    reason: str
    message: str


#: Before the first PING.
NOT_PROBED: Final = ConditionValue("Unknown", Reason.NOT_PROBED, "no PING sent yet")


class Condition(ResourceModel):
    """One aspect of the RedisQueue's state (the shape of metav1.Condition)."""

    # Timestamps arrive as RFC 3339 strings from the API server.
    model_config = ConfigDict(strict=False)

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="Ready (usable by apps), Reachable (answers PING) or Injected (app "
        "Secrets hold the current contract).",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Machine-readable CamelCase cause of the status.",
    )
    message: str = Field(
        max_length=32768,
        description="Human-readable detail; never contains credentials.",
    )
    last_transition_time: datetime.datetime = Field(
        description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None,
        ge=0,
        description="metadata.generation of the spec this condition was computed from.",
        json_schema_extra={"format": "int64"},
    )


class RotationStatus(ResourceModel):
    """The last password rotation: its phase and when it started and ends."""

    model_config = ConfigDict(strict=False)

    phase: RotationPhase = Field(
        description="Overlap (both passwords are accepted while apps move to the new one), "
        "Complete (the old password was removed) or ReadyToRemoveOld (an external Redis: "
        "apps have moved, the old password may be removed where it is managed)."
    )
    started_at: datetime.datetime = Field(description="When the new password was first seen.")
    remove_after: datetime.datetime = Field(
        description="Earliest time the old password is removed: startedAt plus "
        "spec.rotation.gracePeriodSeconds (later while a restart is still rolling out)."
    )
    completed_at: datetime.datetime | None = Field(
        None, description="When the rotation left Overlap."
    )
    message: str = Field(
        "",
        max_length=MAX_MESSAGE_LENGTH,
        description="What the rotation waits for or did; never contains credentials.",
    )


class RedisQueueStatus(ResourceModel):
    """The observed state of a RedisQueue, written by the operator."""

    # Read back from the API server: timestamps are strings, and a newer operator may have
    # written fields this model does not know yet.
    model_config = ConfigDict(extra="ignore", strict=False)

    phase: str | None = Field(
        None,
        max_length=64,
        description="One-word summary for humans (for example Pending, Ready, Unreachable). "
        "Automation should read conditions instead.",
    )
    mode: Mode | None = Field(None, description="provision or external.")
    endpoint: str | None = Field(
        None,
        max_length=512,
        description="host:port the apps connect to (never contains credentials).",
    )
    latency_ms: float | None = Field(
        None,
        ge=0,
        description="Round trip of the successful PING that last changed this status, in "
        "milliseconds. Status is written when something changes, not per probe: the live "
        "latency is the metric redisqueue_ping_duration_seconds.",
    )
    last_probe_time: datetime.datetime | None = Field(
        None,
        description="When the PING that last changed this status was sent (RFC 3339). "
        "Probes that change nothing are not written here; the time of the latest probe is "
        "the metric redisqueue_last_probe_timestamp_seconds.",
    )
    observed_generation: int | None = Field(
        None,
        ge=0,
        description="metadata.generation of the spec the operator last acted on.",
        json_schema_extra={"format": "int64"},
    )
    rotation: RotationStatus | None = Field(
        None, description="The last password rotation, when there was one."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Reachable and Injected, each with a reason and a message.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> RedisQueueStatus:
        """The status an object shows, as the model; empty when absent or unreadable (someone
        else wrote something this operator cannot parse: it is replaced at the next write)."""
        try:
            return cls.model_validate(dict(raw or {}))
        except ValidationError:
            return cls()

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, if present."""
        return next((c for c in self.conditions if c.type == kind), None)

    @property
    def ready(self) -> ConditionStatus | None:
        """The Ready condition's status (None before the first write)."""
        found = self.condition(CONDITION_READY)
        return None if found is None else found.status

    def to_patch(self) -> dict[str, Any]:
        """The JSON body of a merge patch of ``status``: every field named, so a field now
        absent (``latencyMs`` of a failing Redis) is cleared, not left as it was."""
        return self.model_dump(by_alias=True, mode="json")


@dataclass(frozen=True, slots=True)
class Findings:
    """What the operator found for one RedisQueue, as :func:`compose_status` reads it."""

    generation: int | None
    mode: Mode | None
    endpoint: str | None
    injected: ConditionValue
    reachable: ConditionValue = NOT_PROBED
    #: A blocking problem found while setting up (invalid spec, policy, Secrets, apply).
    setup_problem: ConditionValue | None = None
    #: Provision mode: the StatefulSet's readiness, when known.
    provisioned: ConditionValue | None = None
    latency_ms: float | None = None
    #: Unix time of the PING the reachability comes from.
    probed_at: float | None = None
    #: The password rotation under way or last done (None: keep what status shows).
    rotation: RotationStatus | None = None


def now_utc() -> datetime.datetime:
    """The current time in UTC, to the second (as status and events show it)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def rfc3339(moment: datetime.datetime | float) -> str:
    """``2026-01-02T03:04:05Z`` for a datetime or a Unix timestamp."""
    if isinstance(moment, float | int):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(moment: datetime.datetime | float) -> datetime.datetime:
    if isinstance(moment, float | int):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0)


def ready_condition(found: Findings) -> ConditionValue:
    """Ready is the first thing that is not fine, in the order a user must fix them."""
    if found.setup_problem is not None:
        return found.setup_problem
    if found.provisioned is not None and found.provisioned.status != "True":
        return found.provisioned
    if found.injected.status != "True":
        return found.injected
    if found.reachable.status != "True":
        return found.reachable
    return ConditionValue(
        "True",
        Reason.READY,
        f"Redis at {found.endpoint or '?'} answers and apps have the connection contract",
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
    if ready.reason == Reason.OPERATOR_STOPPED:
        return "Unknown"
    if ready.reason in {Reason.AUTH_FAILED, Reason.SECRET_NOT_FOUND, Reason.SECRET_KEY_NOT_FOUND}:
        return "AuthError"
    if ready.reason.startswith("Inject"):
        return "InjectError"
    if ready.reason in {Reason.OWNERSHIP_CONFLICT, Reason.POLICY_REFUSED}:
        return "Refused"
    if ready.reason == Reason.ADMISSION_POLICIES_MISSING:  # the operator acts on nothing
        return "Paused"
    if reachable.status == "False":
        return "Unreachable"
    return "Error"


def compose_status(
    previous: RedisQueueStatus, found: Findings, now: datetime.datetime
) -> RedisQueueStatus:
    """The status a RedisQueue should show at ``now``, after ``previous``.

    A condition's ``lastTransitionTime`` moves only when its status changes.
    """
    ready = ready_condition(found)
    stamp = _utc(now)
    written = {c.type: c for c in previous.conditions}
    conditions = []
    for kind, value in (
        (CONDITION_READY, ready),
        (CONDITION_REACHABLE, found.reachable),
        (CONDITION_INJECTED, found.injected),
    ):
        before = written.get(kind)
        unchanged = before is not None and before.status == value.status
        conditions.append(
            Condition(
                type=kind,
                status=value.status,
                reason=value.reason,
                message=value.message[:MAX_MESSAGE_LENGTH],
                last_transition_time=before.last_transition_time
                if unchanged and before is not None
                else stamp,
                observed_generation=found.generation,
            )
        )
    return RedisQueueStatus(
        phase=phase(ready, found.reachable),
        mode=found.mode or previous.mode,
        endpoint=found.endpoint or previous.endpoint,
        latency_ms=round(found.latency_ms, 3) if found.latency_ms is not None else None,
        last_probe_time=_utc(found.probed_at)
        if found.probed_at is not None
        else previous.last_probe_time,
        observed_generation=found.generation,
        rotation=found.rotation if found.rotation is not None else previous.rotation,
        conditions=conditions,
    )


def unchecked_status(previous: RedisQueueStatus, now: datetime.datetime) -> RedisQueueStatus:
    """``previous`` marked as no longer checked: the operator stopped and no replica took
    over. Ready and Reachable become Unknown; what was injected stays as it was."""
    stopped = ConditionValue(
        "Unknown",
        Reason.OPERATOR_STOPPED,
        f"the operator stopped at {rfc3339(now)} and no replica took over: nothing checks "
        "this Redis now, and this status is as it was then",
    )
    conditions = []
    for kind in (CONDITION_READY, CONDITION_REACHABLE, CONDITION_INJECTED):
        before = previous.condition(kind)
        if kind == CONDITION_INJECTED:
            if before is not None:
                conditions.append(before)
            continue
        conditions.append(
            Condition(
                type=kind,
                status=stopped.status,
                reason=stopped.reason,
                message=stopped.message,
                last_transition_time=before.last_transition_time
                if before is not None and before.status == stopped.status
                else _utc(now),
                observed_generation=before.observed_generation if before else None,
            )
        )
    return previous.model_copy(update={"phase": "Unknown", "conditions": conditions})


def status_needs_write(written: RedisQueueStatus, wanted: RedisQueueStatus) -> bool:
    """Write when anything but latency, probe time and messages changed.

    Nothing is rewritten only because time passed: at rest the operator writes nothing.
    ``latencyMs`` and ``lastProbeTime`` are those of the probe that last changed the status;
    how fresh the answer is lives in metrics (``redisqueue_last_probe_timestamp_seconds``)
    and alerts."""
    return _significant_fields(written) != _significant_fields(wanted)


def _significant_fields(status: RedisQueueStatus) -> tuple[Any, ...]:
    """What must be written at once when it changes (not latency or probe time)."""
    conditions = tuple(
        (c.type, c.status, c.reason, c.observed_generation) for c in status.conditions
    )
    rotation = status.rotation
    turn = (
        None
        if rotation is None
        else (rotation.phase, rotation.started_at, rotation.remove_after, rotation.message)
    )
    return (status.phase, status.endpoint, status.observed_generation, conditions, turn)
