"""Password rotation: two valid passwords while the apps move, then only the new one.

The fast tier: the reconciler against the in-memory API, and real redis-servers: an external
one, and a provisioned one started by the operator's own start-up script from the Secrets the
operator generated. Time is a clock the test moves, so a grace period costs no waiting.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.fake_kube import FakeKube
from harness.fast_tier import NAMESPACE, MakeQueue, decoded, redisqueue, secret
from harness.provisioned_redis import ProvisionedRedis, secret_files
from harness.redis_server import RedisServer
from redisqueue.controller.objects.acl import ADMIN_USER, APP_USER, PROBE_USER
from redisqueue.controller.readside.registry import QueueState
from redisqueue.controller.readside.side import ReadSide
from redisqueue.controller.reconciler import Reconciler
from redisqueue.controller.resource.identity import ANNOTATION_RESTARTED_AT, QueueRef
from redisqueue.controller.resource.policy import OperatorPolicy
from redisqueue.controller.resource.spec import parse_spec
from redisqueue.controller.steps.rotation import RECHECK_SECONDS, ROLLOUT_CHECK_SECONDS

GRACE = 30


class Clock:
    """The time the rotation sees; tests move it."""

    def __init__(self) -> None:
        self.now = datetime.datetime(2026, 3, 1, 12, 0, 0, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def deployment(name: str, *, stamp: str | None = None, rolled: bool = False) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"labels": {"app": name}}, "spec": {}}
    if stamp is not None:
        template["metadata"]["annotations"] = {ANNOTATION_RESTARTED_AT: stamp}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 2},
        "spec": {"replicas": 2, "template": template},
    }
    if rolled:
        body["status"] = {
            "observedGeneration": 2,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        }
    return body


def roll_out(fake_kube: FakeKube, name: str) -> None:
    """What the Deployment controller does once the restarted pods are ready."""
    live = fake_kube.find("Deployment", NAMESPACE, name)
    assert live is not None
    stamp = live["spec"]["template"]["metadata"]["annotations"][ANNOTATION_RESTARTED_AT]
    fake_kube.put(deployment(name, stamp=stamp, rolled=True))


def stamp_of(fake_kube: FakeKube, name: str) -> str | None:
    live = fake_kube.find("Deployment", NAMESPACE, name)
    assert live is not None
    annotations = live["spec"]["template"]["metadata"].get("annotations") or {}
    return annotations.get(ANNOTATION_RESTARTED_AT)


def rq(fake_kube: FakeKube, name: str) -> dict[str, Any]:
    found = fake_kube.find("RedisQueue", NAMESPACE, name)
    assert found is not None
    return found


def ready(fake_kube: FakeKube, name: str) -> str:
    conditions = rq(fake_kube, name)["status"]["conditions"]
    return str(next(c for c in conditions if c["type"] == "Ready")["status"])


def rotation(fake_kube: FakeKube, name: str) -> dict[str, Any]:
    return dict(rq(fake_kube, name)["status"]["rotation"])


def events(fake_kube: FakeKube) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in fake_kube.of_kind("Event")]


def state_of(reconciler: Reconciler, name: str) -> QueueState:
    state = reconciler.side.registry.get(QueueRef(NAMESPACE, name))
    assert state is not None
    return state


def patch_secret(fake_kube: FakeKube, name: str, **data: str) -> dict[str, Any]:
    live = fake_kube.find("Secret", NAMESPACE, name)
    assert live is not None
    return fake_kube.put({**live, "data": {**live["data"], **secret(name, **data)["data"]}})


async def change_secret(
    reconciler: Reconciler, fake_kube: FakeKube, name: str, **data: str
) -> None:
    """Someone patches the Secret's data (its labels stay); the watch tells the operator."""
    changed = patch_secret(fake_kube, name, **data)
    await reconciler.side.secret_event("MODIFIED", {"metadata": changed["metadata"]})


# --- external: the owner of the Redis holds both passwords (ElastiCache ROTATE) ----------------


@pytest.fixture
def external_reconciler(fake_kube: FakeKube, side: ReadSide, clock: Clock) -> Reconciler:
    writer = Reconciler(fake_kube, side, instance="test", clock=clock)  # type: ignore[arg-type]
    side.writer = writer
    return writer


