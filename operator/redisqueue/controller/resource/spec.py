"""The RedisQueue resource as typed models: the spec users write, the status the operator writes.

This module is the single source of truth for the resource's shape. ``redisqueue.controller.crd``
generates the CustomResourceDefinition from these models, so every bound, default and
description here is what the API server enforces and what ``kubectl explain`` prints.
Rules that a schema cannot express (one of two modes, cap >= base, ...) are written twice:
as a CEL rule attached to the model (``x-kubernetes-validations``, enforced by the API
server) and as a pydantic validator with the same message (enforced by :func:`parse_spec`).

Pure: no I/O. The operator calls :func:`parse_spec` on ``body["spec"]`` and works with the
resulting immutable model.

Long on purpose: one model per level of the resource, each field with its bounds,
description and CEL rule beside it; split across files, a rule would stand apart from the
field it guards.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from redisqueue.contract import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    DB,
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_CAP_SECONDS,
    DEFAULT_DB,
    DEFAULT_POOL_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT_SECONDS,
    DEFAULT_PORT,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_SOCKET_TIMEOUT_SECONDS,
    POOL_MAX_CONNECTIONS,
    POOL_TIMEOUT_SECONDS,
    PORT,
    RETRY_ATTEMPTS,
    SOCKET_TIMEOUT_SECONDS,
    Environment,
)

from .identity import (
    KEY_PREFIX,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
)
from .quantities import QUANTITY_PATTERN, parse_quantity

Mode = Literal["provision", "external"]
DeletionPolicy = Literal["Retain", "Delete"]
QueueType = Literal["list", "stream"]

#: Pinned to a patch release: with ``imagePullPolicy: IfNotPresent`` a node runs whatever it
#: cached under the tag, so a floating tag (``7.2-alpine``) would run different Redis versions
#: on different nodes. A tag can still be re-pushed (a rebuilt base image); for byte-identical
#: pods name a digest (``redis:7.2.11-alpine@sha256:...``) in ``provision.image``.
DEFAULT_IMAGE: Final = "redis:7.2.11-alpine"
DEFAULT_STORAGE_SIZE: Final = "1Gi"
DEFAULT_AUTH_SECRET_KEY: Final = "password"  # noqa: S105 - a key name, not a password
DEFAULT_CA_SECRET_KEY: Final = "ca.crt"  # noqa: S105 - a key name
DEFAULT_HEALTH_INTERVAL_SECONDS: Final = 10.0
DEFAULT_HEALTH_TIMEOUT_SECONDS: Final = 2.0

MAX_INJECT_TARGETS: Final = 64
MAX_QUEUES: Final = 32
#: Workloads one inject target may ask the operator to restart.
MAX_RESTART_TARGETS: Final = 8
#: The kubelet refreshes a mounted Secret within its sync period (1 minute by default) plus
#: jitter; the default grace period leaves room for that twice over.
DEFAULT_ROTATION_GRACE_SECONDS: Final = 120
MIN_ROTATION_GRACE_SECONDS: Final = 10
MAX_ROTATION_GRACE_SECONDS: Final = 86400
#: A provisioned RedisQueue names a StatefulSet "<name>-redis". The StatefulSet controller
#: labels its pods with "controller-revision-hash: <statefulset>-<hash up to 10 chars>",
#: a label value of at most 63 characters, so the StatefulSet name must stay within 52 and
#: the RedisQueue name within 46. The Service of the same name must be a DNS-1035 label.
MAX_PROVISION_NAME_LENGTH: Final = 46

DNS1123_SUBDOMAIN_PATTERN: Final = (
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS1035_LABEL_PATTERN: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a regex
#: A DNS name (labels may carry "_", as some private zones use) or an IPv4/IPv6 address,
#: with no scheme, port, path or credentials.
HOST_PATTERN: Final = (
    r"^([A-Za-z0-9]([-_A-Za-z0-9]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([-_A-Za-z0-9]*[A-Za-z0-9])?)*\.?$"
    r"|^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}(:?[0-9]{1,3}(\.[0-9]{1,3}){3})?$"
)
#: Redis memory units (redis.conf "maxmemory"): bytes, k/kb, m/mb, g/gb, any case.
REDIS_MEMORY_PATTERN: Final = r"^[0-9]+([kKmMgG][bB]?|[bB])?$"
USERNAME_PATTERN: Final = r"^[^\s]+$"

# Messages shared by the CEL rules (API server) and the pydantic validators (parse_spec), so a
# user sees the same sentence whichever layer catches the mistake.
MSG_EXACTLY_ONE_MODE: Final = "exactly one of provision or external must be set"
MSG_MODE_IMMUTABLE: Final = (
    "spec.redis mode (provision/external) is immutable; create a new RedisQueue"
)
MSG_STORAGE_CLASS_IMMUTABLE: Final = (
    "storageClassName is immutable (the StatefulSet's volume claim template fixes it)"
)
MSG_STORAGE_NO_SHRINK: Final = "size cannot be decreased (a PersistentVolumeClaim can only grow)"
MSG_STORAGE_SIZE: Final = "must be a positive Kubernetes quantity such as 1Gi or 512Mi"
MSG_HOST: Final = (
    "must be a DNS name or an IP address, without scheme, port or credentials "
    "(the port goes in spec.redis.external.port)"
)
#: Everything a C resolver (inet_aton) reads as an IPv4 address: 2130706433, 0x7f.1, 0177.0.0.1.
NUMERIC_HOST_PATTERN: Final = r"^((0[xX][0-9a-fA-F]*|[0-9]+)\.){0,3}(0[xX][0-9a-fA-F]*|[0-9]+)\.?$"
_OCTET: Final = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
#: An IPv4 address as four decimal numbers without leading zeros.
CANONICAL_IPV4_PATTERN: Final = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
MSG_HOST_NUMERIC: Final = (
    "an IPv4 address must be written as four decimal numbers without leading zeros "
    "(a.b.c.d); numeric forms such as 2130706433, 0x7f.1 or 0177.0.0.1 are refused, since "
    "they hide which address is meant"
)
MSG_CAP_GE_BASE: Final = "capSeconds must be greater than or equal to baseSeconds"
MSG_TIMEOUT_LT_INTERVAL: Final = "timeoutSeconds must be less than intervalSeconds"
MSG_INSECURE_NEEDS_TLS: Final = "insecureSkipVerify applies only when tls.enabled is true"
MSG_CA_NEEDS_TLS: Final = "caSecretRef applies only when tls.enabled is true"
MSG_USERNAME_NEEDS_SECRET: Final = "username requires secretRef (the user's password)"  # noqa: S105
MSG_USERNAME_EXTERNAL_ONLY: Final = (
    "auth.username applies only to an external Redis (a provisioned Redis has only the "
    "default user)"
)
MSG_GROUP_NEEDS_STREAM: Final = "group applies only to queues of type stream"
#: redis.conf directives the operator writes itself (port, data directory, persistence,
#: memory, password) or that would let a config line reach outside the pod's Redis.
OPERATOR_OWNED_DIRECTIVES: Final = (
    "requirepass",
    "masterauth",
    "masteruser",
    "user",
    "aclfile",
    "port",
    "bind",
    "unixsocket",
    "unixsocketperm",
    "tls-port",
    "dir",
    "dbfilename",
    "appendonly",
    "appendfilename",
    "appenddirname",
    "appendfsync",
    "maxmemory",
    "maxmemory-policy",
    "daemonize",
    "supervised",
    "pidfile",
    "logfile",
    "include",
    "rename-command",
    "loadmodule",
    "enable-module-command",
    "enable-debug-command",
    "replicaof",
    "slaveof",
    "protected-mode",
    # CONFIG SET of dir, dbfilename and the like from any client: the classic way to write
    # files with Redis's rights.
    "enable-protected-configs",
    "bind-source-addr",
    "unixsocketgroup",
    "oom-score-adj",
    "oom-score-adj-values",
    "syslog-enabled",
    "syslog-ident",
    "syslog-facility",
)
#: Directive families the operator owns whole: TLS (certificate and key files to read) and
#: cluster mode (a node config file to write, and a Redis the contract cannot describe).
OPERATOR_OWNED_DIRECTIVE_PREFIXES: Final = ("tls-", "cluster-")
#: Pod labels the operator sets (its selector and identity); spec labels may not replace them.
OPERATOR_POD_LABELS: Final = (
    LABEL_NAME,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_PART_OF,
    LABEL_COMPONENT,
)
#: Annotation prefix the operator owns on pod templates.
OPERATOR_ANNOTATION_PREFIX: Final = KEY_PREFIX
CONFIG_DIRECTIVE_PATTERN: Final = r"^[a-z][a-z0-9-]*$"
MSG_CONFIG_DIRECTIVE: Final = (
    "extraConfig keys must be redis.conf directive names (lowercase letters, digits and "
    "'-', starting with a letter)"
)
MSG_CONFIG_OWNED: Final = (
    "extraConfig may not set directives the operator owns or that loosen protected "
    "configuration: "
    + ", ".join(OPERATOR_OWNED_DIRECTIVES)
    + ", "
    + ", ".join(f"{p}*" for p in OPERATOR_OWNED_DIRECTIVE_PREFIXES)
)
MSG_POD_LABELS_OWNED: Final = "podLabels may not set the operator's labels: " + ", ".join(
    OPERATOR_POD_LABELS
)
MSG_POD_ANNOTATIONS_OWNED: Final = (
    f"podAnnotations may not set annotations under {OPERATOR_ANNOTATION_PREFIX} (the operator's)"
)
MSG_RESTART_OWN_REDIS: Final = (
    "spec.inject[].restart may not name the RedisQueue's own StatefulSet <name>-redis: the "
    "operator changes passwords of its Redis without a restart"
)
MSG_PROVISION_NAME: Final = (
    f"a provisioned RedisQueue's metadata.name must be a DNS-1035 label (lowercase letters, "
    f"digits and '-', starting with a letter) of at most {MAX_PROVISION_NAME_LENGTH} "
    f"characters: it names the Service and StatefulSet <name>-redis"
)


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, str]:
    """One ``x-kubernetes-validations`` entry.

    Rules guard every field they read with ``has()``, even fields with defaults: the API
    server checks each schema ``default`` (such as ``pool: {}``) against the rules as it is,
    before its children's defaults apply, and rejects the CRD if a rule fails there.
    """
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _cel_string(text: str) -> str:
    """``text`` as a single-quoted CEL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _validations(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def _int_to_str(value: object) -> object:
    # Kubernetes quantities are int-or-string: "cpu: 1" arrives as an int.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _check_quantity(value: str) -> str:
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 100m, 64Mi, 1)")
    return value


