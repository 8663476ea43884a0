"""Desired Kubernetes objects for a RedisQueue, as plain dicts, and its connection contract.

Every function here is pure: it turns a parsed spec (and values the caller has read, such as
a password) into the body the handlers create, patch or server-side apply. Nothing here talks
to the API server, so the shapes are unit-tested directly.

Names, for a RedisQueue ``<name>`` in namespace ``<ns>``:

- Service and StatefulSet ``<name>-redis`` (so apps reach ``<name>-redis.<ns>.svc:6379``),
- generated password Secret ``<name>-redis-auth`` (key ``password``),
- data volume claim ``data-<name>-redis-0`` (from the StatefulSet's claim template).

Long on purpose: one builder per object the operator writes, and the StatefulSet spelled
out field by field (security context, probes, the start-up script) so that a reviewer sees
the whole pod in one place; the names and labels they share sit at the top.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, TypedDict

from redisqueue.contract import DEFAULT_DB, ConnectionContract

from .spec import (
    DEFAULT_AUTH_SECRET_KEY,
    JSON,
    ProvisionedRedis,
    RedisQueueSpec,
    parse_quantity,
    resolved_pool_max,
)

REDIS_PORT: Final = 6379
PORT_NAME: Final = "redis"
CONTAINER_NAME: Final = "redis"
DATA_VOLUME: Final = "data"
DATA_DIR: Final = "/data"
CONFIG_DIR: Final = "/run/redis"
CONFIG_FILE: Final = f"{CONFIG_DIR}/redis.conf"
#: UID/GID of the "redis" user in the official Redis images (Debian and Alpine alike).
REDIS_UID: Final = 999
#: The only place the password lives in the pod spec: an env var read from the Secret, which
#: the startup script turns into a config file and the probes hand to redis-cli.
PASSWORD_ENV: Final = "REDISCLI_AUTH"  # noqa: S105 - the variable's name

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
#: On app Secrets: the RedisQueue whose contract the Secret carries.
LABEL_REDISQUEUE: Final = "redisqueue.dev/redisqueue"
#: On the pod template: resourceVersion of the password Secret, so a new password restarts Redis.
ANNOTATION_AUTH_REVISION: Final = "redisqueue.dev/auth-secret-revision"
MANAGED_BY: Final = "redisqueue-operator"
#: Field manager for the objects the operator alone owns (StatefulSet, Service, auth Secret).
FIELD_MANAGER: Final = MANAGED_BY

DEFAULT_CPU_REQUEST: Final = "50m"
DEFAULT_MEMORY_REQUEST: Final = "64Mi"
DEFAULT_MEMORY_LIMIT: Final = "256Mi"


class Owner(TypedDict):
    """The RedisQueue that owns an object: what an ownerReference needs."""

    apiVersion: str
    kind: str
    name: str
    uid: str


# --- Names and labels ------------------------------------------------------------------------


def resource_name(name: str) -> str:
    """Name of the Service and the StatefulSet of a provisioned RedisQueue."""
    return f"{name}-redis"


def auth_secret_name(name: str) -> str:
    """Name of the password Secret the operator generates when spec.auth names none."""
    return f"{name}-redis-auth"


def data_pvc_name(name: str) -> str:
    """Name of the data PersistentVolumeClaim (claim template ``data``, pod ordinal 0)."""
    return f"{DATA_VOLUME}-{resource_name(name)}-0"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select the Redis pod (and find the PVC); immutable once created.

    ``managed-by`` keeps a Helm release of the same name in the same namespace (which would
    carry ``app.kubernetes.io/name: redis`` and ``instance: <name>`` too) out of the selector.
    """
    return {LABEL_NAME: "redis", LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGED_BY}


def labels(name: str) -> dict[str, str]:
    """Labels of every object the operator creates for a RedisQueue."""
    return {**selector_labels(name), LABEL_PART_OF: "redisqueue", LABEL_COMPONENT: "queue"}


def owner_of(body: Mapping[str, Any]) -> Owner:
    """The :class:`Owner` of a RedisQueue object as the API server returned it."""
    metadata = body["metadata"]
    return Owner(
        apiVersion=str(body["apiVersion"]),
        kind=str(body["kind"]),
        name=str(metadata["name"]),
        uid=str(metadata["uid"]),
    )


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


