"""What the operator remembers about each RedisQueue between handler calls.

:class:`QueueState` holds one RedisQueue's parsed spec, its contract and the findings of
the last reconcile (as :class:`ConditionValue`\\ s); :class:`QueueStates` is the registry of
them, keyed by namespace and name and renewed when the object's uid changes. Nothing here
does I/O.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from redisqueue.contract import ConnectionContract

from .spec import API_VERSION, CONDITION_READY, JSON, KIND, RedisQueueSpec

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
    next_probe_at: float = 0.0  # loop time the probe schedule runs the next one
    pinged_at: float = 0.0  # loop time of the last PING by any path (reconcile, tick, rotation)
    #: Who the object is, for events: only the identity, not the body (whose managedFields
    #: alone would cost kilobytes per RedisQueue to keep).
    involved: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> str | None:
        """The Ready condition's status as last written (None before the first write)."""
        condition = find_condition(self.status, CONDITION_READY)
        return None if condition is None else str(condition.get("status"))

    @property
    def interval(self) -> float:
        """Seconds between scheduled probes."""
        return self.spec.health_check.interval_seconds if self.spec else DEFAULT_INTERVAL_SECONDS


def _age_seconds(timestamp: object) -> float | None:
    """Seconds since an RFC 3339 ``...Z`` timestamp (None when absent or unreadable)."""
    if not isinstance(timestamp, str):
        return None
    try:
        moment = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return max(0.0, (now - moment).total_seconds())


def find_condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` in a status, if present."""
    for condition in status.get("conditions", []) or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


class SecretReferences:
    """Which RedisQueues read which Secrets: the index the Secret watch is filtered by.

    Only Secrets named here are acted on, so the operator follows the Secrets RedisQueues
    reference without keeping (or labelling) any other Secret.
    """

    def __init__(self) -> None:
        self._readers: dict[tuple[str, str], set[str]] = {}  # (namespace, secret) -> names
        self._reads: dict[tuple[str, str], frozenset[str]] = {}  # (namespace, name) -> secrets

    def set(self, namespace: str, name: str, secrets: frozenset[str]) -> None:
        """Record that RedisQueue ``name`` reads exactly ``secrets`` (replacing the last set)."""
        self.forget(namespace, name)
        if secrets:
            self._reads[(namespace, name)] = secrets
        for secret in secrets:
            self._readers.setdefault((namespace, secret), set()).add(name)

    def forget(self, namespace: str, name: str) -> None:
        for secret in self._reads.pop((namespace, name), frozenset()):
            readers = self._readers.get((namespace, secret))
            if readers is not None:
                readers.discard(name)
                if not readers:
                    del self._readers[(namespace, secret)]

    def readers(self, namespace: str, secret: str) -> list[str]:
        """The RedisQueues in ``namespace`` that read Secret ``secret``."""
        return sorted(self._readers.get((namespace, secret), ()))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._readers

    def __len__(self) -> int:
        return len(self._readers)


class QueueStates:
    """The registry of :class:`QueueState`, one per live RedisQueue."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], QueueState] = {}
        self.secrets = SecretReferences()

    def for_body(self, body: Mapping[str, Any], now: float | None = None) -> QueueState:
        """The state of the object in ``body``; a new one when its uid changed.

        A new state starts from the status the object already shows; ``now`` (loop time)
        dates that status from its ``lastProbeTime``, so a restarted operator rewrites it
        only when something changed or it is due, not once per object at startup.
        """
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self._states.get(key)
        if state is None or state.uid != meta.get("uid"):
            state = QueueState(meta["namespace"], meta["name"], str(meta.get("uid", "")))
            state.status = copy.deepcopy(dict(body.get("status") or {}))
            if now is not None:
                age = _age_seconds(state.status.get("lastProbeTime"))
                if age is not None:
                    state.written_at = now - age
            state.involved = {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"namespace": state.namespace, "name": state.name, "uid": state.uid},
            }
            self._states[key] = state
        return state

    def get(self, namespace: str, name: str, uid: str | None = None) -> QueueState | None:
        """The state of a RedisQueue (of this ``uid`` when given), if one is kept."""
        state = self._states.get((namespace, name))
        if state is None or (uid is not None and state.uid != uid):
            return None
        return state

    def forget(self, namespace: str, name: str) -> None:
        self._states.pop((namespace, name), None)
        self.secrets.forget(namespace, name)

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
