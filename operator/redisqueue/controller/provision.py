"""Provision mode: the Redis StatefulSet, its Service and password Secret, and their end.

Every object is server-side applied with the operator's field manager and owned by the
RedisQueue, so the garbage collector removes them with it; the data volume and the
generated password follow ``deletionPolicy``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .builders import (
    FIELD_MANAGER,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    auth_secret_key_ref,
    auth_secret_name,
    build_auth_secret,
    build_pvc_resize_patch,
    build_service,
    build_statefulset,
    claim_template_size,
    data_pvc_name,
    generate_password,
    owner_of,
    resource_name,
)
from .credentials import decode_secret_value, read_secret
from .errors import SetupError
from .kube import Kube, KubeError, object_path
from .logs import about
from .spec import JSON, RedisQueueSpec, parse_quantity
from .state import ConditionValue, Reason

log = logging.getLogger("redisqueue.operator")


async def ensure_provisioned(
    kube: Kube, body: Mapping[str, Any], spec: RedisQueueSpec
) -> dict[str, JSON]:
    """Apply the password Secret, Service and StatefulSet; grow the volume when asked.

    Returns the auth Secret it read, by name, so the contract need not read it again.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    secrets_read: dict[str, JSON] = {}
    owner = owner_of(body)
    auth_revision: str | None = None
    if spec.auth is None or spec.auth.secret_ref is None:
        secret = await _ensure_generated_password(kube, body, spec)
        secrets_read[auth_secret_name(name)] = secret
        auth_revision = str(secret["metadata"].get("resourceVersion", ""))
    else:
        ref = auth_secret_key_ref(name, spec)
        if ref is not None:
            secret = await read_secret(kube, namespace, ref[0], "password")
            secrets_read[ref[0]] = secret
            auth_revision = str(secret["metadata"].get("resourceVersion", ""))
    await _apply(kube, build_service(name, namespace, spec, owner))
    live = await kube.get(object_path("apps/v1", "StatefulSet", namespace, resource_name(name)))
    claim_size = claim_template_size(live) if live else None
    await _apply(
        kube,
        build_statefulset(
            name, namespace, spec, owner, claim_size=claim_size, auth_revision=auth_revision
        ),
    )
    provision = spec.redis.provision
    assert provision is not None
    wanted = provision.storage.size
    if claim_size is not None and parse_quantity(wanted) > parse_quantity(claim_size):
        pvc = object_path("v1", "PersistentVolumeClaim", namespace, data_pvc_name(name))
        try:
            await kube.merge_patch(pvc, build_pvc_resize_patch(wanted))
        except KubeError as exc:
            log.warning(
                "%s/%s: could not grow the data volume: %s",
                namespace,
                name,
                exc.message,
                extra=about(namespace, name),
            )
    return secrets_read


async def _ensure_generated_password(
    kube: Kube, body: Mapping[str, Any], spec: RedisQueueSpec
) -> JSON:
    """The generated password Secret: created once, its ownership following deletionPolicy."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    owner = owner_of(body) if spec.deletion_policy == "Delete" else None
    secret = await kube.get(object_path("v1", "Secret", namespace, auth_secret_name(name)))
    if secret is None:
        secret = await kube.create(build_auth_secret(name, namespace, generate_password(), owner))
        log.info(
            "%s/%s: generated the password Secret %s",
            namespace,
            name,
            auth_secret_name(name),
            extra=about(namespace, name),
        )
        return secret
    owned = bool(secret["metadata"].get("ownerReferences"))
    if owned != (owner is not None):
        # deletionPolicy changed: re-state the ownership, keeping the password.
        password = decode_secret_value(secret, "password")
        if password is not None:
            secret = await kube.apply(
                build_auth_secret(name, namespace, password, owner),
                field_manager=FIELD_MANAGER,
                force=True,
            )
    return secret


async def _apply(kube: Kube, obj: Mapping[str, Any]) -> None:
    try:
        await kube.apply(obj, field_manager=FIELD_MANAGER, force=True)
    except KubeError as exc:
        raise SetupError(
            Reason.APPLY_FAILED,
            f"could not apply {obj['kind']} {obj['metadata']['name']}: {exc.message}",
        ) from None


async def statefulset_readiness(kube: Kube, namespace: str, name: str) -> ConditionValue:
    """Whether the Redis pod of a provisioned RedisQueue is ready, as a condition value."""
    statefulset = resource_name(name)
    try:
        live = await kube.get(object_path("apps/v1", "StatefulSet", namespace, statefulset))
    except KubeError as exc:
        return ConditionValue("Unknown", Reason.STATEFULSET_UNKNOWN, exc.message)
    if live is None:
        return ConditionValue(
            "False", Reason.STATEFULSET_MISSING, f"StatefulSet {statefulset} does not exist yet"
        )
    ready = int((live.get("status") or {}).get("readyReplicas") or 0)
    if ready < 1:
        return ConditionValue(
            "False",
            Reason.PROVISIONING,
            f"waiting for the Redis pod of StatefulSet {statefulset} to become ready",
        )
    return ConditionValue("True", Reason.STATEFULSET_READY, "the Redis pod is ready")


async def delete_data(kube: Kube, namespace: str, name: str, spec: RedisQueueSpec) -> None:
    """deletionPolicy Delete: remove the data volume and the generated password Secret."""
    selector = f"{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}"
    claims = object_path("v1", "PersistentVolumeClaim", namespace)
    for pvc in await kube.list(claims, label_selector=selector):
        await kube.delete(
            object_path("v1", "PersistentVolumeClaim", namespace, pvc["metadata"]["name"])
        )
    if spec.auth is None or spec.auth.secret_ref is None:
        await kube.delete(object_path("v1", "Secret", namespace, auth_secret_name(name)))
