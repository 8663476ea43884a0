"""Every name derived from one RedisQueue, computed once (QueueNames)."""

from __future__ import annotations

from harness.queue_specs import NAME, NAMES, NAMESPACE, external, provision
from redisqueue.controller.resource.identity import API_VERSION, KIND
from redisqueue.controller.resource.names import Owner, QueueNames, SecretKeyRef
from redisqueue.controller.resource.spec import parse_spec

OWNER = Owner(apiVersion=API_VERSION, kind=KIND, name=NAME, uid=NAMES.uid)


def test_names_follow_one_scheme() -> None:
    assert NAMES.with_spec(provision()).endpoint == ("analysis-jobs-redis.marketplace.svc", 6379)
    assert NAMES.generated_secret == "analysis-jobs-redis-auth"
    assert NAMES.data_claim == "data-analysis-jobs-redis-0"
    assert NAMES.workload == "analysis-jobs-redis"


def test_endpoint_for_external_is_the_spec_host_and_port() -> None:
    assert NAMES.with_spec(external(port=6380)).endpoint == ("redis.example.com", 6380)
    assert NAMES.with_spec(provision()).endpoint[0].endswith(".marketplace.svc")


def test_owner_of_reads_a_redisqueue_body() -> None:
    body = {
        "apiVersion": OWNER["apiVersion"],
        "kind": "RedisQueue",
        "metadata": {"name": NAME, "uid": OWNER["uid"], "namespace": NAMESPACE},
    }
    assert QueueNames.of(body).owner == OWNER


# --- labels and Service ----------------------------------------------------------------------


def test_labels_are_the_recommended_kubernetes_labels() -> None:
    assert NAMES.labels == {
        "app.kubernetes.io/name": "redis",
        "app.kubernetes.io/instance": NAME,
        "app.kubernetes.io/managed-by": "redisqueue-operator",
        "app.kubernetes.io/part-of": "redisqueue",
        "app.kubernetes.io/component": "queue",
    }


def test_auth_secret_key_ref_by_mode() -> None:
    assert NAMES.with_spec(provision()).password == SecretKeyRef(
        "analysis-jobs-redis-auth", "password"
    )
    assert NAMES.with_spec(external()).password is None
    with_secret = parse_spec(
        {
            "redis": {"external": {"host": "h"}},
            "auth": {"secretRef": {"name": "redis-auth"}},
        }
    )
    assert NAMES.with_spec(with_secret).password == SecretKeyRef("redis-auth", "password")


def test_long_redisqueue_names_get_distinct_field_managers_within_the_limit() -> None:
    from redisqueue.controller.resource.names import inject_field_manager

    first, second = "a" * 200 + "-one", "a" * 200 + "-two"
    managers = {inject_field_manager(first), inject_field_manager(second)}
    assert len(managers) == 2
    assert all(len(m) <= 128 for m in managers)
    assert inject_field_manager("jobs") == "redisqueue-operator/jobs"


def test_long_redisqueue_names_fit_the_source_label() -> None:
    import re

    from redisqueue.controller.resource.names import source_label_value

    long_names = ["q" * 64, "q" * 63 + "x", "n-" * 100]
    values = {source_label_value(n) for n in long_names}
    assert len(values) == 3
    label = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
    assert all(re.fullmatch(label, v) for v in values)
    assert source_label_value("jobs") == "jobs"
