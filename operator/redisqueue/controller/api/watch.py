"""The list+watch loop every follower of a collection uses (RedisQueues on a standby,
Secrets on every replica).

LIST (page by page) then WATCH from the list's version, for ever. Nothing is kept here: a
caller that needs state keeps only what it needs. Whatever ends a watch (the server's
timeout, 410 Gone, an outage, an event too large to read, a bug in a handler) is logged
and the loop lists again, so a follower never stops silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from .gate import WriteFenced
from .kube import EventTooLarge, Kube, KubeError

log = logging.getLogger("redisqueue.watch")

#: Pause before listing again after a failure (doubling up to the cap while it lasts).
RELIST_DELAY_SECONDS: Final = 1.0
RELIST_DELAY_CAP_SECONDS: Final = 30.0

Handle = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Listed = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]


async def follow(
    kube: Kube,
    path: str,
    handle: Handle,
    listed: Listed | None = None,
    *,
    metadata_only: bool = False,
) -> None:
    """LIST ``path`` then WATCH it from there, until cancelled.

    ``listed`` gets all items of each LIST (else ``handle`` gets each as ``ADDED``);
    ``handle`` gets every change after it (``BOOKMARK`` events are not passed on).
    ``metadata_only`` follows PartialObjectMetadata (no Secret data)."""
    delay = RELIST_DELAY_SECONDS
    while True:
        try:
            items: list[Mapping[str, Any]] = []
            version = ""
            async for page, listed_at in kube.list_pages(path, metadata_only=metadata_only):
                items += page
                version = listed_at
            if listed is not None:
                await listed(items)
            else:
                for item in items:
                    await handle("ADDED", item)
            del items
            delay = RELIST_DELAY_SECONDS
            while True:
                async for kind, obj in kube.watch(path, version, metadata_only=metadata_only):
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        await handle(kind, obj)
        except asyncio.CancelledError:
            raise
        except KubeError as exc:
            if exc.status == 410:  # the version is too old; listing again is the cure
                continue
            log.warning("watch %s ended: %s; listing again in %g s", path, exc.message, delay)
        except Exception as exc:  # an outage, an oversized event, or a bug: never stop
            log.warning("watch %s ended: %s; listing again in %g s", path, _describe(exc), delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RELIST_DELAY_CAP_SECONDS)


def _describe(exc: BaseException) -> str:
    # The exception's own text for our errors; only the type for the rest (a handler's
    # error text is anyone's guess, and log lines never carry what a Secret holds).
    if isinstance(exc, EventTooLarge | WriteFenced | TimeoutError):
        return str(exc) or type(exc).__name__
    return type(exc).__name__
