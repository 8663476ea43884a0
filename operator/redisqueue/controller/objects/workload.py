"""The provisioned Redis as plain dicts: its Service, StatefulSet and password Secret.

Every function here is pure: it turns a parsed spec, the RedisQueue's :class:`QueueNames` and
values the caller has read (a password, a live claim size) into the body the steps apply.
Nothing here talks to the API server, so the shapes are unit-tested directly. What runs inside
the Redis container (resources, redis.conf, start-up script, checks) is :mod:`.server`; who
may reach it, :mod:`.network`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Final

from ..resource.identity import ANNOTATION_OWNER_UID, JSON
from ..resource.names import DATA_VOLUME, REDIS_PORT, QueueNames
from ..resource.spec import DEFAULT_AUTH_SECRET_KEY, ProvisionedRedis, RedisQueueSpec
from .meta import b64, metadata
from .server import (
    ACL_DIR,
    AUTH_DIR,
    CONFIG_DIR,
    DATA_DIR,
    LIVENESS_SCRIPT,
    READINESS_SCRIPT,
    REDIS_UID,
    SECRET_FILE_MODE,
    provisioned,
    resolved_resources,
    startup_script,
)

PORT_NAME: Final = "redis"
CONTAINER_NAME: Final = "redis"


def generate_password() -> str:
    """A new random password: 256 bits, URL-safe characters only."""
    return secrets.token_urlsafe(32)


def build_auth_secret(names: QueueNames, password: str, *, owned: bool) -> JSON:
    """The generated password Secret ``<name>-redis-auth`` of a provisioned RedisQueue.

    Owned (``owned=True``) only under ``deletionPolicy: Delete``. Under Retain the Secret must not
    carry an ownerReference: the garbage collector would delete it with the RedisQueue, while
    the retained data volume and the apps' injected ``REDIS_PASSWORD`` expect it to survive,
    so that a RedisQueue re-created with the same name picks up the same password.

    Create it only when it does not exist, and never replace the password of a live one: when
    the policy changes, re-apply this body with the password read back from the Secret. It
    always carries the RedisQueue's uid (:data:`ANNOTATION_OWNER_UID`): a retained Secret is
    then told apart from one made for the RedisQueue that uses it now.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(names, names.generated_secret, owned=owned, stamped=True),
        "type": "Opaque",
        "data": {DEFAULT_AUTH_SECRET_KEY: b64(password)},
    }


# --- Service ---------------------------------------------------------------------------------


def build_service(names: QueueNames, spec: RedisQueueSpec) -> JSON:
    """The ClusterIP Service ``<name>-redis`` in front of the provisioned Redis.

    It is also the StatefulSet's governing service; per-pod DNS names are not needed for a
    single instance, so one ordinary Service serves both purposes.
    """
    provisioned(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(names, names.workload),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector_labels,
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": REDIS_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "redis",
                }
            ],
        },
    }


# --- StatefulSet -----------------------------------------------------------------------------


