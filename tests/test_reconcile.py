"""Status composition, called as a plain function (the end-to-end tests cover the rest)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from redisqueue.contract import ConnectionContract
from redisqueue.health import ProbeRegistry
from redisqueue.kube import Kube
from redisqueue.probe import ProbeResult, format_latency
from redisqueue.reconcile import (
    STATUS_REFRESH_SECONDS,
    QueueState,
    Reconciler,
    Verdict,
    inject_field_manager,
    status_needs_write,
)
from redisqueue.spec import parse_spec

SECRET = "s3cret-never-shown"


@pytest.fixture
async def reconciler() -> AsyncIterator[Reconciler]:
    # Only compose_status is called: the API client is never used.
    reconciler = Reconciler(Kube(client.ApiClient(client.Configuration())), ProbeRegistry())
    yield reconciler
    await reconciler.kube.close()


def _state(mode: str = "external") -> QueueState:
    state = QueueState("shop", "orders", "uid-1")
    redis = {"external": {"host": "cache.internal"}} if mode == "external" else {"provision": {}}
    state.spec = parse_spec({"redis": redis})
    state.generation = 3
    state.contract = ConnectionContract(host="cache.internal", password=SECRET)
    state.injected = Verdict("True", "Injected", "connection contract written to Secret app")
    return state


def _conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_ready_when_reachable_and_injected(reconciler: Reconciler) -> None:
    ok = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0012)
    status = reconciler.compose_status(_state(), ok)
    conditions = _conditions(status)
    assert status["phase"] == "Ready" and status["mode"] == "external"
    assert status["endpoint"] == "cache.internal:6379" and status["latencyMs"] == 1.2
    assert status["observedGeneration"] == 3
    assert {k: c["status"] for k, c in conditions.items()} == {
        "Ready": "True",
        "Reachable": "True",
        "Injected": "True",
    }
    assert all(c["observedGeneration"] == 3 for c in conditions.values())
    assert SECRET not in str(status)


def test_unreachable_keeps_the_transition_time_of_unchanged_conditions(
    reconciler: Reconciler,
) -> None:
    state = _state()
    up = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001)
    state.status = reconciler.compose_status(state, up)
    for condition in state.status["conditions"]:
        condition["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    down = ProbeResult(
        False,
        "cache.internal:6379",
        "unreachable",
        error="redis at cache.internal:6379: cannot connect (connection refused)",
    )
    status = reconciler.compose_status(state, down)
    conditions = _conditions(status)
    assert status["phase"] == "Unreachable" and status["latencyMs"] is None
    assert conditions["Ready"]["reason"] == "Unreachable"
    assert conditions["Ready"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert conditions["Injected"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("reason", "phase"),
    [
        ("SecretNotFound", "AuthError"),
        ("InjectConflict", "InjectError"),
        ("InvalidSpec", "Invalid"),
        ("ApplyFailed", "Error"),
    ],
)
def test_setup_problems_decide_ready_and_phase(
    reconciler: Reconciler, reason: str, phase: str
) -> None:
    state = _state()
    state.setup = Verdict("False", reason, f"{reason}: what to do")
    status = reconciler.compose_status(state, None)
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], status["phase"]) == ("False", reason, phase)
    assert _conditions(status)["Reachable"]["status"] == "Unknown"


def test_provision_waits_for_the_statefulset_before_anything_else(
    reconciler: Reconciler,
) -> None:
    state = _state("provision")
    state.provisioned = Verdict("False", "Provisioning", "waiting for the Redis pod")
    ok = ProbeResult(True, "orders-redis.shop.svc:6379", "ok", latency_seconds=0.001)
    status = reconciler.compose_status(state, ok)
    assert status["phase"] == "Provisioning"
    assert _conditions(status)["Ready"]["reason"] == "Provisioning"


def test_field_managers_are_per_redisqueue_and_bounded() -> None:
    assert inject_field_manager("a") != inject_field_manager("b")
    assert len(inject_field_manager("x" * 300)) == 128


def test_status_is_rewritten_on_change_or_once_a_minute_not_per_probe(
    reconciler: Reconciler,
) -> None:
    state = _state()
    first = reconciler.compose_status(
        state, ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001)
    )
    faster = reconciler.compose_status(
        state, ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0002)
    )
    down = reconciler.compose_status(
        state, ProbeResult(False, "cache.internal:6379", "timeout", error="no answer")
    )
    assert not status_needs_write(first, faster, seconds_since_write=10)
    assert status_needs_write(first, faster, seconds_since_write=STATUS_REFRESH_SECONDS)
    assert status_needs_write(first, down, seconds_since_write=1)
    assert STATUS_REFRESH_SECONDS == 60


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0004, "0.4ms"), (0.00099, "1.0ms"), (0.002, "2ms"), (0.0126, "13ms")]
)
def test_latency_reads_in_whole_ms_from_one_ms_and_one_decimal_below(
    seconds: float, shown: str
) -> None:
    assert format_latency(seconds) == shown
