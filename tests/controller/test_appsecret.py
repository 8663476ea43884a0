"""The connection contract built from a spec, and the app-Secret bodies that carry it."""

from __future__ import annotations

import base64

from harness.queue_specs import NAME, NAMES, NAMESPACE, external, provision
from redisqueue.contract import CONTRACT_KEYS, PASSWORD, TLS_CA_CERT, USERNAME
from redisqueue.controller.objects.appsecret import (
    build_contract,
    build_injected_secret_apply,
    build_injected_secret_release,
)
from redisqueue.controller.resource.identity import LABEL_REDISQUEUE
from redisqueue.controller.resource.spec import parse_spec

OWNER = NAMES.owner


# --- the contract and app Secrets ------------------------------------------------------------


def test_contract_for_a_provisioned_redis() -> None:
    spec = parse_spec({"redis": {"provision": {}}, "environment": "production"})
    endpoint = NAMES.with_spec(spec).endpoint
    assert endpoint is not None
    host, port = endpoint
    contract = build_contract(spec, host, port, "s3cret")
    env = contract.to_env()
    assert env["REDIS_URL"] == "redis://:s3cret@analysis-jobs-redis.marketplace.svc:6379/0"
    assert env["REDIS_TLS"] == "false"
    assert env["REDIS_POOL_MAX_CONNECTIONS"] == "100"
    assert env["REDIS_BACKOFF_BASE_SECONDS"] == "1"
    assert env["REDIS_BACKOFF_CAP_SECONDS"] == "30"
    assert env["REDIS_RETRY_ATTEMPTS"] == "10"
    assert env["REDIS_POOL_TIMEOUT_SECONDS"] == "5"
    assert env["REDIS_SOCKET_TIMEOUT_SECONDS"] == "5"
    assert "REDIS_PASSWORD_FILE" not in env  # the app's mount path, never the operator's


def test_the_spec_socket_timeout_reaches_the_app_secret() -> None:
    spec = parse_spec({"redis": {"provision": {}}, "pool": {"socketTimeoutSeconds": 2.5}})
    endpoint = NAMES.with_spec(spec).endpoint
    assert endpoint is not None
    host, port = endpoint
    env = build_contract(spec, host, port, "s3cret").to_env()
    assert env["REDIS_SOCKET_TIMEOUT_SECONDS"] == "2.5"


def test_contract_for_elasticache_with_tls_and_an_acl_user() -> None:
    spec = parse_spec(
        {
            "redis": {
                "external": {
                    "host": "master.x.cache.amazonaws.com",
                    "db": 2,
                    "tls": {"enabled": True, "caSecretRef": {"name": "ca"}},
                }
            },
            "auth": {"secretRef": {"name": "auth"}, "username": "worker"},
            "pool": {"maxConnections": 20},
            "backoff": {"baseSeconds": 0.5, "capSeconds": 8, "attempts": 3},
        }
    )
    contract = build_contract(spec, "master.x.cache.amazonaws.com", 6379, "tok", ca_pem="PEM")
    env = contract.to_env()
    assert env["REDIS_URL"] == "rediss://worker:tok@master.x.cache.amazonaws.com:6379/2"
    assert env[USERNAME.key] == "worker"
    assert env[TLS_CA_CERT.key] == "PEM"
    assert env["REDIS_POOL_MAX_CONNECTIONS"] == "20"
    assert env["REDIS_BACKOFF_BASE_SECONDS"] == "0.5"
    assert "REDIS_TLS_INSECURE_SKIP_VERIFY" not in env


def test_contract_carries_insecure_skip_verify_only_with_tls() -> None:
    spec = external(tls={"enabled": True, "insecureSkipVerify": True})
    env = build_contract(spec, "h", 6379, None).to_env()
    assert env["REDIS_TLS_INSECURE_SKIP_VERIFY"] == "true"
    assert PASSWORD.key not in env
    plain = build_contract(external(), "h", 6379, None, ca_pem="PEM").to_env()
    assert TLS_CA_CERT.key not in plain


def test_injected_secret_body_holds_exactly_the_contract_keys() -> None:
    contract = build_contract(provision(), "h.ns.svc", 6379, "pw")
    body = build_injected_secret_apply("worker-redis", NAMESPACE, contract, source=NAMES)
    assert set(body) == {"apiVersion", "kind", "metadata", "data"}
    assert set(body["data"]) == set(contract.to_env())
    assert set(body["data"]) <= set(CONTRACT_KEYS)
    decoded = {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    assert decoded == contract.to_env()
    assert body["metadata"] == {
        "name": "worker-redis",
        "namespace": NAMESPACE,
        "labels": {LABEL_REDISQUEUE: NAME},
    }


def test_injected_secret_owner_is_never_a_controller() -> None:
    contract = build_contract(provision(), "h", 6379, "pw")
    body = build_injected_secret_apply("worker-redis", NAMESPACE, contract, owner=OWNER)
    (ref,) = body["metadata"]["ownerReferences"]
    assert ref["controller"] is False and ref["blockOwnerDeletion"] is False
    assert "labels" not in body["metadata"]


def test_injected_secret_release_owns_nothing() -> None:
    assert build_injected_secret_release("worker-redis", NAMESPACE) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "worker-redis", "namespace": NAMESPACE},
    }