def _check_storage_size(value: str) -> str:
    try:
        positive = parse_quantity(value) > 0
    except ValueError:
        positive = False
    if not positive:
        raise ValueError(MSG_STORAGE_SIZE)
    return value


def _check_host(value: str) -> str:
    if not re.fullmatch(HOST_PATTERN, value):
        raise ValueError(MSG_HOST)
    if re.fullmatch(NUMERIC_HOST_PATTERN, value) and not re.fullmatch(
        CANONICAL_IPV4_PATTERN, value
    ):
        raise ValueError(MSG_HOST_NUMERIC)
    if ":" in value:
        # The pattern (shared with the CRD's CEL rule) admits the IPv6 alphabet and shape;
        # the address itself is checked here.
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(MSG_HOST) from None
    return value


#: A compute resource quantity: an integer or a string such as "100m" or "64Mi".
ResourceQuantity = Annotated[
    str,
    BeforeValidator(_int_to_str),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


def _object_name(*default: None, description: str) -> Any:
    """A field that names a Kubernetes object in the RedisQueue's namespace (DNS-1123)."""
    return Field(
        *default,
        min_length=1,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        description=description,
    )


def _secret_key(default: str, *, description: str) -> Any:
    """A field that names a key of a Secret."""
    return Field(
        default, min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN, description=description
    )


def _nested(model: Callable[[], BaseModel], *, description: str) -> Any:
    """A field holding an object that is ``model``'s defaults when omitted; the schema says so
    with ``default: {}``, so the API server fills it in as well."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


def _list_map(*keys: str) -> dict[str, Any]:
    """Schema markers of a list whose items are told apart by ``keys`` (server-side apply
    merges it item by item)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


# --- Spec ------------------------------------------------------------------------------------


class ResourceModel(BaseModel):
    # strict: the API server has already checked JSON types, so a string where a number
    # belongs is a bug worth an error, not a coercion.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )


class _SecretKeyRef(ResourceModel):
    name: str = _object_name(
        description="Name of the Secret, in the RedisQueue's namespace (other namespaces "
        "cannot be referenced).",
    )


class AuthSecretRef(_SecretKeyRef):
    """A key of a Secret in the RedisQueue's own namespace that holds the Redis password."""

    key: str = _secret_key(
        DEFAULT_AUTH_SECRET_KEY,
        description="Key within the Secret whose value is the password (AUTH token).",
    )


class CASecretRef(_SecretKeyRef):
    """A key of a Secret in the RedisQueue's own namespace that holds a PEM CA bundle."""

    key: str = _secret_key(
        DEFAULT_CA_SECRET_KEY,
        description="Key within the Secret whose value is the PEM-encoded CA certificate(s).",
    )


class TLS(ResourceModel):
    """TLS for the connection to an external Redis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.insecureSkipVerify) || !self.insecureSkipVerify || "
                "(has(self.enabled) && self.enabled)",
                MSG_INSECURE_NEEDS_TLS,
                field_path=".insecureSkipVerify",
            ),
            cel(
                "!has(self.caSecretRef) || (has(self.enabled) && self.enabled)",
                MSG_CA_NEEDS_TLS,
                field_path=".caSecretRef",
            ),
        )
    )

    enabled: bool = Field(
        False,
        description="Connect with TLS (rediss://). Required for ElastiCache with in-transit "
        "encryption.",
    )
    ca_secret_ref: CASecretRef | None = Field(
        None,
        description="CA bundle to verify the server certificate with, instead of the system "
        "trust store. Not needed for ElastiCache, whose certificates chain to public CAs.",
    )
    insecure_skip_verify: bool = Field(
        False,
        description="INSECURE: accept any server certificate without verifying it. Only for "
        "tests against self-signed servers; anyone on the path can read the traffic.",
    )

    @model_validator(mode="after")
    def _options_need_tls(self) -> TLS:
        if not self.enabled and self.insecure_skip_verify:
            raise ValueError(MSG_INSECURE_NEEDS_TLS)
        if not self.enabled and self.ca_secret_ref is not None:
            raise ValueError(MSG_CA_NEEDS_TLS)
        return self


class ExternalRedis(ResourceModel):
    """An existing Redis the operator does not manage (for example AWS ElastiCache)."""

    host: Annotated[str, AfterValidator(_check_host)] = Field(
        min_length=1,
        max_length=253,
        description="DNS name or IP address of the Redis primary endpoint, without scheme or port.",
        json_schema_extra=_validations(
            cel(f"self.matches({_cel_string(HOST_PATTERN)})", MSG_HOST),
            cel(
                f"!self.matches({_cel_string(NUMERIC_HOST_PATTERN)}) || "
                f"self.matches({_cel_string(CANONICAL_IPV4_PATTERN)})",
                MSG_HOST_NUMERIC,
            ),
        ),
    )
    port: int = Field(DEFAULT_PORT, **PORT.bounds(), description="TCP port of the Redis server.")
    db: int = Field(
        DEFAULT_DB,
        **DB.bounds(),
        description="Logical database number (ElastiCache without cluster mode has 0-15).",
    )
    tls: TLS = _nested(
        TLS, description="TLS settings; certificates are verified unless insecureSkipVerify is set."
    )


class Storage(ResourceModel):
    """The persistent volume of a provisioned Redis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "has(self.storageClassName) == has(oldSelf.storageClassName) && "
                "(!has(self.storageClassName) || "
                "self.storageClassName == oldSelf.storageClassName)",
                MSG_STORAGE_CLASS_IMMUTABLE,
                field_path=".storageClassName",
            ),
            cel(
                "!has(self.size) || !has(oldSelf.size) || "
                "!isQuantity(self.size) || !isQuantity(oldSelf.size) || "
                "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
                MSG_STORAGE_NO_SHRINK,
                field_path=".size",
            ),
        )
    )

    size: Annotated[str, AfterValidator(_check_storage_size)] = Field(
        DEFAULT_STORAGE_SIZE,
        min_length=1,
        max_length=64,
        description="Requested size of the data volume (a Kubernetes quantity such as 1Gi). "
        "It may grow later (the PersistentVolumeClaim is expanded in place when its "
        "StorageClass allows it) but never shrink.",
        json_schema_extra=_validations(
            cel("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))", MSG_STORAGE_SIZE)
        ),
    )
    storage_class_name: str | None = _object_name(
        None,
        description="StorageClass of the data volume; the cluster default when omitted. Immutable.",
    )


