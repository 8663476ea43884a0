"""Object metadata the builders share: owner references, labels, Secret values. Pure."""

from __future__ import annotations

import base64

from ..resource.identity import JSON
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


def metadata(names: QueueNames, name: str, *, owned: bool = True) -> JSON:
    """Metadata of an object the operator makes for a RedisQueue: its labels and, when
    ``owned``, a controller reference to it."""
    meta: JSON = {"name": name, "namespace": names.namespace, "labels": names.labels}
    if owned:
        meta["ownerReferences"] = [owner_reference(names.owner)]
    return meta


def b64(value: str) -> str:
    """``value`` as a Secret's ``data`` holds it."""
    return base64.b64encode(value.encode()).decode("ascii")
