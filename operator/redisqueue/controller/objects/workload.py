"""The provisioned Redis as plain dicts: its Service, StatefulSet, password Secret and config.

Every function here is pure: it turns a parsed spec, the RedisQueue's :class:`QueueNames` and
values the caller has read (a password, a live claim size) into the body the steps apply.
Nothing here talks to the API server, so the shapes are unit-tested directly.

Long on purpose: the StatefulSet is spelled out field by field (security context, probes,
the start-up script) so that a reviewer sees the whole pod in one place.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..resource.identity import ANNOTATION_OWNER_UID, JSON
from ..resource.names import DATA_VOLUME, REDIS_PORT, QueueNames
from ..resource.quantities import parse_quantity
from ..resource.spec import DEFAULT_AUTH_SECRET_KEY, ProvisionedRedis, RedisQueueSpec
from .acl import (
    ADMIN_PASSWORD_KEY,
    ADMIN_RULES,
    ADMIN_USER,
    APP_RULES,
    APP_USER,
    PROBE_KEYS_KEY,
    PROBE_PASSWORD_KEY,
    PROBE_RULES,
    PROBE_USER,
)
from .meta import b64, metadata

PORT_NAME: Final = "redis"
CONTAINER_NAME: Final = "redis"
DATA_DIR: Final = "/data"
CONFIG_DIR: Final = "/run/redis"
CONFIG_FILE: Final = f"{CONFIG_DIR}/redis.conf"
#: UID/GID of the "redis" user in the official Redis images (Debian and Alpine alike).
REDIS_UID: Final = 999
#: Where the pod reads its secrets: mounted Secret volumes, never environment variables, so
#: policies that forbid Secrets in env vars admit the pod, and a changed Secret reaches the
#: files without a restart. ``auth``: the apps' password (spec.auth.secretRef or the generated
#: Secret) as ``password``; ``acl``: the operator's own users (``<name>-redis-acl``).
SECRETS_DIR: Final = "/run/secrets/redisqueue"
AUTH_DIR: Final = f"{SECRETS_DIR}/auth"
ACL_DIR: Final = f"{SECRETS_DIR}/acl"
AUTH_FILE: Final = f"{AUTH_DIR}/password"
#: Readable by the Redis group only (fsGroup), read-only for everyone.
SECRET_FILE_MODE: Final = 0o440

DEFAULT_CPU_REQUEST: Final = "50m"
DEFAULT_MEMORY_REQUEST: Final = "64Mi"
DEFAULT_MEMORY_LIMIT: Final = "256Mi"


def _provision(spec: RedisQueueSpec) -> ProvisionedRedis:
    if spec.redis.provision is None:
        raise ValueError("the RedisQueue is in external mode; there is nothing to provision")
    return spec.redis.provision


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
    _provision(spec)
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
        if cpu_limit is not None and parse_quantity(cpu_limit) < parse_quantity(cpu_request):
            cpu_request = cpu_limit
    requests["cpu"] = cpu_request
    if cpu_limit is not None:
        limits["cpu"] = cpu_limit

    memory_limit = lim.memory if lim is not None else None
    memory_request = req.memory if req is not None else None
    if memory_request is None:
        memory_request = DEFAULT_MEMORY_REQUEST
        if memory_limit is not None and parse_quantity(memory_limit) < parse_quantity(
            memory_request
        ):
            memory_request = memory_limit
    if memory_limit is None:
        memory_limit = DEFAULT_MEMORY_LIMIT
        if parse_quantity(memory_request) > parse_quantity(memory_limit):
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
    limit = parse_quantity(resolved_resources(provision)["limits"]["memory"])
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


def _user_line(user: str, rules: tuple[str, ...]) -> str:
    # A printf format: the hash (and the probe's key rules) are its arguments, never part of it.
    return f"user {user} reset on #%s {' '.join(rules)}"


def startup_script(spec: RedisQueueSpec) -> str:
    """The container command: write redis.conf with the users, then exec redis-server.

    Passwords come from the mounted Secret files and enter redis.conf as SHA-256 hashes
    (``#<hex>``): no password is ever in a process's arguments or environment, nor in the
    config file. The config lives on a memory-backed emptyDir, readable only by the Redis
    user (umask 077). Static config goes through a quoted heredoc: the shell expands nothing
    in it. The probe's key rules come from the operator's Secret, already written as quoted,
    byte-escaped redis.conf arguments (:func:`~.acl.probe_keys_conf`).
    """
    config = redis_config(spec)
    app_line = _user_line(APP_USER, APP_RULES)
    probe_line = _user_line(PROBE_USER, PROBE_RULES) + " %s"
    admin_line = _user_line(ADMIN_USER, ADMIN_RULES)
    return (
        "set -eu\n"
        "umask 077\n"
        f'[ -s {AUTH_FILE} ] || {{ echo "redis: empty password" >&2; exit 1; }}\n'
        "hash() {\n"
        '  h=$(sha256sum < "$1") || { echo "redis: cannot read $1" >&2; exit 1; }\n'
        "  h=${h%% *}\n"
        '  [ ${#h} -eq 64 ] || { echo "redis: cannot hash $1" >&2; exit 1; }\n'
        '  printf %s "$h"\n'
        "}\n"
        f"app=$(hash {AUTH_FILE})\n"
        f"probe=$(hash {ACL_DIR}/{PROBE_PASSWORD_KEY})\n"
        f"admin=$(hash {ACL_DIR}/{ADMIN_PASSWORD_KEY})\n"
        f"keys=$(cat {ACL_DIR}/{PROBE_KEYS_KEY})\n"
        f"cat > {CONFIG_FILE} <<'REDIS_CONF'\n"
        f"{config}"
        "REDIS_CONF\n"
        f"printf '{app_line}\\n' \"$app\" >> {CONFIG_FILE}\n"
        f'printf \'{probe_line}\\n\' "$probe" "$keys" >> {CONFIG_FILE}\n'
        f"printf '{admin_line}\\n' \"$admin\" >> {CONFIG_FILE}\n"
        "unset app probe admin keys h\n"
        f"exec redis-server {CONFIG_FILE}\n"
    )


#: redis-cli as the probe user, its password read from the mounted file into redis-cli's own
#: environment (REDISCLI_AUTH), never into an argument or the container's environment.
_CLI: Final = (
    f'REDISCLI_AUTH="$(cat {ACL_DIR}/{PROBE_PASSWORD_KEY})" '
    f"redis-cli --no-auth-warning --user {PROBE_USER} -h 127.0.0.1 -p {REDIS_PORT}"
)
#: Readiness: Redis answers the probe user's authenticated PING.
READINESS_SCRIPT: Final = f"{_CLI} ping | grep -q PONG"
#: Liveness: also alive while loading a large AOF at startup ("LOADING ..."), so a slow load is
#: not turned into a restart loop.
LIVENESS_SCRIPT: Final = (
    f"response=$({_CLI} ping 2>&1) || true\n"
    'case "$response" in PONG|*LOADING*) exit 0 ;; esac\n'
    'echo "$response" >&2\n'
    "exit 1\n"
)


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
    provision = _provision(spec)
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


@dataclass(frozen=True, slots=True)
class OperatorPeer:
    """The operator's own pods, which PING every provisioned Redis: their namespace and labels
    (``POD_NAMESPACE`` and ``REDISQUEUE_PEER_SELECTOR`` in the install). Unknown when the
    operator runs outside the cluster; then no rule lets it in."""

    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def _selector(selector: Any) -> JSON:
    dumped: JSON = selector.model_dump(by_alias=True, exclude_none=True)
    return dumped


def build_network_policy(names: QueueNames, spec: RedisQueueSpec, peer: OperatorPeer) -> JSON:
    """The NetworkPolicy ``<name>-redis``: only ``networkPolicy.allowFrom`` (default: the
    RedisQueue's namespace) and the operator's pods reach the Redis port; nothing else does,
    on network plugins that enforce NetworkPolicy. Selects exactly this RedisQueue's Redis pod
    (the StatefulSet's selector)."""
    provision = _provision(spec)
    peers: list[JSON] = []
    for allowed in provision.network_policy.allow_from or []:
        rule: JSON = {"podSelector": _selector(allowed.pod_selector)}
        if allowed.namespace_selector is not None:
            rule["namespaceSelector"] = _selector(allowed.namespace_selector)
        peers.append(rule)
    if not peers:
        peers = [{"podSelector": {}}]  # every pod of the RedisQueue's own namespace
    port = [{"port": REDIS_PORT, "protocol": "TCP"}]
    ingress: list[JSON] = [{"ports": port, "from": peers}]
    if peer.namespace and peer.labels:
        ingress.append(
            {
                "ports": port,
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": peer.namespace}
                        },
                        "podSelector": {"matchLabels": dict(peer.labels)},
                    }
                ],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(names, names.workload),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
