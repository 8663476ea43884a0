"""kopf handlers: thin wrappers that hand each RedisQueue event to the Reconciler.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

import time
from typing import Any

import kopf

from redisqueue.backoff import exponential_delay

from .api.gate import WriteFenced
from .api.kopfstorage import quiet_settings
from .api.kube import KubeError
from .reconciler import Reconciler
from .resource.errors import InvalidSpecError, SetupError
from .resource.identity import GROUP, PLURAL, VERSION
from .telemetry import metrics

#: Longest pause between two retries of a failing reconciliation.
RETRY_CAP_SECONDS = 60.0


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


def retry_delay(retry: int) -> float:
    """1, 2, 4, ... seconds between retries of a failing reconciliation, at most 60."""
    return exponential_delay(retry + 1, 1.0, RETRY_CAP_SECONDS)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    quiet_settings(settings)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, retry: int, reason: str, **_: Any) -> None:
    started = time.perf_counter()
    outcome = "success"
    try:
        # Without a stored diff base every object is "created" after a restart or failover;
        # only one that never had a status is new (the reconcile skips some searches then).
        created = reason == kopf.Reason.CREATE and not body.get("status")
        await _reconciler(memo).reconcile(body, created=created)
    except InvalidSpecError as exc:
        outcome = "error"
        raise kopf.PermanentError(str(exc)) from None
    except SetupError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(exc.message, delay=retry_delay(retry)) from None
    except KubeError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None
    except WriteFenced:
        outcome = "retry"  # leadership is ending; the next leader reconciles this one
        raise kopf.TemporaryError("not the leader any more", delay=RETRY_CAP_SECONDS) from None
    finally:
        metrics.RECONCILES.labels(outcome).inc()
        metrics.RECONCILE_DURATION.labels(outcome).observe(time.perf_counter() - started)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await _reconciler(memo).finalize(body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None
    except WriteFenced:
        raise kopf.TemporaryError("not the leader any more", delay=RETRY_CAP_SECONDS) from None
