"""The leader's steps for one RedisQueue, against the in-memory API (fast tier) and a real
redis-server: what is written, when, and what is not written at rest."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from harness.fake_kube import FakeKube
from harness.fast_tier import (
    LOOPBACK_ALLOWED,
    NAMESPACE,
    MakeQueue,
    decoded,
    redisqueue,
    secret,
)
from harness.redis_server import RedisServer
from redisqueue.controller.readside.registry import QueueState
from redisqueue.controller.readside.side import ReadSide
from redisqueue.controller.reconciler import Reconciler
from redisqueue.controller.resource.errors import InvalidSpecError, SetupError
from redisqueue.controller.resource.identity import QueueRef
from redisqueue.controller.resource.policy import OperatorPolicy


def ready(fake_kube: FakeKube, name: str = "orders") -> tuple[str, str]:
    rq = fake_kube.find("RedisQueue", NAMESPACE, name)
    assert rq is not None
    condition = next(c for c in rq["status"]["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


async def created(reconciler: Reconciler, body: dict[str, Any]) -> QueueState:
    """Reconcile the new RedisQueue ``body``; returns what the operator keeps of it."""
    await reconciler.reconcile(body, created=True)
    state = reconciler.side.registry.get(QueueRef(NAMESPACE, body["metadata"]["name"]))
    assert state is not None
    return state


def events(fake_kube: FakeKube) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in fake_kube.of_kind("Event")]


async def test_a_new_redisqueue_is_injected_probed_and_reported_once(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue, redis_server: RedisServer
) -> None:
    body = make_queue()
    fake_kube.requests.clear()
    await reconciler.reconcile(body, created=True)

    app = fake_kube.find("Secret", NAMESPACE, "orders-app")
    assert decoded(app, "REDIS_PASSWORD") == redis_server.password
    assert decoded(app, "REDIS_HOST") == redis_server.host
    assert ready(fake_kube) == ("True", "Ready")
    assert events(fake_kube) == [("Normal", "Ready")]
    writes = [(r.method, r.path.rsplit("/", 2)[-2:][0]) for r in fake_kube.writes()]
    # the app Secret, status, the Event: nothing else (no LIST of dropped injections either)
    assert len(writes) == 3, writes
    # The new Secret was written without being read first.
    app_requests = [r.method for r in fake_kube.requests if r.path.endswith("/orders-app")]
    assert app_requests == ["PATCH"]


async def test_a_new_redisqueue_aimed_at_a_special_secret_is_refused_and_it_is_untouched(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    pull = secret("orders-app", **{".dockerconfigjson": "{}"})
    pull["type"] = "kubernetes.io/dockerconfigjson"
    before = fake_kube.put(pull)
    with pytest.raises(SetupError, match=r"kubernetes\.io/dockerconfigjson"):
        await reconciler.reconcile(make_queue(), created=True)
    assert ready(fake_kube) == ("False", "SecretRefused")
    assert fake_kube.find("Secret", NAMESPACE, "orders-app") == before


async def test_nothing_is_written_again_while_nothing_changes(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    body = make_queue()
    state = await created(reconciler, body)
    fake_kube.requests.clear()
    for _ in range(5):  # scheduled probes at rest
        result = await reconciler.side.probe(state)
        await reconciler.after_probe(state, result)
    await reconciler.reconcile(fake_kube.find("RedisQueue", NAMESPACE, "orders") or body)
    assert fake_kube.writes() == []


async def test_a_redis_that_goes_away_is_reported_once_and_its_return_too(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue, redis_server: RedisServer
) -> None:
    await reconciler.reconcile(make_queue(), created=True)
    state = reconciler.side.registry.get(QueueRef(NAMESPACE, "orders"))
    assert state is not None
    redis_server.stop()
    for _ in range(3):
        await reconciler.after_probe(state, await reconciler.side.probe(state))
    assert ready(fake_kube) == ("False", "Unreachable")
    redis_server.start()
    for _ in range(3):
        await reconciler.after_probe(state, await reconciler.side.probe(state))
    assert ready(fake_kube) == ("True", "Ready")
    assert events(fake_kube) == [
        ("Normal", "Ready"),
        ("Warning", "Unreachable"),
        ("Normal", "Ready"),
    ]


async def test_a_rotated_password_is_injected_and_probed_at_once(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue, redis_server: RedisServer
) -> None:
    await reconciler.reconcile(make_queue(), created=True)
    state = reconciler.side.registry.get(QueueRef(NAMESPACE, "orders"))
    assert state is not None and state.probe is not None
    first_probe = state.probe
    with redis_server.admin() as admin:
        admin.config_set("requirepass", "rotated-pw")
    redis_server.password = "rotated-pw"
    rotated = fake_kube.put(secret("redis-auth", password="rotated-pw"))
    await reconciler.side.secret_event("MODIFIED", {"metadata": rotated["metadata"]})
    app = fake_kube.find("Secret", NAMESPACE, "orders-app")
    assert decoded(app, "REDIS_PASSWORD") == "rotated-pw"
    assert state.probe is not first_probe and first_probe.closed
    assert ready(fake_kube) == ("True", "Ready")


async def test_a_secret_event_of_an_unread_secret_costs_no_request(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    await reconciler.reconcile(make_queue(), created=True)
    other = fake_kube.put(secret("unrelated", token="x"))
    auth = fake_kube.find("Secret", NAMESPACE, "redis-auth")
    assert auth is not None
    fake_kube.requests.clear()
    await reconciler.side.secret_event("MODIFIED", {"metadata": other["metadata"]})
    # the auth Secret at the version already read: nothing to read again
    await reconciler.side.secret_event("MODIFIED", {"metadata": auth["metadata"]})
    assert fake_kube.requests == []


async def test_a_deleted_auth_secret_makes_the_redisqueue_not_ready(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    await reconciler.reconcile(make_queue(), created=True)
    auth = fake_kube.find("Secret", NAMESPACE, "redis-auth")
    assert auth is not None
    await fake_kube.delete(f"/api/v1/namespaces/{NAMESPACE}/secrets/redis-auth")
    await reconciler.side.secret_event("DELETED", {"metadata": auth["metadata"]})
    assert ready(fake_kube) == ("False", "SecretNotFound")
    assert events(fake_kube)[-1] == ("Warning", "SecretNotFound")


async def test_a_policy_refusal_is_reported_and_nothing_is_probed(
    fake_kube: FakeKube, make_queue: MakeQueue, side: ReadSide, redis_server: RedisServer
) -> None:
    side.policy = OperatorPolicy.from_env({"REDISQUEUE_DENIED_HOSTS": "127.0.0.0/8"})
    writer = Reconciler(fake_kube, side, instance="test")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpecError, match=r"127\.0\.0\.1"):
        await writer.reconcile(make_queue(), created=True)
    assert ready(fake_kube) == ("False", "PolicyRefused")
    state = side.registry.get(QueueRef(NAMESPACE, "orders"))
    assert state is not None and state.probe is None
    assert fake_kube.find("Secret", NAMESPACE, "orders-app") is None  # nothing injected


async def test_a_missing_secret_is_a_retried_setup_problem(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    body = make_queue(auth={"secretRef": {"name": "not-there"}})
    with pytest.raises(SetupError, match="not-there"):
        await reconciler.reconcile(body, created=True)
    assert ready(fake_kube) == ("False", "SecretNotFound")


async def test_finalize_takes_the_contract_probe_and_series_away(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    body = make_queue()
    await reconciler.reconcile(body, created=True)
    labels = {"namespace": NAMESPACE, "name": "orders"}
    assert REGISTRY.get_sample_value("redisqueue_up", labels) == 1.0
    await reconciler.finalize(fake_kube.find("RedisQueue", NAMESPACE, "orders") or body)
    assert fake_kube.find("Secret", NAMESPACE, "orders-app") is None  # only ours: deleted
    assert reconciler.side.registry.get(QueueRef(NAMESPACE, "orders")) is None
    assert REGISTRY.get_sample_value("redisqueue_up", labels) is None


async def test_a_stopped_operator_marks_status_unchecked_without_events(
    fake_kube: FakeKube, reconciler: Reconciler, make_queue: MakeQueue
) -> None:
    body = make_queue()
    state = await created(reconciler, body)
    await reconciler.report.stopped(state)
    assert ready(fake_kube) == ("Unknown", "OperatorStopped")
    # a new operator process starts from the object as it is
    side = ReadSide(fake_kube, policy=LOOPBACK_ALLOWED)  # type: ignore[arg-type]
    restarted = Reconciler(fake_kube, side, instance="next")  # type: ignore[arg-type]
    await restarted.reconcile(fake_kube.find("RedisQueue", NAMESPACE, "orders") or body)
    assert ready(fake_kube) == ("True", "Ready")
    assert events(fake_kube) == [("Normal", "Ready")]  # neither the stop nor the start
    await restarted.side.close()


#: A provisioned Redis for the RedisQueue "jobs", whose password the operator generates.
PROVISIONED_JOBS = {"redis": {"provision": {}}, "inject": [{"secretName": "jobs-app"}]}


async def test_provision_mode_applies_its_objects_and_generates_one_password(
    fake_kube: FakeKube, reconciler: Reconciler
) -> None:
    body = fake_kube.put(redisqueue("jobs", PROVISIONED_JOBS))
    await reconciler.reconcile(body, created=True)
    assert fake_kube.find("Service", NAMESPACE, "jobs-redis") is not None
    assert fake_kube.find("StatefulSet", NAMESPACE, "jobs-redis") is not None
    generated = fake_kube.find("Secret", NAMESPACE, "jobs-redis-auth")
    password = decoded(generated, "password")
    assert (
        password
        and decoded(fake_kube.find("Secret", NAMESPACE, "jobs-app"), "REDIS_PASSWORD") == password
    )
    # The StatefulSet has no ready replica in an API without a node: the status says so.
    state = reconciler.side.registry.get(QueueRef(NAMESPACE, "jobs"))
    assert state is not None
    await reconciler.after_probe(state, await reconciler.side.probe(state))
    assert ready(fake_kube, "jobs")[0] == "False"
    await reconciler.reconcile(fake_kube.find("RedisQueue", NAMESPACE, "jobs") or body)
    assert decoded(fake_kube.find("Secret", NAMESPACE, "jobs-redis-auth"), "password") == password


async def test_a_foreign_secret_under_the_generated_name_is_refused(
    fake_kube: FakeKube, reconciler: Reconciler
) -> None:
    fake_kube.put(secret("jobs-redis-auth", password="someone-elses"))
    body = fake_kube.put(redisqueue("jobs", PROVISIONED_JOBS))
    with pytest.raises(SetupError, match="not generated by the operator"):
        await reconciler.reconcile(body, created=True)
    assert fake_kube.find("Secret", NAMESPACE, "jobs-app") is None
