"""Fail closed: without its admission policies in force, the operator acts on no RedisQueue.

The admission policies are what checks a RedisQueue's author; without them every check of
the first pass is gone. Real kube-apiserver, the install path's CRD, RBAC and policies, and
the real operator with its ServiceAccount, checking the policies every 2 s here
(REDISQUEUE_ADMISSION_CHECK_SECONDS; five minutes by default). Covered: a binding deleted
while it runs, the CRD applied alone, a policy changed from what is shipped, a cluster that
does not serve ValidatingAdmissionPolicy at all, and the single-tenant opt-out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    ExternalQueue,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    external_spec,
    install_crd_and_rbac,
    read_secret,
    service_account_kubeconfig,
    wait_for_ready,
)
from harness.redis_server import RedisServer
from redisqueue.controller.api.kube import Kube

pytestmark = pytest.mark.k8s

BINDING = "validatingadmissionpolicybinding"
POLICY = "validatingadmissionpolicy"
POLICIES = (
    "redisqueue-author-permissions",
    "redisqueue-author-provision",
    "redisqueue-operator-object-shapes",
    "redisqueue-operator-restarts",
    "redisqueue-operator-policy",
)


def guarded_operator(plane: ControlPlane, workdir: Path, **environ: str) -> OperatorProcess:
    """An operator with the install's ServiceAccount, checking the policies every 2 s (not
    started yet)."""
    return OperatorProcess(
        service_account_kubeconfig(plane, workdir),
        workdir,
        identity=f"guarded-{len(environ)}",
        environ={"REDISQUEUE_ADMISSION_CHECK_SECONDS": "2", **environ},
    )


@pytest.fixture
def installed(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """The install path, put back as shipped whatever the test removed or changed."""
    install_crd_and_rbac(control_plane)
    yield control_plane
    for name in POLICIES:  # whatever a test changed goes, then the shipped ones come back
        control_plane.kubectl("delete", BINDING, name, "--ignore-not-found")
        control_plane.kubectl("delete", POLICY, name, "--ignore-not-found")
    install_crd_and_rbac(control_plane)


async def test_a_missing_binding_stops_the_operator_until_it_is_back(
    installed: ControlPlane,
    kube: Kube,
    namespace: str,
    redis_server: RedisServer,
    tmp_path: Path,
    external_queue: ExternalQueue,
) -> None:
    cp = installed
    with guarded_operator(cp, tmp_path) as operator:
        await external_queue("jobs")
        assert operator.health(namespace, "jobs")[0] == 200

        cp.kubectl("delete", BINDING, "redisqueue-author-permissions")
        rq = await wait_for_ready(kube, namespace, "jobs", "False", "AdmissionPoliciesMissing")
        message = condition(rq, "Ready")["message"]
        assert (
            "ValidatingAdmissionPolicyBinding redisqueue-author-permissions is not installed"
            in (message)
        )
        assert rq["status"]["phase"] == "Paused"
        assert operator.health(namespace, "jobs")[0] == 404  # no probe on either role
        # What the missing policy would have refused is not done: nothing is injected.
        await create_rq(
            kube, namespace, "late", external_spec(redis_server, inject=[{"secretName": "app"}])
        )
        await wait_for_ready(kube, namespace, "late", "False", "AdmissionPoliciesMissing")
        assert await read_secret(kube, namespace, "app") is None

        install_crd_and_rbac(cp)
        await wait_for_ready(kube, namespace, "jobs", timeout=30)
        await wait_for_ready(kube, namespace, "late", timeout=30)
        assert (await read_secret(kube, namespace, "app") or {}).get("REDIS_PORT") == str(
            redis_server.port
        )
        logs = operator.logs()
        assert (
            "ValidatingAdmissionPolicyBinding redisqueue-author-permissions is not installed"
            in logs
        )
        assert "admission policies in force" in logs


async def test_with_the_crd_applied_alone_the_operator_acts_on_nothing(
    installed: ControlPlane, namespace: str, tmp_path: Path, external_queue: ExternalQueue
) -> None:
    cp = installed
    for name in POLICIES:
        cp.kubectl("delete", BINDING, name, "--ignore-not-found")
        cp.kubectl("delete", POLICY, name, "--ignore-not-found")
    with guarded_operator(cp, tmp_path) as operator:
        rq = await external_queue("alone", None, "False", "AdmissionPoliciesMissing")
        message = condition(rq, "Ready")["message"]
        for name in POLICIES:
            assert f"ValidatingAdmissionPolicy {name} is not installed" in message
        assert operator.health(namespace, "alone")[0] == 404


async def test_a_policy_changed_from_what_is_shipped_is_not_trusted(
    installed: ControlPlane, tmp_path: Path, external_queue: ExternalQueue
) -> None:
    cp = installed
    policy = json.loads(
        cp.kubectl("get", POLICY, "redisqueue-author-permissions", "-o", "json").stdout
    )
    policy["spec"]["validations"][0]["expression"] = "true"  # reading any Secret allowed
    cp.kubectl("replace", "-f", "-", input=json.dumps(policy))
    binding = json.loads(
        cp.kubectl("get", BINDING, "redisqueue-operator-policy", "-o", "json").stdout
    )
    binding["spec"]["matchResources"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "nowhere"}}
    }
    cp.kubectl("replace", "-f", "-", input=json.dumps(binding))
    with guarded_operator(cp, tmp_path):
        rq = await external_queue("changed", None, "False", "AdmissionPoliciesMissing")
        message = condition(rq, "Ready")["message"]
        assert "ValidatingAdmissionPolicy redisqueue-author-permissions is not the one" in message
        assert "ValidatingAdmissionPolicyBinding redisqueue-operator-policy matches less" in message


async def test_the_single_tenant_opt_out_acts_without_the_policies(
    installed: ControlPlane, tmp_path: Path, external_queue: ExternalQueue
) -> None:
    cp = installed
    cp.kubectl("delete", BINDING, "redisqueue-author-permissions")
    with guarded_operator(cp, tmp_path, REDISQUEUE_REQUIRE_ADMISSION_POLICIES="false") as operator:
        await external_queue("solo")
        assert "admission policies not required" in operator.logs()


def test_a_bad_opt_out_value_stops_the_operator_naming_the_variable(
    installed: ControlPlane, tmp_path: Path
) -> None:
    operator = guarded_operator(
        installed, tmp_path, REDISQUEUE_REQUIRE_ADMISSION_POLICIES="sometimes"
    )
    with pytest.raises(RuntimeError, match="operator exited"):
        operator.start(timeout=20)
    assert "REDISQUEUE_REQUIRE_ADMISSION_POLICIES: expected true or false" in operator.logs()


async def test_on_a_cluster_without_validating_admission_policy_the_operator_acts_on_nothing(
    namespace: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    # A second, older-style control plane: the API group version is not served at all (as
    # before Kubernetes 1.30, where it was beta and off by default).
    with ControlPlane(
        extra_apiserver_args=[
            "--runtime-config=admissionregistration.k8s.io/v1/validatingadmissionpolicies=false,"
            "admissionregistration.k8s.io/v1/validatingadmissionpolicybindings=false",
            "--disable-admission-plugins=ValidatingAdmissionPolicy",
        ]
    ) as plane:
        install_crd_and_rbac(plane, policies=False)  # there is nothing to install them into
        plane.kubectl("create", "namespace", namespace)
        operator = guarded_operator(plane, tmp_path).start()
        kube = Kube.from_kubeconfig(plane.kubeconfig)
        try:
            await apply_secret(
                kube, namespace, "redis-auth", {"password": redis_server.password or ""}
            )
            await create_rq(kube, namespace, "old", external_spec(redis_server))
            rq = await wait_for_ready(kube, namespace, "old", "False", "AdmissionPoliciesMissing")
            assert (
                "this cluster does not serve ValidatingAdmissionPolicy"
                in (condition(rq, "Ready")["message"])
            )
            assert operator.health(namespace, "old")[0] == 404
        finally:
            operator.stop()
            await kube.close()
