"""Users of the end-to-end tests: ServiceAccounts with exactly the rights a test gives them,
acting through their own tokens."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import yaml

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import token_kubeconfig
from redisqueue.controller.api.kube import Kube

#: ``async with as_user(user, rules) as kube``, the fixture of tests/e2e/conftest.py:
#: :func:`user_kube` in the test's namespace.
AsUser = Callable[[str, list[dict[str, Any]]], AbstractAsyncContextManager[Kube]]


@contextlib.asynccontextmanager
async def user_kube(
    plane: ControlPlane, namespace: str, user: str, rules: list[dict[str, Any]], directory: Path
) -> AsyncIterator[Kube]:
    """A :class:`Kube` acting as ServiceAccount ``user`` with exactly ``rules`` in ``namespace``."""
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": user}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": user},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
            "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}],
        },
    ]
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))
    kube = Kube.from_kubeconfig(token_kubeconfig(plane, namespace, user, directory))
    try:
        yield kube
    finally:
        await kube.close()
