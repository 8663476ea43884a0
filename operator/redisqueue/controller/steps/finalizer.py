"""The operator's finalizer on each RedisQueue: on before the operator writes anything for
the RedisQueue; kopf takes it off once the delete handler has cleaned up.

kopf would add it too, but it works out its finalizer patch by deep-copying the whole object
(managedFields included) and diffing the copy against the original: about a sixth of the
operator's CPU while a thousand RedisQueues are created. So the reconcile adds it with a
JSON patch of its own, under kopf's finalizer name, and the delete handler asks kopf for a
finalizer only on objects that already carry it
(:func:`~..resource.identity.holds_finalizer`): kopf then never adds one,
and still runs the delete handler and takes the finalizer off as before.

The patch carries a precondition (a ``test``), so it never overwrites what someone else did
to the list meanwhile: the API server refuses it (422), the reconcile fails and kopf runs it
again on the fresher object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.kube import Kube
from ..api.paths import object_path
from ..resource.identity import API_VERSION, FINALIZER, JSON, KIND


def hold_ops(body: Mapping[str, Any]) -> list[JSON] | None:
    """The JSON patch that adds the finalizer to ``body`` as it was read; None if it has it
    already, or if it is being deleted (no finalizer may be added then)."""
    meta = body["metadata"]
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER in finalizers or meta.get("deletionTimestamp"):
        return None
    if finalizers:  # others' finalizers stay: append, if the list is still the one read
        return [
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]
    # No list to test: the object must be the version read, or a list made meanwhile is lost.
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]


async def hold(kube: Kube, body: Mapping[str, Any]) -> None:
    """Add the finalizer, so that deleting the RedisQueue waits for its clean-up."""
    ops = hold_ops(body)
    if ops is not None:
        meta = body["metadata"]
        await kube.json_patch(object_path(API_VERSION, KIND, meta["namespace"], meta["name"]), ops)