def _metadata(name: str, namespace: str, labels_: Mapping[str, str], owner: Owner | None) -> JSON:
    metadata: JSON = {"name": name, "namespace": namespace, "labels": dict(labels_)}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode("ascii")


def _provision(spec: RedisQueueSpec) -> ProvisionedRedis:
    if spec.redis.provision is None:
        raise ValueError("the RedisQueue is in external mode; there is nothing to provision")
    return spec.redis.provision


# --- Endpoint and credentials ----------------------------------------------------------------


def endpoint_for_provision(name: str, namespace: str) -> tuple[str, int]:
    """Host and port of a provisioned Redis's Service.

    ``<svc>.<ns>.svc`` resolves in every cluster, whatever its cluster domain.
    """
    return f"{resource_name(name)}.{namespace}.svc", REDIS_PORT


def endpoint_for(name: str, namespace: str, spec: RedisQueueSpec) -> tuple[str, int]:
    """Host and port apps connect to, in either mode."""
    if spec.redis.external is not None:
        return spec.redis.external.host, spec.redis.external.port
    return endpoint_for_provision(name, namespace)


def auth_secret_key_ref(name: str, spec: RedisQueueSpec) -> tuple[str, str] | None:
    """(Secret name, key) that holds the password, or None for an external Redis without one.

    For provision this is ``spec.auth.secretRef`` when set, else the generated Secret.
    """
    if spec.auth is not None and spec.auth.secret_ref is not None:
        return spec.auth.secret_ref.name, spec.auth.secret_ref.key
    if spec.mode == "provision":
        return auth_secret_name(name), DEFAULT_AUTH_SECRET_KEY
    return None


def generate_password() -> str:
    """A new random password: 256 bits, URL-safe characters only."""
    return secrets.token_urlsafe(32)


