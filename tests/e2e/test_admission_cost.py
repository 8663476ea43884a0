"""What the admission policies cost, at every list length the schema allows.

kube-apiserver refuses a request whose policy runs out of CEL budget ("actual cost limit
exceeded"): 1000000 per expression, 10000000 per policy, an authorization check costing
350000. The API server does not report what an evaluation cost, so ``celcost``
(tests/tools/celcost, kube-apiserver's own CEL environment and cost tracking from the pinned
Kubernetes modules) evaluates each shipped policy against RedisQueues with 0 to the maximum
number of inject targets, pull Secrets and pod-shaping entries, for three kinds of author,
and reports the cost. The same lengths are admitted or refused by the real API server in
tests/e2e/test_tenancy_admission_e2e.py; this file says how close to the limits they are.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.go_tools import go_tool
from redisqueue.controller.resource.spec import MAX_INJECT_TARGETS, MAX_RESTART_TARGETS

pytestmark = pytest.mark.gotools

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "shop"
PER_NAME_LIMIT = 12  # inject targets checked one by one (the author policy's rule)
PULL_SECRETS = 8  # maxItems of provision.imagePullSecrets
PER_NAME_RESTARTS = 8  # workloads to restart checked one by one (the provision policy's rule)


def _policy(path: Path, name: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == "ValidatingAdmissionPolicy" and doc["metadata"]["name"] == name:
            return dict(doc)
    raise AssertionError(f"no policy {name} in {path}")


def _rq(inject: int, pull: int, **provision: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {"name": "jobs", "namespace": NAMESPACE},
        "spec": {
            "redis": {
                "provision": {
                    "imagePullSecrets": [{"name": f"pull-{i}"} for i in range(pull)],
                    **provision,
                }
            },
            "auth": {"secretRef": {"name": "redis-auth"}},
            "inject": [{"secretName": f"app-{i}"} for i in range(inject)],
            "deletionPolicy": "Delete",
        },
    }


SECRETS = "secrets"
#: Authors: one who may do everything in the namespace, one whose rights name every Secret
#: one by one (the most expensive to check), one who may only manage RedisQueues.
AUTHORS: dict[str, list[dict[str, Any]]] = {
    "namespace-wide": [
        {"verbs": ["get", "patch", "create", "delete"], "group": "", "resource": SECRETS},
        {"verbs": ["get", "delete"], "group": "", "resource": "persistentvolumeclaims"},
        {"verbs": ["create"], "group": "apps", "resource": "statefulsets"},
        {"verbs": ["create"], "group": "networking.k8s.io", "resource": "networkpolicies"},
    ],
    "per-name": [
        {
            "verbs": ["patch"],
            "group": "",
            "resource": SECRETS,
            "names": [f"app-{i}" for i in range(MAX_INJECT_TARGETS)],
        },
        {
            "verbs": ["get"],
            "group": "",
            "resource": SECRETS,
            "names": ["redis-auth", *[f"pull-{i}" for i in range(PULL_SECRETS)]],
        },
        {"verbs": ["create"], "group": "", "resource": SECRETS},
        {"verbs": ["create"], "group": "apps", "resource": "statefulsets"},
    ],
    "redisqueues-only": [],
}


def _measure(policy: dict[str, Any], cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(go_tool("celcost"))],
        input=json.dumps({"policy": policy, "cases": cases}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        f"  {r['name']:<36} cost {r['cost']:>9,} ({100 * r['cost'] / r['budget']:5.1f}% of "
        f"{r['budget']:,}), {r['authorizationChecks']:>2} checks, "
        f"{'admitted' if r['admitted'] else 'refused'}"
        for r in results
    ]
    return "\n".join(rows)


def test_the_author_policy_stays_within_budget_at_every_inject_length(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = _policy(
        REPO / "crds" / "redisqueue.dev_admission-policy.yaml", "redisqueue-author-permissions"
    )
    cases = [
        {
            "name": f"{who} inject={n} pull={PULL_SECRETS}",
            "operation": "CREATE",
            "object": _rq(n, PULL_SECRETS, image="registry.example/redis:7.4"),
            "allow": [{**rule, "namespace": NAMESPACE} for rule in rules],
        }
        for who, rules in AUTHORS.items()
        for n in range(MAX_INJECT_TARGETS + 1)
    ]
    results = _measure(policy, cases)
    with capsys.disabled():
        shown = [
            r
            for r in results
            if int(r["name"].split("inject=")[1].split()[0]) in {0, 1, 2, 3, 12, 13, 64}
        ]
        print("\nauthor-permissions, CEL cost per evaluation:\n" + _table(shown))
    for result in results:
        # Never an evaluation error (the "actual cost limit exceeded" of the first pass).
        assert not result["errors"], (result["name"], result["errors"])
        assert result["cost"] + result["messageCost"] <= result["budget"], result["name"]
        n = int(result["name"].split("inject=")[1].split()[0])
        who = result["name"].split()[0]
        if who == "namespace-wide":
            assert result["admitted"], result
        elif who == "per-name":
            assert result["admitted"] == (n <= PER_NAME_LIMIT), result
            if n > PER_NAME_LIMIT:
                assert result["denials"] == [
                    f"spec.inject names {n} Secrets: more than 12 need patch on every Secret in "
                    f"namespace {NAMESPACE} (missing RBAC: patch secrets, without resourceNames);"
                    " up to 12 are checked one by one"
                ]
        else:
            assert not result["admitted"]
            assert any("missing RBAC: get secrets" in d for d in result["denials"])
    # The worst case the policy admits is well inside the budget.
    worst = max(r["cost"] for r in results if r["admitted"])
    assert worst <= 0.9 * results[0]["budget"], worst


def test_the_other_policies_stay_within_budget_with_every_list_full() -> None:
    provision_policy = _policy(
        REPO / "crds" / "redisqueue.dev_admission-policy.yaml", "redisqueue-author-provision"
    )
    operator_policy = _policy(
        REPO / "manifests" / "operator" / "70-operator-policy.yaml", "redisqueue-operator-policy"
    )
    full = {
        "adoptRetained": True,
        "networkPolicy": {"allowFrom": [{"namespaceSelector": {}} for _ in range(8)]},
        "podLabels": {f"label-{i}": "x" for i in range(64)},
        "podAnnotations": {f"example.com/annotation-{i}": "x" * 100 for i in range(64)},
        "priorityClassName": "high",
        "tolerations": [{"key": f"taint-{i}", "operator": "Exists"} for i in range(32)],
        "nodeSelector": {f"node-{i}": "x" for i in range(32)},
        "extraConfig": {f"directive-{i}": "1" for i in range(64)},
        "affinity": {"nodeAffinity": {}},
    }
    # Who holds the rights each policy asks for (per-name may create StatefulSets, but not
    # read or delete volume claims or create NetworkPolicies).
    expected = {
        "redisqueue-author-provision": {"namespace-wide"},
        "redisqueue-operator-policy": {"namespace-wide", "per-name"},
    }
    for policy in (provision_policy, operator_policy):
        admitted = expected[policy["metadata"]["name"]]
        cases = [
            {
                "name": who,
                "operation": "CREATE",
                "object": _rq(0, 0, **full),
                "allow": [{**rule, "namespace": NAMESPACE} for rule in rules],
            }
            for who, rules in AUTHORS.items()
        ]
        for result in _measure(policy, cases):
            assert not result["errors"], (policy["metadata"]["name"], result)
            assert result["cost"] + result["messageCost"] <= result["budget"]
            assert result["admitted"] == (result["name"] in admitted), result
            if not result["admitted"]:
                assert all("missing RBAC" in d for d in result["denials"]), result


def _restarting(total: int) -> dict[str, Any]:
    """A RedisQueue (Retain, nothing adopted) whose inject targets list ``total`` workloads to
    restart, Deployments and StatefulSets in turn, at most 8 per Secret."""
    inject = []
    for start in range(0, total, MAX_RESTART_TARGETS):
        inject.append(
            {
                "secretName": f"app-{len(inject)}",
                "restart": [
                    {"kind": "Deployment" if i % 2 == 0 else "StatefulSet", "name": f"w-{i}"}
                    for i in range(start, min(total, start + MAX_RESTART_TARGETS))
                ],
            }
        )
    return {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {"name": "jobs", "namespace": NAMESPACE},
        "spec": {"redis": {"provision": {}}, "inject": inject},
    }


def test_the_restart_checks_stay_within_budget_at_every_length(
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = _policy(
        REPO / "crds" / "redisqueue.dev_admission-policy.yaml", "redisqueue-author-provision"
    )
    workloads = [f"w-{i}" for i in range(MAX_INJECT_TARGETS * MAX_RESTART_TARGETS)]
    authors: dict[str, list[dict[str, Any]]] = {
        "namespace-wide": [
            {"verbs": ["patch"], "group": "apps", "resource": "deployments"},
            {"verbs": ["patch"], "group": "apps", "resource": "statefulsets"},
        ],
        "per-name": [
            {"verbs": ["patch"], "group": "apps", "resource": "deployments", "names": workloads},
            {"verbs": ["patch"], "group": "apps", "resource": "statefulsets", "names": workloads},
        ],
        "redisqueues-only": [],
    }
    lengths = [*range(0, 2 * PER_NAME_RESTARTS + 2), MAX_INJECT_TARGETS * MAX_RESTART_TARGETS]
    cases = [
        {
            "name": f"{who} restart={n}",
            "operation": "CREATE",
            "object": _restarting(n),
            "allow": [{**rule, "namespace": NAMESPACE} for rule in rules],
        }
        for who, rules in authors.items()
        for n in lengths
    ]
    results = _measure(policy, cases)
    with capsys.disabled():
        shown = [r for r in results if int(r["name"].split("restart=")[1]) in {0, 1, 8, 9, 512}]
        print("\nauthor-provision (restarts), CEL cost per evaluation:\n" + _table(shown))
    for result in results:
        assert not result["errors"], (result["name"], result["errors"])
        assert result["cost"] + result["messageCost"] <= result["budget"], result["name"]
        n = int(result["name"].split("restart=")[1])
        who = result["name"].split()[0]
        if who == "namespace-wide" or n == 0:
            assert result["admitted"], result
        elif who == "per-name":
            assert result["admitted"] == (n <= PER_NAME_RESTARTS), result
            if n > PER_NAME_RESTARTS:
                assert len(result["denials"]) == 1, result
                assert result["denials"][0].startswith(
                    f"spec.inject[].restart names {n} workloads: more than 8 need patch"
                ), result
        else:
            assert not result["admitted"], result
            assert any(
                d.startswith("spec.inject[].restart: you may not patch Deployment/w-0")
                or "more than 8" in d
                for d in result["denials"]
            ), result
    worst = max(r["cost"] for r in results if r["admitted"])
    assert worst <= 0.9 * results[0]["budget"], worst
