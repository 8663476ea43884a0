"""The RedisQueue CustomResourceDefinition, generated from the models in :mod:`.spec` and
:mod:`.status`.

The checked-in ``crds/redisqueue.dev_redisqueues.yaml`` is the output of
``redisqueue crd``; a test fails when the two drift apart.

Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no ``$ref``, no
``anyOf``/``oneOf`` that introduce types, no ``additionalProperties: false`` next to
``properties``. Pydantic emits JSON Schema 2020-12 with ``$defs`` references, ``anyOf``
with ``null`` for optional fields and numeric ``exclusiveMinimum``; :func:`structural_schema`
rewrites that into the Kubernetes dialect and keeps every description, default, bound and
``x-kubernetes-*`` extension.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Final

import yaml

from .identity import GROUP, JSON, KIND, PLURAL, VERSION
from .spec import (
    DNS1035_LABEL_PATTERN,
    MAX_PROVISION_NAME_LENGTH,
    MSG_PROVISION_NAME,
    MSG_RESTART_OWN_REDIS,
    RedisQueueSpec,
    cel,
)
from .status import RedisQueueStatus

SINGULAR: Final = "redisqueue"
SHORT_NAMES: Final = ("rq",)
#: "kubectl get redis" lists RedisQueues together with other resources that join the
#: category. Not "all": "kubectl delete all --all" would then delete RedisQueues, and with
#: deletionPolicy Delete their data.
CATEGORIES: Final = ("redis",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Keys in the order they are written, so the YAML reads top-down: what a field is, then
# its bounds, then its children, then the rules about it.
_KEY_ORDER: Final = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "anyOf",
    "x-kubernetes-int-or-string",
    "items",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "required",
    "properties",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
)
# JSON Schema keywords that have no place in a CRD schema (or say nothing there).
_DROPPED: Final = frozenset({"title", "examples", "$defs"})
_VALIDATIONS: Final = "x-kubernetes-validations"


def _merge(target: Mapping[str, Any], sibling: Mapping[str, Any]) -> JSON:
    """Inline a referenced schema; the referring field's keys win, CEL rules accumulate."""
    merged = {**target, **sibling}
    rules = [*target.get(_VALIDATIONS, []), *sibling.get(_VALIDATIONS, [])]
    if rules:
        merged[_VALIDATIONS] = rules
    return merged


def structural_schema(node: Mapping[str, Any], defs: Mapping[str, Any]) -> JSON:
    """Rewrite one pydantic JSON Schema node (and its children) into a structural CRD schema."""
    current: JSON = dict(node)
    while True:
        if "$ref" in current:
            name = current.pop("$ref").rsplit("/", 1)[-1]
            current = _merge(defs[name], current)
        elif "allOf" in current and len(current["allOf"]) == 1:
            (only,) = current.pop("allOf")
            current = _merge(only, current)
        elif "anyOf" in current and {"type": "null"} in current["anyOf"]:
            # Optional[X]: the API server drops nulls of non-nullable fields before
            # validation, so "absent" is all that null can mean here.
            branches = [b for b in current.pop("anyOf") if b != {"type": "null"}]
            if current.get("default", ...) is None:
                del current["default"]
            if len(branches) == 1:
                current = _merge(branches[0], current)
            else:
                current["anyOf"] = branches
        else:
            break

    out: JSON = {}
    for key, value in current.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and not isinstance(value, Mapping):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020-12 "exclusiveMinimum: 0" is OpenAPI v3's
            # "minimum: 0, exclusiveMinimum: true".
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: structural_schema(child, defs) for name, child in value.items()}
        elif key == "items":
            out[key] = structural_schema(value, defs)
        elif key == "additionalProperties" and isinstance(value, Mapping):
            # A map (dict[str, X]): its values' schema. ``additionalProperties: false`` next
            # to ``properties`` is dropped below: Kubernetes prunes unknown fields anyway.
            out[key] = structural_schema(value, defs)
        elif key == _VALIDATIONS:
            out[key] = [_ordered_rule(rule) for rule in value]
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    return {key: out[key] for key in sorted(out, key=_order)}


def _ordered_rule(rule: Mapping[str, Any]) -> JSON:
    order = ("rule", "message", "fieldPath", "reason")
    return {key: rule[key] for key in sorted(rule, key=lambda k: (*order, k).index(k))}