def build_auth_secret(name: str, namespace: str, password: str, owner: Owner | None) -> JSON:
    """The generated password Secret ``<name>-redis-auth`` of a provisioned RedisQueue.

    Pass ``owner`` only under ``deletionPolicy: Delete``. Under Retain the Secret must not
    carry an ownerReference: the garbage collector would delete it with the RedisQueue, while
    the retained data volume and the apps' injected ``REDIS_PASSWORD`` expect it to survive,
    so that a RedisQueue re-created with the same name picks up the same password.

    Create it only when it does not exist, and never replace the password of a live one: when
    the policy changes, re-apply this body with the password read back from the Secret.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(auth_secret_name(name), namespace, labels(name), owner),
        "type": "Opaque",
        "data": {DEFAULT_AUTH_SECRET_KEY: _b64(password)},
    }


# --- Service ---------------------------------------------------------------------------------


def build_service(name: str, namespace: str, spec: RedisQueueSpec, owner: Owner) -> JSON:
    """The ClusterIP Service ``<name>-redis`` in front of the provisioned Redis.

    It is also the StatefulSet's governing service; per-pod DNS names are not needed for a
    single instance, so one ordinary Service serves both purposes.
    """
    _provision(spec)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(resource_name(name), namespace, labels(name), owner),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
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


def _quantity_value(quantity: str) -> Decimal:
    return parse_quantity(quantity)


def resolved_resources(provision: ProvisionedRedis) -> JSON:
    """Container resources: the spec's values with defaults that never contradict them.

    A default request never exceeds a given limit and a default limit never undercuts a given
    request, so any partial spec yields a valid pair.
    """
    given = provision.resources
    req = given.requests if given is not None else None
    lim = given.limits if given is not None else None
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}

    cpu_limit = lim.cpu if lim is not None else None
    cpu_request = req.cpu if req is not None else None
    if cpu_request is None:
        cpu_request = DEFAULT_CPU_REQUEST
        if cpu_limit is not None and _quantity_value(cpu_limit) < _quantity_value(cpu_request):
            cpu_request = cpu_limit
    requests["cpu"] = cpu_request
    if cpu_limit is not None:
        limits["cpu"] = cpu_limit

    memory_limit = lim.memory if lim is not None else None
    memory_request = req.memory if req is not None else None
    if memory_request is None:
        memory_request = DEFAULT_MEMORY_REQUEST
        if memory_limit is not None and _quantity_value(memory_limit) < _quantity_value(
            memory_request
        ):
            memory_request = memory_limit
    if memory_limit is None:
        memory_limit = DEFAULT_MEMORY_LIMIT
        if _quantity_value(memory_request) > _quantity_value(memory_limit):
            memory_limit = memory_request
    requests["memory"] = memory_request
    limits["memory"] = memory_limit
    return {"requests": requests, "limits": limits}


def resolved_max_memory(provision: ProvisionedRedis) -> str:
    """Redis ``maxmemory``: the spec's value, else three quarters of the memory limit in bytes.

    The quarter left over covers Redis's own overhead and the copy-on-write pages of an AOF
    rewrite, so Redis answers "OOM command not allowed" before the kernel kills it.
    """
    if provision.max_memory is not None:
        return provision.max_memory
    limit = _quantity_value(resolved_resources(provision)["limits"]["memory"])
    return str(int(limit * 3 / 4))


def redis_config(spec: RedisQueueSpec) -> str:
    """The redis.conf of a provisioned Redis, without the password (added at startup)."""
    provision = _provision(spec)
    lines = [
        f"port {REDIS_PORT}",
        f"dir {DATA_DIR}",
        f"appendonly {'yes' if provision.append_only else 'no'}",
        "appendfsync everysec",
        f"maxmemory {resolved_max_memory(provision)}",
        # A queue must never drop jobs to make room: refuse writes instead.
        "maxmemory-policy noeviction",
    ]
    # The spec refuses the directives above (and other operator-owned ones) as keys, and
    # any line break in a value, so each entry stays one directive of its own.
    lines += [f"{key} {value}" for key, value in sorted((provision.extra_config or {}).items())]
    return "\n".join(lines) + "\n"


def startup_script(spec: RedisQueueSpec) -> str:
    """The container command: write redis.conf with the password, then exec redis-server.

    The password never appears in a process's arguments (``/proc/<pid>/cmdline`` is world
    readable; ``--requirepass`` would publish it to every process on the node that can run
    ``ps``). The shell's builtin ``printf`` hands it to ``od`` through a pipe, which hex-escapes
    every byte (``\\xHH`` inside a double-quoted redis.conf string), so no character of the
    password can break the config syntax. The file lives on a memory-backed emptyDir, is
    readable only by the Redis user (umask 077), and the variable is unset before ``exec``, so
    redis-server's environment does not hold it either. Static config goes through a quoted
    heredoc: the shell expands nothing in it.
    """
    config = redis_config(spec)
    return (
        "set -eu\n"
        "umask 077\n"
        f'[ -n "${{{PASSWORD_ENV}:-}}" ] || {{ echo "redis: empty password" >&2; exit 1; }}\n'
        f"cat > {CONFIG_FILE} <<'REDIS_CONF'\n"
        f"{config}"
        "REDIS_CONF\n"
        f'hex=$(printf %s "${PASSWORD_ENV}" | od -An -v -tx1 | tr -d " \\n"'
        ' | sed "s/../\\\\\\\\x&/g")\n'
        f'printf \'requirepass "%s"\\n\' "$hex" >> {CONFIG_FILE}\n'
        f"unset {PASSWORD_ENV} hex\n"
        f"exec redis-server {CONFIG_FILE}\n"
    )


#: Readiness: Redis answers an authenticated PING. redis-cli reads the password from
#: REDISCLI_AUTH (set from the Secret in the container env), never from its arguments.
READINESS_SCRIPT: Final = f"redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping | grep -q PONG"
#: Liveness: also alive while loading a large AOF at startup ("LOADING ..."), so a slow load is
#: not turned into a restart loop.
LIVENESS_SCRIPT: Final = (
    f"response=$(redis-cli -h 127.0.0.1 -p {REDIS_PORT} ping 2>&1) || true\n"
    'case "$response" in PONG|*LOADING*) exit 0 ;; esac\n'
    'echo "$response" >&2\n'
    "exit 1\n"
)


def claim_template_size(statefulset: Mapping[str, Any]) -> str | None:
    """The storage request in a live StatefulSet's ``data`` volume claim template, if any."""
    for template in statefulset.get("spec", {}).get("volumeClaimTemplates", []) or []:
        if template.get("metadata", {}).get("name") == DATA_VOLUME:
            size = template.get("spec", {}).get("resources", {}).get("requests", {}).get("storage")
            return None if size is None else str(size)
    return None