def _claim_template(statefulset: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for template in statefulset.get("spec", {}).get("volumeClaimTemplates", []) or []:
        if template.get("metadata", {}).get("name") == DATA_VOLUME:
            found: Mapping[str, Any] = template
            return found
    return None


def claim_template_size(statefulset: Mapping[str, Any]) -> str | None:
    """The storage request in a live StatefulSet's ``data`` volume claim template, if any."""
    template = _claim_template(statefulset)
    if template is None:
        return None
    size = template.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
    return None if size is None else str(size)


def claim_template_owner(statefulset: Mapping[str, Any]) -> str | None:
    """The RedisQueue uid a live StatefulSet's claim template stamps its claim with (None for a
    StatefulSet made before claims were stamped): kept as it is, templates are immutable."""
    template = _claim_template(statefulset)
    annotations = (template or {}).get("metadata", {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_OWNER_UID)
    return str(value) if value else None


def placement(names: QueueNames, provision: ProvisionedRedis) -> JSON:
    """The pod spec fields that say where the Redis pod runs and how its image is pulled,
    only those the spec sets. A spread constraint without a labelSelector counts this
    RedisQueue's own Redis pod, which is what "spread my Redis" means."""
    fields: JSON = {}
    if provision.node_selector:
        fields["nodeSelector"] = dict(provision.node_selector)
    if provision.tolerations:
        fields["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in provision.tolerations
        ]
    if provision.affinity is not None:
        affinity = provision.affinity.model_dump(by_alias=True, exclude_none=True)
        if affinity:
            fields["affinity"] = affinity
    if provision.topology_spread_constraints:
        constraints = []
        for constraint in provision.topology_spread_constraints:
            dumped = constraint.model_dump(by_alias=True, exclude_none=True)
            dumped.setdefault("labelSelector", {"matchLabels": names.selector_labels})
            constraints.append(dumped)
        fields["topologySpreadConstraints"] = constraints
    if provision.priority_class_name is not None:
        fields["priorityClassName"] = provision.priority_class_name
    if provision.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": s.name} for s in provision.image_pull_secrets]
    return fields


def build_statefulset(
    names: QueueNames,
    spec: RedisQueueSpec,
    *,
    claim_size: str | None = None,
    claim_owner: str | None = None,
) -> JSON:
    """The StatefulSet ``<name>-redis``: one Redis pod with its data volume.

    Volume claim templates are immutable, and the StatefulSet controller never resizes a PVC
    it has created anyway. So the template keeps the size it was created with: on updates pass
    ``claim_size=claim_template_size(live_statefulset)`` (whether updating by patch or by
    server-side apply, the template then stays byte-for-byte what the API server holds), and
    grow the volume itself by patching the PVC :attr:`QueueNames.data_claim` with
    :func:`build_pvc_resize_patch` (the StorageClass must allow expansion). Selector and
    serviceName never change for a given name, and storageClassName is immutable in the CRD,
    so every other spec change is an in-place update that never touches the data volume.

    ``persistentVolumeClaimRetentionPolicy.whenDeleted`` mirrors ``deletionPolicy``: under
    Delete the StatefulSet controller makes the PVC owned by the StatefulSet, so the garbage
    collector removes it when the RedisQueue (owner of the StatefulSet) is deleted; under
    Retain the PVC has no owner and survives. The PVC carries :attr:`QueueNames.labels`, so
    a step may also delete it by label, which is harmless if it is already gone.

    ``claim_owner`` is the RedisQueue uid the claim template stamps the data claim with
    (:data:`ANNOTATION_OWNER_UID`), so that a claim retained after the RedisQueue is gone is
    told apart from its successor's: the RedisQueue's own uid for a new StatefulSet,
    ``claim_template_owner(live)`` for an existing one (None keeps an old template unstamped).

    The pod reads its secrets from mounted Secret volumes, never from environment variables:
    the template does not depend on a password, so a rotated one never rolls the pod (the
    operator changes it on the running Redis, see :mod:`.acl`).
    """
    provision = provisioned(spec)
    size = claim_size or provision.storage.size
    pod_labels = names.labels
    claim_spec: JSON = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if provision.storage.storage_class_name is not None:
        claim_spec["storageClassName"] = provision.storage.storage_class_name

    password_ref = names.password
    assert password_ref is not None, "names.with_spec(spec) first: provision has a password"
    # The spec refuses the operator's own label keys and annotation prefix, so the user's
    # labels and annotations only ever add to these.
    template_metadata: JSON = {"labels": {**(provision.pod_labels or {}), **pod_labels}}
    if provision.pod_annotations:
        template_metadata["annotations"] = dict(provision.pod_annotations)

    container: JSON = {
        "name": CONTAINER_NAME,
        "image": provision.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", startup_script(spec)],
        "ports": [{"name": PORT_NAME, "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", READINESS_SCRIPT]},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "exec": {"command": ["sh", "-c", LIVENESS_SCRIPT]},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": resolved_resources(provision),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "acl", "mountPath": ACL_DIR, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(names, names.workload),
        "spec": {
            "replicas": 1,
            "serviceName": names.workload,
            "selector": {"matchLabels": names.selector_labels},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "revisionHistoryLimit": 5,
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": spec.deletion_policy,
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": template_metadata,
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": REDIS_UID,
                        "runAsGroup": REDIS_UID,
                        "fsGroup": REDIS_UID,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    **placement(names, provision),
                    "volumes": [
                        # Memory-backed: the config file holds the password hashes and must
                        # not reach the node's disk.
                        {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {
                            "name": "auth",
                            "secret": {
                                "secretName": password_ref.name,
                                "items": [{"key": password_ref.key, "path": "password"}],
                                "defaultMode": SECRET_FILE_MODE,
                            },
                        },
                        {
                            "name": "acl",
                            "secret": {
                                "secretName": names.acl_secret,
                                "defaultMode": SECRET_FILE_MODE,
                            },
                        },
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": _claim_metadata(names, claim_owner),
                    "spec": claim_spec,
                }
            ],
        },
    }


def _claim_metadata(names: QueueNames, owner: str | None) -> JSON:
    meta: JSON = {"name": DATA_VOLUME, "labels": names.labels}
    if owner:
        meta["annotations"] = {ANNOTATION_OWNER_UID: owner}
    return meta


def build_pvc_resize_patch(size: str) -> JSON:
    """A merge patch that grows the data PVC to ``size`` (spec.redis.provision.storage.size)."""
    return {"spec": {"resources": {"requests": {"storage": size}}}}


# --- NetworkPolicy ---------------------------------------------------------------------------
