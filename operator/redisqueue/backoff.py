"""The contract's retry schedule as a redis-py backoff.

Delay before retry ``n`` (1-based) is ``min(cap, base * 2**(n-1))`` with +/-20 % jitter,
clamped to ``cap``: for base 1 s and cap 30 s that is about 1, 2, 4, 8, 16, 30, 30, ...
redis-py's own ``ExponentialBackoff`` computes ``base * 2**n`` for the n-th failure and so
waits 2 s first; this class is the one the contract promises.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from redis.backoff import AbstractBackoff

log = logging.getLogger("redisqueue.client")

JITTER = 0.2


def exponential_delay(n: int, base: float, cap: float) -> float:
    """The contract's delay before retry ``n`` (1-based), before jitter:
    ``min(cap, base * 2**(n-1))``."""
    exponent = min(max(n, 1) - 1, 63)  # 2**63 s is already far above any cap
    return float(min(cap, base * 2**exponent))


def schedule(base: float, cap: float, attempts: int) -> list[float]:
    """The delays before jitter, one per retry: ``[base, 2*base, 4*base, ..., cap, cap]``."""
    return [exponential_delay(n, base, cap) for n in range(1, attempts + 1)]


class ContractBackoff(AbstractBackoff):
    """Exponential backoff with jitter, starting at ``base`` and never above ``cap``.

    ``on_retry`` is called with (retry number, delay) each time redis-py asks for a delay,
    which is exactly once per retry; the client uses it for its retry metric and log line.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        *,
        jitter: float = JITTER,
        on_retry: Callable[[int, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if base <= 0:
            raise ValueError("base must be > 0")
        if cap < base:
            raise ValueError("cap must be >= base")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.on_retry = on_retry
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def nominal(self, failures: int) -> float:
        """The delay before jitter for the ``failures``-th consecutive failure (1-based)."""
        return exponential_delay(failures, self.base, self.cap)

    def compute(self, failures: int) -> float:
        nominal = self.nominal(failures)
        spread = nominal * self.jitter
        delay = min(self.cap, max(0.0, nominal + self._rng.uniform(-spread, spread)))
        if self.on_retry is not None:
            self.on_retry(failures, delay)
        return delay

    def __deepcopy__(self, memo: dict[int, object]) -> ContractBackoff:
        # redis-py deep-copies the Retry for every connection; the copies must keep
        # reporting to the same client's metrics and log, so the hook is shared.
        return ContractBackoff(
            self.base, self.cap, jitter=self.jitter, on_retry=self.on_retry, rng=self._rng
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContractBackoff):
            return NotImplemented
        return (self.base, self.cap, self.jitter) == (other.base, other.cap, other.jitter)

    def __hash__(self) -> int:
        return hash((self.base, self.cap, self.jitter))
