"""What the operator remembers about each RedisQueue between handler calls.

:class:`QueueState` holds one RedisQueue's parsed spec, its contract and the findings of
the last reconcile (as :class:`ConditionValue`\\ s); :class:`QueueStates` is the registry of
them, keyed by namespace and name and renewed when the object's uid changes. Nothing here
does I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from redisqueue.contract import ConnectionContract

from .spec import CONDITION_READY, JSON, RedisQueueSpec

ConditionStatus = Literal["True", "False", "Unknown"]

#: Interval assumed before a spec has been parsed.
DEFAULT_INTERVAL_SECONDS: Final = 10.0


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


@dataclass(frozen=True, slots=True)
class ConditionValue:
    """The status, reason and message one condition should show."""

    status: ConditionStatus
    reason: str
    message: str


@dataclass
class QueueState:
    """What the operator knows about one RedisQueue between handler calls."""

    namespace: str
    name: str
    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    spec: RedisQueueSpec | None = None
    generation: int | None = None
    contract: ConnectionContract | None = None
    injected: ConditionValue = ConditionValue("Unknown", Reason.PENDING, "not injected yet")
    setup_problem: ConditionValue | None = None  # a blocking problem found while setting up
    provisioned: ConditionValue | None = None  # provision mode: the StatefulSet's readiness
    status: JSON = field(default_factory=dict)  # as last written
    written_at: float = 0.0  # loop time of the last status write
    probed_at: float = 0.0  # time.monotonic() of the last scheduled probe

    @property
    def ready(self) -> str | None:
        """The Ready condition's status as last written (None before the first write)."""
        condition = find_condition(self.status, CONDITION_READY)
        return None if condition is None else str(condition.get("status"))

    @property
    def interval(self) -> float:
        """Seconds between scheduled probes."""
        return self.spec.health_check.interval_seconds if self.spec else DEFAULT_INTERVAL_SECONDS


def find_condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` in a status, if present."""
    for condition in status.get("conditions", []) or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


class QueueStates:
    """The registry of :class:`QueueState`, one per live RedisQueue."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], QueueState] = {}

    def for_body(self, body: Mapping[str, Any]) -> QueueState:
        """The state of the object in ``body``; a new one when its uid changed."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self._states.get(key)
        if state is None or state.uid != meta.get("uid"):
            state = QueueState(meta["namespace"], meta["name"], str(meta.get("uid", "")))
            state.status = dict(body.get("status") or {})
            self._states[key] = state
        return state

    def forget(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)

    def __iter__(self) -> Iterator[QueueState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def most_overdue_probe(self, grace: float, now: float | None = None) -> str | None:
        """A sentence naming a RedisQueue whose probe is more than ``grace`` seconds plus two
        intervals late, or None when every probe loop keeps its schedule."""
        now = time.monotonic() if now is None else now
        for state in self:
            if state.spec is None or state.probed_at == 0.0:
                continue
            late = now - state.probed_at - state.interval
            if late > grace + 2 * state.interval:
                return f"no health probe of {state.namespace}/{state.name} for {late:.0f} s"
        return None