class ResourceList(ResourceModel):
    """Amounts of CPU and memory."""

    cpu: ResourceQuantity | None = Field(None, description="CPU, for example 100m or 1.")
    memory: ResourceQuantity | None = Field(None, description="Memory, for example 256Mi.")


class Resources(ResourceModel):
    """Compute resources of the Redis container."""

    requests: ResourceList | None = Field(
        None, description="Guaranteed resources. Defaults: cpu 50m, memory 64Mi."
    )
    limits: ResourceList | None = Field(
        None,
        description="Upper bounds. Default: memory 256Mi (at least the memory request); no "
        "CPU limit, so Redis is throttled by contention rather than by quota.",
    )


#: A Kubernetes object the API server checks when the operator applies the StatefulSet
#: (affinity terms, label selectors): kept as given, not re-modelled here.
KubernetesObject = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


#: A label's value, or a node label's value to match.
LabelValue = Annotated[str, Field(max_length=63, description="The label's value.")]
#: An annotation's value.
AnnotationValue = Annotated[str, Field(max_length=4096, description="The annotation's value.")]
#: One redis.conf value: a single line, so a value can never start a second directive.
ConfigValue = Annotated[
    str,
    Field(max_length=1024, pattern=r"^[^\r\n]*$", description="The directive's arguments."),
]


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_cel_string(v) for v in values) + "]"


