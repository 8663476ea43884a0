"""Backoff: 1, 2, 4, 8, 16, 30, 30 s before jitter, never above the cap."""

from __future__ import annotations

import random

import pytest
from redis.backoff import ExponentialBackoff

from redisqueue.backoff import ContractBackoff, schedule


def test_schedule_for_base_1_cap_30() -> None:
    assert schedule(1, 30, 7) == [1, 2, 4, 8, 16, 30, 30]


def test_nominal_delay_matches_schedule_per_failure_count() -> None:
    backoff = ContractBackoff(1, 30)
    assert [backoff.nominal(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


def test_first_retry_waits_about_base_not_twice_base() -> None:
    ours = ContractBackoff(1, 30, rng=random.Random(1))
    first = [ours.compute(1) for _ in range(200)]
    assert min(first) >= 0.8 and max(first) <= 1.2
    # redis-py's own class would wait 2 s first: the off-by-one the contract avoids
    assert ExponentialBackoff(cap=30, base=1).compute(1) == 2


def test_jitter_spreads_delays_and_never_exceeds_cap() -> None:
    backoff = ContractBackoff(1, 30, rng=random.Random(7))
    for failures in range(1, 40):
        delays = {backoff.compute(failures) for _ in range(50)}
        assert max(delays) <= 30
        assert min(delays) >= 0.8 * min(30, 2 ** (failures - 1))
        assert len(delays) > 1  # jitter really varies


def test_huge_failure_counts_do_not_overflow() -> None:
    assert ContractBackoff(1, 30).nominal(10_000) == 30


def test_on_retry_hook_sees_each_retry() -> None:
    seen: list[tuple[int, float]] = []
    backoff = ContractBackoff(0.5, 4, on_retry=lambda n, d: seen.append((n, d)))
    for n in (1, 2, 3):
        backoff.compute(n)
    assert [n for n, _ in seen] == [1, 2, 3]


@pytest.mark.parametrize(("base", "cap"), [(0, 30), (-1, 30), (2, 1)])
def test_invalid_parameters_are_rejected(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"base|cap"):
        ContractBackoff(base, cap)
