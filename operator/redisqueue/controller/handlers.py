"""kopf handlers: thin wrappers that hand each RedisQueue event to the Reconciler.

Importing this module registers the handlers with kopf's default registry.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from redisqueue.backoff import exponential_delay

from . import metrics
from .errors import InvalidSpecError, SetupError
from .kube import KubeError
from .reconciler import Reconciler
from .spec import GROUP, PLURAL, VERSION

FINALIZER = "redisqueue.dev/finalizer"
ANNOTATION_PREFIX = "redisqueue.dev"
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
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Events are posted by the Reconciler on Ready transitions only, not per handler run.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    # Under a burst of creates the watch lags behind the operator's own patches; without
    # waiting for them, kopf takes a stale copy for a new object and runs creation twice.
    settings.persistence.consistency_timeout = 30.0
    settings.networking.request_timeout = 60


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, retry: int, reason: str, **_: Any) -> None:
    started = time.perf_counter()
    outcome = "success"
    try:
        await _reconciler(memo).reconcile(body, created=reason == kopf.Reason.CREATE)
    except InvalidSpecError as exc:
        outcome = "error"
        raise kopf.PermanentError(str(exc)) from None
    except SetupError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(exc.message, delay=retry_delay(retry)) from None
    except KubeError as exc:
        outcome = "retry"
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None
    finally:
        metrics.RECONCILES.labels(outcome).inc()
        metrics.RECONCILE_DURATION.labels(outcome).observe(time.perf_counter() - started)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await _reconciler(memo).finalize(body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"API error: {exc.message}", delay=retry_delay(retry)) from None


# A stopping daemon is first asked to leave (it does, at its next await on ``stopped``);
# cancelling it at once would interrupt a PING or a status write for nothing.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=5.0, cancellation_timeout=10.0)
async def probe(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """PING this RedisQueue's Redis every healthCheck.intervalSeconds until it goes away."""
    reconciler = _reconciler(memo)
    while not stopped:
        try:
            interval = await reconciler.probe_once(body)
        except KubeError as exc:
            logger.warning("probe tick failed: %s", exc.message)
            interval = 10.0
        await stopped.wait(interval)