def _check_extra_config(value: dict[str, str] | None) -> dict[str, str] | None:
    for key in value or {}:
        if not re.fullmatch(CONFIG_DIRECTIVE_PATTERN, key):
            raise ValueError(f"{MSG_CONFIG_DIRECTIVE}: {key!r}")
        if key in OPERATOR_OWNED_DIRECTIVES or key.startswith(OPERATOR_OWNED_DIRECTIVE_PREFIXES):
            raise ValueError(f"{MSG_CONFIG_OWNED} (got {key!r})")
    return value


def _check_pod_labels(value: dict[str, str] | None) -> dict[str, str] | None:
    owned = sorted(set(value or {}) & set(OPERATOR_POD_LABELS))
    if owned:
        raise ValueError(f"{MSG_POD_LABELS_OWNED} (got {', '.join(owned)})")
    return value


def _check_pod_annotations(value: dict[str, str] | None) -> dict[str, str] | None:
    owned = sorted(k for k in value or {} if k.startswith(OPERATOR_ANNOTATION_PREFIX))
    if owned:
        raise ValueError(f"{MSG_POD_ANNOTATIONS_OWNED} (got {', '.join(owned)})")
    return value


class Toleration(ResourceModel):
    """A taint the Redis pod tolerates (core/v1 Toleration)."""

    key: str | None = Field(
        None, max_length=316, description="Taint key; empty with Exists matches all."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Exists or Equal (default)."
    )
    value: str | None = Field(None, max_length=63, description="Taint value, for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class Affinity(ResourceModel):
    """Scheduling constraints of the Redis pod (core/v1 Affinity); the terms are checked by
    the API server when the operator applies the StatefulSet."""

    node_affinity: KubernetesObject | None = Field(None, description="core/v1 NodeAffinity.")
    pod_affinity: KubernetesObject | None = Field(None, description="core/v1 PodAffinity.")
    pod_anti_affinity: KubernetesObject | None = Field(None, description="core/v1 PodAntiAffinity.")


class TopologySpreadConstraint(ResourceModel):
    """How to spread the Redis pod over topology domains (core/v1 TopologySpreadConstraint).
    Without labelSelector, the operator selects this RedisQueue's own Redis pod."""

    max_skew: int = Field(ge=1, description="Largest allowed difference between domains.")
    topology_key: str = Field(
        min_length=1, max_length=316, description="Node label that defines a domain."
    )
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule or ScheduleAnyway."
    )
    label_selector: KubernetesObject | None = Field(
        None, description="Pods counted per domain (metav1 LabelSelector)."
    )
    min_domains: int | None = Field(None, ge=1, description="Minimum number of eligible domains.")
    match_label_keys: list[Annotated[str, Field(description="A pod label key.")]] | None = Field(
        None, max_length=16, description="Pod label keys whose values also select the pods counted."
    )
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        None, description="Whether nodeSelector and node affinity limit the domains."
    )
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        None, description="Whether node taints limit the domains."
    )