async def test_external_rotation_stays_ready_restarts_env_apps_and_says_when_old_may_go(
    fake_kube: FakeKube,
    external_reconciler: Reconciler,
    make_queue: MakeQueue,
    redis_server: RedisServer,
    clock: Clock,
) -> None:
    reconciler = external_reconciler
    fake_kube.put(deployment("worker"))
    body = make_queue(
        inject=[
            {"secretName": "orders-app", "restart": [{"kind": "Deployment", "name": "worker"}]}
        ],
        rotation={"gracePeriodSeconds": GRACE},
    )
    await reconciler.reconcile(body, created=True)
    first_stamp = stamp_of(fake_kube, "worker")  # a new contract restarts it once
    assert first_stamp is not None
    clock.advance(60)
    # ROTATE: the Redis accepts both tokens; then the Secret gets the new one.
    with redis_server.admin() as admin:
        admin.execute_command("ACL", "SETUSER", "default", ">rotated-token")
    await change_secret(reconciler, fake_kube, "redis-auth", password="rotated-token")

    app = fake_kube.find("Secret", NAMESPACE, "orders-app")
    assert decoded(app, "REDIS_PASSWORD") == "rotated-token"
    started = rotation(fake_kube, "orders")
    assert started["phase"] == "Overlap"
    assert ready(fake_kube, "orders") == "True"
    assert ("Normal", "RotationStarted") in events(fake_kube)
    stamp = stamp_of(fake_kube, "worker")
    assert stamp not in (None, first_stamp)  # restarted for this change

    state = state_of(reconciler, "orders")
    assert await step(reconciler, state) == RECHECK_SECONDS  # within the grace period
    clock.advance(GRACE + 1)
    # The grace period is over but the restarted pods are not ready yet: wait for them.
    assert await step(reconciler, state) == ROLLOUT_CHECK_SECONDS
    assert "waiting for Deployment/worker" in rotation(fake_kube, "orders")["message"]
    roll_out(fake_kube, "worker")
    assert await step(reconciler, state) is None
    done = rotation(fake_kube, "orders")
    assert done["phase"] == "ReadyToRemoveOld"
    assert "auth_token_update_strategy" in done["message"]
    assert ready(fake_kube, "orders") == "True"
    assert events(fake_kube)[-1] == ("Normal", "RotationReadyToRemoveOld")
    assert stamp_of(fake_kube, "worker") == stamp  # restarted once per change, not per check
    # Over: nothing more is written while nothing changes.
    fake_kube.requests.clear()
    for _ in range(3):
        await reconciler.after_probe(state, await reconciler.side.probe(state))
    assert await step(reconciler, state) is None
    assert fake_kube.writes() == []
    everything = str(fake_kube.of_kind("Event")) + str(rq(fake_kube, "orders")["status"])
    assert "rotated-token" not in everything
    assert (redis_server.password or "-") not in everything


async def test_a_contract_change_that_is_not_a_password_restarts_only_opted_in_apps(
    fake_kube: FakeKube, external_reconciler: Reconciler, make_queue: MakeQueue, clock: Clock
) -> None:
    reconciler = external_reconciler
    fake_kube.put(deployment("worker"))
    fake_kube.put(deployment("bystander"))
    body = make_queue(
        inject=[{"secretName": "orders-app", "restart": [{"kind": "Deployment", "name": "worker"}]}]
    )
    await reconciler.reconcile(body, created=True)
    first = stamp_of(fake_kube, "worker")
    # The same spec again changes nothing: no restart.
    await reconciler.reconcile(rq(fake_kube, "orders"))
    assert stamp_of(fake_kube, "worker") == first
    # A new pool size is a new contract: env apps need a restart, and no rotation starts.
    clock.advance(60)
    changed = {**rq(fake_kube, "orders")}
    changed["spec"] = {**changed["spec"], "pool": {"maxConnections": 7}}
    await reconciler.reconcile(fake_kube.put(changed))
    assert stamp_of(fake_kube, "worker") not in (None, first)
    assert stamp_of(fake_kube, "bystander") is None
    assert "rotation" not in rq(fake_kube, "orders")["status"] or (
        rq(fake_kube, "orders")["status"]["rotation"] is None
    )


# --- provision: the operator changes the passwords of its running Redis -------------------------


@pytest.fixture
def provisioned_redis(tmp_path: Path) -> Iterator[list[ProvisionedRedis]]:
    started: list[ProvisionedRedis] = []
    yield started
    for server in started:
        server.stop()


PROVISION_SPEC: dict[str, Any] = {
    "redis": {"provision": {}},
    "inject": [{"secretName": "jobs-app", "restart": [{"kind": "Deployment", "name": "env-app"}]}],
    "queues": [{"key": "phase1:jobs"}],
    "rotation": {"gracePeriodSeconds": GRACE},
    "healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 1},
}


async def step(reconciler: Reconciler, state: QueueState) -> float | None:
    """One step of the rotation, under the state's lock as the operator's own driver takes it:
    the driver that reconcile started runs beside the test, and two steps at once would both
    retire the old password."""
    async with state.lock:
        return await reconciler.rotations.step(state)


