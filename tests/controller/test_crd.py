"""The generated CustomResourceDefinition: in sync with the models, structural, explained."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from redisqueue.controller.resource.crd import build_crd, render_crd_yaml, structural_schema
from redisqueue.controller.resource.spec import RedisQueueSpec

REPO = Path(__file__).parents[2]
CHECKED_IN = REPO / "crds" / "redisqueue.dev_redisqueues.yaml"
REGENERATE = "python -m redisqueue.controller.resource.crd > crds/redisqueue.dev_redisqueues.yaml"


def _version() -> dict[str, Any]:
    (version,) = build_crd()["spec"]["versions"]
    return dict(version)


def _root() -> dict[str, Any]:
    return dict(_version()["schema"]["openAPIV3Schema"])


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _node(path: str) -> dict[str, Any]:
    return dict(_walk(_root()))[path]


def test_checked_in_crd_matches_the_models() -> None:
    assert CHECKED_IN.read_text() == render_crd_yaml(), f"regenerate it: {REGENERATE}"


def test_module_entry_point_prints_the_crd() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    result = subprocess.run(
        [sys.executable, "-m", "redisqueue.controller.resource.crd"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=REPO,
    )
    assert result.stdout == render_crd_yaml()


def test_crd_names_group_scope_and_categories() -> None:
    crd = build_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "redisqueues.redisqueue.dev"
    assert crd["spec"]["group"] == "redisqueue.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (
        "RedisQueue",
        "redisqueues",
        "redisqueue",
    )
    assert names["shortNames"] == ["rq"]
    assert "all" not in names["categories"]
    version = _version()
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


def test_rendered_yaml_is_one_plain_document() -> None:
    text = render_crd_yaml()
    assert "&id" not in text and "*id" not in text  # no YAML anchors for readers to chase
    assert list(yaml.safe_load_all(text)) == [build_crd()]


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    missing = [
        path
        for path, node in _walk(_root())
        # metadata may only constrain name/generateName; a description there is rejected.
        if path != ".metadata" and not node.get("description")
    ]
    assert missing == []


PRESERVED = {
    ".spec.redis.provision.affinity.nodeAffinity",
    ".spec.redis.provision.affinity.podAffinity",
    ".spec.redis.provision.affinity.podAntiAffinity",
    ".spec.redis.provision.topologySpreadConstraints[].labelSelector",
}


def test_schema_is_structural() -> None:
    for path, node in _walk(_root()):
        for forbidden in ("$ref", "$defs", "allOf", "oneOf", "title", "nullable", "const"):
            assert forbidden not in node, (path, forbidden)
        # Maps (nodeSelector, podLabels, ...) say what their values are; no object mixes
        # known properties with arbitrary ones.
        extra = node.get("additionalProperties")
        assert extra is None or (isinstance(extra, dict) and "properties" not in node), path
        # Kept as given only where the API server checks the content when the operator
        # applies the StatefulSet (affinity terms, label selectors).
        if "x-kubernetes-preserve-unknown-fields" in node:
            assert path in PRESERVED, path
        if node.get("x-kubernetes-int-or-string"):
            assert node.get("anyOf") == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert "anyOf" not in node, path
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_converter_inlines_references_and_optional_fields() -> None:
    raw = RedisQueueSpec.model_json_schema(by_alias=True)
    converted = structural_schema(raw, raw["$defs"])
    auth = converted["properties"]["auth"]
    assert auth["type"] == "object"
    assert auth["description"].startswith("Credentials.")  # the field's, not the class's
    assert "default" not in auth
    assert converted["properties"]["pool"]["properties"]["timeoutSeconds"]["minimum"] == 0


def test_defaults_come_from_the_models() -> None:
    spec = _node(".spec")
    props = spec["properties"]
    assert props["environment"]["default"] == "development"
    assert props["deletionPolicy"]["default"] == "Retain"
    assert props["pool"]["default"] == {}
    assert props["pool"]["properties"]["timeoutSeconds"]["default"] == 5
    # The pool cap depends on the environment, so the schema must not fix it.
    assert "default" not in props["pool"]["properties"]["maxConnections"]
    backoff = props["backoff"]["properties"]
    assert (backoff["baseSeconds"]["default"], backoff["capSeconds"]["default"]) == (1, 30)
    assert backoff["attempts"]["default"] == 10
    external = props["redis"]["properties"]["external"]["properties"]
    assert (external["port"]["default"], external["db"]["default"]) == (6379, 0)
    assert external["tls"]["properties"]["insecureSkipVerify"]["default"] is False
    provision = props["redis"]["properties"]["provision"]["properties"]
    assert provision["appendOnly"]["default"] is True
    assert provision["storage"]["properties"]["size"]["default"] == "1Gi"


def test_bounds_match_the_contract() -> None:
    props = _node(".spec")["properties"]
    pool_max = props["pool"]["properties"]["maxConnections"]
    assert (pool_max["minimum"], pool_max["maximum"]) == (1, 10000)
    port = props["redis"]["properties"]["external"]["properties"]["port"]
    assert (port["minimum"], port["maximum"]) == (1, 65535)
    base = props["backoff"]["properties"]["baseSeconds"]
    assert base["minimum"] == 0 and base["exclusiveMinimum"] is True
    attempts = props["backoff"]["properties"]["attempts"]
    assert (attempts["type"], attempts["minimum"], attempts["maximum"]) == ("integer", 0, 100)
    assert props["environment"]["enum"] == ["development", "production"]
    assert props["deletionPolicy"]["enum"] == ["Retain", "Delete"]


def _rules(path: str) -> list[str]:
    return [rule["rule"] for rule in _node(path).get("x-kubernetes-validations", [])]


def test_cel_rules_cover_what_the_schema_cannot_say() -> None:
    assert "has(self.provision) != has(self.external)" in _rules(".spec.redis")
    assert "has(self.provision) == has(oldSelf.provision)" in _rules(".spec.redis")
    assert any("self.capSeconds >= self.baseSeconds" in r for r in _rules(".spec.backoff"))
    assert any(
        "self.timeoutSeconds < self.intervalSeconds" in r for r in _rules(".spec.healthCheck")
    )
    storage_rules = " ".join(_rules(".spec.redis.provision.storage"))
    assert "oldSelf.storageClassName" in storage_rules
    assert "oldSelf.size" in storage_rules
    assert any("self.metadata.name" in rule for rule in _rules(""))


def test_every_cel_rule_has_a_message() -> None:
    for path, node in _walk(_root()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"].strip(), (path, rule)
            assert set(rule) <= {"rule", "message", "fieldPath", "reason"}


def test_lists_and_cel_checked_strings_are_bounded_for_the_cost_budget() -> None:
    for path, node in _walk(_root()):
        if node.get("type") == "array":
            assert "maxItems" in node, path
        if node.get("type") == "string" and "x-kubernetes-validations" in node:
            assert "maxLength" in node, path


def test_list_map_keys_are_required_scalars() -> None:
    for path, node in _walk(_root()):
        if node.get("x-kubernetes-list-type") == "map":
            item = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in item.get("required", []) or "default" in item["properties"][key]
                assert item["properties"][key]["type"] == "string", (path, key)


def test_unique_lists_use_list_maps() -> None:
    assert _node(".spec.inject")["x-kubernetes-list-map-keys"] == ["secretName"]
    assert _node(".spec.inject[].restart")["x-kubernetes-list-map-keys"] == ["kind", "name"]
    assert _node(".spec.queues")["x-kubernetes-list-map-keys"] == ["key"]
    conditions = _node(".status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_secret_references_have_no_namespace() -> None:
    for path, node in _walk(_root()):
        if path.endswith("SecretRef") or path.endswith("secretRef"):
            assert set(node["properties"]) == {"name", "key"}, path


def test_status_has_a_full_schema_and_its_subresource() -> None:
    assert _version()["subresources"] == {"status": {}}
    status = _node(".status")
    assert set(status["properties"]) == {
        "phase",
        "mode",
        "endpoint",
        "latencyMs",
        "lastProbeTime",
        "observedGeneration",
        "rotation",
        "conditions",
    }
    rotation = _node(".status.rotation")
    assert set(rotation["required"]) == {"phase", "startedAt", "removeAfter"}
    assert rotation["properties"]["phase"]["enum"] == ["Overlap", "Complete", "ReadyToRemoveOld"]
    condition = _node(".status.conditions[]")
    assert set(condition["required"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
    }
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    assert list(columns) == [
        "Mode",
        "Endpoint",
        "Ready",
        "Phase",
        "Since",
        "Latency-ms",
        "Rotation",
        "Age",
    ]
    assert columns["Rotation"]["jsonPath"] == ".status.rotation.phase"
    assert columns["Rotation"]["priority"] == 1
    assert columns["Mode"]["jsonPath"] == ".status.mode"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    # How long Ready has been what it is; the latency is that of the last change, so it is
    # shown only with -o wide.
    assert columns["Since"]["type"] == "date"
    assert columns["Since"]["jsonPath"].endswith(".lastTransitionTime")
    assert columns["Latency-ms"]["type"] == "number" and columns["Latency-ms"]["priority"] == 1
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


@pytest.mark.parametrize(
    "path",
    [
        ".spec.redis.external.tls.insecureSkipVerify",
        ".spec.redis.provision.appendOnly",
        ".spec.deletionPolicy",
    ],
)
def test_risky_fields_explain_themselves(path: str) -> None:
    description = _node(path)["description"]
    assert len(description) > 40
    if path.endswith("insecureSkipVerify"):
        assert description.startswith("INSECURE")