class LocalObjectReference(ResourceModel):
    """A Secret in the RedisQueue's namespace."""

    name: str = _object_name(description="Its name.")


class LabelSelectorRequirement(ResourceModel):
    """One requirement of a label selector (metav1 LabelSelectorRequirement)."""

    key: str = Field(min_length=1, max_length=316, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] | None = Field(
        None, max_length=16, description="Values for In and NotIn."
    )


class LabelSelector(ResourceModel):
    """Labels that select pods or namespaces (metav1 LabelSelector); empty selects all."""

    match_labels: dict[str, LabelValue] | None = Field(
        None, max_length=16, description="Labels the object must carry, with these values."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        None, max_length=8, description="Requirements the object's labels must meet."
    )


class NetworkPeer(ResourceModel):
    """Pods that may connect to the Redis: those ``podSelector`` selects in the RedisQueue's
    namespace, or, with ``namespaceSelector``, in the namespaces it selects."""

    pod_selector: LabelSelector = _nested(
        LabelSelector,
        description="Pods that may connect; {} means every pod (of the namespaces meant).",
    )
    namespace_selector: LabelSelector | None = Field(
        None,
        description="Namespaces the pods may be in; when omitted, only the RedisQueue's own. "
        "Reaching beyond the namespace needs its author's right to create NetworkPolicies "
        "there (checked at admission).",
    )


class RedisNetworkPolicy(ResourceModel):
    """The NetworkPolicy in front of a provisioned Redis."""

    enabled: bool = Field(
        True,
        description="Create a NetworkPolicy that lets only allowFrom (and the operator's own "
        "pods, for the health probe) reach the Redis port. Enforced by network plugins that "
        "implement NetworkPolicy.",
    )
    allow_from: list[NetworkPeer] | None = Field(
        None,
        max_length=8,
        description="Who may connect. Default: every pod in the RedisQueue's namespace.",
    )


class ProvisionedRedis(ResourceModel):
    """A single-instance Redis that the operator runs in the cluster (StatefulSet + Service)."""

    image: str = Field(
        DEFAULT_IMAGE,
        min_length=1,
        max_length=512,
        description="Container image of Redis (7.0 or newer; the official image or one "
        "with the same layout: redis-server and redis-cli on PATH, user 999).",
    )
    storage: Storage = _nested(
        Storage,
        description="The data volume (a PersistentVolumeClaim that is never deleted by a "
        "spec change).",
    )
    append_only: bool = Field(
        True,
        description="Append-only-file persistence (appendonly yes, fsync every second), so "
        "an acknowledged job survives a restart. Turn off only for throw-away queues.",
    )
    max_memory: str | None = Field(
        None,
        min_length=1,
        max_length=32,
        pattern=REDIS_MEMORY_PATTERN,
        description="Redis maxmemory in Redis units (for example 256mb or 1gb). Defaults to "
        "three quarters of the memory limit, so Redis refuses writes (maxmemory-policy "
        "noeviction: jobs are never evicted) before the kernel kills it.",
    )
    resources: Resources | None = Field(
        None, description="CPU and memory of the Redis container (defaults on each field)."
    )
    node_selector: dict[str, LabelValue] | None = Field(
        None, max_length=32, description="Node labels the Redis pod must run on."
    )
    tolerations: list[Toleration] | None = Field(
        None, max_length=32, description="Taints the Redis pod tolerates."
    )
    affinity: Affinity | None = Field(None, description="Node and pod affinity of the Redis pod.")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        None, max_length=8, description="How the Redis pod spreads over zones or nodes."
    )
    priority_class_name: str | None = _object_name(
        None,
        description="PriorityClass of the Redis pod (for example one that outranks batch work).",
    )
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None,
        max_length=8,
        description="Secrets for pulling the Redis image from a private registry.",
    )
    pod_annotations: Annotated[
        dict[str, AnnotationValue] | None, AfterValidator(_check_pod_annotations)
    ] = Field(
        None,
        max_length=64,
        description="Extra annotations of the Redis pod; not under redisqueue.dev/.",
        json_schema_extra=_validations(
            cel(
                f"self.all(k, !k.startsWith({_cel_string(OPERATOR_ANNOTATION_PREFIX)}))",
                MSG_POD_ANNOTATIONS_OWNED,
            )
        ),
    )
    pod_labels: Annotated[dict[str, LabelValue] | None, AfterValidator(_check_pod_labels)] = Field(
        None,
        max_length=64,
        description="Extra labels of the Redis pod; not the operator's app.kubernetes.io/ ones.",
        json_schema_extra=_validations(
            cel(f"self.all(k, !(k in {_cel_list(OPERATOR_POD_LABELS)}))", MSG_POD_LABELS_OWNED)
        ),
    )
    network_policy: RedisNetworkPolicy = _nested(
        RedisNetworkPolicy, description="Which pods may reach the Redis; on by default."
    )
    adopt_retained: bool = Field(
        False,
        description="Reuse the data volume and the generated password Secret that a deleted "
        "RedisQueue of the same name left behind (deletionPolicy Retain). Without it the "
        "operator refuses to take them over (OwnershipConflict). Needs its author's right to "
        "get both (checked at admission).",
    )
    extra_config: Annotated[dict[str, ConfigValue] | None, AfterValidator(_check_extra_config)] = (
        Field(
            None,
            max_length=64,
            description="Extra redis.conf directives, one per key (for example "
            '{"slowlog-log-slower-than": "10000", "save": "900 1"}). Directives the operator '
            "owns (port, dir, persistence, maxmemory, passwords, modules, ...) are refused.",
            json_schema_extra=_validations(
                cel(
                    f"self.all(k, k.matches({_cel_string(CONFIG_DIRECTIVE_PATTERN)}))",
                    MSG_CONFIG_DIRECTIVE,
                ),
                cel(
                    f"self.all(k, !(k in {_cel_list(OPERATOR_OWNED_DIRECTIVES)})"
                    + "".join(
                        f" && !k.startsWith({_cel_string(p)})"
                        for p in OPERATOR_OWNED_DIRECTIVE_PREFIXES
                    )
                    + ")",
                    MSG_CONFIG_OWNED,
                ),
            ),
        )
    )


