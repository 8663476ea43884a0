"""One RedisQueue's names and its spec in either mode, for the tests of what the operator
builds from them (pure functions, no cluster)."""

from __future__ import annotations

from typing import Any

from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import RedisQueueSpec, parse_spec

NAME, NAMESPACE = "analysis-jobs", "marketplace"
NAMES = QueueNames(NAMESPACE, NAME, "3f1c9a52-0000-4000-8000-000000000001")


def provision(**fields: Any) -> RedisQueueSpec:
    """A spec that provisions Redis, with ``fields`` under ``redis.provision``."""
    return parse_spec({"redis": {"provision": fields}})


def external(**fields: Any) -> RedisQueueSpec:
    """A spec for an external Redis at redis.example.com, with ``fields`` added."""
    return parse_spec({"redis": {"external": {"host": "redis.example.com", **fields}}})
