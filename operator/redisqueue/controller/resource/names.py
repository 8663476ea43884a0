"""Every name the operator derives from one RedisQueue, computed once.

For a RedisQueue ``<name>`` in namespace ``<ns>``:

- Service and StatefulSet ``<name>-redis`` (apps reach ``<name>-redis.<ns>.svc:6379``),
- generated password Secret ``<name>-redis-auth`` (key ``password``),
- the Secret of the operator's own Redis users ``<name>-redis-acl`` (probe and admin),
- data volume claim ``data-<name>-redis-0`` (from the StatefulSet's claim template),
- the label value and the field manager it writes app Secrets with.

A reconcile builds one :class:`QueueNames` and every step reads it, instead of asking
helpers for one name at a time. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

from redisqueue.contract import format_endpoint

from .identity import (
    API_VERSION,
    FIELD_MANAGER,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    QueueRef,
)
from .spec import DEFAULT_AUTH_SECRET_KEY, RedisQueueSpec

REDIS_PORT: Final = 6379
#: The data volume's name in the pod and in the StatefulSet's claim template.
DATA_VOLUME: Final = "data"


class Owner(TypedDict):
    """The RedisQueue that owns an object: what an ownerReference needs."""

    apiVersion: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A key of a Secret in the RedisQueue's namespace."""

    name: str
    key: str


def shortened(value: str, limit: int) -> str:
    """``value`` if it fits in ``limit`` characters, else a prefix and a hash of all of it.

    Two different values never shorten to the same text unless their SHA-256 prefixes (64 bits)
    collide, so two long RedisQueue names keep apart.
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{value[: limit - 17].rstrip('-.')}-{digest}"


def source_label_value(name: str) -> str:
    """The ``redisqueue.dev/redisqueue`` label value for RedisQueue ``name`` (<= 63 chars)."""
    return shortened(name, 63)


def inject_field_manager(name: str) -> str:
    """One field manager per RedisQueue, so two RedisQueues writing one Secret conflict.

    Field managers are limited to 128 characters; longer names are hashed, never truncated,
    so two long names never share a manager.
    """
    return shortened(f"{FIELD_MANAGER}/{name}", 128)


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select a RedisQueue's Redis pod (and find its PVC); immutable once created.

    ``managed-by`` keeps a Helm release of the same name in the same namespace (which would
    carry ``app.kubernetes.io/name: redis`` and ``instance: <name>`` too) out of the selector.
    """
    return {LABEL_NAME: "redis", LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGED_BY}


@dataclass(frozen=True, slots=True)
class QueueNames:
    """The names, labels, owner and endpoint of one RedisQueue and its objects."""

    namespace: str
    name: str
    uid: str = ""
    #: Service and StatefulSet of a provisioned Redis.
    workload: str = field(init=False)
    #: The password Secret the operator generates when ``spec.auth`` names none.
    generated_secret: str = field(init=False)
    #: Provision mode: the passwords of the operator's own Redis users (probe, admin).
    acl_secret: str = field(init=False)
    #: The data PersistentVolumeClaim (claim template ``data``, pod ordinal 0).
    data_claim: str = field(init=False)
    #: The field manager that writes the contract into app Secrets.
    inject_manager: str = field(init=False)
    #: The ``redisqueue.dev/redisqueue`` label value on the app Secrets it writes.
    source_label: str = field(init=False)

    def __post_init__(self) -> None:
        workload = f"{self.name}-redis"
        object.__setattr__(self, "workload", workload)
        object.__setattr__(self, "generated_secret", f"{workload}-auth")
        object.__setattr__(self, "acl_secret", f"{workload}-acl")
        object.__setattr__(self, "data_claim", f"{DATA_VOLUME}-{workload}-0")
        object.__setattr__(self, "inject_manager", inject_field_manager(self.name))
        object.__setattr__(self, "source_label", source_label_value(self.name))

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> QueueNames:
        """The names of the RedisQueue in ``body`` (as the API server returned it)."""
        meta = body["metadata"]
        return cls(str(meta["namespace"]), str(meta["name"]), str(meta.get("uid") or ""))

    @property
    def ref(self) -> QueueRef:
        return QueueRef(self.namespace, self.name)

    @property
    def selector_labels(self) -> dict[str, str]:
        return selector_labels(self.name)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every object the operator creates for this RedisQueue."""
        return {**self.selector_labels, LABEL_PART_OF: "redisqueue", LABEL_COMPONENT: "queue"}

    @property
    def owner(self) -> Owner:
        """This RedisQueue as the owner of the objects made for it."""
        return Owner(apiVersion=API_VERSION, kind=KIND, name=self.name, uid=self.uid)

    @property
    def involved(self) -> dict[str, Any]:
        """Who the object is, for Events: only its identity, not its body."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
        }

    @property
    def service_host(self) -> str:
        """The provisioned Redis's Service; ``<svc>.<ns>.svc`` resolves whatever the
        cluster domain."""
        return f"{self.workload}.{self.namespace}.svc"

    def endpoint(self, spec: RedisQueueSpec) -> tuple[str, int]:
        """Host and port apps connect to, in either mode."""
        if spec.redis.external is not None:
            return spec.redis.external.host, spec.redis.external.port
        return self.service_host, REDIS_PORT

    def endpoint_text(self, spec: RedisQueueSpec) -> str:
        """``host:port`` (IPv6 in brackets) as status and messages show it."""
        return format_endpoint(*self.endpoint(spec))

    def password_ref(self, spec: RedisQueueSpec) -> SecretKeyRef | None:
        """The Secret key that holds the password, or None for an external Redis without one.

        For provision this is ``spec.auth.secretRef`` when set, else the generated Secret.
        """
        if spec.auth is not None and spec.auth.secret_ref is not None:
            return SecretKeyRef(spec.auth.secret_ref.name, spec.auth.secret_ref.key)
        if spec.mode == "provision":
            return SecretKeyRef(self.generated_secret, DEFAULT_AUTH_SECRET_KEY)
        return None

    def ca_ref(self, spec: RedisQueueSpec) -> SecretKeyRef | None:
        """The Secret key that holds a private CA for TLS, when the spec names one."""
        external = spec.redis.external
        if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
            return SecretKeyRef(external.tls.ca_secret_ref.name, external.tls.ca_secret_ref.key)
        return None

    def read_secrets(self, spec: RedisQueueSpec) -> frozenset[str]:
        """The Secrets (same namespace) whose contents the contract of ``spec`` and its
        probe depend on."""
        refs = (self.password_ref(spec), self.ca_ref(spec))
        names = {ref.name for ref in refs if ref is not None}
        if spec.mode == "provision":
            names.add(self.acl_secret)
        return frozenset(names)
