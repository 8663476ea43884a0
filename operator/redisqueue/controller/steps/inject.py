"""Writing the connection contract into app Secrets, and taking it out again.

Server-side apply with one field manager per RedisQueue: the operator owns exactly the
contract keys it wrote, never the app's other keys, and two RedisQueues naming one Secret
conflict instead of overwriting each other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redisqueue.contract import CONTRACT_KEYS, ConnectionContract

from ..api.kube import Kube, KubeError
from ..api.paths import object_path
from ..objects.appsecret import build_injected_secret_apply, build_injected_secret_release
from ..readside.secrets import refuse_special
from ..resource.errors import SetupError
from ..resource.identity import JSON, LABEL_REDISQUEUE
from ..resource.names import QueueNames
from ..resource.spec import RedisQueueSpec
from ..resource.status import ConditionValue, Reason
from ..telemetry.logs import about

log = logging.getLogger("redisqueue.operator")


async def inject_contract(
    kube: Kube,
    names: QueueNames,
    spec: RedisQueueSpec,
    contract: ConnectionContract,
    *,
    first: bool = False,
    changed: list[str] | None = None,
) -> ConditionValue:
    """Apply the contract to every Secret in ``spec.inject``; drop it from Secrets that left.

    ``first``: the first injection of a new RedisQueue. It has written nowhere yet, so no
    Secret can hold a contract it dropped (no search for them), and its targets are applied
    without being read first (:func:`_apply_unread`).
    ``changed`` collects the Secrets whose contract keys the apply changed (apps that read
    them only at start need a restart).

    Returns the Injected condition; raises :class:`SetupError` carrying it on failure.
    """
    namespace = names.namespace
    targets = [t.secret_name for t in spec.inject]
    if not targets:
        if not first:
            await release_dropped_secrets(kube, names, set())
        return ConditionValue("True", Reason.NO_TARGETS, "spec.inject names no Secret")
    manager = names.inject_manager
    for secret_name in targets:
        body = build_injected_secret_apply(secret_name, namespace, contract, source=names)
        if first and await _apply_unread(kube, body, manager):
            if changed is not None:
                changed.append(secret_name)  # as for a Secret without the contract
            continue
        live = await _refuse_special_target(kube, namespace, secret_name)
        if already_applied(live, body, manager):
            continue  # e.g. after a restart: nothing to write
        try:
            await kube.apply(body, field_manager=manager)
        except KubeError as exc:
            failed = _failure(secret_name, exc)
            raise SetupError(failed.reason, failed.message) from None
        if changed is not None and contract_changed(live, body):
            changed.append(secret_name)
    if not first:
        await release_dropped_secrets(kube, names, set(targets))
    plural = "s " if len(targets) > 1 else " "
    return ConditionValue(
        "True",
        Reason.INJECTED,
        "connection contract written to Secret" + plural + ", ".join(targets),
    )


async def _apply_unread(kube: Kube, body: JSON, manager: str) -> bool:
    """Apply ``body`` as an Opaque Secret without reading the target first: a new
    RedisQueue's targets are mostly new Secrets, and the read would cost a request each.

    A Secret's type is immutable and this apply names it, so the API server itself refuses
    to turn a service-account-token, TLS, docker-config or bootstrap Secret into one the
    operator writes: a conflict on ``.type`` when some manager set it, else an invalid
    update. Any conflict or invalid answer returns False, and the caller reads the Secret
    and applies the usual way, which tells why by name (or goes through, for a Secret of
    a custom type). Other failures are reported as they are."""
    try:
        await kube.apply({**body, "type": "Opaque"}, field_manager=manager)
    except KubeError as exc:
        if exc.status in (409, 422):
            return False
        failed = _failure(body["metadata"]["name"], exc)
        raise SetupError(failed.reason, failed.message) from None
    return True


async def _refuse_special_target(kube: Kube, namespace: str, secret_name: str) -> JSON | None:
    """Never write into a service-account-token, TLS, docker-config or bootstrap Secret.

    Returns the Secret as it is (None if there is none yet)."""
    try:
        live = await kube.get(object_path("v1", "Secret", namespace, secret_name))
    except KubeError as exc:
        failed = _failure(secret_name, exc)
        raise SetupError(failed.reason, failed.message) from None
    if live is not None:
        refuse_special(live, namespace, secret_name, "spec.inject")
    return live


def contract_changed(live: Mapping[str, Any] | None, body: Mapping[str, Any]) -> bool:
    """Whether applying ``body`` changes a contract key of ``live`` (adds, alters or drops one)."""
    data, wanted = (live or {}).get("data") or {}, body.get("data") or {}
    if any(data.get(key) != value for key, value in wanted.items()):
        return True
    return any(key in data and key not in wanted for key in CONTRACT_KEYS)


def already_applied(live: Mapping[str, Any] | None, body: Mapping[str, Any], manager: str) -> bool:
    """Whether applying ``body`` as ``manager`` would change nothing in ``live``.

    True only when every key and label of ``body`` has the same value in ``live`` and is
    owned by ``manager`` through an earlier apply, and ``live`` holds no contract key that
    ``body`` no longer lists (the apply would remove one ``manager`` owns). When in doubt,
    False: the apply itself is always right, this only spares a request.
    """
    if live is None or body["metadata"].get("ownerReferences"):
        return False
    data, wanted = live.get("data") or {}, body.get("data") or {}
    if any(data.get(key) != value for key, value in wanted.items()):
        return False
    if any(key in data and key not in wanted for key in CONTRACT_KEYS):
        return False
    labels = live["metadata"].get("labels") or {}
    wanted_labels = body["metadata"].get("labels") or {}
    if any(labels.get(key) != value for key, value in wanted_labels.items()):
        return False
    owned = next(
        (
            entry.get("fieldsV1") or {}
            for entry in live["metadata"].get("managedFields") or []
            if entry.get("manager") == manager and entry.get("operation") == "Apply"
        ),
        None,
    )
    if owned is None:
        return False
    owned_data = owned.get("f:data") or {}
    owned_labels = (owned.get("f:metadata") or {}).get("f:labels") or {}
    return all(f"f:{key}" in owned_data for key in wanted) and all(
        f"f:{key}" in owned_labels for key in wanted_labels
    )


def _failure(secret_name: str, exc: KubeError) -> ConditionValue:
    if exc.conflict:
        return ConditionValue(
            "False",
            Reason.INJECT_CONFLICT,
            f"Secret {secret_name} already has contract keys written "
            f"by someone else ({_conflict_owner(exc.message)}); "
            "remove them or pick another Secret",
        )
    if exc.forbidden:
        return ConditionValue(
            "False",
            Reason.INJECT_FORBIDDEN,
            f"not allowed to write Secret {secret_name}: {exc.message}",
        )
    return ConditionValue(
        "False", Reason.INJECT_FAILED, f"could not write Secret {secret_name}: {exc.message}"
    )


def _conflict_owner(message: str) -> str:
    # "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.REDIS_URL"
    marker = 'conflict with "'
    if marker in message:
        return "field manager " + message.split(marker, 1)[1].split('"', 1)[0]
    return "another field manager"


async def release_dropped_secrets(kube: Kube, names: QueueNames, keep: set[str]) -> None:
    """Remove the contract from Secrets this RedisQueue wrote but no longer names."""
    namespace, name = names.namespace, names.name
    selector = f"{LABEL_REDISQUEUE}={names.source_label}"
    try:
        # Names are all it needs: the data of Secrets labelled (by anyone) never crosses over.
        labelled = await kube.list(
            object_path("v1", "Secret", namespace), label_selector=selector, metadata_only=True
        )
    except KubeError as exc:
        log.warning(
            "%s/%s: could not list injected Secrets: %s",
            namespace,
            name,
            exc.message,
            extra=about(namespace, name),
        )
        return
    for secret in labelled:
        secret_name = secret["metadata"]["name"]
        if secret_name not in keep:
            log.info(
                "%s/%s: Secret %s left spec.inject; removing the contract from it",
                namespace,
                name,
                secret_name,
                extra=about(namespace, name),
            )
            await release(kube, namespace, secret_name, names.inject_manager)


async def release_all(kube: Kube, names: QueueNames, spec: RedisQueueSpec) -> None:
    """Remove this RedisQueue's contract from every Secret it names (on deletion)."""
    for target in spec.inject:
        await release(kube, names.namespace, target.secret_name, names.inject_manager)


async def release(kube: Kube, namespace: str, secret_name: str, manager: str) -> None:
    """Take ``manager``'s contract keys out of a Secret; delete it if only they were there."""
    path = object_path("v1", "Secret", namespace, secret_name)
    live = await kube.get(path)
    if live is None:
        return
    managers = {m.get("manager") for m in live["metadata"].get("managedFields") or []}
    if managers <= {manager}:
        # The operator created this Secret and nobody else wrote to it: remove it whole.
        await kube.delete(path)
        return
    await kube.apply(build_injected_secret_release(secret_name, namespace), field_manager=manager)
