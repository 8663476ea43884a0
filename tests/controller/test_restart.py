"""Restarting an app's workload for a contract change, and telling when it has rolled out."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from redisqueue.controller.objects.restart import (
    build_restart_patch,
    restart_stamp,
    rolled_out,
    stamped,
)
from redisqueue.controller.resource.identity import ANNOTATION_RESTARTED_AT

STAMP = restart_stamp(datetime.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC))


def workload(kind: str, status: dict[str, Any], *, stamp: str | None = STAMP) -> dict[str, Any]:
    annotations = {} if stamp is None else {ANNOTATION_RESTARTED_AT: stamp}
    return {
        "kind": kind,
        "metadata": {"generation": 3},
        "spec": {"replicas": 2, "template": {"metadata": {"annotations": annotations}}},
        "status": status,
    }


def test_the_stamp_tells_changes_apart_to_the_microsecond() -> None:
    assert STAMP == "2026-03-01T12:00:00.123456Z"
    patch = build_restart_patch(STAMP)
    assert patch == {
        "spec": {"template": {"metadata": {"annotations": {ANNOTATION_RESTARTED_AT: STAMP}}}}
    }
    assert stamped(workload("Deployment", {})) == STAMP
    assert stamped(workload("Deployment", {}, stamp=None)) is None


DONE_DEPLOYMENT = {
    "observedGeneration": 3,
    "replicas": 2,
    "updatedReplicas": 2,
    "availableReplicas": 2,
}


@pytest.mark.parametrize(
    ("status", "done"),
    [
        (DONE_DEPLOYMENT, True),
        ({**DONE_DEPLOYMENT, "observedGeneration": 2}, False),  # the patch not seen yet
        ({**DONE_DEPLOYMENT, "updatedReplicas": 1}, False),  # one old pod still serves
        ({**DONE_DEPLOYMENT, "availableReplicas": 1}, False),  # a new pod not ready yet
        ({**DONE_DEPLOYMENT, "replicas": 3}, False),  # an old pod still running
    ],
)
def test_a_deployment_has_rolled_out_when_every_pod_is_new_and_available(
    status: dict[str, Any], done: bool
) -> None:
    assert rolled_out(workload("Deployment", status), STAMP) is done


def test_a_rollout_for_another_change_does_not_count() -> None:
    assert not rolled_out(workload("Deployment", DONE_DEPLOYMENT, stamp="earlier"), STAMP)


DONE_STATEFULSET = {
    "observedGeneration": 3,
    "replicas": 2,
    "updatedReplicas": 2,
    "readyReplicas": 2,
    "currentRevision": "web-2",
    "updateRevision": "web-2",
}


@pytest.mark.parametrize(
    ("status", "done"),
    [
        (DONE_STATEFULSET, True),
        ({**DONE_STATEFULSET, "currentRevision": "web-1"}, False),
        ({**DONE_STATEFULSET, "readyReplicas": 1}, False),
        ({**DONE_STATEFULSET, "updatedReplicas": 1}, False),
    ],
)
def test_a_statefulset_has_rolled_out_when_its_revisions_agree_and_pods_are_ready(
    status: dict[str, Any], done: bool
) -> None:
    assert rolled_out(workload("StatefulSet", status), STAMP) is done
