"""Leader election settings and the Lease's time format (the election itself runs against a
real API server in tests/e2e/test_leader_election.py)."""

from __future__ import annotations

import datetime
import re

import pytest

from redisqueue.controller.api.lease import LeaseSettings, micro_time


def test_a_lease_shorter_than_two_retries_is_refused_naming_both() -> None:
    with pytest.raises(ValueError, match=r"lease duration \(3 s\).*retry period \(2 s\)"):
        LeaseSettings(namespace="ns", name="lease", identity="a", lease_seconds=3)


def test_micro_time_is_what_the_lease_api_accepts() -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=datetime.UTC)
    assert micro_time(moment) == "2026-01-02T03:04:05.006000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())


def test_the_renew_deadline_defaults_below_the_lease_and_must_stay_there() -> None:
    settings = LeaseSettings(namespace="ns", name="lease", identity="a")
    assert (settings.retry_seconds, settings.renew_deadline_seconds, settings.lease_seconds) == (
        2.0,
        10.0,
        15.0,
    )
    with pytest.raises(ValueError, match=r"renew deadline \(15 s\) must lie between"):
        LeaseSettings(namespace="ns", name="l", identity="a", renew_deadline_seconds=15)