def writer_for(
    fake_kube: FakeKube, side: ReadSide, clock: Clock, server: ProvisionedRedis, *, instance: str
) -> Reconciler:
    """The writing Reconciler of ``side``, reaching ``server`` where the Service would be."""
    writer = Reconciler(
        fake_kube,  # type: ignore[arg-type]
        side,
        instance=instance,
        clock=clock,
        redis_address=lambda names: (server.host, server.port),
    )
    side.writer = writer
    return writer


@pytest.fixture
async def provisioned(
    fake_kube: FakeKube,
    side: ReadSide,
    clock: Clock,
    tmp_path: Path,
    provisioned_redis: list[ProvisionedRedis],
) -> AsyncIterator[tuple[Reconciler, ProvisionedRedis]]:
    """A provisioned RedisQueue reconciled, and its Redis running as its pod would: started
    by the start-up script from the Secrets the operator generated."""
    server = ProvisionedRedis(tmp_path / "redis", parse_spec(PROVISION_SPEC))
    provisioned_redis.append(server)
    writer = writer_for(fake_kube, side, clock, server, instance="test")
    fake_kube.put(deployment("env-app"))
    body = fake_kube.put(redisqueue("jobs", PROVISION_SPEC))
    await writer.reconcile(body, created=True)
    auth = fake_kube.find("Secret", NAMESPACE, "jobs-redis-auth")
    acl = fake_kube.find("Secret", NAMESPACE, "jobs-redis-acl")
    assert auth is not None and acl is not None
    server.mount(secret_files(auth)["password"], secret_files(acl))
    server.start()
    yield writer, server
    await writer.close()


def generated_password(fake_kube: FakeKube) -> str:
    password = decoded(fake_kube.find("Secret", NAMESPACE, "jobs-redis-auth"), "password")
    assert password
    return password


async def test_provisioned_rotation_keeps_both_passwords_until_apps_moved_then_only_the_new(
    fake_kube: FakeKube, provisioned: tuple[Reconciler, ProvisionedRedis], clock: Clock
) -> None:
    reconciler, server = provisioned
    old = generated_password(fake_kube)
    statefulset_version = fake_kube.find("StatefulSet", NAMESPACE, "jobs-redis")
    assert statefulset_version is not None
    before_rv = statefulset_version["metadata"]["resourceVersion"]
    long_lived = server.client(old)
    assert long_lived.ping() is True  # an app connection opened before the rotation

    await change_secret(reconciler, fake_kube, "jobs-redis-auth", password="new-" + old[:20])
    new = "new-" + old[:20]
    # The running Redis takes the new password at once and keeps the old one.
    assert server.accepts(new) and server.accepts(old)
    assert decoded(fake_kube.find("Secret", NAMESPACE, "jobs-app"), "REDIS_PASSWORD") == new
    # Redis is not restarted: its StatefulSet is not even written.
    after = fake_kube.find("StatefulSet", NAMESPACE, "jobs-redis")
    assert after is not None and after["metadata"]["resourceVersion"] == before_rv
    assert rotation(fake_kube, "jobs")["phase"] == "Overlap"
    assert ("Normal", "RotationStarted") in events(fake_kube)
    assert stamp_of(fake_kube, "env-app") is not None

    state = state_of(reconciler, "jobs")
    clock.advance(GRACE - 1)
    assert await step(reconciler, state) is not None
    assert server.accepts(old)  # not before the grace period is over
    clock.advance(2)
    assert await step(reconciler, state) == ROLLOUT_CHECK_SECONDS
    assert server.accepts(old)  # nor before the restarted app has rolled out
    roll_out(fake_kube, "env-app")
    assert await step(reconciler, state) is None
    assert not server.accepts(old) and server.accepts(new)
    assert long_lived.ping() is True  # connections made before stay authenticated
    done = rotation(fake_kube, "jobs")
    assert done["phase"] == "Complete"
    # (how many connections are that old is counted on Redis's clock, not the test's)
    assert "connection(s) opened before it are still open" in done["message"]
    assert events(fake_kube)[-1] == ("Normal", "RotationCompleted")
    # The probe and the admin were never touched by the rotation.
    probe_password = decoded(
        fake_kube.find("Secret", NAMESPACE, "jobs-redis-acl"), "probe-password"
    )
    assert probe_password and server.accepts(probe_password, PROBE_USER)
    everything = str(fake_kube.of_kind("Event")) + str(rq(fake_kube, "jobs")["status"])
    assert old not in everything and new not in everything
    long_lived.close()


