"""The kopf storages the operator configures: what kopf remembers between events."""

from __future__ import annotations

import copy
from typing import Any

import kopf

from redisqueue.controller.api.kopfstorage import (
    MemoryDiffBase,
    UnmarkedProgressStorage,
    quiet_settings,
)


def body(**meta: Any) -> kopf.Body:
    raw: dict[str, Any] = {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {
            "name": "q",
            "namespace": "ns",
            "uid": "uid-1",
            "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {
                "note": "kept",
                "redisqueue.dev/reconcile": '{"retries":1}',
                "redisqueue.dev/last-handled-configuration": "{}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            **meta,
        },
        "spec": {"redis": {"external": {"host": "redis", "port": 6379}}},
        "status": {"phase": "Ready"},
    }
    return kopf.Body(raw)


def test_the_essence_is_spec_labels_and_foreign_annotations_only() -> None:
    essence = MemoryDiffBase().build(body=body())
    assert essence == {
        "spec": {"redis": {"external": {"host": "redis", "port": 6379}}},
        "metadata": {"labels": {"team": "a"}, "annotations": {"note": "kept"}},
    }


def test_the_essence_is_a_copy_and_ignores_status_and_bookkeeping() -> None:
    storage = MemoryDiffBase()
    first = body()
    essence = storage.build(body=first)
    changed = copy.deepcopy(dict(first))
    changed["status"] = {"phase": "NotReady"}
    changed["metadata"]["resourceVersion"] = "8"
    changed["metadata"]["annotations"]["redisqueue.dev/reconcile"] = '{"retries":2}'
    assert storage.build(body=kopf.Body(changed)) == essence
    changed["spec"]["redis"]["external"]["port"] = 6380
    assert storage.build(body=kopf.Body(changed)) != essence
    assert essence["spec"]["redis"]["external"]["port"] == 6379


def test_essences_are_kept_per_uid_and_dropped_once_deletion_began() -> None:
    storage = MemoryDiffBase()
    live = body()
    assert storage.fetch(body=live) is None  # never handled: kopf sees it as new
    essence = storage.build(body=live)
    storage.store(body=live, patch=kopf.Patch(), essence=essence)
    assert storage.fetch(body=live) == essence
    assert storage.fetch(body=body(uid="uid-2")) is None  # same name, a new object
    deleting = body(deletionTimestamp="2026-01-01T00:00:00Z")
    assert storage.fetch(body=deleting) == essence  # the first event of the deletion
    assert len(storage) == 0  # ...and nothing kept for the object on its way out
    storage.store(body=deleting, patch=kopf.Patch(), essence=essence)
    assert storage.fetch(body=live) is None
    assert len(storage) == 0


def test_a_successful_handler_leaves_no_progress_annotation_to_write() -> None:
    storage = UnmarkedProgressStorage(prefix="redisqueue.dev")
    patch = kopf.Patch()
    record: Any = {"started": "2026-01-01T00:00:00", "success": True}
    storage.store(key=kopf.HandlerId("reconcile"), record=record, body=body(), patch=patch)
    storage.purge(key=kopf.HandlerId("reconcile"), body=kopf.Body({"metadata": {}}), patch=patch)
    assert not patch.get("metadata", {}).get("annotations")
    # kopf's own storage leaves its marker behind: one more write of every new object.
    theirs, patch = kopf.AnnotationsProgressStorage(prefix="redisqueue.dev"), kopf.Patch()
    theirs.store(key=kopf.HandlerId("reconcile"), record=record, body=body(), patch=patch)
    theirs.purge(key=kopf.HandlerId("reconcile"), body=kopf.Body({"metadata": {}}), patch=patch)
    assert patch["metadata"]["annotations"] == {"redisqueue.dev/kopf-managed": "yes"}


def test_progress_is_cleared_from_an_essence_without_copying_one_that_holds_none() -> None:
    storage = UnmarkedProgressStorage(prefix="redisqueue.dev")
    clean = MemoryDiffBase().build(body=body())
    assert storage.clear(essence=clean) is clean
    raw: Any = {"spec": {"a": 1}, "metadata": {"annotations": {"redisqueue.dev/reconcile": "{}"}}}
    held = kopf.BodyEssence(**raw)
    cleared = storage.clear(essence=held)
    assert cleared == {"spec": {"a": 1}}
    assert held["metadata"]["annotations"] == {"redisqueue.dev/reconcile": "{}"}  # a copy


def test_quiet_settings_leave_kopf_nothing_to_write_but_the_named_finalizer() -> None:
    # The operator's settings, shared with bench/kopf_floor.py, which names another finalizer.
    settings = kopf.OperatorSettings()
    quiet_settings(settings)
    assert settings.persistence.finalizer == "redisqueue.dev/finalizer"
    assert isinstance(settings.persistence.diffbase_storage, MemoryDiffBase)
    assert isinstance(settings.persistence.progress_storage, UnmarkedProgressStorage)
    assert settings.posting.enabled is False
    other = kopf.OperatorSettings()
    quiet_settings(other, finalizer="bench.redisqueue.dev/kopf-floor")
    assert other.persistence.finalizer == "bench.redisqueue.dev/kopf-floor"
    assert other.persistence.diffbase_storage is not settings.persistence.diffbase_storage
