"""The RedisQueue spec model: defaults, bounds, cross-field rules and error paths."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from redisqueue.controller.resource import spec as spec_module
from redisqueue.controller.resource.quantities import parse_quantity
from redisqueue.controller.resource.spec import (
    RedisQueueSpec,
    SpecError,
    parse_spec,
    resolved_pool_max,
    validate_resource_name,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
EXAMPLES = Path(__file__).parents[2] / "manifests" / "examples"
INVALID = yaml.safe_load((FIXTURES / "invalid_redisqueues.yaml").read_text())
INVALID_UPDATES = yaml.safe_load((FIXTURES / "invalid_redisqueue_updates.yaml").read_text())
CEL_MESSAGES = {
    value for key, value in vars(spec_module).items() if key.startswith("MSG_") and "{" not in value
}

PROVISION: dict[str, Any] = {"redis": {"provision": {}}}
EXTERNAL: dict[str, Any] = {"redis": {"external": {"host": "redis.example.com"}}}


def problems(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(body)
    return dict(caught.value.problems)


def test_minimal_provision_spec_gets_every_default() -> None:
    spec = parse_spec(PROVISION)
    assert spec.mode == "provision"
    assert spec.environment == "development"
    assert spec.redis.provision is not None
    assert spec.redis.provision.image == "redis:7.2.11-alpine"
    assert spec.redis.provision.storage.size == "1Gi"
    assert spec.redis.provision.storage.storage_class_name is None
    assert spec.redis.provision.append_only is True
    assert spec.auth is None
    assert spec.pool.max_connections is None
    assert spec.pool.timeout_seconds == 5
    assert (spec.backoff.base_seconds, spec.backoff.cap_seconds, spec.backoff.attempts) == (
        1,
        30,
        10,
    )
    assert (spec.health_check.interval_seconds, spec.health_check.timeout_seconds) == (10, 2)
    assert spec.inject == []
    assert spec.queues == []
    assert spec.deletion_policy == "Retain"


def test_minimal_external_spec_defaults_port_db_and_tls_off() -> None:
    spec = parse_spec(EXTERNAL)
    assert spec.mode == "external"
    external = spec.redis.external
    assert external is not None
    assert (external.port, external.db) == (6379, 0)
    assert external.tls.enabled is False
    assert external.tls.insecure_skip_verify is False
    assert external.tls.ca_secret_ref is None


@pytest.mark.parametrize(("environment", "expected"), [("development", 50), ("production", 100)])
def test_pool_max_defaults_by_environment(environment: str, expected: int) -> None:
    assert resolved_pool_max(parse_spec({**PROVISION, "environment": environment})) == expected


def test_pool_max_explicit_value_wins_over_environment() -> None:
    spec = parse_spec({**PROVISION, "environment": "production", "pool": {"maxConnections": 7}})
    assert resolved_pool_max(spec) == 7


@pytest.mark.parametrize("value", [1, 10000])
def test_pool_max_accepts_its_bounds(value: int) -> None:
    assert (
        parse_spec({**PROVISION, "pool": {"maxConnections": value}}).pool.max_connections == value
    )


def test_fractional_seconds_are_accepted() -> None:
    spec = parse_spec(
        {
            **PROVISION,
            "pool": {"timeoutSeconds": 0.25},
            "backoff": {"baseSeconds": 0.1, "capSeconds": 0.1, "attempts": 0},
            "healthCheck": {"intervalSeconds": 1.5, "timeoutSeconds": 0.1},
        }
    )
    assert spec.pool.timeout_seconds == 0.25
    assert spec.backoff.cap_seconds == spec.backoff.base_seconds == 0.1
    assert spec.health_check.timeout_seconds == 0.1


def test_full_external_spec_parses() -> None:
    spec = parse_spec(
        {
            "environment": "production",
            "redis": {
                "external": {
                    "host": "master.example.cache.amazonaws.com",
                    "port": 6380,
                    "db": 15,
                    "tls": {"enabled": True, "caSecretRef": {"name": "redis-ca"}},
                }
            },
            "auth": {"secretRef": {"name": "redis-auth"}, "username": "worker"},
            "inject": [{"secretName": "a"}, {"secretName": "b.c"}],
            "queues": [
                {"key": "phase1:jobs"},
                {"key": "events", "type": "stream", "group": "workers"},
            ],
            "deletionPolicy": "Delete",
        }
    )
    assert spec.redis.external is not None
    assert spec.redis.external.tls.ca_secret_ref is not None
    assert spec.redis.external.tls.ca_secret_ref.key == "ca.crt"
    assert spec.auth is not None and spec.auth.secret_ref is not None
    assert spec.auth.secret_ref.key == "password"
    assert [q.type for q in spec.queues] == ["list", "stream"]


@pytest.mark.parametrize(
    "host", ["redis.example.com", "10.0.0.7", "::1", "fd00::7", "redis_1.internal", "localhost"]
)
def test_external_host_accepts_names_and_addresses(host: str) -> None:
    assert parse_spec({"redis": {"external": {"host": host}}}).redis.external is not None


@pytest.mark.parametrize(
    "host", ["redis://redis.example.com", "redis.example.com:6379", "user@redis", "a b", "-x"]
)
def test_external_host_rejects_urls_ports_and_junk(host: str) -> None:
    assert problems({"redis": {"external": {"host": host}}}) == {
        "spec.redis.external.host": spec_module.MSG_HOST
    }


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"redis": {"provision": {}}, "pool": {"maxConnections": 0}}, "spec.pool.maxConnections"),
        ({"redis": {"external": {"host": "h", "port": 0}}}, "spec.redis.external.port"),
        ({"redis": {"external": {"host": "h", "port": 65536}}}, "spec.redis.external.port"),
        ({"redis": {"external": {"host": "h", "db": -1}}}, "spec.redis.external.db"),
        ({**PROVISION, "backoff": {"attempts": 101}}, "spec.backoff.attempts"),
        ({**PROVISION, "backoff": {"baseSeconds": 0}}, "spec.backoff.baseSeconds"),
        ({**PROVISION, "inject": [{"secretName": "Bad_Name"}]}, "spec.inject[0].secretName"),
        ({**PROVISION, "queues": [{"key": "k"}, {"key": ""}]}, "spec.queues[1].key"),
        ({**PROVISION, "auth": {"secretRef": {"key": "password"}}}, "spec.auth.secretRef.name"),
        (
            {"redis": {"provision": {"storage": {"size": "lots"}}}},
            "spec.redis.provision.storage.size",
        ),
        ({"redis": {"provision": {"maxMemory": "1Gi"}}}, "spec.redis.provision.maxMemory"),
        (
            {"redis": {"provision": {"imagePullPolicy": "Always"}}},
            "spec.redis.provision.imagePullPolicy",
        ),
        ({**PROVISION, "environment": "staging"}, "spec.environment"),
    ],
)
def test_errors_name_the_field_path(body: dict[str, Any], path: str) -> None:
    found = problems(body)
    assert path in found, found
    with pytest.raises(SpecError, match=path.replace("[", r"\[").replace(".", r"\.")):
        parse_spec(body)


def test_cross_field_errors_name_the_enclosing_object() -> None:
    found = problems({**PROVISION, "backoff": {"baseSeconds": 5, "capSeconds": 1}})
    assert found == {"spec.backoff": spec_module.MSG_CAP_GE_BASE}


def test_missing_spec_is_an_error() -> None:
    assert problems(None) == {"spec": "Field required"}  # type: ignore[arg-type]


def test_snake_case_field_names_are_not_part_of_the_resource() -> None:
    assert "spec.pool.max_connections" in problems({**PROVISION, "pool": {"max_connections": 5}})


def test_secret_refs_cannot_name_another_namespace() -> None:
    found = problems({**PROVISION, "auth": {"secretRef": {"name": "s", "namespace": "other"}}})
    assert found == {"spec.auth.secretRef.namespace": "Extra inputs are not permitted"}


def test_strings_are_not_coerced_into_numbers() -> None:
    assert "spec.redis.external.port" in problems(
        {"redis": {"external": {"host": "h", "port": "6379"}}}
    )


def test_resource_quantities_accept_integers_and_strings() -> None:
    spec = parse_spec(
        {"redis": {"provision": {"resources": {"requests": {"cpu": 1, "memory": "64Mi"}}}}}
    )
    assert spec.redis.provision is not None and spec.redis.provision.resources is not None
    requests = spec.redis.provision.resources.requests
    assert requests is not None
    assert (requests.cpu, requests.memory) == ("1", "64Mi")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Gi", Decimal(2**30)),
        ("512Mi", Decimal(512 * 2**20)),
        ("100m", Decimal("0.1")),
        ("1", Decimal(1)),
        ("1.5G", Decimal(1_500_000_000)),
        ("1e3", Decimal(1000)),
        ("-1", Decimal(-1)),
        (".5", Decimal("0.5")),
    ],
)
def test_parse_quantity_understands_kubernetes_suffixes(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1GB", "1 Gi", "Gi", "1e"])
def test_parse_quantity_rejects_what_kubernetes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize("name", ["analysis-jobs", "a", "q" * 46])
def test_provision_names_that_fit_the_service_and_statefulset(name: str) -> None:
    validate_resource_name(name, parse_spec(PROVISION))


@pytest.mark.parametrize("name", ["q" * 47, "1queue", "queue.v2"])
def test_provision_names_that_cannot_name_a_service_are_rejected(name: str) -> None:
    with pytest.raises(SpecError, match=r"metadata\.name"):
        validate_resource_name(name, parse_spec(PROVISION))


def test_external_mode_does_not_limit_the_name() -> None:
    validate_resource_name("1-" + "q" * 100, parse_spec(EXTERNAL))


@pytest.mark.parametrize("case", INVALID, ids=[case["name"] for case in INVALID])
def test_every_manifest_the_api_server_rejects_is_rejected_by_parse_spec(
    case: dict[str, Any],
) -> None:
    obj = case["object"]
    with pytest.raises(SpecError) as caught:
        validate_resource_name(obj["metadata"]["name"], parse_spec(obj["spec"]))
    if case["expect"] in CEL_MESSAGES or any(case["expect"] in m for m in CEL_MESSAGES):
        # Rules written as CEL carry the same sentence in both layers.
        assert case["expect"] in str(caught.value)


def test_invalid_fixture_table_is_large_and_uniquely_named() -> None:
    names = [case["name"] for case in INVALID + INVALID_UPDATES]
    assert len(INVALID) >= 18
    assert len(names) == len(set(names))
    for case in INVALID + INVALID_UPDATES:
        assert set(case) >= {"name", "expect", "object"}
        assert case["object"]["apiVersion"] == "redisqueue.dev/v1alpha1"
        assert "namespace" not in case["object"]["metadata"]


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=[c["name"] for c in INVALID_UPDATES])
def test_rejected_updates_are_each_valid_on_their_own(case: dict[str, Any]) -> None:
    # Only the transition is wrong, so the table really tests the transition rules.
    for manifest in (case["before"], case["object"]):
        spec = parse_spec(manifest["spec"])
        validate_resource_name(manifest["metadata"]["name"], spec)
    assert case["expect"] in CEL_MESSAGES or any(case["expect"] in m for m in CEL_MESSAGES)


def _example_redisqueues() -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "RedisQueue":
                found.append(doc)
    return found


def test_examples_are_valid_redisqueues() -> None:
    examples = _example_redisqueues()
    assert {ex["metadata"]["name"] for ex in examples} >= {"analysis-jobs"}
    modes = set()
    for example in examples:
        spec = parse_spec(example["spec"])
        validate_resource_name(example["metadata"]["name"], spec)
        modes.add(spec.mode)
    assert modes == {"provision", "external"}


def test_spec_model_is_immutable() -> None:
    spec = parse_spec(PROVISION)
    with pytest.raises(ValueError, match="frozen"):
        spec.environment = "production"  # type: ignore[misc]
    assert isinstance(spec, RedisQueueSpec)


@pytest.mark.parametrize("host", [":", "::::::::::", "1:2", ":::", "12345::1", "fe80::1::2"])
def test_external_host_rejects_colon_shapes_that_are_not_ipv6_addresses(host: str) -> None:
    assert problems({"redis": {"external": {"host": host}}}) == {
        "spec.redis.external.host": spec_module.MSG_HOST
    }


@pytest.mark.parametrize("host", ["::", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1:2:3:4"])
def test_external_host_accepts_ipv6_addresses(host: str) -> None:
    assert parse_spec({"redis": {"external": {"host": host}}}).redis.external is not None
