"""Where kopf keeps what it has handled, chosen so that handling costs no extra writes.

kopf's defaults write bookkeeping into every RedisQueue: a marker annotation on every handler
run, and the whole spec as the last-handled diff base after every change. Both are one more
write of each object (schema and CEL validation, etcd, a watch event to every client) for
something only this process reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

from ..resource.identity import DOMAIN, FINALIZER, KEY_PREFIX
from .kube import WATCH_TIMEOUT_SECONDS


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

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        """``essence`` without this storage's annotations. kopf calls this on both essences
        of every event, and its own version deep-copies each; an essence that holds none of
        them (every one :class:`MemoryDiffBase` builds) is returned as it is."""
        annotations = essence.get("metadata", {}).get("annotations") or {}
        if any(key.startswith(f"{self.prefix}/") for key in annotations):
            return super().clear(essence=essence)
        return essence


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
        for key in [k for k in annotations if k.startswith(KEY_PREFIX)]:
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


def quiet_settings(settings: kopf.OperatorSettings, *, finalizer: str = FINALIZER) -> None:
    """kopf set up so that handling a RedisQueue writes nothing of kopf's own beyond
    ``finalizer``: progress only while retrying, the diff base in memory, no Events per
    handler run (the reconciler posts them on Ready transitions only)."""
    settings.persistence.finalizer = finalizer
    settings.persistence.progress_storage = UnmarkedProgressStorage(prefix=DOMAIN)
    settings.persistence.diffbase_storage = MemoryDiffBase()
    settings.posting.enabled = False
    settings.watching.server_timeout = WATCH_TIMEOUT_SECONDS
    # Under a burst of creates the watch lags behind the operator's own patches; without
    # waiting for them, kopf takes a stale copy for a new object and runs creation twice.
    settings.persistence.consistency_timeout = 30.0
    settings.networking.request_timeout = 60