def _order(key: str) -> tuple[int, str]:
    return (_KEY_ORDER.index(key), "") if key in _KEY_ORDER else (len(_KEY_ORDER), key)


def _model_schema(model: type[RedisQueueSpec] | type[RedisQueueStatus]) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural_schema(raw, raw.get("$defs", {}))


def openapi_schema() -> JSON:
    """The openAPIV3Schema of the RedisQueue resource."""
    name_rule = cel(
        "!has(self.spec) || !has(self.spec.redis) || !has(self.spec.redis.provision) || "
        f"(self.metadata.name.size() <= {MAX_PROVISION_NAME_LENGTH} && "
        f"self.metadata.name.matches('{DNS1035_LABEL_PATTERN}'))",
        MSG_PROVISION_NAME,
    )
    own_redis_rule = cel(
        "!has(self.spec) || !has(self.spec.redis) || !has(self.spec.redis.provision) || "
        "!has(self.spec.inject) || self.spec.inject.all(t, !has(t.restart) || "
        "t.restart.all(r, r.kind != 'StatefulSet' || r.name != self.metadata.name + '-redis'))",
        MSG_RESTART_OWN_REDIS,
    )
    return {
        "description": "RedisQueue gives a team a Redis for its job queue: the operator "
        "provisions one in the cluster or points at an existing one (such as AWS "
        "ElastiCache), writes the connection settings into the team's Secrets and reports "
        "the Redis's health in status.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this "
                "representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this "
                "object represents.",
                "type": "string",
            },
            # Only name and generateName may be constrained here. Declaring them lets the
            # CEL cost estimator see that metadata.name is bounded.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "description": "Name of the RedisQueue; a provisioned one names its "
                        "Service, StatefulSet and generated Secret after it.",
                        "type": "string",
                        "maxLength": 253,
                    },
                    "generateName": {
                        "description": "Prefix for a server-generated name.",
                        "type": "string",
                        "maxLength": 253,
                    },
                },
            },
            "spec": _model_schema(RedisQueueSpec),
            "status": _model_schema(RedisQueueStatus),
        },
        _VALIDATIONS: [_ordered_rule(name_rule), _ordered_rule(own_redis_rule)],
    }


PRINTER_COLUMNS: Final[tuple[JSON, ...]] = (
    {
        "name": "Mode",
        "type": "string",
        "description": "provision or external.",
        "jsonPath": ".status.mode",
    },
    {
        "name": "Endpoint",
        "type": "string",
        "description": "host:port the apps connect to.",
        "jsonPath": ".status.endpoint",
    },
    {
        "name": "Ready",
        "type": "string",
        "description": "Status of the Ready condition.",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Phase",
        "type": "string",
        "description": "One-word summary.",
        "jsonPath": ".status.phase",
    },
    {
        "name": "Since",
        "type": "date",
        "description": "When Ready last changed.",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].lastTransitionTime',
    },
    {
        "name": "Latency-ms",
        "type": "number",
        "description": "Round trip of the PING that last changed the status, in milliseconds.",
        "jsonPath": ".status.latencyMs",
        "priority": 1,
    },
    {
        "name": "Rotation",
        "type": "string",
        "description": "Phase of the last password rotation.",
        "jsonPath": ".status.rotation.phase",
        "priority": 1,
    },
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    },
)


def build_crd() -> JSON:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "redisqueue-operator",
                "app.kubernetes.io/part-of": "redisqueue",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                }
            ],
        },
    }


_HEADER: Final = (
    "# RedisQueue CustomResourceDefinition.\n"
    "# Generated from operator/redisqueue/controller/resource/{spec,status}.py by:\n"
    "#   redisqueue crd > crds/redisqueue.dev_redisqueues.yaml\n"
    "# Do not edit by hand; change the models and regenerate.\n"
)


class _Dumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: anchors and aliases would only puzzle a reader."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd_yaml() -> str:
    """The CRD as the YAML document checked in under crds/."""
    body = yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return _HEADER + "---\n" + body


def main() -> None:
    sys.stdout.write(render_crd_yaml())


if __name__ == "__main__":
    main()
