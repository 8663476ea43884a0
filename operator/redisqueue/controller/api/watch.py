"""The list+watch loop every follower of a collection uses (RedisQueues on a standby,
Secrets on every replica).

LIST then WATCH from the list's version, for ever. Nothing is kept here: a caller that needs
state keeps only what it needs. A follower that takes objects one at a time (``listed`` not
given: the Secrets) gets the current state as a *watch list* (``sendInitialEvents``): one
event per object, so however many and however large the objects in the collection, no more
than one of them is held at a time; where the API server does not offer that, it lists page
by page and hands each page over before reading the next. Whatever ends a watch (the
server's timeout, 410 Gone, an outage, an event too large to read, a bug in a handler) is
logged and the loop watches or lists again, so a follower never stops silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from .gate import WriteFenced
from .kube import (
    INITIAL_EVENTS_END,
    MAX_EVENT_BYTES,
    PAGE_SIZE,
    WATCH_TIMEOUT_SECONDS,
    EventTooLarge,
    Kube,
    KubeError,
)

log = logging.getLogger("redisqueue.watch")

#: Pause before listing again after a failure (doubling up to the cap while it lasts).
RELIST_DELAY_SECONDS: Final = 1.0
RELIST_DELAY_CAP_SECONDS: Final = 30.0

Handle = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Listed = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]


class _Restart(Exception):
    """Start from a fresh list (the watch list was refused, or its version expired)."""


async def follow(
    kube: Kube,
    path: str,
    handle: Handle,
    listed: Listed | None = None,
    *,
    metadata_only: bool = False,
    max_event_bytes: int = MAX_EVENT_BYTES,
    timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    page_size: int = PAGE_SIZE,
) -> None:
    """LIST ``path`` then WATCH it from there, until cancelled.

    ``listed`` gets all items of each LIST at once (it needs them together, to tell which
    objects went away); without it ``handle`` gets each existing object as ``ADDED``, one
    at a time (a watch list), and every change after. ``BOOKMARK`` events are not passed on.
    ``metadata_only`` follows PartialObjectMetadata (no Secret data)."""
    delay = RELIST_DELAY_SECONDS
    watch_list = listed is None  # until the API server says it does not offer one
    while True:
        try:
            if watch_list:
                try:
                    version = await _watch_list(
                        kube, path, handle, metadata_only, max_event_bytes, timeout_seconds
                    )
                except KubeError as exc:
                    if exc.status not in (400, 403, 422) or "sendInitialEvents" not in exc.message:
                        raise
                    log.info("watch %s: no watch list here (%s); listing pages", path, exc.message)
                    watch_list = False
                    continue
            else:
                version = await _list(kube, path, handle, listed, metadata_only, page_size)
            delay = RELIST_DELAY_SECONDS
            while True:
                version = await _watch(
                    kube, path, handle, version, metadata_only, max_event_bytes, timeout_seconds
                )
        except asyncio.CancelledError:
            raise
        except _Restart:
            continue
        except KubeError as exc:
            if exc.status == 410:  # the version is too old; listing again is the cure
                log.info("watch %s: version expired (410 Gone); listing again", path)
                continue
            log.warning("watch %s ended: %s; listing again in %g s", path, exc.message, delay)
        except Exception as exc:  # an outage, an oversized event, or a bug: never stop
            log.warning("watch %s ended: %s; listing again in %g s", path, _describe(exc), delay)
            if isinstance(exc, EventTooLarge):
                watch_list = False  # the next state comes in pages, where size is no limit
        await asyncio.sleep(delay)
        delay = min(delay * 2, RELIST_DELAY_CAP_SECONDS)


async def _list(
    kube: Kube,
    path: str,
    handle: Handle,
    listed: Listed | None,
    metadata_only: bool,
    page_size: int,
) -> str:
    """LIST page by page; the version to watch from."""
    items: list[Mapping[str, Any]] = []
    version = ""
    async for page, listed_at in kube.list_pages(
        path, metadata_only=metadata_only, page_size=page_size
    ):
        version = listed_at
        if listed is not None:
            items += page
        else:
            for item in page:  # handed over page by page, never all kept
                await handle("ADDED", item)
    if listed is not None:
        await listed(items)
    return version


async def _watch_list(
    kube: Kube,
    path: str,
    handle: Handle,
    metadata_only: bool,
    max_event_bytes: int,
    timeout_seconds: int,
) -> str:
    """A watch that starts with the current state, one object at a time; returns the version
    to watch on from when the server ends it."""
    version = ""
    synced = False
    async for kind, obj in kube.watch(
        path,
        "",
        metadata_only=metadata_only,
        max_event_bytes=max_event_bytes,
        timeout_seconds=timeout_seconds,
        initial_events=True,
    ):
        meta = obj.get("metadata") or {}
        version = str(meta.get("resourceVersion") or version)
        if kind == "BOOKMARK":
            if (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
                synced = True
            continue
        await handle(kind, obj)
    if not synced:
        # Ended before the current state was complete: it must be read again from the start.
        log.info("watch %s ended before its initial events were complete; again", path)
        raise _Restart
    log.debug("watch %s ended by the server; watching again from %s", path, version)
    return version


async def _watch(
    kube: Kube,
    path: str,
    handle: Handle,
    version: str,
    metadata_only: bool,
    max_event_bytes: int,
    timeout_seconds: int,
) -> str:
    """One WATCH from ``version`` until the server ends it; the version to go on from."""
    started = time.monotonic()
    events = 0
    async for kind, obj in kube.watch(
        path,
        version,
        metadata_only=metadata_only,
        max_event_bytes=max_event_bytes,
        timeout_seconds=timeout_seconds,
    ):
        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
        if kind != "BOOKMARK":
            events += 1
            await handle(kind, obj)
    log.debug(
        "watch %s ended by the server after %.0f s and %d event(s); watching again from %s",
        path,
        time.monotonic() - started,
        events,
        version,
    )
    return version


def _describe(exc: BaseException) -> str:
    # The exception's own text for our errors; only the type for the rest (a handler's
    # error text is anyone's guess, and log lines never carry what a Secret holds).
    if isinstance(exc, EventTooLarge | WriteFenced | TimeoutError):
        return str(exc) or type(exc).__name__
    return type(exc).__name__
