"""The admission policies the operator relies on, and how to tell they are installed as shipped.

The operator acts on a RedisQueue with rights its author may lack; only the
ValidatingAdmissionPolicies check that the author holds them. Where they are missing (a
cluster without ValidatingAdmissionPolicy, the CRD applied alone, a binding deleted or
narrowed, an old version of a policy left behind by an upgrade) every check they make is
gone, so the operator refuses to act until they are back (:mod:`..readside.guard`), unless
the installer says the cluster has a single tenant.

A policy is "as shipped" when its rules are the ones this version ships: the fingerprint of
its match rules, variables and validations equals :data:`SHIPPED_FINGERPRINTS` (whitespace
aside; the variables an installer fills in, such as the allowed hosts, are left out, and so
is the match condition naming the operator's own ServiceAccount). Its binding must have the
same name, point at it, deny, and match everything the policy matches.
``tests/controller/test_guard.py`` and ``tests/deploy/test_chart.py`` recompute the
fingerprints from the shipped files and the chart.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

#: Which policies, by role, under which names: ``role=name`` pairs, comma-separated.
ENV_POLICY_NAMES: Final = "REDISQUEUE_ADMISSION_POLICIES"
#: "false" lets the operator act without its admission policies (single-tenant clusters).
ENV_REQUIRED: Final = "REDISQUEUE_REQUIRE_ADMISSION_POLICIES"
#: Seconds between two checks (after the one at start).
ENV_INTERVAL: Final = "REDISQUEUE_ADMISSION_CHECK_SECONDS"
DEFAULT_INTERVAL_SECONDS: Final = 300.0

AUTHOR_PERMISSIONS: Final = "author-permissions"
AUTHOR_PROVISION: Final = "author-provision"
OBJECT_SHAPES: Final = "object-shapes"
OPERATOR_RESTARTS: Final = "operator-restarts"
OPERATOR_POLICY: Final = "operator-policy"

#: The names of ``crds/`` and ``manifests/operator/`` (the chart prefixes its release name and
#: tells the operator through :data:`ENV_POLICY_NAMES`).
DEFAULT_POLICY_NAMES: Final = {
    AUTHOR_PERMISSIONS: "redisqueue-author-permissions",
    AUTHOR_PROVISION: "redisqueue-author-provision",
    OBJECT_SHAPES: "redisqueue-operator-object-shapes",
    OPERATOR_RESTARTS: "redisqueue-operator-restarts",
    OPERATOR_POLICY: "redisqueue-operator-policy",
}

#: Variables whose expressions an installer writes (the operator policy's lists).
INSTALLER_VARIABLES: Final = frozenset(
    {
        "allowedCIDRs",
        "allowedSuffixes",
        "deniedCIDRs",
        "deniedSuffixes",
        "allowedImages",
        "allowedPodLabels",
        "allowedPodAnnotations",
        "allowedPriorityClasses",
        "allowedTolerationKeys",
        "allowedNodeSelectorKeys",
        "allowedConfigDirectives",
    }
)
#: The match condition that names the install's own ServiceAccount (object shapes).
INSTALLER_MATCH_CONDITIONS: Final = frozenset({"operator-service-account"})

#: The fingerprint of each policy as this version ships it.
SHIPPED_FINGERPRINTS: Final = {
    AUTHOR_PERMISSIONS: "4f9853a20a442368",
    AUTHOR_PROVISION: "a54524c692d16d36",
    OBJECT_SHAPES: "a4d57014bea3be26",
    OPERATOR_RESTARTS: "d66c6360c602035c",
    OPERATOR_POLICY: "3c1090079dc9778e",
}


class PolicyNamesError(ValueError):
    """:data:`ENV_POLICY_NAMES` cannot be read; the message names it."""


def policy_names(text: str | None) -> dict[str, str]:
    """The installed name of each policy: the defaults, overridden by ``role=name`` pairs."""
    names = dict(DEFAULT_POLICY_NAMES)
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        role, _, name = entry.partition("=")
        role, name = role.strip(), name.strip()
        if role not in names or not name:
            raise PolicyNamesError(
                f"{ENV_POLICY_NAMES}: {entry!r} is not role=name with a role among "
                f"{', '.join(sorted(names))}"
            )
        names[role] = name
    return names


def _words(text: Any) -> str:
    return " ".join(str(text or "").split())


def fingerprint(spec: Mapping[str, Any]) -> str:
    """The fingerprint of a ValidatingAdmissionPolicy's ``spec`` (see the module docstring)."""
    rules = [
        {
            "apiGroups": sorted(rule.get("apiGroups") or []),
            "resources": sorted(rule.get("resources") or []),
            "operations": sorted(rule.get("operations") or []),
        }
        for rule in (spec.get("matchConstraints") or {}).get("resourceRules") or []
    ]
    essence = {
        "failurePolicy": spec.get("failurePolicy") or "Fail",
        "rules": sorted(rules, key=lambda r: json.dumps(r, sort_keys=True)),
        "matchConditions": [
            [c.get("name"), _words(c.get("expression"))]
            for c in spec.get("matchConditions") or []
            if c.get("name") not in INSTALLER_MATCH_CONDITIONS
        ],
        "variables": [
            [v.get("name"), _words(v.get("expression"))]
            for v in spec.get("variables") or []
            if v.get("name") not in INSTALLER_VARIABLES
        ],
        "validations": [
            [
                _words(v.get("expression")),
                _words(v.get("message")),
                _words(v.get("messageExpression")),
                v.get("reason") or "",
            ]
            for v in spec.get("validations") or []
        ],
    }
    canonical = json.dumps(essence, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def policy_problem(role: str, name: str, policy: Mapping[str, Any] | None) -> str | None:
    """Why the installed policy ``name`` (its body, or None when absent) is not the one this
    operator needs in ``role``; None when it is."""
    if policy is None:
        return f"ValidatingAdmissionPolicy {name} is not installed"
    spec = policy.get("spec") or {}
    if (spec.get("failurePolicy") or "Fail") != "Fail":
        return f"ValidatingAdmissionPolicy {name} does not have failurePolicy Fail"
    if spec.get("paramKind"):
        return f"ValidatingAdmissionPolicy {name} takes parameters it was not shipped with"
    found = fingerprint(spec)
    if found != SHIPPED_FINGERPRINTS[role]:
        return (
            f"ValidatingAdmissionPolicy {name} is not the one this operator ships (rules "
            f"{found}, expected {SHIPPED_FINGERPRINTS[role]}): install the policies of this "
            "version"
        )
    return None


def binding_problem(name: str, binding: Mapping[str, Any] | None) -> str | None:
    """Why the binding ``name`` (its body, or None) does not enforce policy ``name`` on
    everything it matches; None when it does."""
    if binding is None:
        return f"ValidatingAdmissionPolicyBinding {name} is not installed"
    spec = binding.get("spec") or {}
    if spec.get("policyName") != name:
        return f"ValidatingAdmissionPolicyBinding {name} does not bind policy {name}"
    if "Deny" not in (spec.get("validationActions") or []):
        return f"ValidatingAdmissionPolicyBinding {name} does not deny (validationActions)"
    if spec.get("paramRef"):
        return f"ValidatingAdmissionPolicyBinding {name} has a paramRef it was not shipped with"
    narrowed = {
        key: value
        for key, value in (spec.get("matchResources") or {}).items()
        if key != "matchPolicy" and value not in ({}, [], None)
    }
    if narrowed:
        return (
            f"ValidatingAdmissionPolicyBinding {name} matches less than its policy "
            f"(matchResources: {', '.join(sorted(narrowed))})"
        )
    return None
