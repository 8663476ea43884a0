"""Object metadata the builders share: owner references, labels, Secret values. Pure."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ..resource.identity import (
    ANNOTATION_OWNER_UID,
    JSON,
    KIND,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
)
from ..resource.names import Owner, QueueNames


def owner_reference(owner: Owner, *, controller: bool = True) -> JSON:
    """An ownerReference to ``owner``; the garbage collector deletes the object with it.

    A controller reference also blocks the owner's foreground deletion until the object is
    gone. An injected app Secret gets ``controller=False``: the app may have its own owner.
    """
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": controller,
        "blockOwnerDeletion": controller,
    }


def metadata(names: QueueNames, name: str, *, owned: bool = True, stamped: bool = False) -> JSON:
    """Metadata of an object the operator makes for a RedisQueue: its labels and, when
    ``owned``, a controller reference to it; ``stamped`` adds the RedisQueue's uid as an
    annotation (for objects that outlive it, which carry no ownerReference)."""
    meta: JSON = {"name": name, "namespace": names.namespace, "labels": names.labels}
    if owned:
        meta["ownerReferences"] = [owner_reference(names.owner)]
    if stamped:
        meta["annotations"] = {ANNOTATION_OWNER_UID: names.uid}
    return meta


def controlled_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj``'s controller is the RedisQueue with ``uid``: the proof that the
    operator made it for that RedisQueue (a label anyone who may edit it can copy; the
    controller reference to a uid only the garbage collector's owner has)."""
    if not uid:
        return False
    return any(
        ref.get("controller") and ref.get("kind") == KIND and ref.get("uid") == uid
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
    )


def stamped_for(obj: Mapping[str, Any]) -> str | None:
    """The RedisQueue uid an object the operator made without an owner was stamped with."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_OWNER_UID)
    return str(value) if value else None


def labelled_for(obj: Mapping[str, Any], name: str) -> bool:
    """Whether ``obj`` carries the operator's labels for RedisQueue ``name`` (what a retained
    object of an earlier RedisQueue of that name carries; not proof of anything alone)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_INSTANCE) == name


def b64(value: str) -> str:
    """``value`` as a Secret's ``data`` holds it."""
    return base64.b64encode(value.encode()).decode("ascii")
