"""What admission asks of a RedisQueue's author, on the real API server with the shipped
policies: every list length the schema allows is decided (never "cost limit exceeded"),
fields that shape the Redis pod need the author's rights or the installer's allow-list, and
every refusal names the field and the missing right.

RedisQueues are created with ``dryRun=All``: admission runs in full, nothing is stored.
The CEL cost behind these verdicts is measured in tests/e2e/test_admission_cost.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_tenancy_e2e import APP_TEAM_RULES, TENANT_RULES, policy_active

from harness.e2e_users import AsUser
from harness.kube_controlplane import ControlPlane
from harness.operator_harness import OperatorProcess, eventually, install_crd_and_rbac, rq_path
from redisqueue.controller.api.kube import Kube, KubeError
from redisqueue.controller.resource.spec import MAX_INJECT_TARGETS

pytestmark = pytest.mark.k8s

PER_NAME_LIMIT = 12
#: Rights that name each Secret (inject targets app-0..app-63, pull Secrets pull-0..pull-7).
PER_NAME_RULES: list[dict[str, Any]] = [
    *TENANT_RULES,
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["patch"],
        "resourceNames": [f"app-{i}" for i in range(MAX_INJECT_TARGETS)],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": [f"pull-{i}" for i in range(8)],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
]


async def verdict(kube: Kube, namespace: str, spec: dict[str, Any], name: str = "q") -> str:
    """ "admitted", or the API server's refusal, for a RedisQueue created with dryRun=All."""
    body = {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    try:
        await kube.request("POST", rq_path(namespace), body=body, query={"dryRun": "All"})
    except KubeError as exc:
        assert exc.status in (403, 422), exc
        return exc.message
    return "admitted"


def provision(inject: int = 0, pull: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "redis": {
            "provision": {
                **(
                    {"imagePullSecrets": [{"name": f"pull-{i}"} for i in range(pull)]}
                    if pull
                    else {}
                ),
                **fields,
            }
        },
        "inject": [{"secretName": f"app-{i}"} for i in range(inject)],
    }


@pytest.fixture
async def authors(
    operator: OperatorProcess, namespace: str, as_user: AsUser
) -> AsyncIterator[dict[str, Kube]]:
    async with (
        as_user("tenant", TENANT_RULES) as tenant,
        as_user("per-name", PER_NAME_RULES) as per_name,
        as_user("team", APP_TEAM_RULES) as team,
    ):
        await policy_active(tenant, namespace)
        yield {"tenant": tenant, "per-name": per_name, "team": team}


async def test_every_inject_length_the_schema_allows_is_decided_for_every_author(
    authors: dict[str, Kube], kube: Kube, namespace: str
) -> None:
    for n in range(MAX_INJECT_TARGETS + 1):
        for who, client in (("admin", kube), ("team", authors["team"])):
            answer = await verdict(client, namespace, provision(n, pull=8))
            assert answer == "admitted", (who, n, answer)
        answer = await verdict(authors["per-name"], namespace, provision(n, pull=8))
        assert "cost limit" not in answer, (n, answer)
        if n <= PER_NAME_LIMIT:
            assert answer == "admitted", (n, answer)
        else:
            assert f"spec.inject names {n} Secrets: more than 12 need patch on every Secret" in (
                answer
            )
            assert "(missing RBAC: patch secrets, without resourceNames)" in answer
    for n in range(1, MAX_INJECT_TARGETS + 1):
        answer = await verdict(authors["tenant"], namespace, provision(n))
        assert "cost limit" not in answer
        assert "you may not patch Secret app-0" in answer or "more than 12" in answer, answer


async def test_each_refusal_names_the_secret_and_the_missing_right(
    authors: dict[str, Kube], namespace: str
) -> None:
    per_name = authors["per-name"]
    spec = provision(inject=3)
    spec["inject"][1] = {"secretName": "someone-elses"}
    answer = await verdict(per_name, namespace, spec)
    assert (
        f"spec.inject[1].secretName: you may not patch Secret someone-elses in namespace "
        f"{namespace} (missing RBAC: patch secrets)"
    ) in answer
    spec = provision(pull=2)
    spec["redis"]["provision"]["imagePullSecrets"][1] = {"name": "regcred"}
    answer = await verdict(per_name, namespace, spec)
    assert (
        f"spec.redis.provision.imagePullSecrets[1].name: you may not get Secret regcred in "
        f"namespace {namespace} (missing RBAC: get secrets)"
    ) in answer


#: Each pod-shaping field, set as an attack would set it, and the words its refusal names.
SHAPING: dict[str, tuple[dict[str, Any], str]] = {
    "join another app's Service": ({"podLabels": {"app": "web"}}, "podLabels: app"),
    "opt out of the mesh": (
        {"podAnnotations": {"sidecar.istio.io/inject": "false"}},
        "podAnnotations: sidecar.istio.io/inject",
    ),
    "take a system priority": (
        {"priorityClassName": "system-node-critical"},
        "priorityClassName: system-node-critical",
    ),
    "tolerate every taint": ({"tolerations": [{"operator": "Exists"}]}, "(every taint)"),
    "reach the control plane's nodes": (
        {"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}},
        "nodeSelector: node-role.kubernetes.io/control-plane",
    ),
    "follow another app's pods": (
        {
            "affinity": {
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "topologyKey": "kubernetes.io/hostname",
                        }
                    ]
                }
            }
        },
        "affinity and topologySpreadConstraints",
    ),
    "spread by another app's pods": (
        {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": "web"}},
                }
            ]
        },
        "affinity and topologySpreadConstraints",
    ),
    "change what Redis does with its threads": (
        {"extraConfig": {"io-threads": "8"}},
        "extraConfig: io-threads",
    ),
    "pull with a Secret it cannot read": (
        {"imagePullSecrets": [{"name": "regcred"}]},
        "imagePullSecrets[0].name: you may not get Secret regcred",
    ),
}


