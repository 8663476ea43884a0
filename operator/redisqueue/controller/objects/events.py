"""The Event posted when a RedisQueue's Ready condition changes: a pure builder.

One event per transition of ``Ready`` (not per probe), Normal when it becomes True,
Warning otherwise; the message is the condition's, which never carries a credential.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ..resource.identity import API_VERSION, JSON, KIND, MANAGED_BY
from ..resource.status import rfc3339


def ready_transition_is_news(before: str | None, now: str, probed: bool) -> bool:
    """Whether a change of Ready from ``before`` to ``now`` deserves an event.

    The first status of a new object is news only when it is good or came from a real
    PING; an ``Unknown`` before anything was probed would only be noise.
    """
    return now != before and (before is not None or now == "True" or probed)


def build_ready_event(
    involved: Mapping[str, Any],
    ready: Mapping[str, Any],
    before: str | None,
    *,
    instance: str,
    now: datetime.datetime,
) -> JSON:
    """The core/v1 Event for a new Ready condition of the object ``involved`` (its body)."""
    good = ready["status"] == "True"
    reason = "Ready" if good else ready["reason"]
    if good:
        message = f"Ready ({ready['message']})"
    else:
        was = "" if before is None else f" (was {before})"
        message = f"not Ready{was}: {ready['message']}"
    return _event(
        involved,
        reason,
        message,
        warning=not good,
        action="Probe",
        instance=instance,
        now=now,
    )


def build_rotation_event(
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool = False,
    instance: str,
    now: datetime.datetime,
) -> JSON:
    """The core/v1 Event marking a step of a password rotation (its start, its end, or a
    restart that did not finish in time). ``message`` must not hold a credential."""
    return _event(
        involved, reason, message, warning=warning, action="Rotate", instance=instance, now=now
    )


def _event(
    involved: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    warning: bool,
    action: str,
    instance: str,
    now: datetime.datetime,
) -> JSON:
    """A core/v1 Event about the object ``involved`` (its body), cut to the API's limits."""
    meta = involved["metadata"]
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason[:128],
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": MANAGED_BY},
        "reportingComponent": MANAGED_BY,
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "action": action,
        "count": 1,
    }
