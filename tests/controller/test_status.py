"""Status composition: pure functions of the state and the last PING (no API client)."""

from __future__ import annotations

import datetime

import pytest

from redisqueue.contract import ConnectionContract
from redisqueue.controller.builders import inject_field_manager
from redisqueue.controller.probe_result import ProbeResult, format_latency
from redisqueue.controller.spec import parse_spec
from redisqueue.controller.state import ConditionValue, QueueState
from redisqueue.controller.status import STATUS_REFRESH_SECONDS, compose_status, status_needs_write

SECRET = "s3cret-never-shown"


NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _state(mode: str = "external") -> QueueState:
    state = QueueState("shop", "orders", "uid-1")
    redis = {"external": {"host": "cache.internal"}} if mode == "external" else {"provision": {}}
    state.spec = parse_spec({"redis": redis})
    state.generation = 3
    state.contract = ConnectionContract(host="cache.internal", password=SECRET)
    state.injected = ConditionValue("True", "Injected", "connection contract written to Secret app")
    return state


def _conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_ready_when_reachable_and_injected() -> None:
    ok = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0012)
    status = compose_status(_state(), ok, NOW)
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


def test_unreachable_keeps_the_transition_time_of_unchanged_conditions() -> None:
    state = _state()
    up = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001)
    state.status = compose_status(state, up, NOW)
    for condition in state.status["conditions"]:
        condition["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    down = ProbeResult(
        False,
        "cache.internal:6379",
        "unreachable",
        error="redis at cache.internal:6379: cannot connect (connection refused)",
    )
    status = compose_status(state, down, NOW)
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
def test_setup_problems_decide_ready_and_phase(reason: str, phase: str) -> None:
    state = _state()
    state.setup_problem = ConditionValue("False", reason, f"{reason}: what to do")
    status = compose_status(state, None, NOW)
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], status["phase"]) == ("False", reason, phase)
    assert _conditions(status)["Reachable"]["status"] == "Unknown"


def test_provision_waits_for_the_statefulset_before_anything_else() -> None:
    state = _state("provision")
    state.provisioned = ConditionValue("False", "Provisioning", "waiting for the Redis pod")
    ok = ProbeResult(True, "orders-redis.shop.svc:6379", "ok", latency_seconds=0.001)
    status = compose_status(state, ok, NOW)
    assert status["phase"] == "Provisioning"
    assert _conditions(status)["Ready"]["reason"] == "Provisioning"


def test_field_managers_are_per_redisqueue_and_bounded() -> None:
    assert inject_field_manager("a") != inject_field_manager("b")
    assert len(inject_field_manager("x" * 300)) == 128


def test_status_is_rewritten_on_change_or_once_a_minute_not_per_probe() -> None:
    state = _state()
    first = compose_status(
        state, ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001), NOW
    )
    faster = compose_status(
        state, ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0002), NOW
    )
    down = compose_status(
        state, ProbeResult(False, "cache.internal:6379", "timeout", error="no answer"), NOW
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
