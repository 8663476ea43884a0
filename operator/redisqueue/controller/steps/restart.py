"""Restarting the workloads named in ``spec.inject[].restart`` and following their rollouts.

Reads and patches only the workloads a RedisQueue names; its author was checked at admission
for ``patch`` on each of them, and the operator's object-shape policy lets it change nothing
in them but the restart annotation (:mod:`..objects.restart`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..api.kube import Kube, KubeError
from ..api.paths import object_path
from ..objects.restart import build_restart_patch, describe, rolled_out, stamped
from ..resource.spec import RestartTarget
from ..telemetry.logs import about

log = logging.getLogger("redisqueue.operator")


def _path(namespace: str, target: RestartTarget) -> str:
    return object_path("apps/v1", target.kind, namespace, target.name)


async def restart(
    kube: Kube, namespace: str, name: str, targets: Iterable[RestartTarget], stamp: str
) -> list[str]:
    """Restart each target for change ``stamp`` unless it already was; returns the problems
    (a workload that is missing or may not be patched), one sentence each.

    ``name`` is the RedisQueue's, for the log."""
    problems = []
    for target in targets:
        path = _path(namespace, target)
        try:
            live = await kube.get(path)
            if live is None:
                problems.append(f"{describe(target)} does not exist")
                continue
            if stamped(live) == stamp:
                continue
            await kube.merge_patch(path, build_restart_patch(stamp))
        except KubeError as exc:
            problems.append(f"could not restart {describe(target)}: {exc.message}")
            continue
        log.info(
            "%s/%s: restarting %s: its connection contract changed",
            namespace,
            name,
            describe(target),
            extra=about(namespace, name),
        )
    return problems


async def still_rolling(
    kube: Kube, namespace: str, targets: Iterable[RestartTarget], stamp: str
) -> list[str]:
    """The targets whose restart for ``stamp`` has not rolled out yet (missing workloads and
    ones that cannot be read count as done: there is nothing the operator could wait for)."""
    pending = []
    for target in targets:
        try:
            live = await kube.get(_path(namespace, target))
        except KubeError:
            continue
        if live is not None and not rolled_out(live, stamp):
            pending.append(describe(target))
    return pending
