"""When re-applying the contract to an app Secret can be skipped (real API server)."""

from __future__ import annotations

from harness.kube_controlplane import ControlPlane
from redisqueue.contract import ConnectionContract
from redisqueue.controller.api.kube import Kube
from redisqueue.controller.api.paths import object_path
from redisqueue.controller.objects.appsecret import build_injected_secret_apply
from redisqueue.controller.resource.names import QueueNames, inject_field_manager
from redisqueue.controller.steps.inject import already_applied


async def test_an_unchanged_contract_is_not_applied_again_and_any_difference_is(
    control_plane: ControlPlane, namespace: str
) -> None:
    kube = Kube.from_kubeconfig(control_plane.kubeconfig)
    manager = inject_field_manager("queue")
    path = object_path("v1", "Secret", namespace, "app")
    contract = ConnectionContract(host="redis.example", password="pw-1", username="worker")
    body = build_injected_secret_apply(
        "app", namespace, contract, source=QueueNames(namespace, "queue")
    )
    try:
        assert not already_applied(None, body, manager)  # no Secret yet
        await kube.apply(body, field_manager=manager)
        live = await kube.get(path)
        assert already_applied(live, body, manager)

        rotated = ConnectionContract(host="redis.example", password="pw-2", username="worker")
        changed = build_injected_secret_apply(
            "app", namespace, rotated, source=QueueNames(namespace, "queue")
        )
        assert not already_applied(live, changed, manager)

        # A key that left the contract (the username) is still there: the apply removes it.
        fewer = build_injected_secret_apply(
            "app",
            namespace,
            ConnectionContract(host="redis.example", password="pw-1"),
            source=QueueNames(namespace, "queue"),
        )
        assert not already_applied(live, fewer, manager)
        await kube.apply(fewer, field_manager=manager)
        live = await kube.get(path)
        assert live is not None and "REDIS_USERNAME" not in live["data"]
        assert already_applied(live, fewer, manager)

        # The same values written by someone else are not this RedisQueue's.
        assert not already_applied(live, fewer, inject_field_manager("other-queue"))
    finally:
        await kube.delete(path)
        await kube.close()