async def test_a_rollout_that_never_finishes_does_not_keep_the_old_password_for_ever(
    fake_kube: FakeKube, provisioned: tuple[Reconciler, ProvisionedRedis], clock: Clock
) -> None:
    reconciler, server = provisioned
    old = generated_password(fake_kube)
    await change_secret(reconciler, fake_kube, "jobs-redis-auth", password="next-password-1")
    state = state_of(reconciler, "jobs")
    clock.advance(GRACE + 1)
    assert await step(reconciler, state) == ROLLOUT_CHECK_SECONDS
    clock.advance(GRACE)
    assert await step(reconciler, state) is None
    assert not server.accepts(old)
    assert ("Warning", "RotationRestartOverdue") in events(fake_kube)
    assert rotation(fake_kube, "jobs")["phase"] == "Complete"


async def test_a_new_leader_finishes_the_rotation_status_shows_under_way(
    fake_kube: FakeKube,
    provisioned: tuple[Reconciler, ProvisionedRedis],
    clock: Clock,
) -> None:
    reconciler, server = provisioned
    old = generated_password(fake_kube)
    await change_secret(reconciler, fake_kube, "jobs-redis-auth", password="handed-over-pw-1")
    await reconciler.close()  # the leader goes away during the overlap
    side = ReadSide(fake_kube, policy=OperatorPolicy())  # type: ignore[arg-type]
    successor = writer_for(fake_kube, side, clock, server, instance="next")
    try:
        await successor.reconcile(rq(fake_kube, "jobs"))
        state = state_of(successor, "jobs")
        assert state.rotation is not None and state.rotation.phase == "Overlap"
        assert server.accepts(old) and server.accepts("handed-over-pw-1")
        roll_out(fake_kube, "env-app")
        clock.advance(GRACE + 1)
        assert await step(successor, state) is None
        assert not server.accepts(old)
        assert rotation(fake_kube, "jobs")["phase"] == "Complete"
    finally:
        await successor.close()
        await successor.side.close()


async def test_a_password_changed_while_no_operator_watched_opens_an_overlap(
    fake_kube: FakeKube, provisioned: tuple[Reconciler, ProvisionedRedis], clock: Clock
) -> None:
    reconciler, server = provisioned
    old = generated_password(fake_kube)
    patch_secret(fake_kube, "jobs-redis-auth", password="changed-while-down")
    await reconciler.close()
    side = ReadSide(fake_kube, policy=OperatorPolicy())  # type: ignore[arg-type]
    successor = writer_for(fake_kube, side, clock, server, instance="next")
    try:
        await successor.reconcile(rq(fake_kube, "jobs"))
        state = state_of(successor, "jobs")
        assert state.spec is not None
        # What the reconcile does once the probe finds Redis answering.
        async with state.lock:
            assert await successor.rotations.reconcile(state, state.spec) is True
        assert server.accepts("changed-while-down") and server.accepts(old)
        assert state.rotation is not None and state.rotation.phase == "Overlap"
    finally:
        await successor.close()
        await successor.side.close()


async def test_the_probe_user_reads_exactly_the_queues_of_the_spec(
    fake_kube: FakeKube, provisioned: tuple[Reconciler, ProvisionedRedis]
) -> None:
    reconciler, server = provisioned
    probe_password = decoded(
        fake_kube.find("Secret", NAMESPACE, "jobs-redis-acl"), "probe-password"
    )
    assert probe_password
    prober = server.client(probe_password, PROBE_USER)
    assert prober.llen("phase1:jobs") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        prober.llen("phase2:jobs")
    changed = rq(fake_kube, "jobs")
    changed["spec"] = {**changed["spec"], "queues": [{"key": "phase2:jobs"}]}
    await reconciler.reconcile(fake_kube.put(changed))
    # The key rules travel in the operator's Secret (for a restart) and to the running Redis.
    acl = fake_kube.find("Secret", NAMESPACE, "jobs-redis-acl")
    assert "phase2" in (decoded(acl, "probe-keys") or "")
    state = state_of(reconciler, "jobs")
    async with state.lock:
        assert state.spec is not None
        await reconciler.rotations.reconcile(state, state.spec)
    assert prober.llen("phase2:jobs") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        prober.llen("phase1:jobs")
    # The admin's password reaches no app Secret and no probe.
    admin = decoded(acl, "admin-password")
    assert admin and server.accepts(admin, ADMIN_USER)
    app = fake_kube.find("Secret", NAMESPACE, "jobs-app")
    assert admin not in str({k: decoded(app, k) for k in (app or {}).get("data", {})})
    assert state.probe is not None and state.probe.contract.username == PROBE_USER
    assert state.probe.contract.password != admin
    assert APP_USER == "default"