class RedisTarget(ResourceModel):
    """Where the Redis comes from: exactly one of provision or external."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel("has(self.provision) != has(self.external)", MSG_EXACTLY_ONE_MODE),
            cel("has(self.provision) == has(oldSelf.provision)", MSG_MODE_IMMUTABLE),
        )
    )

    provision: ProvisionedRedis | None = Field(
        None, description="Run a Redis in the cluster, owned by this RedisQueue."
    )
    external: ExternalRedis | None = Field(
        None, description="Use an existing Redis, such as AWS ElastiCache."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> RedisTarget:
        if (self.provision is None) == (self.external is None):
            raise ValueError(MSG_EXACTLY_ONE_MODE)
        return self


class Auth(ResourceModel):
    """Credentials of the Redis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.username) || has(self.secretRef)",
                MSG_USERNAME_NEEDS_SECRET,
                field_path=".username",
            )
        )
    )

    secret_ref: AuthSecretRef | None = Field(
        None,
        description="Secret key holding the password (AUTH token). For provision it is "
        "optional: when omitted the operator generates the Secret '<name>-redis-auth' with "
        "key 'password'. For external, omit it only for a Redis without a password.",
    )
    username: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=USERNAME_PATTERN,
        description="Redis ACL user (ElastiCache RBAC user) for an external Redis; the "
        "default user when omitted.",
    )

    @model_validator(mode="after")
    def _username_needs_password(self) -> Auth:
        if self.username is not None and self.secret_ref is None:
            raise ValueError(MSG_USERNAME_NEEDS_SECRET)
        return self


class Pool(ResourceModel):
    """Connection pool settings handed to the apps."""

    max_connections: int | None = Field(
        None,
        **POOL_MAX_CONNECTIONS.bounds(),
        description="Hard cap of open connections per pool (REDIS_POOL_MAX_CONNECTIONS). "
        "Default by environment: 50 for development, 100 for production.",
    )
    timeout_seconds: float = Field(
        DEFAULT_POOL_TIMEOUT_SECONDS,
        **POOL_TIMEOUT_SECONDS.bounds(),
        description="How long a caller waits for a free connection before failing "
        "(REDIS_POOL_TIMEOUT_SECONDS).",
    )
    socket_timeout_seconds: float = Field(
        DEFAULT_SOCKET_TIMEOUT_SECONDS,
        **SOCKET_TIMEOUT_SECONDS.bounds(),
        description="Longest wait for a reply or a connect, so a half-open connection fails "
        "fast; blocking commands (BLPOP, BLMOVE, XREADGROUP BLOCK, ...) wait their own block "
        "time plus this (REDIS_SOCKET_TIMEOUT_SECONDS).",
    )


