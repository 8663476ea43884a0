"""Fixtures of the end-to-end tests on the real control plane."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from harness.e2e_users import AsUser, user_kube
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    OperatorToken,
    apply_secret,
    create_rq,
    external_spec,
    service_account_kubeconfig,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube


@pytest.fixture
def external_queue(kube: Kube, namespace: str, redis_server: RedisServer) -> ExternalQueue:
    """The start most end-to-end tests share: the Secret ``redis-auth`` with ``redis_server``'s
    password, a RedisQueue ``name`` of ``spec`` (by default :func:`external_spec` on
    ``redis_server``), and the wait until its ``Ready`` condition has ``status`` (and
    ``reason``, when given). Returns the RedisQueue as it was then."""

    async def make(
        name: str,
        spec: dict[str, Any] | None = None,
        status: str = "True",
        reason: str | None = None,
    ) -> dict[str, Any]:
        await apply_secret(kube, namespace, "redis-auth", {"password": redis_server.password or ""})
        await create_rq(
            kube, namespace, name, external_spec(redis_server) if spec is None else spec
        )
        return await wait_for_ready(kube, namespace, name, status, reason)

    return make


@pytest.fixture
def operator_token(
    operator: OperatorProcess, control_plane: ControlPlane, tmp_path: Path
) -> OperatorToken:
    """The operator's token, bound by the install's RBAC, with the operator running: what
    someone holding a leaked token could do with it."""
    return OperatorToken(control_plane, service_account_kubeconfig(control_plane, tmp_path))


@pytest.fixture
def as_user(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> AsUser:
    """``as_user(user, rules)``: :func:`user_kube` for ServiceAccount ``user`` with exactly
    ``rules`` in the test's namespace, its kubeconfig in ``tmp_path``."""

    def open_as(user: str, rules: list[dict[str, Any]]) -> AbstractAsyncContextManager[Kube]:
        return user_kube(control_plane, namespace, user, rules, tmp_path)

    return open_as
