"""Provision mode: the Redis StatefulSet, its Service, NetworkPolicy and password Secret, and
their end.

Nothing foreign is touched. Each object the operator writes for a RedisQueue is proven to be
that RedisQueue's before it is changed or deleted: a controller ownerReference to its uid
(Service, StatefulSet, NetworkPolicy; the generated Secret under Delete), or its uid stamped
in an annotation (objects that outlive it: the generated Secret under Retain, the data
claim). An object of the same name without that proof is left as it is and the RedisQueue's
status names it (``OwnershipConflict``). Objects that do not exist yet are created by a
server-side apply that does not force, so one that appeared meanwhile conflicts instead of
being taken over; objects that are the RedisQueue's are applied with their uid as a
precondition. Retained data of an earlier RedisQueue of the same name (deletionPolicy
Retain) is reused only when the spec asks (``adoptRetained``, which admission grants only to
authors who may read it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..api.kube import Kube, KubeError
from ..api.paths import object_path
from ..objects.acl import (
    ADMIN_PASSWORD_KEY,
    PROBE_PASSWORD_KEY,
    build_acl_secret,
)
from ..objects.meta import controlled_by, labelled_for, stamped_for
from ..objects.network import OperatorPeer, build_network_policy
from ..objects.workload import (
    build_auth_secret,
    build_pvc_resize_patch,
    build_service,
    build_statefulset,
    claim_template_owner,
    claim_template_size,
    generate_password,
)
from ..readside.contracts import decode_secret_value
from ..readside.secrets import SecretStore
from ..resource.errors import SetupError
from ..resource.identity import ANNOTATION_OWNER_UID, FIELD_MANAGER, JSON
from ..resource.names import QueueNames
from ..resource.quantities import parse_quantity
from ..resource.spec import RedisQueueSpec
from ..resource.status import ConditionValue, Reason
from ..telemetry.logs import about

log = logging.getLogger("redisqueue.operator")


def _conflict(kind: str, names: QueueNames, name: str, detail: str) -> SetupError:
    return SetupError(
        Reason.OWNERSHIP_CONFLICT,
        f"{kind} {names.namespace}/{name} {detail}; the operator changes and deletes only "
        "objects it made for this RedisQueue",
    )


async def ensure_provisioned(
    kube: Kube,
    names: QueueNames,
    spec: RedisQueueSpec,
    secrets: SecretStore,
    peer: OperatorPeer | None = None,
) -> None:
    """Apply the password Secrets, NetworkPolicy, Service and StatefulSet; grow the volume.

    Every object is read and checked first: :class:`SetupError` (``OwnershipConflict``) is
    raised before anything is written over an object that is not this RedisQueue's. The
    Secrets read or made here are the ones the contract and the probe are then resolved from
    (``secrets`` keeps them)."""
    provision = spec.redis.provision
    assert provision is not None
    ns, workload = names.namespace, names.workload
    live: dict[str, JSON | None] = {}
    for kind, api_version, name in (
        ("StatefulSet", "apps/v1", workload),
        ("Service", "v1", workload),
        ("NetworkPolicy", "networking.k8s.io/v1", workload),
        ("Secret", "v1", names.acl_secret),
    ):
        found = await kube.get(object_path(api_version, kind, ns, name))
        if found is not None and not controlled_by(found, names.uid):
            raise _conflict(kind, names, name, "exists and is not controlled by it")
        live[kind] = found
    statefulset = live["StatefulSet"]
    adopt_claim = None if statefulset is not None else await _check_claim(kube, names, spec)
    if spec.auth is None or spec.auth.secret_ref is None:
        secrets.remember(
            await _ensure_generated_password(kube, names, spec, running=statefulset is not None)
        )
    secrets.remember(await _ensure_acl_secret(kube, names, spec, live["Secret"]))
    if adopt_claim is not None:
        await _adopt_claim(kube, names, adopt_claim)
    network_policy = live["NetworkPolicy"]
    if provision.network_policy.enabled:
        wanted_policy = build_network_policy(names, spec, peer or OperatorPeer())
        await _write(kube, wanted_policy, network_policy)
    elif network_policy is not None:
        await kube.delete(
            object_path("networking.k8s.io/v1", "NetworkPolicy", ns, workload),
            uid=network_policy["metadata"]["uid"],
        )
    await _write(kube, build_service(names, spec), live["Service"])
    claim_size: str | None = None
    claim_owner: str | None = names.uid
    if statefulset is not None:
        claim_size = claim_template_size(statefulset)
        claim_owner = claim_template_owner(statefulset)
    body = build_statefulset(names, spec, claim_size=claim_size, claim_owner=claim_owner)
    await _write(kube, body, statefulset)
    wanted = provision.storage.size
    if claim_size is not None and parse_quantity(wanted) > parse_quantity(claim_size):
        pvc = object_path("v1", "PersistentVolumeClaim", ns, names.data_claim)
        try:
            await kube.merge_patch(pvc, build_pvc_resize_patch(wanted))
        except KubeError as exc:
            log.warning(
                "%s: could not grow the data volume: %s",
                names.ref,
                exc.message,
                extra=about(ns, names.name),
            )


async def _write(kube: Kube, body: Mapping[str, Any], live: Mapping[str, Any] | None) -> JSON:
    """Create ``body`` (no force: an object that appeared meanwhile conflicts), or apply it
    over ``live`` (already proven the RedisQueue's) with its uid as a precondition."""
    kind, name = body["kind"], body["metadata"]["name"]
    obj = dict(body)
    if live is not None:
        obj["metadata"] = {**body["metadata"], "uid": live["metadata"]["uid"]}
    try:
        return await kube.apply(obj, field_manager=FIELD_MANAGER, force=live is not None)
    except KubeError as exc:
        if exc.conflict or (exc.status == 422 and "uid" in exc.message):
            raise SetupError(
                Reason.OWNERSHIP_CONFLICT,
                f"{kind} {body['metadata']['namespace']}/{name} was created or replaced by "
                f"someone else meanwhile ({exc.message}); the operator does not take it over",
            ) from None
        raise SetupError(
            Reason.APPLY_FAILED, f"could not apply {kind} {name}: {exc.message}"
        ) from None


async def _check_claim(kube: Kube, names: QueueNames, spec: RedisQueueSpec) -> JSON | None:
    """Before a new StatefulSet: the data claim it will mount must not be someone else's.

    The StatefulSet controller mounts whatever claim has the template's name, so a claim that
    exists already is checked here: one stamped with this RedisQueue's uid is its own; one the
    operator retained for an earlier RedisQueue of this name is reused only with
    ``adoptRetained`` (returned, to be stamped with the new uid); anything else is refused."""
    path = object_path("v1", "PersistentVolumeClaim", names.namespace, names.data_claim)
    claim = await kube.get(path)
    if claim is None or stamped_for(claim) == names.uid:
        return None
    provision = spec.redis.provision
    assert provision is not None
    if not labelled_for(claim, names.name):
        raise _conflict(
            "PersistentVolumeClaim",
            names,
            names.data_claim,
            "exists and was not made by the operator for a RedisQueue of this name",
        )
    if not provision.adopt_retained:
        raise _conflict(
            "PersistentVolumeClaim",
            names,
            names.data_claim,
            "holds the data of an earlier RedisQueue of this name (deletionPolicy Retain); "
            "set spec.redis.provision.adoptRetained: true to reuse it, or delete it",
        )
    return claim


async def _adopt_claim(kube: Kube, names: QueueNames, claim: JSON) -> None:
    """Stamp a retained data claim with the uid of the RedisQueue that adopts it."""
    path = object_path("v1", "PersistentVolumeClaim", names.namespace, names.data_claim)
    patch = {
        "metadata": {
            "uid": claim["metadata"]["uid"],
            "annotations": {ANNOTATION_OWNER_UID: names.uid},
        }
    }
    await kube.merge_patch(path, patch)
    log.info(
        "%s: adopted the retained data volume %s",
        names.ref,
        names.data_claim,
        extra=about(names.namespace, names.name),
    )


async def _ensure_generated_password(
    kube: Kube, names: QueueNames, spec: RedisQueueSpec, *, running: bool
) -> JSON:
    """The generated password Secret: created once, stamped with the RedisQueue's uid, its
    ownership following deletionPolicy. ``running``: this RedisQueue's StatefulSet exists
    (a Secret from before Secrets were stamped is then the one it runs with)."""
    namespace, name = names.namespace, names.name
    owned = spec.deletion_policy == "Delete"
    secret = await kube.get(object_path("v1", "Secret", namespace, names.generated_secret))
    if secret is None:
        fresh = build_auth_secret(names, generate_password(), owned=owned)
        secret = await _write(kube, fresh, None)
        log.info(
            "%s: generated the password Secret %s",
            names.ref,
            names.generated_secret,
            extra=about(namespace, name),
        )
        return secret
    stamp = stamped_for(secret)
    mine = stamp == names.uid or controlled_by(secret, names.uid)
    if not mine:
        if not labelled_for(secret, name):
            # Someone else's Secret under the generated name: using it would hand its value to
            # the StatefulSet and to every injected Secret, whatever its author may read.
            raise _conflict(
                "Secret",
                names,
                names.generated_secret,
                "exists and was not generated by the operator for this RedisQueue; name a "
                "password Secret in spec.auth.secretRef or rename the RedisQueue",
            )
        provision = spec.redis.provision
        legacy = stamp is None and running  # made before Secrets were stamped, for this one
        if not legacy and not (provision is not None and provision.adopt_retained):
            raise _conflict(
                "Secret",
                names,
                names.generated_secret,
                "holds the password of an earlier RedisQueue of this name (deletionPolicy "
                "Retain); set spec.redis.provision.adoptRetained: true to reuse it, or delete it",
            )
    stale_owner = bool(secret["metadata"].get("ownerReferences")) != owned
    if mine and not stale_owner:
        return secret
    # Adopted, stamped for the first time, or deletionPolicy changed: re-state the stamp and
    # the ownership, keeping the password.
    password = decode_secret_value(secret, "password")
    if password is None:
        raise SetupError(
            Reason.SECRET_VALUE_INVALID,
            f"Secret {namespace}/{names.generated_secret} has no valid key 'password'",
        )
    return await _write(kube, build_auth_secret(names, password, owned=owned), secret)


async def _ensure_acl_secret(
    kube: Kube, names: QueueNames, spec: RedisQueueSpec, secret: JSON | None
) -> JSON:
    """The Secret of the operator's own Redis users (``secret`` is the live one, already
    proven controlled by this RedisQueue): created once with random passwords, which are
    never changed; its probe key rules follow ``spec.queues``."""
    if secret is None:
        created = build_acl_secret(
            names,
            admin_password=generate_password(),
            probe_password=generate_password(),
            queues=spec.queues,
        )
        return await _write(kube, created, None)
    wanted = build_acl_secret(
        names,
        admin_password=decode_secret_value(secret, ADMIN_PASSWORD_KEY) or generate_password(),
        probe_password=decode_secret_value(secret, PROBE_PASSWORD_KEY) or generate_password(),
        queues=spec.queues,
    )
    if (secret.get("data") or {}) != wanted["data"]:
        secret = await _write(kube, wanted, secret)
    return secret


async def statefulset_readiness(kube: Kube, names: QueueNames) -> ConditionValue:
    """Whether the Redis pod of a provisioned RedisQueue is ready, as a condition value."""
    statefulset = names.workload
    try:
        live = await kube.get(object_path("apps/v1", "StatefulSet", names.namespace, statefulset))
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


async def delete_data(kube: Kube, names: QueueNames, spec: RedisQueueSpec) -> None:
    """deletionPolicy Delete: remove the data volume and the generated password Secret, each
    only when it is proven this RedisQueue's (stamped with its uid, or controlled by it). The
    Secret of the operator's users is controlled by the RedisQueue and goes with it."""
    namespace = names.namespace
    targets = [("PersistentVolumeClaim", names.data_claim)]
    if spec.auth is None or spec.auth.secret_ref is None:
        targets.append(("Secret", names.generated_secret))
    for kind, name in targets:
        path = object_path("v1", kind, namespace, name)
        live = await kube.get(path)
        if live is None:
            continue
        if stamped_for(live) != names.uid and not controlled_by(live, names.uid):
            log.warning(
                "%s: %s %s is not this RedisQueue's; left as it is",
                names.ref,
                kind,
                name,
                extra=about(namespace, names.name),
            )
            continue
        try:
            await kube.delete(path, uid=live["metadata"]["uid"])
        except KubeError as exc:
            if not exc.conflict:  # replaced meanwhile: not this RedisQueue's any more
                raise