class Backoff(ResourceModel):
    """Retry schedule handed to the apps: delay n = min(cap, base * 2^(n-1)), with jitter."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.capSeconds) || !has(self.baseSeconds) || "
                "self.capSeconds >= self.baseSeconds",
                MSG_CAP_GE_BASE,
                field_path=".capSeconds",
            )
        )
    )

    base_seconds: float = Field(
        DEFAULT_BACKOFF_BASE_SECONDS,
        **BACKOFF_BASE_SECONDS.bounds(),
        description="Delay before the first retry (REDIS_BACKOFF_BASE_SECONDS).",
    )
    cap_seconds: float = Field(
        DEFAULT_BACKOFF_CAP_SECONDS,
        **BACKOFF_CAP_SECONDS.bounds(),
        description="Longest delay between retries; at least baseSeconds "
        "(REDIS_BACKOFF_CAP_SECONDS).",
    )
    attempts: int = Field(
        DEFAULT_RETRY_ATTEMPTS,
        **RETRY_ATTEMPTS.bounds(),
        description="Retries per command or connect; 0 disables retries (REDIS_RETRY_ATTEMPTS).",
    )

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Backoff:
        if self.cap_seconds < self.base_seconds:
            raise ValueError(MSG_CAP_GE_BASE)
        return self


RestartKind = Literal["Deployment", "StatefulSet"]


def _unique_by(key: Callable[[Any], Any], say: Callable[[Any], str]) -> AfterValidator:
    """A list validator rejecting two items with the same ``key``; ``say`` names the key in
    the error."""

    def check(items: list[Any]) -> list[Any]:
        seen: set[object] = set()
        for item in items:
            value = key(item)
            if value in seen:
                raise ValueError(f"Duplicate value: {say(value)} appears twice")
            seen.add(value)
        return items

    return AfterValidator(check)


def _unique_pair(first: str, second: str) -> AfterValidator:
    """A list validator rejecting two items with the same ``first`` and ``second``."""
    return _unique_by(
        lambda item: (getattr(item, first), getattr(item, second)),
        lambda pair: f"{pair[0]}/{pair[1]}",
    )


class RestartTarget(ResourceModel):
    """A workload the operator restarts when the contract in its Secret changed."""

    kind: RestartKind = Field(description="Deployment or StatefulSet (apps/v1).")
    name: str = _object_name(
        description="Its name, in the RedisQueue's namespace.",
    )


class InjectTarget(ResourceModel):
    """An application Secret that receives the connection contract."""

    secret_name: str = _object_name(
        description="Name of the Secret, in the RedisQueue's namespace. The operator "
        "creates it if missing and owns only the REDIS_* contract keys in it; other keys "
        "are left alone.",
    )
    restart: Annotated[list[RestartTarget], _unique_pair("kind", "name")] = Field(
        default_factory=list,
        max_length=MAX_RESTART_TARGETS,
        description="Opt-in for apps that read the contract only at start (envFrom, env): "
        "after the operator changed the contract in this Secret (a rotated password, a new "
        "endpoint, ...) it restarts these workloads the way `kubectl rollout restart` does, "
        "and during a password rotation it keeps the old password valid until they have "
        "rolled out. The author needs patch on each of them. Apps that read "
        "REDIS_PASSWORD_FILE from the mounted Secret need no restart.",
        json_schema_extra=_list_map("kind", "name"),
    )


class Queue(ResourceModel):
    """A Redis key that holds jobs; its depth is exported as a metric."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.group) || (has(self.type) && self.type == 'stream')",
                MSG_GROUP_NEEDS_STREAM,
                field_path=".group",
            )
        )
    )

    key: str = Field(
        min_length=1, max_length=512, description="The Redis key, for example phase1:jobs."
    )
    type: QueueType = Field(
        "list",
        description="list: depth is LLEN. stream: depth is XLEN, or the pending count of "
        "the consumer group when group is set.",
    )
    group: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Consumer group of a stream whose pending entries count as the depth.",
    )

    @model_validator(mode="after")
    def _group_only_for_streams(self) -> Queue:
        if self.group is not None and self.type != "stream":
            raise ValueError(MSG_GROUP_NEEDS_STREAM)
        return self


