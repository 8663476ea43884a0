"""Waiting, in plain (not asyncio) tests, for something the cluster does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` every quarter second; fail the test once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(0.25)


def poll(
    read: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    interval: float,
    failure: Callable[[T], str],
) -> T:
    """``read()`` every ``interval`` seconds until ``done`` holds for its value; that value.
    Once ``timeout`` has passed: AssertionError, saying ``failure(the last value)``."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(failure(value))
        time.sleep(interval)
