"""What the operator does for one RedisQueue: make or find the Redis, inject, probe, report.

The kopf handlers (:mod:`redisqueue.handlers`) call into :class:`Reconciler`:

* ``reconcile(body)`` on create, update and resume: validates the spec, provisions the
  StatefulSet/Service/Secret (provision mode), reads the credentials, server-side applies
  the contract into the app Secrets, swaps in a probe for the new contract and writes status;
* ``tick(body)`` from the per-resource daemon, every ``healthCheck.intervalSeconds``:
  re-reads the credentials (a rotated password is re-injected within one interval), PINGs,
  and writes status when something changed (at least every ``STATUS_REFRESH_SECONDS``);
* ``finalize(body)`` on delete: stops probing and removes exactly what it wrote.

Status is the truth about the last PING and the last write, with ``Ready``, ``Reachable``
and ``Injected`` conditions; an event is posted on every change of ``Ready``, not per probe.
Nothing written anywhere carries a credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from . import metrics
from .builders import (
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_REDISQUEUE,
    MANAGED_BY,
    auth_secret_key_ref,
    auth_secret_name,
    build_auth_secret,
    build_contract,
    build_injected_secret_apply,
    build_injected_secret_release,
    build_pvc_resize_patch,
    build_service,
    build_statefulset,
    claim_template_size,
    data_pvc_name,
    endpoint_for,
    generate_password,
    owner_of,
    resource_name,
)
from .contract import ConnectionContract
from .health import ProbeRegistry
from .kube import GROUP, VERSION, Kube, KubeError, object_path
from .probe import Probe, ProbeResult, QueueKey
from .spec import (
    CONDITION_INJECTED,
    CONDITION_REACHABLE,
    CONDITION_READY,
    RedisQueueSpec,
    SpecError,
    parse_quantity,
    parse_spec,
    validate_resource_name,
)

log = logging.getLogger("redisqueue.operator")

#: Field manager for the objects the operator alone owns (StatefulSet, Service, auth Secret).
FIELD_MANAGER: Final = "redisqueue-operator"
#: Status is rewritten at least this often even when nothing changed, so lastProbeTime
#: stays honest without a write per probe.
STATUS_REFRESH_SECONDS: Final = 60.0
API_VERSION: Final = f"{GROUP}/{VERSION}"
JSON = dict[str, Any]

ConditionStatus = Literal["True", "False", "Unknown"]


class SetupError(Exception):
    """Something the user must fix (a missing Secret, a conflicting writer); retried."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class InvalidSpecError(Exception):
    """The spec cannot be acted on until it is changed; not retried."""


@dataclass(frozen=True, slots=True)
class Verdict:
    status: ConditionStatus
    reason: str
    message: str


@dataclass
class QueueState:
    """What the operator knows about one RedisQueue between handler calls."""

    namespace: str
    name: str
    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    spec: RedisQueueSpec | None = None
    generation: int | None = None
    contract: ConnectionContract | None = None
    injected: Verdict = Verdict("Unknown", "Pending", "not injected yet")
    setup: Verdict | None = None  # a blocking problem found while setting up
    provisioned: Verdict | None = None  # provision mode: the StatefulSet's readiness
    status: dict[str, Any] = field(default_factory=dict)  # as last written
    written_at: float = 0.0
    ticked_at: float = 0.0  # time.monotonic() of the daemon's last tick

    @property
    def ready(self) -> str | None:
        """The Ready condition's status as last written (None before the first write)."""
        condition = _condition(self.status, CONDITION_READY)
        return None if condition is None else str(condition.get("status"))

    @property
    def interval(self) -> float:
        return self.spec.health_check.interval_seconds if self.spec else 10.0


