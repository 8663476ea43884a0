"""The admission policies' guard: what counts as installed as shipped (pure, and against the
in-memory API of the fast tier). The real API server's side is tests/
test_tenancy_failclosed_e2e.py; that the shipped files carry the shipped fingerprints is
checked there and in tests/deploy/test_chart.py."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.fake_kube import FakeKube
from redisqueue.controller.readside.guard import AdmissionGuard
from redisqueue.controller.resource.admission import (
    DEFAULT_POLICY_NAMES,
    SHIPPED_FINGERPRINTS,
    PolicyNamesError,
    binding_problem,
    fingerprint,
    policy_names,
    policy_problem,
)

REPO = Path(__file__).resolve().parents[2]
FILES = (
    REPO / "crds" / "redisqueue.dev_admission-policy.yaml",
    REPO / "manifests" / "operator" / "60-operator-admission-policy.yaml",
    REPO / "manifests" / "operator" / "65-operator-restart-policy.yaml",
    REPO / "manifests" / "operator" / "70-operator-policy.yaml",
)


def shipped() -> dict[str, dict[str, Any]]:
    """The shipped policies and bindings by (kind, name)."""
    docs = [d for path in FILES for d in yaml.safe_load_all(path.read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}  # type: ignore[misc]


ROLE_OF = {name: role for role, name in DEFAULT_POLICY_NAMES.items()}


def test_the_shipped_files_carry_the_shipped_fingerprints() -> None:
    for (kind, name), doc in shipped().items():
        if kind == "ValidatingAdmissionPolicy":
            assert fingerprint(doc["spec"]) == SHIPPED_FINGERPRINTS[ROLE_OF[name]], (
                f"{name}: update SHIPPED_FINGERPRINTS in resource/admission.py to "
                f"{fingerprint(doc['spec'])!r} together with the policy"
            )
            assert policy_problem(ROLE_OF[name], name, doc) is None
        else:
            assert binding_problem(name, doc) is None


def test_what_an_installer_fills_in_does_not_change_the_fingerprint() -> None:
    policy = copy.deepcopy(shipped()[("ValidatingAdmissionPolicy", "redisqueue-operator-policy")])
    for variable in policy["spec"]["variables"]:
        if variable["name"] in {"allowedHosts", "allowedCIDRs", "allowedPodLabels"}:
            variable["expression"] = "['10.0.0.0/8']"
    shapes = copy.deepcopy(
        shipped()[("ValidatingAdmissionPolicy", "redisqueue-operator-object-shapes")]
    )
    shapes["spec"]["matchConditions"][0]["expression"] = "request.userInfo.username == 'other'"
    assert policy_problem("operator-policy", "p", policy) is None
    assert policy_problem("object-shapes", "s", shapes) is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda s: s["validations"][0].update(expression="true"),
            "is not the one this operator ships",
        ),
        (lambda s: s.update(failurePolicy="Ignore"), "does not have failurePolicy Fail"),
        (lambda s: s["variables"].pop(), "is not the one this operator ships"),
        (lambda s: s.update(paramKind={"kind": "ConfigMap"}), "takes parameters"),
    ],
)
def test_a_policy_changed_from_what_is_shipped_is_refused(change: Any, problem: str) -> None:
    policy = copy.deepcopy(
        shipped()[("ValidatingAdmissionPolicy", "redisqueue-author-permissions")]
    )
    change(policy["spec"])
    assert problem in (policy_problem("author-permissions", "a", policy) or "")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"policyName": "other", "validationActions": ["Deny"]}, "does not bind policy"),
        ({"policyName": "b", "validationActions": ["Warn", "Audit"]}, "does not deny"),
        (
            {
                "policyName": "b",
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"x": "y"}}},
            },
            "matches less than its policy (matchResources: namespaceSelector)",
        ),
        (
            {"policyName": "b", "validationActions": ["Deny"], "paramRef": {"name": "p"}},
            "paramRef",
        ),
    ],
)
def test_a_binding_that_does_not_enforce_everywhere_is_refused(
    spec: dict[str, Any], problem: str
) -> None:
    assert problem in (binding_problem("b", {"spec": spec}) or "")
    assert "is not installed" in (binding_problem("b", None) or "")


def test_policy_names_come_from_role_name_pairs_with_a_clear_error() -> None:
    names = policy_names("author-permissions=acme-author-permissions, operator-policy=acme-policy")
    assert names["author-permissions"] == "acme-author-permissions"
    assert names["object-shapes"] == DEFAULT_POLICY_NAMES["object-shapes"]
    with pytest.raises(PolicyNamesError, match="REDISQUEUE_ADMISSION_POLICIES: 'shapes=x'"):
        policy_names("shapes=x")


async def test_the_guard_reads_each_policy_and_binding_and_says_what_is_missing() -> None:
    kube = FakeKube()
    guard = AdmissionGuard(kube, DEFAULT_POLICY_NAMES, interval=60)  # type: ignore[arg-type]
    objects = shipped()

    async def get(path: str) -> Any:  # the admission API, served from ``objects``
        plural, name = path.rsplit("/", 2)[-2:]
        kind = {
            "validatingadmissionpolicies": "ValidatingAdmissionPolicy",
            "validatingadmissionpolicybindings": "ValidatingAdmissionPolicyBinding",
        }[plural]
        return copy.deepcopy(objects.get((kind, name)))

    guard._get = lambda plural, name: get(f"/x/{plural}/{name}")  # type: ignore[method-assign]
    assert guard.problem is not None  # refuses until it has looked
    assert await guard.update() and guard.problem is None and guard.refusal is None
    assert not await guard.update()  # no change, nothing to tell
    del objects[("ValidatingAdmissionPolicyBinding", "redisqueue-author-provision")]
    assert await guard.update()
    assert guard.refusal is not None
    assert "ValidatingAdmissionPolicyBinding redisqueue-author-provision is not installed" in (
        guard.refusal
    )
    assert guard.refusal.startswith("the operator does not act on RedisQueues")


def test_while_refusing_the_guard_looks_again_within_seconds_then_every_interval() -> None:
    # An install applies the operator and its policies together: a first look that misses
    # them must not leave the operator paused for a whole interval.
    guard = AdmissionGuard(FakeKube(), DEFAULT_POLICY_NAMES, interval=300)  # type: ignore[arg-type]
    delays = guard.delays()
    assert [next(delays) for _ in range(7)] == [2, 4, 8, 16, 30, 30, 30]
    guard.problem = None  # in force: the full interval
    assert [next(delays) for _ in range(2)] == [300, 300]
    guard.problem = "ValidatingAdmissionPolicyBinding x is not installed"
    assert next(delays) == 2  # missing again: soon, from the start
    short = AdmissionGuard(FakeKube(), DEFAULT_POLICY_NAMES, interval=5)  # type: ignore[arg-type]
    assert [next(short.delays()) for _ in range(1)] == [2]
    later = short.delays()
    assert [next(later) for _ in range(4)] == [2, 4, 5, 5]  # never longer than the interval
