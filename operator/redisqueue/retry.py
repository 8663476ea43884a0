"""Which failures the client retries, as redis-py ``Retry`` classes.

Connection failures and timeouts are retried on the contract's backoff. Errors that waiting
cannot fix are raised at once: authentication and authorization errors (unless the password
comes from a file, which is read again at each attempt and may have been rotated), error
replies, a command whose reply was lost and that may have run
(:class:`~redisqueue.connection.CommandMayHaveRun`; a blocking pop whose element may already
be gone is its :class:`~redisqueue.connection.BlockingCommandInterrupted`), and an exhausted
pool. Which commands may be sent again is decided where they are read
(:mod:`redisqueue.connection`, :mod:`redisqueue.commands`): a timeout or a lost connection
that reaches this policy is one where repeating is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio.retry
import redis.retry
from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError

from .connection import CommandMayHaveRun
from .pool import PoolExhaustedError

T = TypeVar("T")

# Errors that waiting cannot fix: retrying them only delays the real answer.
NOT_RETRYABLE: tuple[type[Exception], ...] = (
    AuthenticationError,
    AuthorizationError,
    ResponseError,
    CommandMayHaveRun,
    PoolExhaustedError,
)
# With a password file, waiting can fix an authentication error: the file is re-read.
NOT_RETRYABLE_WITH_FILE = tuple(e for e in NOT_RETRYABLE if e is not AuthenticationError)


def checker(not_retryable: tuple[type[BaseException], ...]) -> Callable[[Exception], bool]:
    """A retry check that refuses ``not_retryable`` errors."""

    def retryable(error: Exception) -> bool:
        return not isinstance(error, not_retryable)

    return retryable


_retryable = checker(NOT_RETRYABLE)


def _combine(
    check: Callable[[Exception], bool],
    is_retryable: Callable[[Exception], bool] | None,
) -> Callable[[Exception], bool]:
    # Called once per command: no closure unless redis-py passed its own check.
    if is_retryable is None:
        return check
    return lambda error: check(error) and is_retryable(error)


class ContractRetry(redis.retry.Retry):
    """redis-py's Retry that gives up at once on errors waiting cannot fix."""

    check: Callable[[Exception], bool] = staticmethod(_retryable)

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        return super().call_with_retry(
            do, fail, _combine(self.check, is_retryable), with_failure_count
        )


class AsyncContractRetry(redis.asyncio.retry.Retry):
    """The asyncio twin of :class:`ContractRetry`.

    ``call_with_retry`` must stay a coroutine function: redis-py 8.2 replaces any retry of an
    asyncio client whose ``call_with_retry`` is not one by its stock ``Retry`` (with a
    warning), which would drop this policy's rules.
    """

    check: Callable[[Exception], bool] = staticmethod(_retryable)

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        return await super().call_with_retry(
            do, fail, _combine(self.check, is_retryable), with_failure_count
        )