def inject_field_manager(name: str) -> str:
    """One field manager per RedisQueue, so two RedisQueues writing one Secret conflict."""
    return f"{FIELD_MANAGER}/{name}"[:128]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _rfc3339(moment: datetime.datetime | float) -> str:
    if isinstance(moment, float | int):
        moment = datetime.datetime.fromtimestamp(moment, datetime.UTC)
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(secret: Mapping[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


class Reconciler:
    """The operator's work for all RedisQueues, shared by the kopf handlers."""

    def __init__(self, kube: Kube, probes: ProbeRegistry, *, instance: str | None = None) -> None:
        self.kube = kube
        self.probes = probes
        self.states: dict[tuple[str, str], QueueState] = {}
        self.instance = instance or os.environ.get("HOSTNAME", "redisqueue-operator")

    def state_for(self, body: Mapping[str, Any]) -> QueueState:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        state = self.states.get(key)
        if state is None or state.uid != meta.get("uid"):
            state = QueueState(meta["namespace"], meta["name"], str(meta.get("uid", "")))
            state.status = dict(body.get("status") or {})
            self.states[key] = state
        return state

    # -- create / update / resume ----------------------------------------------------------
    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """Converge one RedisQueue. Raises SetupError (retry) or InvalidSpecError (stop)."""
        state = self.state_for(body)
        async with state.lock:
            state.generation = int(body["metadata"].get("generation") or 0)
            try:
                spec = parse_spec(body.get("spec"))
                validate_resource_name(state.name, spec)
            except SpecError as exc:
                state.spec = None
                state.setup = Verdict("False", "InvalidSpec", str(exc))
                await self._write_status(state, body, None, force=True)
                raise InvalidSpecError(str(exc)) from None
            state.spec = spec
            try:
                known = await self._provision(state, body, spec) if spec.mode == "provision" else {}
                contract = await self._contract(state, spec, known)
                await self._inject(state, spec, contract)
                state.setup = None
            except SetupError as exc:
                state.setup = Verdict("False", exc.reason, exc.message)
                await self._write_status(state, body, None, force=True)
                raise
            await self._ensure_probe(state, spec, contract)
        await self._probe_and_report(state, body, force=True)

    async def _provision(
        self, state: QueueState, body: Mapping[str, Any], spec: RedisQueueSpec
    ) -> dict[str, JSON]:
        """Apply the Service and StatefulSet; returns the auth Secret it read, by name."""
        ns, name = state.namespace, state.name
        known: dict[str, JSON] = {}
        owner = owner_of(body)
        generated = spec.auth is None or spec.auth.secret_ref is None
        auth_rv: str | None = None
        if generated:
            path = object_path("v1", "Secret", ns, auth_secret_name(name))
            secret = await self.kube.get(path)
            delete_with_owner = spec.deletion_policy == "Delete"
            if secret is None:
                secret = await self.kube.create(
                    build_auth_secret(
                        name, ns, generate_password(), owner if delete_with_owner else None
                    )
                )
                log.info(
                    "%s/%s: generated the password Secret %s", ns, name, auth_secret_name(name)
                )
            else:
                owned = bool(secret["metadata"].get("ownerReferences"))
                if owned != delete_with_owner:
                    # deletionPolicy changed: re-state the ownership, keeping the password.
                    password = _decode(secret, "password")
                    if password is not None:
                        secret = await self.kube.apply(
                            build_auth_secret(
                                name, ns, password, owner if delete_with_owner else None
                            ),
                            field_manager=FIELD_MANAGER,
                            force=True,
                        )
            known[auth_secret_name(name)] = secret
            auth_rv = str(secret["metadata"].get("resourceVersion", ""))
        else:
            ref = auth_secret_key_ref(name, spec)
            if ref is not None:
                secret = await self._get_secret(ns, ref[0], "password")
                known[ref[0]] = secret
                auth_rv = str(secret["metadata"].get("resourceVersion", ""))
        await self._apply(build_service(name, ns, spec, owner))
        sts_path = object_path("apps/v1", "StatefulSet", ns, resource_name(name))
        live = await self.kube.get(sts_path)
        claim_size = claim_template_size(live) if live else None
        await self._apply(
            build_statefulset(name, ns, spec, owner, claim_size=claim_size, auth_revision=auth_rv)
        )
        provision = spec.redis.provision
        assert provision is not None
        wanted = provision.storage.size
        if claim_size is not None and parse_quantity(wanted) > parse_quantity(claim_size):
            pvc = object_path("v1", "PersistentVolumeClaim", ns, data_pvc_name(name))
            try:
                await self.kube.merge_patch(pvc, build_pvc_resize_patch(wanted))
            except KubeError as exc:
                log.warning("%s/%s: could not grow the data volume: %s", ns, name, exc.message)
        return known

    async def _apply(self, obj: Mapping[str, Any]) -> None:
        try:
            await self.kube.apply(obj, field_manager=FIELD_MANAGER, force=True)
        except KubeError as exc:
            raise SetupError(
                "ApplyFailed",
                f"could not apply {obj['kind']} {obj['metadata']['name']}: {exc.message}",
            ) from None

    async def _get_secret(self, namespace: str, name: str, what: str) -> JSON:
        try:
            secret = await self.kube.get(object_path("v1", "Secret", namespace, name))
        except KubeError as exc:
            raise SetupError(
                "SecretUnreadable",
                f"cannot read Secret {namespace}/{name} ({what}): {exc.message}",
            ) from None
        if secret is None:
            raise SetupError(
                "SecretNotFound",
                f"Secret {namespace}/{name} ({what}) does not exist; create it "
                "in the RedisQueue's namespace",
            )
        return secret

    async def _read_secret_key(
        self, namespace: str, name: str, key: str, what: str, known: Mapping[str, JSON]
    ) -> str:
        secret = known.get(name) or await self._get_secret(namespace, name, what)
        value = _decode(secret, key)
        if value is None:
            keys = ", ".join(sorted((secret.get("data") or {}).keys())) or "none"
            raise SetupError(
                "SecretKeyNotFound",
                f"Secret {namespace}/{name} has no key {key!r} ({what}); its keys are: {keys}",
            )
        return value

    async def _contract(
        self, state: QueueState, spec: RedisQueueSpec, known: Mapping[str, JSON] | None = None
    ) -> ConnectionContract:
        """The contract for ``spec``, reading its Secrets (or taking them from ``known``)."""
        ns, name = state.namespace, state.name
        known = known or {}
        host, port = endpoint_for(name, ns, spec)
        password = None
        ref = auth_secret_key_ref(name, spec)
        if ref is not None:
            password = await self._read_secret_key(ns, ref[0], ref[1], "password", known)
        ca_pem = None
        external = spec.redis.external
        if external is not None and external.tls.enabled and external.tls.ca_secret_ref:
            ca = external.tls.ca_secret_ref
            ca_pem = await self._read_secret_key(ns, ca.name, ca.key, "TLS CA certificate", known)
        return build_contract(spec, host, port, password, ca_pem=ca_pem)

    async def _inject(
        self, state: QueueState, spec: RedisQueueSpec, contract: ConnectionContract
    ) -> None:
        state.contract = contract
        targets = [t.secret_name for t in spec.inject]
        if not targets:
            await self._release_dropped(state.namespace, state.name, set())
            state.injected = Verdict("True", "NoTargets", "spec.inject names no Secret")
            return
        manager = inject_field_manager(state.name)
        for secret_name in targets:
            body = build_injected_secret_apply(
                secret_name, state.namespace, contract, source=state.name
            )
            try:
                await self.kube.apply(body, field_manager=manager)
            except KubeError as exc:
                if exc.conflict:
                    verdict = Verdict(
                        "False",
                        "InjectConflict",
                        f"Secret {secret_name} already has contract keys written "
                        f"by someone else ({_conflict_owner(exc.message)}); "
                        "remove them or pick another Secret",
                    )
                elif exc.forbidden:
                    verdict = Verdict(
                        "False",
                        "InjectForbidden",
                        f"not allowed to write Secret {secret_name}: {exc.message}",
                    )
                else:
                    verdict = Verdict(
                        "False",
                        "InjectFailed",
                        f"could not write Secret {secret_name}: {exc.message}",
                    )
                state.injected = verdict
                raise SetupError(verdict.reason, verdict.message) from None
        await self._release_dropped(state.namespace, state.name, set(targets))
        state.injected = Verdict(
            "True",
            "Injected",
            "connection contract written to Secret"
            + ("s " if len(targets) > 1 else " ")
            + ", ".join(targets),
        )

    async def _ensure_probe(
        self, state: QueueState, spec: RedisQueueSpec, contract: ConnectionContract
    ) -> Probe:
        current = self.probes.get(state.namespace, state.name)
        queues = tuple(QueueKey(q.key, q.type, q.group) for q in spec.queues)
        timeout = spec.health_check.timeout_seconds
        if (
            current is not None
            and current.contract == contract
            and current.timeout == timeout
            and current.queues == queues
        ):
            return current
        probe = Probe(
            contract, namespace=state.namespace, name=state.name, timeout=timeout, queues=queues
        )
        if current is not None:
            probe.last = current.last
        old = self.probes.add(probe)
        if old is not None:
            await old.close()
        return probe

    # -- the daemon's tick -----------------------------------------------------------------------
    async def tick(self, body: Mapping[str, Any]) -> float:
        """One scheduled probe. Returns seconds until the next one."""
        state = self.state_for(body)
        state.ticked_at = time.monotonic()
        spec = state.spec
        if spec is None:  # invalid: nothing to probe until the spec changes
            return state.interval
        async with state.lock:
            try:
                contract = await self._contract(state, spec)
                if contract != state.contract:
                    log.info(
                        "%s/%s: credentials or endpoint changed; re-injecting",
                        state.namespace,
                        state.name,
                    )
                    await self._inject(state, spec, contract)
                    await self._ensure_probe(state, spec, contract)
                state.setup = None
            except SetupError as exc:
                state.setup = Verdict("False", exc.reason, exc.message)
            except KubeError as exc:
                log.warning(
                    "%s/%s: API error while refreshing: %s",
                    state.namespace,
                    state.name,
                    exc.message,
                )
            if spec.mode == "provision":
                state.provisioned = await self._statefulset_ready(state)
        await self._probe_and_report(state, body)
        return state.interval

    async def _statefulset_ready(self, state: QueueState) -> Verdict:
        path = object_path("apps/v1", "StatefulSet", state.namespace, resource_name(state.name))
        try:
            sts = await self.kube.get(path)
        except KubeError as exc:
            return Verdict("Unknown", "StatefulSetUnknown", exc.message)
        if sts is None:
            return Verdict(
                "False",
                "StatefulSetMissing",
                f"StatefulSet {path.rsplit('/', 1)[-1]} does not exist yet",
            )
        ready = int((sts.get("status") or {}).get("readyReplicas") or 0)
        if ready < 1:
            return Verdict(
                "False",
                "Provisioning",
                f"waiting for the Redis pod of StatefulSet {resource_name(state.name)}"
                " to become ready",
            )
        return Verdict("True", "StatefulSetReady", "the Redis pod is ready")

    async def _probe_and_report(
        self, state: QueueState, body: Mapping[str, Any], *, force: bool = False
    ) -> None:
        probe = self.probes.get(state.namespace, state.name)
        result = None
        if probe is not None:
            result = await probe.check()
            if result.ok:
                await probe.collect_details()
        await self._write_status(state, body, result, force=force)

    # -- status and events ---------------------------------------------------------------------
    def compose_status(self, state: QueueState, result: ProbeResult | None) -> dict[str, Any]:
        """The status a RedisQueue should show now (pure apart from the clock)."""
        spec = state.spec
        if result is None:
            reachable = Verdict("Unknown", "NotProbed", "no PING sent yet")
        elif result.ok:
            ms = result.latency_ms or 0.0
            reachable = Verdict(
                "True", "PingSucceeded", f"PONG from {result.endpoint} in {ms:.1f} ms"
            )
        else:
            reachable = Verdict(
                "False", _REASONS.get(result.reason, "ProbeFailed"), result.error or result.reason
            )
        ready = self._ready(state, reachable)
        previous = {c["type"]: c for c in state.status.get("conditions", []) or []}
        now = _rfc3339(_now())
        conditions = []
        for kind, verdict in (
            (CONDITION_READY, ready),
            (CONDITION_REACHABLE, reachable),
            (CONDITION_INJECTED, state.injected),
        ):
            before = previous.get(kind)
            changed = before is None or before.get("status") != verdict.status
            conditions.append(
                {
                    "type": kind,
                    "status": verdict.status,
                    "reason": verdict.reason,
                    "message": verdict.message[:2000],
                    "lastTransitionTime": (
                        now if changed or before is None else before["lastTransitionTime"]
                    ),
                    "observedGeneration": state.generation,
                }
            )
        status: dict[str, Any] = {
            "phase": _phase(ready, reachable, state),
            "mode": spec.mode if spec else state.status.get("mode"),
            "endpoint": (state.contract.endpoint if state.contract else _spec_endpoint(state)),
            "latencyMs": (round(result.latency_ms or 0.0, 3) if result and result.ok else None),
            "lastProbeTime": _rfc3339(result.at) if result else state.status.get("lastProbeTime"),
            "observedGeneration": state.generation,
            "conditions": conditions,
        }
        return status

    def _ready(self, state: QueueState, reachable: Verdict) -> Verdict:
        if state.setup is not None:
            return state.setup
        if state.provisioned is not None and state.provisioned.status != "True":
            return state.provisioned
        if state.injected.status != "True":
            return state.injected
        if reachable.status != "True":
            return Verdict(reachable.status, reachable.reason, reachable.message)
        where = state.contract.endpoint if state.contract else "?"
        return Verdict(
            "True", "Ready", f"Redis at {where} answers and apps have the connection contract"
        )

    async def _write_status(
        self,
        state: QueueState,
        body: Mapping[str, Any],
        result: ProbeResult | None,
        *,
        force: bool = False,
    ) -> None:
        status = self.compose_status(state, result)
        loop = asyncio.get_running_loop()
        if not force and not status_needs_write(
            state.status, status, loop.time() - state.written_at
        ):
            return
        path = object_path(API_VERSION, "RedisQueue", state.namespace, state.name, "status")
        try:
            await self.kube.merge_patch(path, {"status": status})
        except KubeError as exc:
            if not exc.not_found:
                log.warning(
                    "%s/%s: could not write status: %s", state.namespace, state.name, exc.message
                )
            return
        before = state.ready
        state.status = status
        state.written_at = loop.time()
        ready = status["conditions"][0]
        if ready["status"] != before and (
            before is not None or ready["status"] == "True" or result is not None
        ):
            await self._event(body, ready, before)

    async def _event(
        self, body: Mapping[str, Any], ready: Mapping[str, Any], before: str | None
    ) -> None:
        meta = body["metadata"]
        good = ready["status"] == "True"
        reason = "Ready" if good else ready["reason"]
        message = (
            f"Ready ({ready['message']})"
            if good
            else f"not Ready{'' if before is None else ' (was ' + before + ')'}: {ready['message']}"
        )
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": "RedisQueue",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason[:128],
            "message": message[:1024],
            "type": "Normal" if good else "Warning",
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": _rfc3339(now),
            "lastTimestamp": _rfc3339(now),
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
            "action": "Probe",
            "count": 1,
        }
        try:
            await self.kube.create(event)
        except KubeError as exc:
            log.warning(
                "%s/%s: could not post event: %s", meta["namespace"], meta["name"], exc.message
            )

    # -- delete ----------------------------------------------------------------------------------
    async def finalize(self, body: Mapping[str, Any]) -> None:
        """Stop probing and remove what this RedisQueue wrote (per its deletionPolicy)."""
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        self.states.pop((ns, name), None)
        probe = self.probes.remove(ns, name)
        if probe is not None:
            await probe.close()
        metrics.forget_queue(ns, name)
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError:
            return
        manager = inject_field_manager(name)
        for target in spec.inject:
            await self._release(ns, target.secret_name, manager)
        if spec.mode == "provision" and spec.deletion_policy == "Delete":
            selector = f"{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}"
            for pvc in await self.kube.list(
                object_path("v1", "PersistentVolumeClaim", ns), label_selector=selector
            ):
                await self.kube.delete(
                    object_path("v1", "PersistentVolumeClaim", ns, pvc["metadata"]["name"])
                )
            if spec.auth is None or spec.auth.secret_ref is None:
                await self.kube.delete(object_path("v1", "Secret", ns, auth_secret_name(name)))
        log.info("%s/%s: cleaned up (deletionPolicy %s)", ns, name, spec.deletion_policy)

    async def _release_dropped(self, namespace: str, name: str, keep: set[str]) -> None:
        """Remove the contract from Secrets this RedisQueue wrote but no longer names."""
        selector = f"{LABEL_REDISQUEUE}={name}"
        try:
            labelled = await self.kube.list(
                object_path("v1", "Secret", namespace), label_selector=selector
            )
        except KubeError as exc:
            log.warning("%s/%s: could not list injected Secrets: %s", namespace, name, exc.message)
            return
        for secret in labelled:
            secret_name = secret["metadata"]["name"]
            if secret_name not in keep:
                log.info(
                    "%s/%s: Secret %s left spec.inject; removing the contract from it",
                    namespace,
                    name,
                    secret_name,
                )
                await self._release(namespace, secret_name, inject_field_manager(name))

    async def _release(self, namespace: str, secret_name: str, manager: str) -> None:
        path = object_path("v1", "Secret", namespace, secret_name)
        live = await self.kube.get(path)
        if live is None:
            return
        managers = {m.get("manager") for m in live["metadata"].get("managedFields") or []}
        if managers <= {manager}:
            # The operator created this Secret and nobody else wrote to it: remove it whole.
            await self.kube.delete(path)
            return
        await self.kube.apply(
            build_injected_secret_release(secret_name, namespace), field_manager=manager
        )


_REASONS: Final = {
    "unreachable": "Unreachable",
    "auth_failed": "AuthFailed",
    "timeout": "Timeout",
    "tls_error": "TLSError",
    "error": "ProbeFailed",
}


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions", []) or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def _phase(ready: Verdict, reachable: Verdict, state: QueueState) -> str:
    if ready.status == "True":
        return "Ready"
    if ready.reason == "InvalidSpec":
        return "Invalid"
    if ready.reason in {"Provisioning", "StatefulSetMissing"}:
        return "Provisioning"
    if ready.reason == "NotProbed":
        return "Pending"
    if ready.reason in {"AuthFailed", "SecretNotFound", "SecretKeyNotFound"}:
        return "AuthError"
    if ready.reason.startswith("Inject"):
        return "InjectError"
    if reachable.status == "False":
        return "Unreachable"
    return "Error"


def _spec_endpoint(state: QueueState) -> str | None:
    if state.spec is None:
        return state.status.get("endpoint")
    host, port = endpoint_for(state.name, state.namespace, state.spec)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def status_needs_write(
    written: Mapping[str, Any], wanted: Mapping[str, Any], seconds_since_write: float
) -> bool:
    """Write when anything but latency and probe time changed, or the last write is old."""
    return seconds_since_write >= STATUS_REFRESH_SECONDS or _essence(written) != _essence(wanted)


def _essence(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must be written at once when it changes (not latency or probe time)."""
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
        for c in status.get("conditions", []) or []
    )
    return (
        status.get("phase"),
        status.get("endpoint"),
        status.get("observedGeneration"),
        conditions,
    )


def _conflict_owner(message: str) -> str:
    # "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.REDIS_URL"
    marker = 'conflict with "'
    if marker in message:
        return "field manager " + message.split(marker, 1)[1].split('"', 1)[0]
    return "another field manager"
