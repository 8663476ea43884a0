"""Restarting an app's workload after its contract changed, and knowing when it has. Pure.

For apps that read the contract only at start (``envFrom``), ``spec.inject[].restart`` names
their Deployments and StatefulSets. The operator restarts them the way ``kubectl rollout
restart`` does: one annotation on the pod template, whose value says which change it was for,
so the same change never restarts a workload twice. That annotation is the only field the
operator ever changes in an app's workload (the object-shape admission policy holds it to
that).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ..resource.identity import ANNOTATION_RESTARTED_AT, JSON
from ..resource.spec import RestartTarget


def restart_stamp(moment: datetime.datetime) -> str:
    """The annotation value for a change made at ``moment`` (UTC, to the microsecond)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe(target: RestartTarget) -> str:
    """``Deployment/name``, as messages name a workload."""
    return f"{target.kind}/{target.name}"


def build_restart_patch(stamp: str) -> JSON:
    """A merge patch that restarts a Deployment's or StatefulSet's pods for change ``stamp``."""
    return {"spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: stamp}}}}}


def stamped(workload: Mapping[str, Any]) -> str | None:
    """The change the workload's pods were last restarted for by the operator, if any."""
    template = (workload.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_RESTARTED_AT)
    return None if value is None else str(value)


def rolled_out(workload: Mapping[str, Any], stamp: str) -> bool:
    """Whether every pod of ``workload`` runs the template restarted for ``stamp``, ready,
    and no pod of an older template is left (what ``kubectl rollout status`` waits for)."""
    if stamped(workload) != stamp:
        return False
    meta = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    wanted = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    if workload.get("kind") == "StatefulSet":
        ready = int(status.get("readyReplicas") or 0)
        same = status.get("currentRevision") == status.get("updateRevision")
        return updated >= wanted and ready >= wanted and (same or wanted == 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    return updated >= wanted and available >= wanted and total <= updated
