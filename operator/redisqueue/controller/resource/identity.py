"""Who the resource is and the marks the operator leaves: one source for every spelling.

The API group, the kind, the label and annotation keys, the finalizer and the field
manager are contracts with users, dashboards and the admission policies; each is spelled
here once and everything else (the CRD generator, the builders, kopf's settings, the chart
and manifests through their tests) reads it from here.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

#: The domain every key the operator owns lives under.
DOMAIN: Final = "redisqueue.dev"

GROUP: Final = DOMAIN
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RedisQueue"
PLURAL: Final = "redisqueues"

#: A Kubernetes object or fragment as plain JSON-compatible data.
JSON = dict[str, Any]

#: What the operator calls itself: ``app.kubernetes.io/managed-by`` of its objects, the
#: field manager of the objects it alone owns, the source of its Events.
MANAGED_BY: Final = "redisqueue-operator"
FIELD_MANAGER: Final = MANAGED_BY

#: Prefix of every annotation and label key the operator owns (a RedisQueue's author may
#: not set keys under it on the Redis pod).
KEY_PREFIX: Final = f"{DOMAIN}/"
FINALIZER: Final = f"{KEY_PREFIX}finalizer"
#: On app Secrets and on the Terraform hand-off's objects: the RedisQueue they belong to.
LABEL_REDISQUEUE: Final = f"{KEY_PREFIX}redisqueue"
#: On the pod template of an app workload named in ``spec.inject[].restart``: when the
#: operator last restarted it because the contract changed (as ``kubectl rollout restart``
#: does with its own annotation). The only field the operator ever changes in an app workload.
ANNOTATION_RESTARTED_AT: Final = f"{KEY_PREFIX}restartedAt"
#: On the objects the operator makes that carry no controller ownerReference (the generated
#: password Secret under Retain, the data volume's claim): the uid of the RedisQueue they
#: were made for. Labels say what an object is for; this says for which RedisQueue, proof
#: that a label (which anyone who may edit the object can copy) cannot give.
ANNOTATION_OWNER_UID: Final = f"{KEY_PREFIX}owner-uid"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"


class QueueRef(NamedTuple):
    """One RedisQueue, as every registry of the operator keys it."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"
