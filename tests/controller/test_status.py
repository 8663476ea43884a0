"""Status composition: pure functions of what the operator found and the last PING."""

from __future__ import annotations

import datetime

import pytest

from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.result import ProbeResult, format_latency
from redisqueue.controller.readside.registry import QueueState
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import parse_spec
from redisqueue.controller.resource.status import (
    CONDITION_READY,
    ConditionValue,
    RedisQueueStatus,
    compose_status,
    status_needs_write,
    unchecked_status,
)
from redisqueue.controller.steps.report import findings

SECRET = "s3cret-never-shown"


NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _state(mode: str = "external") -> QueueState:
    state = QueueState(QueueNames("shop", "orders", "uid-1"))
    redis = {"external": {"host": "cache.internal"}} if mode == "external" else {"provision": {}}
    state.spec = parse_spec({"redis": redis})
    state.generation = 3
    state.contract = ConnectionContract(host="cache.internal", password=SECRET)
    state.injected = ConditionValue("True", "Injected", "connection contract written to Secret app")
    return state


def compose(state: QueueState, result: ProbeResult | None) -> dict[str, object]:
    """The status as the merge patch writes it."""
    return compose_status(state.status, findings(state, result), NOW).to_patch()


def _conditions(status: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["type"]: c for c in status["conditions"]}  # type: ignore[attr-defined,index]


def test_ready_when_reachable_and_injected() -> None:
    ok = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0012)
    status = compose(_state(), ok)
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
    written = compose(state, up)
    for condition in written["conditions"]:  # type: ignore[attr-defined]
        condition["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    state.status = RedisQueueStatus.read(written)
    down = ProbeResult(
        False,
        "cache.internal:6379",
        "unreachable",
        error="redis at cache.internal:6379: cannot connect (connection refused)",
    )
    status = compose(state, down)
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
    status = compose(state, None)
    ready = _conditions(status)["Ready"]
    assert (ready["status"], ready["reason"], status["phase"]) == ("False", reason, phase)
    assert _conditions(status)["Reachable"]["status"] == "Unknown"


def test_provision_waits_for_the_statefulset_before_anything_else() -> None:
    state = _state("provision")
    state.provisioned = ConditionValue("False", "Provisioning", "waiting for the Redis pod")
    ok = ProbeResult(True, "orders-redis.shop.svc:6379", "ok", latency_seconds=0.001)
    status = compose(state, ok)
    assert status["phase"] == "Provisioning"
    assert _conditions(status)["Ready"]["reason"] == "Provisioning"


def test_status_is_rewritten_on_change_never_because_time_passed() -> None:
    state = _state()

    def status(result: ProbeResult, at: datetime.datetime) -> RedisQueueStatus:
        return compose_status(state.status, findings(state, result), at)

    first = status(ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001), NOW)
    later = NOW + datetime.timedelta(days=1)
    faster = status(ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.0002), later)
    down = status(ProbeResult(False, "cache.internal:6379", "timeout", error="no answer"), later)
    assert not status_needs_write(first, faster)
    assert status_needs_write(first, down)


def test_an_unchecked_status_says_so_and_keeps_what_was_injected() -> None:
    state = _state()
    ok = ProbeResult(True, "cache.internal:6379", "ok", latency_seconds=0.001)
    state.status = compose_status(state.status, findings(state, ok), NOW)
    marked = unchecked_status(state.status, NOW + datetime.timedelta(minutes=5)).to_patch()
    conditions = _conditions(marked)
    assert marked["phase"] == "Unknown"
    assert conditions["Ready"]["status"] == conditions["Reachable"]["status"] == "Unknown"
    assert conditions["Ready"]["reason"] == "OperatorStopped"
    assert "no replica took over" in str(conditions["Ready"]["message"])
    assert conditions["Injected"]["status"] == "True"
    assert status_needs_write(state.status, RedisQueueStatus.read(marked))


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0004, "0.4ms"), (0.00099, "1.0ms"), (0.002, "2ms"), (0.0126, "13ms")]
)
def test_latency_reads_in_whole_ms_from_one_ms_and_one_decimal_below(
    seconds: float, shown: str
) -> None:
    assert format_latency(seconds) == shown


def test_status_model_reads_what_the_operator_writes() -> None:
    status = RedisQueueStatus.model_validate(
        {
            "phase": "Ready",
            "mode": "external",
            "endpoint": "redis.example.com:6379",
            "latencyMs": 1.7,
            "lastProbeTime": "2025-01-01T00:00:00Z",
            "observedGeneration": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Reachable",
                    "message": "PING answered in 1.7 ms",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 3,
                }
            ],
        }
    )
    assert status.conditions[0].type == CONDITION_READY
