"""The connection contract of a RedisQueue and the app-Secret bodies that carry it. Pure.

The operator writes the contract into app Secrets by server-side apply with one field
manager per RedisQueue (:attr:`QueueNames.inject_manager`): it owns exactly the contract
keys it wrote, never the app's other keys.
"""

from __future__ import annotations

import base64

from redisqueue.contract import DEFAULT_DB, ConnectionContract

from ..resource.identity import JSON, LABEL_REDISQUEUE
from ..resource.names import Owner, QueueNames
from ..resource.spec import RedisQueueSpec, resolved_pool_max
from .meta import owner_reference


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

    ``host``/``port`` come from :meth:`QueueNames.endpoint`; ``password`` and ``ca_pem`` are the
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
    source: QueueNames | None = None,
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
    a new Secret defaults to Opaque, and an existing Secret's type is immutable (a new
    RedisQueue's first apply adds ``type: Opaque``, so that the API server refuses it for a
    Secret of any other type).

    ``source`` (the RedisQueue's names) gives the label ``redisqueue.dev/redisqueue``, which
    lets the operator find its Secrets and notice two RedisQueues writing into one Secret.
    ``owner`` adds a non-controller ownerReference; pass it only when the operator created the
    Secret, so that it is garbage-collected with the RedisQueue.
    """
    metadata: JSON = {"name": name, "namespace": namespace}
    if source is not None:
        metadata["labels"] = {LABEL_REDISQUEUE: source.source_label}
    if owner is not None:
        metadata["ownerReferences"] = [owner_reference(owner, controller=False)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "data": {
            key: base64.b64encode(value.encode()).decode("ascii")
            for key, value in contract.to_env().items()
        },
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
