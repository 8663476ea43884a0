"""Every name the operator derives from one RedisQueue, computed once.

For a RedisQueue ``<name>`` in namespace ``<ns>``:

- Service and StatefulSet ``<name>-redis`` (apps reach ``<name>-redis.<ns>.svc:6379``),
- generated password Secret ``<name>-redis-auth`` (key ``password``),
- data volume claim ``data-<name>-redis-0`` (from the StatefulSet's claim template),
- the label value and the field manager it writes app Secrets with.

A reconcile builds one :class:`QueueNames` and every step reads it, instead of asking
helpers for one name at a time. Pure: no I/O.
"""

from __future__ import annotations

import copy
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


@dataclass(frozen=True)
class QueueNames:
    """The names, labels and owner of one RedisQueue and its objects and, once a spec is
    known (:meth:`with_spec`), its endpoint and the Secrets its contract reads."""

    namespace: str
    name: str
    uid: str = ""
    ref: QueueRef = field(init=False)
    #: Service and StatefulSet of a provisioned Redis.
    workload: str = field(init=False)
    #: The password Secret the operator generates when ``spec.auth`` names none.
    generated_secret: str = field(init=False)
    #: The data PersistentVolumeClaim (claim template ``data``, pod ordinal 0).
    data_claim: str = field(init=False)
    #: The field manager that writes the contract into app Secrets.
    inject_manager: str = field(init=False)
    #: The ``redisqueue.dev/redisqueue`` label value on the app Secrets it writes.
    source_label: str = field(init=False)
    #: Labels that select the Redis pod (and find its PVC); immutable once created.
    selector_labels: Mapping[str, str] = field(init=False)
    #: Labels of every object the operator creates for this RedisQueue.
    labels: Mapping[str, str] = field(init=False)
    #: This RedisQueue as the owner of the objects made for it.
    owner: Owner = field(init=False)
    #: Who the object is, for Events: only its identity, not its body.
    involved: Mapping[str, Any] = field(init=False)
    # From the spec (see with_spec):
    #: Host and port apps connect to, in either mode; ``host:port`` as status shows it.
    endpoint: tuple[str, int] | None = field(init=False, default=None)
    endpoint_text: str | None = field(init=False, default=None)
    #: The Secret key that holds the password (None: an external Redis without one).
    password: SecretKeyRef | None = field(init=False, default=None)
    #: The Secret key that holds a private CA for TLS, when the spec names one.
    ca: SecretKeyRef | None = field(init=False, default=None)
    #: The Secrets (same namespace) whose contents the contract depends on.
    reads: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        workload = f"{self.name}-redis"
        selector = selector_labels(self.name)
        for key, value in {
            "ref": QueueRef(self.namespace, self.name),
            "workload": workload,
            "generated_secret": f"{workload}-auth",
            "data_claim": f"{DATA_VOLUME}-{workload}-0",
            "inject_manager": inject_field_manager(self.name),
            "source_label": source_label_value(self.name),
            "selector_labels": selector,
            "labels": {**selector, LABEL_PART_OF: "redisqueue", LABEL_COMPONENT: "queue"},
            "owner": Owner(apiVersion=API_VERSION, kind=KIND, name=self.name, uid=self.uid),
            "involved": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
            },
        }.items():
            object.__setattr__(self, key, value)

    @classmethod
    def of(cls, body: Mapping[str, Any], spec: RedisQueueSpec | None = None) -> QueueNames:
        """The names of the RedisQueue in ``body`` (as the API server returned it)."""
        meta = body["metadata"]
        names = cls(str(meta["namespace"]), str(meta["name"]), str(meta.get("uid") or ""))
        return names if spec is None else names.with_spec(spec)

    @property
    def service_host(self) -> str:
        """The provisioned Redis's Service; ``<svc>.<ns>.svc`` resolves whatever the
        cluster domain."""
        return f"{self.workload}.{self.namespace}.svc"

    def with_spec(self, spec: RedisQueueSpec) -> QueueNames:
        """These names with what ``spec`` decides: the endpoint and the Secrets read.

        For provision the password is ``spec.auth.secretRef`` when set, else the generated
        Secret; the endpoint is the Service's.
        """
        external = spec.redis.external
        endpoint = (
            (external.host, external.port)
            if external is not None
            else (self.service_host, REDIS_PORT)
        )
        if spec.auth is not None and spec.auth.secret_ref is not None:
            password: SecretKeyRef | None = SecretKeyRef(
                spec.auth.secret_ref.name, spec.auth.secret_ref.key
            )
        elif external is None:
            password = SecretKeyRef(self.generated_secret, DEFAULT_AUTH_SECRET_KEY)
        else:
            password = None
        ca = None
        if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
            ca = SecretKeyRef(external.tls.ca_secret_ref.name, external.tls.ca_secret_ref.key)
        named = copy.copy(self)
        for key, value in {
            "endpoint": endpoint,
            "endpoint_text": format_endpoint(*endpoint),
            "password": password,
            "ca": ca,
            "reads": frozenset(ref.name for ref in (password, ca) if ref is not None),
        }.items():
            object.__setattr__(named, key, value)
        return named
