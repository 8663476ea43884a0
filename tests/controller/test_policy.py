"""The operator's policy: external hosts and provision images (pure), and what status says."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from harness.redis_server import free_port
from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.resource.policy import (
    ENV_ALLOWED_HOSTS,
    ENV_DENIED_HOSTS,
    OperatorPolicy,
    PolicyError,
)

DEFAULT = OperatorPolicy()


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "fe80::1",
        "metadata.google.internal",
        "METADATA.google.internal.",
        "metadata",
        "instance-data.ec2.internal",
    ],
)
def test_link_local_and_cloud_metadata_are_refused_by_default(host: str) -> None:
    problem = DEFAULT.host_problem(host)
    assert problem is not None and problem.startswith("spec.redis.external.host: ")


def test_a_name_that_resolves_into_a_denied_network_is_refused() -> None:
    resolved = [ipaddress.ip_address("169.254.169.254")]
    assert "resolves into a network" in (DEFAULT.host_problem("sneaky.example.com", resolved) or "")
    assert DEFAULT.host_problem("redis.example.com", [ipaddress.ip_address("10.1.2.3")]) is None


@pytest.mark.parametrize("host", ["redis.example.com", "10.0.0.7", "localhost"])
def test_ordinary_hosts_pass_an_empty_allow_list(host: str) -> None:
    assert DEFAULT.host_problem(host) is None
    assert not DEFAULT.trusted(host)


def test_an_allow_list_of_suffixes_and_cidrs_is_enforced_and_trusted() -> None:
    policy = OperatorPolicy.from_env(
        {ENV_ALLOWED_HOSTS: "cache.amazonaws.com, 10.20.0.0/16 ,fd12::/16"}
    )
    for host in ("master.x.cache.amazonaws.com", "cache.amazonaws.com", "10.20.3.4", "fd12::9"):
        assert policy.host_problem(host) is None, host
        assert policy.trusted(host), host
    for host in ("evilcache.amazonaws.com", "10.21.0.1", "example.com", "fd13::1"):
        problem = policy.host_problem(host) or ""
        assert "is not among the hosts" in problem, host
        assert "*.cache.amazonaws.com, 10.20.0.0/16" in problem
    # Denied wins over allowed.
    wide = OperatorPolicy.from_env({ENV_ALLOWED_HOSTS: "0.0.0.0/0"})
    assert wide.host_problem("169.254.169.254") is not None


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({ENV_ALLOWED_HOSTS: "10.0.0.0/33"}, ENV_ALLOWED_HOSTS),
        ({ENV_ALLOWED_HOSTS: "https://x"}, ENV_ALLOWED_HOSTS),
        ({ENV_DENIED_HOSTS: "a b"}, ENV_DENIED_HOSTS),
    ],
)
def test_a_bad_policy_setting_names_its_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(PolicyError, match=variable):
        OperatorPolicy.from_env(environ)


def test_the_denied_list_can_be_replaced() -> None:
    policy = OperatorPolicy.from_env({ENV_DENIED_HOSTS: "10.0.0.0/8"})
    assert policy.host_problem("10.1.1.1") is not None
    assert policy.host_problem("169.254.169.254") is None


def test_provision_images_are_limited_to_the_allowed_prefixes() -> None:
    policy = OperatorPolicy.from_env({"REDISQUEUE_ALLOWED_IMAGES": "registry.example.com/redis:"})
    assert policy.image_problem("redis:7.2-alpine", "redis:7.2-alpine") is None
    assert policy.image_problem("registry.example.com/redis:7.4", "redis:7.2-alpine") is None
    problem = policy.image_problem("docker.io/evil:1", "redis:7.2-alpine") or ""
    assert "registry.example.com/redis:" in problem
    assert DEFAULT.image_problem("anything:1", "redis:7.2-alpine") is None


async def _failure(port: int, *, detailed: bool) -> tuple[str, str]:
    probe = Probe(
        ConnectionContract(host="127.0.0.1", port=port),
        namespace="policy",
        name=f"p{port}-{detailed}",
        timeout=0.5,
        detailed_errors=detailed,
    )
    try:
        result = await probe.check()
    finally:
        await probe.close()
    assert not result.ok
    return result.reason, (result.error or "").replace(str(port), "PORT")


async def test_refused_and_silent_ports_read_the_same_unless_the_host_is_trusted() -> None:
    # A real closed port, and a real listener that never answers.
    closed = free_port()
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    silent_port = int(silent.sockets[0].getsockname()[1])
    try:
        assert await _failure(closed, detailed=False) == await _failure(silent_port, detailed=False)
        refused = await _failure(closed, detailed=True)
        timed_out = await _failure(silent_port, detailed=True)
    finally:
        # Closing the server leaves the connections it accepted open: close them too.
        silent.close()
        for writer in accepted:
            writer.close()
        await silent.wait_closed()
    assert refused != timed_out
    assert refused[0] == "unreachable" and timed_out[0] == "timeout"
