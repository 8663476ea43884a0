"""What one PING found, as plain data shared by the probe, the status and the health server.

Pure: no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

ProbeOutcome = Literal["ok", "unreachable", "auth_failed", "timeout", "tls_error", "error"]


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