async def test_pod_shaping_needs_the_authors_rights_or_the_installers_allow_list(
    authors: dict[str, Kube], kube: Kube, namespace: str
) -> None:
    tenant, team = authors["tenant"], authors["team"]
    for attack, (fields, named) in SHAPING.items():
        spec = {"redis": {"provision": fields}}
        answer = await verdict(tenant, namespace, spec)
        assert named in answer, (attack, answer)
        assert "missing RBAC:" in answer, (attack, answer)
        # Whoever could make such a pod themselves may have the operator make it.
        assert await verdict(team, namespace, spec) == "admitted", attack
        assert await verdict(kube, namespace, spec) == "admitted", attack
    # What the shipped allow-lists open to everyone.
    harmless = {
        "extraConfig": {"save": "900 1", "slowlog-log-slower-than": "10000"},
        "nodeSelector": {"kubernetes.io/arch": "amd64"},
        "tolerations": [],
    }
    assert await verdict(tenant, namespace, {"redis": {"provision": harmless}}) == "admitted"


async def test_the_installers_allow_list_opens_pod_shaping_to_every_author(
    authors: dict[str, Kube], control_plane: ControlPlane, namespace: str
) -> None:
    tenant = authors["tenant"]
    spec = {"redis": {"provision": {"podLabels": {"team": "a"}, "priorityClassName": "batch"}}}
    assert "podLabels: team" in await verdict(tenant, namespace, spec)
    name = "redisqueue-operator-policy"
    before = json.loads(
        control_plane.kubectl("get", "validatingadmissionpolicy", name, "-o", "json").stdout
    )
    opened = copy.deepcopy(before)
    for variable in opened["spec"]["variables"]:
        if variable["name"] == "allowedPodLabels":
            variable["expression"] = "['example.com/', 'team']"
        if variable["name"] == "allowedPriorityClasses":
            variable["expression"] = "['batch']"
    control_plane.kubectl("replace", "-f", "-", input=json.dumps(opened))
    try:

        async def admitted() -> bool:
            return await verdict(tenant, namespace, spec) == "admitted"

        await eventually(admitted, timeout=30, what="the opened allow-list enforced")
        prefixed = {"redis": {"provision": {"podLabels": {"example.com/tier": "cache"}}}}
        assert await verdict(tenant, namespace, prefixed) == "admitted"
        still = {"redis": {"provision": {"podLabels": {"app": "web"}}}}
        assert "podLabels: app" in await verdict(tenant, namespace, still)
    finally:
        install_crd_and_rbac(control_plane)  # the shipped lists again


async def test_reaching_beyond_the_namespace_needs_the_right_to_make_network_policies(
    authors: dict[str, Kube],
    namespace: str,
    as_user: AsUser,
) -> None:
    wide = {
        "redis": {
            "provision": {
                "networkPolicy": {
                    "allowFrom": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "web"}},
                            "podSelector": {"matchLabels": {"app": "worker"}},
                        }
                    ]
                }
            }
        }
    }
    answer = await verdict(authors["tenant"], namespace, wide)
    assert "missing RBAC: create networkpolicies.networking.k8s.io" in answer
    narrow = {
        "redis": {
            "provision": {
                "networkPolicy": {
                    "allowFrom": [{"podSelector": {"matchLabels": {"app": "worker"}}}]
                }
            }
        }
    }
    assert await verdict(authors["tenant"], namespace, narrow) == "admitted"
    rules = [
        *TENANT_RULES,
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]},
    ]
    async with as_user("netadmin", rules) as netadmin:
        assert await verdict(netadmin, namespace, wide) == "admitted"