def placement(name: str, provision: ProvisionedRedis) -> JSON:
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
            dumped.setdefault("labelSelector", {"matchLabels": selector_labels(name)})
            constraints.append(dumped)
        fields["topologySpreadConstraints"] = constraints
    if provision.priority_class_name is not None:
        fields["priorityClassName"] = provision.priority_class_name
    if provision.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": s.name} for s in provision.image_pull_secrets]
    return fields


def build_statefulset(
    name: str,
    namespace: str,
    spec: RedisQueueSpec,
    owner: Owner,
    *,
    claim_size: str | None = None,
    auth_revision: str | None = None,
) -> JSON:
    """The StatefulSet ``<name>-redis``: one Redis pod with its data volume.

    Volume claim templates are immutable, and the StatefulSet controller never resizes a PVC
    it has created anyway. So the template keeps the size it was created with: on updates pass
    ``claim_size=claim_template_size(live_statefulset)`` (whether updating by patch or by
    server-side apply, the template then stays byte-for-byte what the API server holds), and
    grow the volume itself by patching the PVC :func:`data_pvc_name` with
    :func:`build_pvc_resize_patch` (the StorageClass must allow expansion). Selector and
    serviceName never change for a given name, and storageClassName is immutable in the CRD,
    so every other spec change is an in-place update that never touches the data volume.

    ``persistentVolumeClaimRetentionPolicy.whenDeleted`` mirrors ``deletionPolicy``: under
    Delete the StatefulSet controller makes the PVC owned by the StatefulSet, so the garbage
    collector removes it when the RedisQueue (owner of the StatefulSet) is deleted; under
    Retain the PVC has no owner and survives. The PVC carries :func:`labels`, so a handler
    may also delete it by label, which is harmless if it is already gone.

    ``auth_revision`` (the password Secret's resourceVersion) goes into a pod annotation, so a
    changed password rolls the pod; Redis reads the password only at startup.
    """
    provision = _provision(spec)
    size = claim_size or provision.storage.size
    pod_labels = labels(name)
    claim_spec: JSON = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if provision.storage.storage_class_name is not None:
        claim_spec["storageClassName"] = provision.storage.storage_class_name

    password_ref = auth_secret_key_ref(name, spec)
    assert password_ref is not None  # provision always has a password Secret
    password_env = {
        "name": PASSWORD_ENV,
        "valueFrom": {"secretKeyRef": {"name": password_ref[0], "key": password_ref[1]}},
    }
    # The spec refuses the operator's own label keys and annotation prefix, so the user's
    # labels and annotations only ever add to these.
    template_metadata: JSON = {"labels": {**(provision.pod_labels or {}), **pod_labels}}
    annotations = dict(provision.pod_annotations or {})
    if auth_revision is not None:
        annotations[ANNOTATION_AUTH_REVISION] = auth_revision
    if annotations:
        template_metadata["annotations"] = annotations

    container: JSON = {
        "name": CONTAINER_NAME,
        "image": provision.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", startup_script(spec)],
        "env": [password_env],
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
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(resource_name(name), namespace, labels(name), owner),
        "spec": {
            "replicas": 1,
            "serviceName": resource_name(name),
            "selector": {"matchLabels": selector_labels(name)},
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
                    **placement(name, provision),
                    "volumes": [
                        # Memory-backed: the config file holds the password and must not
                        # reach the node's disk.
                        {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": DATA_VOLUME, "labels": labels(name)},
                    "spec": claim_spec,
                }
            ],
        },
    }


def build_pvc_resize_patch(size: str) -> JSON:
    """A merge patch that grows the data PVC to ``size`` (spec.redis.provision.storage.size)."""
    return {"spec": {"resources": {"requests": {"storage": size}}}}


# --- Connection contract and app Secrets -----------------------------------------------------


