"""The operator's finalizer, added by the operator itself before anything is written for a
RedisQueue, and never at the cost of a finalizer someone else put there."""

from __future__ import annotations

from typing import Any, cast

import pytest

from harness.fake_kube import FakeKube
from redisqueue.controller.api.kube import Kube, KubeError
from redisqueue.controller.resource.identity import FINALIZER
from redisqueue.controller.steps import finalizer

NAMESPACE = "shop"


def as_kube(fake_kube: FakeKube) -> Kube:
    return cast(Kube, fake_kube)  # the client's interface, in memory


def stored(fake_kube: FakeKube, **meta: Any) -> dict[str, Any]:
    return fake_kube.put(
        {
            "apiVersion": "redisqueue.dev/v1alpha1",
            "kind": "RedisQueue",
            "metadata": {"name": "orders", "namespace": NAMESPACE, **meta},
            "spec": {},
        }
    )


def finalizers(fake_kube: FakeKube) -> list[str]:
    rq = fake_kube.find("RedisQueue", NAMESPACE, "orders")
    assert rq is not None
    return list(rq["metadata"].get("finalizers") or [])


async def test_the_finalizer_is_added_once_after_any_other() -> None:
    fake_kube = FakeKube()
    body = stored(fake_kube, finalizers=["example.com/backup"])
    await finalizer.hold(as_kube(fake_kube), body)
    assert finalizers(fake_kube) == ["example.com/backup", FINALIZER]
    again = fake_kube.find("RedisQueue", NAMESPACE, "orders")
    fake_kube.requests.clear()
    await finalizer.hold(as_kube(fake_kube), again or {})
    assert fake_kube.requests == []  # there already: no request


@pytest.mark.parametrize("theirs", [[], ["example.com/backup"]])
async def test_a_list_changed_since_the_read_is_refused_and_kept(theirs: list[str]) -> None:
    fake_kube = FakeKube()
    read = stored(fake_kube, finalizers=theirs)
    # Someone adds a finalizer after the operator read the object.
    stored(fake_kube, finalizers=[*theirs, "example.com/audit"])
    with pytest.raises(KubeError) as refused:
        await finalizer.hold(as_kube(fake_kube), read)
    assert refused.value.status == 422
    assert finalizers(fake_kube) == [*theirs, "example.com/audit"]


async def test_no_finalizer_is_added_to_a_redisqueue_being_deleted() -> None:
    fake_kube = FakeKube()
    body = stored(fake_kube, deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["x.io/y"])
    assert finalizer.hold_ops(body) is None
    await finalizer.hold(as_kube(fake_kube), body)
    assert fake_kube.writes() == []
