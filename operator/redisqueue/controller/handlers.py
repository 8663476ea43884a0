"""kopf handlers: thin wrappers that hand each RedisQueue event to the Reconciler.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import kopf

from redisqueue.backoff import exponential_delay

from . import metrics
from .errors import InvalidSpecError, SetupError
from .kube import KubeError
from .reconciler import Reconciler
from .spec import GROUP, PLURAL, VERSION

FINALIZER = "redisqueue.dev/finalizer"
ANNOTATION_PREFIX = "redisqueue.dev"
#: Longest pause between two retries of a failing reconciliation.
RETRY_CAP_SECONDS = 60.0


class UnmarkedProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations (written only while a reconcile is retried), without the
    ``redisqueue.dev/kopf-managed`` marker.

    kopf adds the marker on every handler run, even one that succeeds at once and leaves no
    progress behind: one more write of every new RedisQueue. The marker tells other
    kopf-based operators to leave these annotations out of their diff bases; RedisQueues are
    handled by this operator alone, and its own diff base leaves them out by prefix
    (:class:`MemoryDiffBase`).
    """

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None


class MemoryDiffBase(kopf.DiffBaseStorage):
    """The last handled essence of each RedisQueue, kept in this process, not on the object.

    kopf's annotation storage writes the whole spec back into an annotation after every
    handled change: one more write of each RedisQueue (full schema and CEL validation, etcd,
    a watch event to every client) for something only this process reads. Kept here, it is
    gone on restart or failover, so kopf then sees every RedisQueue as new and the reconcile
    runs once for each, as a resume would: it converges and writes status only on change.
    """

    def __init__(self) -> None:
        super().__init__()
        self._essences: dict[str, kopf.BodyEssence] = {}

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        # kopf deep-copies the whole body and then drops metadata and status; managedFields
        # alone are kilobytes per event. Hand it only what the essence keeps.
        if not extra_fields:  # (fields picked from anywhere would need the whole body)
            meta = body.get("metadata") or {}
            slim = {k: v for k, v in body.items() if k not in ("metadata", "status")}
            slim["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
            body = cast(kopf.Body, slim)
        essence = super().build(body=body, extra_fields=extra_fields)
        # The operator's own annotations (kopf's progress while retrying, and the diff base
        # older versions stored) are bookkeeping, not a change by the author.
        annotations = essence.get("metadata", {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith(f"{ANNOTATION_PREFIX}/")]:
            del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        uid = str(body.metadata.uid)
        if body.metadata.deletion_timestamp:
            # Deletion is decided before any diff: the essence is needed no more. kopf does
            # not store one after a delete handler that changed nothing, so drop it here.
            return self._essences.pop(uid, None)
        return self._essences.get(uid)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        uid = str(body.metadata.uid)
        if body.metadata.deletion_timestamp:
            # kopf stores once more after the deletion handler; nothing follows it.
            self._essences.pop(uid, None)
        else:
            self._essences[uid] = essence

    def __len__(self) -> int:
        return len(self._essences)


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


def retry_delay(retry: int) -> float:
    """1, 2, 4, ... seconds between retries of a failing reconciliation, at most 60."""
    return exponential_delay(retry + 1, 1.0, RETRY_CAP_SECONDS)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = UnmarkedProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = MemoryDiffBase()
    # Events are posted by the Reconciler on Ready transitions only, not per handler run.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    # Under a burst of creates the watch lags behind the operator's own patches; without
    # waiting for them, kopf takes a stale copy for a new object and runs creation twice.
    settings.persistence.consistency_timeout = 30.0
    settings.networking.request_timeout = 60


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, retry: int, reason: str, **_: Any) -> None:
    started = time.perf_counter()
    outcome = "success"
    try:
        # Without a stored diff base every object is "created" after a restart or failover;
        # only one that never had a status is new (the reconcile skips some searches then).
        created = reason == kopf.Reason.CREATE and not body.get("status")
        await _reconciler(memo).reconcile(body, created=created)
    except InvalidSpecError as exc:
        outcome = "error"
        raise kopf.PermanentError(str(exc)) from None
    except SetupError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(exc.message, delay=retry_delay(retry)) from None
    except KubeError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None
    finally:
        metrics.RECONCILES.labels(outcome).inc()
        metrics.RECONCILE_DURATION.labels(outcome).observe(time.perf_counter() - started)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await _reconciler(memo).finalize(body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None