class HealthCheck(ResourceModel):
    """How often the operator PINGs the Redis."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.timeoutSeconds) || !has(self.intervalSeconds) || "
                "self.timeoutSeconds < self.intervalSeconds",
                MSG_TIMEOUT_LT_INTERVAL,
                field_path=".timeoutSeconds",
            )
        )
    )

    interval_seconds: float = Field(
        DEFAULT_HEALTH_INTERVAL_SECONDS,
        ge=1,
        le=3600,
        description="Seconds between two PINGs.",
    )
    timeout_seconds: float = Field(
        DEFAULT_HEALTH_TIMEOUT_SECONDS,
        ge=0.1,
        le=60,
        description="Seconds a PING may take before the Redis counts as unreachable; less "
        "than intervalSeconds.",
    )

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> HealthCheck:
        if self.timeout_seconds >= self.interval_seconds:
            raise ValueError(MSG_TIMEOUT_LT_INTERVAL)
        return self


class Rotation(ResourceModel):
    """How a password change reaches the apps without downtime."""

    grace_period_seconds: int = Field(
        DEFAULT_ROTATION_GRACE_SECONDS,
        ge=MIN_ROTATION_GRACE_SECONDS,
        le=MAX_ROTATION_GRACE_SECONDS,
        description="After the password in the auth Secret changed, the old one stays valid "
        "for at least this long, and until every workload in spec.inject[].restart has "
        "rolled out (at most twice this long), so that apps reading the mounted Secret "
        "file (refreshed by the kubelet within its sync period, 1 minute by default) and "
        "restarted apps move to the new one first. Keep it above the kubelet's sync period. "
        "A provisioned Redis accepts both passwords meanwhile; for an external Redis "
        "(ElastiCache ROTATE) status says when the old one may be removed.",
    )


def _unique(field: str) -> AfterValidator:
    """A list validator rejecting two items with the same ``field`` (a list-map key)."""
    return _unique_by(
        lambda item: getattr(item, field), lambda value: f"{to_camel(field)} {value!r}"
    )


class RedisQueueSpec(ResourceModel):
    """The desired state of a RedisQueue."""

    model_config = ConfigDict(
        json_schema_extra=_validations(
            cel(
                "!has(self.auth) || !has(self.auth.username) || has(self.redis.external)",
                MSG_USERNAME_EXTERNAL_ONLY,
                field_path=".auth.username",
            )
        )
    )

    environment: Environment = Field(
        "development",
        description="development or production; chooses the default pool size (50 or 100).",
    )
    redis: RedisTarget = Field(
        description="Where the Redis comes from: exactly one of provision or external. The "
        "mode cannot change after creation."
    )
    auth: Auth | None = Field(
        None,
        description="Credentials. Optional for an external Redis without a password; for "
        "provision a password Secret is generated when none is referenced.",
    )
    pool: Pool = _nested(Pool, description="Connection pool settings written into the app Secrets.")
    backoff: Backoff = _nested(
        Backoff, description="Retry and backoff settings written into the app Secrets."
    )
    inject: Annotated[list[InjectTarget], _unique("secret_name")] = Field(
        default_factory=list,
        max_length=MAX_INJECT_TARGETS,
        description="App Secrets (same namespace) that receive the connection contract "
        "(REDIS_URL, REDIS_HOST, ...). Names are unique.",
        json_schema_extra=_list_map("secretName"),
    )
    queues: Annotated[list[Queue], _unique("key")] = Field(
        default_factory=list,
        max_length=MAX_QUEUES,
        description="Queue keys whose depth the operator reports as metrics. Keys are unique.",
        json_schema_extra=_list_map("key"),
    )
    health_check: HealthCheck = _nested(
        HealthCheck, description="PING schedule of the operator's health probe."
    )
    rotation: Rotation = _nested(
        Rotation, description="Password rotation: how long the old password stays valid."
    )
    deletion_policy: DeletionPolicy = Field(
        "Retain",
        description="What happens to the data volume and the generated password Secret when "
        "the RedisQueue is deleted: Retain keeps them (a RedisQueue re-created with the same "
        "name reuses them), Delete removes them. Injected keys are removed either way.",
    )

    @model_validator(mode="after")
    def _username_only_external(self) -> RedisQueueSpec:
        if self.auth is not None and self.auth.username is not None and self.redis.external is None:
            raise ValueError(MSG_USERNAME_EXTERNAL_ONLY)
        return self

    @functools.cached_property
    def mode(self) -> Mode:
        """``provision`` or ``external``."""
        return "provision" if self.redis.provision is not None else "external"


# --- Parsing ---------------------------------------------------------------------------------


class SpecError(ValueError):
    """An invalid RedisQueue spec. ``problems`` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "invalid RedisQueue: " + "; ".join(f"{path}: {message}" for path, message in problems)
        )


def _path(loc: tuple[int | str, ...], root: str) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def parse_spec(body_spec: Mapping[str, Any] | None) -> RedisQueueSpec:
    """Validate a RedisQueue's ``spec`` (as the API server stores it) into a RedisQueueSpec.

    Only the camelCase names of the resource are accepted. Raises :class:`SpecError`, whose
    message names each offending field path (``spec.pool.maxConnections: ...``).
    """
    if body_spec is None:
        raise SpecError([("spec", "Field required")])
    try:
        return RedisQueueSpec.model_validate(dict(body_spec), by_alias=True, by_name=False)
    except ValidationError as exc:
        raise SpecError(
            [(_path(tuple(err["loc"]), "spec"), _message(err)) for err in exc.errors()]
        ) from None


def validate_resource_name(name: str, spec: RedisQueueSpec) -> None:
    """Check ``metadata.name`` the way the CRD's root rules do (provision mode only): its
    shape, and that no restart target is the RedisQueue's own Redis.

    Raises :class:`SpecError` naming the field.
    """
    if spec.mode == "provision" and (
        len(name) > MAX_PROVISION_NAME_LENGTH or not re.fullmatch(DNS1035_LABEL_PATTERN, name)
    ):
        raise SpecError([("metadata.name", MSG_PROVISION_NAME)])
    own = f"{name}-redis"
    for i, target in enumerate(spec.inject):
        for j, workload in enumerate(target.restart):
            if spec.mode == "provision" and workload.kind == "StatefulSet" and workload.name == own:
                raise SpecError([(f"spec.inject[{i}].restart[{j}]", MSG_RESTART_OWN_REDIS)])


def resolved_pool_max(spec: RedisQueueSpec) -> int:
    """The pool cap apps get: spec.pool.maxConnections, else 50 (development) / 100 (production)."""
    if spec.pool.max_connections is not None:
        return spec.pool.max_connections
    return DEFAULT_POOL_MAX_CONNECTIONS[spec.environment]