def build_contract(
    spec: RedisQueueSpec,
    host: str,
    port: int,
    password: str | None,
    *,
    username: str | None = None,
    ca_pem: str | None = None,
) -> ConnectionContract:
    """The connection contract apps get for this RedisQueue.

    ``host``/``port`` come from :func:`endpoint_for`; ``password`` and ``ca_pem`` are the
    values read from the referenced Secrets. ``username`` defaults to ``spec.auth.username``.
    The pool size is resolved by environment when the spec leaves it open.
    """
    external = spec.redis.external
    tls = external.tls if external is not None else None
    tls_enabled = tls is not None and tls.enabled
    if username is None and spec.auth is not None:
        username = spec.auth.username
    return ConnectionContract(
        host=host,
        port=port,
        db=external.db if external is not None else DEFAULT_DB,
        username=username,
        password=password,
        tls=tls_enabled,
        tls_ca_cert=ca_pem if tls_enabled else None,
        tls_insecure_skip_verify=tls_enabled and tls is not None and tls.insecure_skip_verify,
        pool_max_connections=resolved_pool_max(spec),
        pool_timeout_seconds=spec.pool.timeout_seconds,
        socket_timeout_seconds=spec.pool.socket_timeout_seconds,
        backoff_base_seconds=spec.backoff.base_seconds,
        backoff_cap_seconds=spec.backoff.cap_seconds,
        retry_attempts=spec.backoff.attempts,
    )


def build_injected_secret_apply(
    name: str,
    namespace: str,
    contract: ConnectionContract,
    *,
    source: str | None = None,
    owner: Owner | None = None,
) -> JSON:
    """A server-side-apply body that puts the contract's keys into the app Secret ``name``.

    Apply it with the operator's field manager (and ``force=True`` if another manager claimed
    the keys). The body names only the contract keys, so the operator owns exactly
    ``data.<KEY>`` for those keys and never touches the app's other keys. Keys that leave the
    contract (say ``REDIS_USERNAME`` when the username is removed) are dropped by the next
    apply, because a manager's omitted fields are deleted; applying
    :func:`build_injected_secret_release` drops them all.

    ``data`` with base64 values, not ``stringData``: ``stringData`` is a write-only
    convenience that the API server folds into ``data``, so managedFields would not record
    ownership of ``data.<KEY>`` and the removal above would not work. ``type`` is left out:
    a new Secret defaults to Opaque, and an existing Secret's type is immutable.

    ``source`` (the RedisQueue's name) becomes the label ``redisqueue.dev/redisqueue``, which
    lets the operator find its Secrets and notice two RedisQueues writing into one Secret.
    ``owner`` adds a non-controller ownerReference; pass it only when the operator created the
    Secret, so that it is garbage-collected with the RedisQueue.
    """
    metadata: JSON = {"name": name, "namespace": namespace}
    if source is not None:
        metadata["labels"] = {LABEL_REDISQUEUE: source_label_value(source)}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner, controller=False)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "data": {key: _b64(value) for key, value in contract.to_env().items()},
    }


def build_injected_secret_release(name: str, namespace: str) -> JSON:
    """A server-side-apply body that gives up every field the operator owns in an app Secret.

    Applied with the same field manager, it removes the contract keys (and the label) that
    :func:`build_injected_secret_apply` wrote, unless another manager also owns them, and
    leaves the Secret and its other keys in place.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
    }


def _shortened(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` characters, else a prefix and a hash of all of it.

    Two different values never shorten to the same text unless their SHA-256 prefixes (64 bits)
    collide, so two long RedisQueue names keep apart.
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[: limit - 17].rstrip('-.')}-{digest}"


def source_label_value(name: str) -> str:
    """The ``redisqueue.dev/redisqueue`` label value for RedisQueue ``name`` (at most 63 chars)."""
    return _shortened(name, 63)


def inject_field_manager(name: str) -> str:
    """One field manager per RedisQueue, so two RedisQueues writing one Secret conflict.

    Field managers are limited to 128 characters; longer names are hashed, never truncated,
    so two long names never share a manager.
    """
    return _shortened(f"{FIELD_MANAGER}/{name}", 128)
