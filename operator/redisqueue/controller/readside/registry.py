"""The one registry of RedisQueues every replica keeps, and what it knows of each.

A :class:`QueueState` holds one RedisQueue's names, parsed spec, labels, the Secrets its
contract reads, the contract, its probe and schedule, and (on the leader) the findings of the
last reconcile and the status as last written. :class:`Registry` keys them by
:class:`QueueRef` and indexes which RedisQueues read which Secret, the filter of the Secret
watch. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from redisqueue.contract import ConnectionContract

from ..probing.probe import Probe
from ..resource.identity import QueueRef
from ..resource.names import QueueNames
from ..resource.spec import DEFAULT_HEALTH_INTERVAL_SECONDS, RedisQueueSpec
from ..resource.status import ConditionValue, Reason, RedisQueueStatus

#: Before anything was injected.
NOT_INJECTED: Final = ConditionValue("Unknown", Reason.PENDING, "not injected yet")


@dataclass(eq=False)
class QueueState:
    """What this replica knows about one RedisQueue."""

    names: QueueNames
    # Copied from ``names`` once: read on every step.
    ref: QueueRef = field(init=False)
    namespace: str = field(init=False)
    name: str = field(init=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    spec: RedisQueueSpec | None = None
    generation: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The Secrets (same namespace) the contract reads.
    reads: frozenset[str] = frozenset()
    contract: ConnectionContract | None = None
    probe: Probe | None = None
    #: Why the read side does not probe this RedisQueue (invalid spec, policy, Secrets).
    refused: ConditionValue | None = None
    # The leader's findings and the status as last written.
    injected: ConditionValue = NOT_INJECTED
    setup_problem: ConditionValue | None = None
    provisioned: ConditionValue | None = None
    status: RedisQueueStatus = field(default_factory=RedisQueueStatus)
    #: Whether ``status`` holds what the object showed (read once, then as written).
    status_seen: bool = False
    # Loop times of the schedule.
    next_probe_at: float = 0.0  # when the schedule runs the next probe
    probed_at: float = 0.0  # the last scheduled probe (the liveness check reads it)
    pinged_at: float = 0.0  # the last PING by any path (reconcile, tick, rotation)

    def __post_init__(self) -> None:
        self.ref = self.names.ref
        self.namespace, self.name = self.ref

    @property
    def interval(self) -> float:
        """Seconds between scheduled probes."""
        if self.spec is None:
            return DEFAULT_HEALTH_INTERVAL_SECONDS
        return self.spec.health_check.interval_seconds


class Registry:
    """Every live RedisQueue this replica follows, by :class:`QueueRef`."""

    def __init__(self) -> None:
        self._states: dict[QueueRef, QueueState] = {}
        self._readers: dict[tuple[str, str], set[str]] = {}  # (namespace, secret) -> names

    def get(self, ref: QueueRef, uid: str | None = None) -> QueueState | None:
        """The state of a RedisQueue (of this ``uid`` when given), if one is kept."""
        state = self._states.get(ref)
        if state is None or (uid is not None and state.names.uid != uid):
            return None
        return state

    def add(self, names: QueueNames) -> tuple[QueueState, QueueState | None]:
        """Start following ``names`` (a new RedisQueue, or a new one under an old name);
        returns its state and the state it replaced, whose probe the caller closes."""
        replaced = self.forget(names.ref) if names.ref in self._states else None
        state = self._states[names.ref] = QueueState(names)
        return state, replaced

    def set_reads(self, state: QueueState, secrets: frozenset[str]) -> None:
        """Record that ``state`` reads exactly ``secrets`` from now on."""
        self._drop_reads(state)
        state.reads = secrets
        for secret in secrets:
            self._readers.setdefault((state.namespace, secret), set()).add(state.name)

    def _drop_reads(self, state: QueueState) -> None:
        for secret in state.reads:
            readers = self._readers.get((state.namespace, secret))
            if readers is not None:
                readers.discard(state.name)
                if not readers:
                    del self._readers[(state.namespace, secret)]
        state.reads = frozenset()

    def reads_secret(self, namespace: str, secret: str) -> bool:
        """Whether some RedisQueue reads Secret ``namespace/secret``."""
        return (namespace, secret) in self._readers

    def readers(self, namespace: str, secret: str) -> list[QueueState]:
        """The RedisQueues that read Secret ``namespace/secret``."""
        names = sorted(self._readers.get((namespace, secret), ()))
        return [s for n in names if (s := self._states.get(QueueRef(namespace, n)))]

    def forget(self, ref: QueueRef) -> QueueState | None:
        """Stop following ``ref``; returns its state (the caller closes its probe)."""
        state = self._states.pop(ref, None)
        if state is not None:
            self._drop_reads(state)
        return state

    def refs(self, namespace: str | None = None) -> list[QueueRef]:
        """The RedisQueues followed (in ``namespace`` when given)."""
        return [r for r in self._states if namespace is None or r.namespace == namespace]

    def __iter__(self) -> Iterator[QueueState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    @property
    def secrets_read(self) -> int:
        """How many distinct Secrets the RedisQueues read."""
        return len(self._readers)

    def most_overdue_probe(self, grace: float, now: float) -> str | None:
        """A sentence naming a RedisQueue whose probe is more than ``grace`` seconds plus two
        intervals late, or None when every probe keeps its schedule."""
        for state in self:
            if state.spec is None or state.probed_at == 0.0:
                continue
            late = now - state.probed_at - state.interval
            if late > grace + 2 * state.interval:
                return f"no health probe of {state.ref} for {late:.0f} s"
        return None
