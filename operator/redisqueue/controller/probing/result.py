"""What one PING found, as plain data shared by the probe, the status and the health server.

Pure: no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Literal

from ..resource.status import NOT_PROBED, ConditionValue, Reason

ProbeOutcome = Literal[
    "ok", "unreachable", "auth_failed", "timeout", "tls_error", "refused", "error"
]


@dataclass(frozen=True, slots=True)
class QueueKey:
    """A list or stream whose depth is reported as a metric."""

    key: str
    type: Literal["list", "stream"] = "list"
    group: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one PING. ``error`` names the endpoint and never a credential."""

    ok: bool
    endpoint: str
    reason: ProbeOutcome
    latency_seconds: float | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency_seconds is None else self.latency_seconds * 1000.0


def format_latency(seconds: float) -> str:
    """``"2ms"`` as the health contract shows it; below 1 ms one decimal (``"0.3ms"``)."""
    ms = seconds * 1000.0
    return f"{ms:.1f}ms" if ms < 1 else f"{round(ms)}ms"


#: A probe outcome as the Reachable condition's reason.
OUTCOME_REASONS: Final = {
    "unreachable": Reason.UNREACHABLE,
    "auth_failed": Reason.AUTH_FAILED,
    "timeout": Reason.TIMEOUT,
    "tls_error": Reason.TLS_ERROR,
    "refused": Reason.POLICY_REFUSED,
    "error": Reason.PROBE_FAILED,
}


def reachable_condition(result: ProbeResult | None) -> ConditionValue:
    """The Reachable condition for the last PING (Unknown before the first)."""
    if result is None:
        return NOT_PROBED
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
