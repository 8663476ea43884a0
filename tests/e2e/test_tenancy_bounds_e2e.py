"""Bounds a tenant's input cannot raise, on the real API server and on both replicas.

* Metric series exist only for the queue keys a RedisQueue configures now and for
  RedisQueues that exist, on the leader and on the standby, however often ``spec.queues``
  is edited.
* The Secret watch outlives whatever ends it: an event larger than the reader takes, the API
  server's own timeouts, and a large Secret next to the ones RedisQueues read; rotations
  and new RedisQueues are still seen by both replicas afterwards.
* Many large Secrets in a tenant's namespace do not raise the replicas' memory: they see
  Secrets as metadata, one at a time.
* A deleted auth Secret makes its RedisQueue not Ready, with an Event.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    events_for,
    eventually,
    external_spec,
    install_crd_and_rbac,
    leader_and_standby,
    peak_rss_mib,
    rq_path,
    samples_of,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.api.watch import follow

pytestmark = pytest.mark.k8s


@pytest.fixture
async def replicas(
    control_plane: ControlPlane, tmp_path: Path
) -> AsyncIterator[tuple[OperatorProcess, OperatorProcess]]:
    install_crd_and_rbac(control_plane)
    pair = await leader_and_standby(control_plane, tmp_path)
    yield pair
    for process in pair:
        process.stop()


def series(process: OperatorProcess, namespace: str, name: str) -> list[tuple[str, dict[str, str]]]:
    return samples_of(process, namespace, name)


def depth_keys(samples: list[tuple[str, dict[str, str]]]) -> set[str]:
    return {labels["key"] for metric, labels in samples if metric == "redisqueue_queue_depth"}


async def test_series_follow_the_current_keys_and_redisqueues_on_both_replicas(
    replicas: tuple[OperatorProcess, OperatorProcess],
    kube: Kube,
    namespace: str,
    external_queue: ExternalQueue,
) -> None:
    await external_queue("edited")
    edits = 40
    for edit in range(edits):
        keys = [{"key": f"round{edit}:q{i}"} for i in range(5)]
        await kube.merge_patch(rq_path(namespace, "edited"), {"spec": {"queues": keys}})
        await asyncio.sleep(0.2)  # some rounds get probed, some do not
    current = {f"round{edits - 1}:q{i}" for i in range(5)}

    async def only_current() -> bool:
        return all(depth_keys(series(p, namespace, "edited")) == current for p in replicas)

    await eventually(only_current, timeout=30, what="depth series of the current keys only")
    for process in replicas:
        lines = series(process, namespace, "edited")
        # Five depth series and the few per-RedisQueue ones; nothing of the 195 old keys.
        assert len(lines) < 40, (process.identity, len(lines))

    await kube.delete(rq_path(namespace, "edited"))

    async def gone_everywhere() -> bool:
        return all(series(p, namespace, "edited") == [] for p in replicas)

    await eventually(gone_everywhere, timeout=30, what="the deleted RedisQueue's series gone")


async def test_a_rotation_after_a_large_secret_reaches_both_replicas(
    replicas: tuple[OperatorProcess, OperatorProcess],
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    external_queue: ExternalQueue,
) -> None:
    leader, standby = replicas
    await external_queue("first")
    # The largest Secret the API server stores: ~1 MiB of data, ~250 KiB of annotations.
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "huge",
                "namespace": namespace,
                "annotations": {"example.com/blob": "a" * 250_000},
            },
            "data": {"blob": base64.b64encode(b"b" * 700_000).decode()},
        }
    )
    # A RedisQueue made after it is seen by the standby, and a rotation reaches both.
    await create_rq(kube, namespace, "second", external_spec(redis_server))

    async def standby_sees_second() -> bool:
        return standby.health(namespace, "second")[0] == 200

    await eventually(standby_sees_second, timeout=30, what="the standby probing 'second'")
    rotated = (redis_server.password or "") + "-rotated"
    admin = redis_server.admin()
    admin.config_set("requirepass", rotated)
    admin.client_kill_filter(_type="normal", skipme=True)  # every probe must log in again
    admin.close()
    await apply_secret(kube, namespace, "redis-auth", {"password": rotated})

    async def both_follow() -> bool:
        return all(p.health(namespace, "first")[0] == 200 for p in (leader, standby))

    await eventually(
        both_follow, timeout=30, what="both replicas PINGing with the rotated password"
    )
    assert "huge" not in standby.logs() and "Traceback" not in standby.logs()


async def test_the_watch_survives_an_oversized_event_and_the_servers_timeouts(
    control_plane: ControlPlane,
    kube: Kube,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str]] = []

    async def handle(kind: str, obj: Mapping[str, Any]) -> None:
        seen.append((kind, obj["metadata"]["name"]))

    caplog.set_level(logging.DEBUG, logger="redisqueue.watch")
    path = object_path("v1", "Secret", namespace)
    # The reader's limit is lowered to 64 KiB here (8 MiB in the operator, more than any
    # object's metadata); the server ends every watch after 1 s (300 s in the operator).
    task = asyncio.create_task(
        follow(
            kube,
            path,
            handle,
            metadata_only=True,
            max_event_bytes=64 * 1024,
            timeout_seconds=1,
        )
    )
    try:
        await apply_secret(kube, namespace, "before", {"k": "v"})
        await eventually(lambda: _has(seen, "before"), what="the first Secret")
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "oversized",
                    "namespace": namespace,
                    "annotations": {"example.com/blob": "x" * 100_000},
                },
            }
        )
        await asyncio.sleep(3)  # several watches end by the server's timeout meanwhile
        await apply_secret(kube, namespace, "after", {"k": "v"})
        await eventually(lambda: _has(seen, "after"), what="a Secret made after both")
        # The oversized one is not lost either: the list after the failure carries it.
        assert _has_sync(seen, "oversized")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    text = caplog.text
    assert f"watch {path} ended: watch {path}: an event is larger than 65536 bytes" in text
    assert f"watch {path} ended by the server" in text


async def _has(seen: list[tuple[str, str]], name: str) -> bool:
    return _has_sync(seen, name)


def _has_sync(seen: list[tuple[str, str]], name: str) -> bool:
    return any(n == name for _, n in seen)


async def test_many_large_secrets_leave_both_replicas_memory_alone(
    control_plane: ControlPlane,
    kube: Kube,
    namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    install_crd_and_rbac(control_plane)
    count, annotation, data = 250, 200_000, 100_000
    pair = await leader_and_standby(control_plane, tmp_path)
    try:
        await asyncio.sleep(3)
        baseline = [peak_rss_mib(p) for p in pair]
    finally:
        for process in pair:
            process.stop()
    blob = base64.b64encode(b"d" * data).decode()
    semaphore = asyncio.Semaphore(8)

    async def make(i: int) -> None:
        async with semaphore:
            await kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": f"bulk-{i}",
                        "namespace": namespace,
                        "annotations": {"example.com/blob": "a" * annotation},
                    },
                    "data": {"blob": blob},
                }
            )

    await asyncio.gather(*(make(i) for i in range(count)))
    # Both replicas start with all of them there (their first look is the largest), and see
    # a few hundred more changes while they run.
    pair = await leader_and_standby(control_plane, tmp_path)
    try:
        for i in range(0, count, 2):
            path = object_path("v1", "Secret", namespace, f"bulk-{i}")
            await kube.merge_patch(path, {"metadata": {"labels": {"touched": "yes"}}})
        await asyncio.sleep(3)
        peaks = [peak_rss_mib(p) for p in pair]
        assert all(p.http("/readyz")[0] == 200 for p in pair)
    finally:
        for process in pair:
            process.stop()
    megabytes = count * (annotation + data) / 2**20
    with capsys.disabled():
        print(
            f"\n{count} Secrets, {megabytes:.0f} MiB (annotations and data): peak RSS of the "
            f"two replicas {baseline[0]:.0f}/{baseline[1]:.0f} MiB without them, "
            f"{peaks[0]:.0f}/{peaks[1]:.0f} MiB with them"
        )
    for before, after in zip(baseline, peaks, strict=True):
        assert after - before < 48, f"peak RSS grew from {before:.0f} to {after:.0f} MiB"
        assert after < 384  # the chart's memory limit


async def test_a_deleted_auth_secret_makes_the_redisqueue_not_ready_with_an_event(
    operator: OperatorProcess, kube: Kube, namespace: str, external_queue: ExternalQueue
) -> None:
    await external_queue("orphan")
    await kube.delete(object_path("v1", "Secret", namespace, "redis-auth"))
    rq = await wait_for_ready(kube, namespace, "orphan", "False", "SecretNotFound", timeout=30)
    assert (
        f"Secret {namespace}/redis-auth (password) does not exist"
        in (condition(rq, "Ready")["message"])
    )

    async def warned() -> list[dict[str, Any]]:
        events = await events_for(kube, namespace, "orphan")
        return [e for e in events if e["type"] == "Warning" and "redis-auth" in e["message"]]

    assert await eventually(warned, timeout=30, what="a Warning event naming the Secret")
    assert operator.health(namespace, "orphan")[0] == 404  # not probed without credentials
