"""Hosts, on every role: the address that was checked is the address dialled.

Two operator replicas with leader election (the install's default), with the install path's
CRD, RBAC and policies, on the real API server. Their policy refuses 127.0.0.1, where a
*victim* redis-server listens with the very password the RedisQueues carry; an *allowed*
redis-server listens on 127.0.0.2. Names resolve through a DNS server on loopback that the
test controls (tests/harness/local_dns.py): each replica runs in a mount namespace of its own whose
/etc/resolv.conf names only that server, so the test can re-point a name after it was
checked, as an attacker who controls a zone would. Needs root (port 53, mount namespaces).

Proven: no spelling of a refused address (IPv4-mapped and NAT64 IPv6, the unspecified
address, names that resolve there, names with one refused address among others) is probed by
either replica; a name re-pointed at the victim after it was admitted is never dialled, and
the RedisQueue is reported refused instead of Ready.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kube_controlplane import ControlPlane
from harness.local_dns import LocalDNS
from harness.operator_harness import (
    TEST_DENIED_HOSTS,
    OperatorProcess,
    apply_secret,
    condition,
    create_rq,
    eventually,
    install_crd_and_rbac,
    leader_and_standby,
    samples_of,
    wait_for_ready,
)
from harness.redis_server import RedisServer, free_port
from redisqueue.controller.api.kube import Kube, KubeError

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(os.geteuid() != 0, reason="a DNS server on port 53 and mount namespaces"),
]

VICTIM = "127.0.0.1"
ALLOWED = "127.0.0.2"


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[LocalDNS]:
    server = LocalDNS(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def servers(tmp_path: Path, redis_password: str) -> Iterator[tuple[RedisServer, RedisServer]]:
    """The victim on 127.0.0.1 and the allowed Redis on 127.0.0.2, on one port, one password."""
    port = free_port()
    victim = RedisServer(tmp_path / "victim", password=redis_password, port=port, host=VICTIM)
    allowed = RedisServer(tmp_path / "allowed", password=redis_password, port=port, host=ALLOWED)
    victim.start()
    allowed.start()
    yield victim, allowed
    allowed.stop()
    victim.stop()


def connections(server: RedisServer) -> int:
    """Connections the server has accepted so far (this question's own included)."""
    with server.admin() as client:
        return int(client.info("stats")["total_connections_received"])


@pytest.fixture
async def replicas(
    control_plane: ControlPlane, dns: LocalDNS, tmp_path: Path
) -> AsyncIterator[tuple[OperatorProcess, OperatorProcess]]:
    install_crd_and_rbac(control_plane)
    pair = await leader_and_standby(
        control_plane,
        tmp_path,
        environ={
            # Every loopback address is allowed (and trusted) but the victim's.
            "REDISQUEUE_ALLOWED_HOSTS": "127.0.0.0/8,::1/128,64:ff9b::/96,localhost,test",
            "REDISQUEUE_DENIED_HOSTS": f"{TEST_DENIED_HOSTS},{VICTIM}/32,::1/128",
        },
        command_prefix=dns.isolated(),
    )
    yield pair
    for process in sorted(pair, key=lambda p: p.identity):  # in the order they started
        process.stop()


def external(host: str, port: int) -> dict[str, Any]:
    return {
        "redis": {"external": {"host": host, "port": port}},
        "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
        "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
    }


async def test_no_spelling_of_a_refused_address_is_probed_by_either_replica(
    replicas: tuple[OperatorProcess, OperatorProcess],
    kube: Kube,
    namespace: str,
    dns: LocalDNS,
    servers: tuple[RedisServer, RedisServer],
) -> None:
    leader, standby = replicas
    victim, allowed = servers
    await apply_secret(kube, namespace, "redis-auth", {"password": victim.password or ""})
    dns.point("victim.test", VICTIM)
    dns.point("mixed.test", ALLOWED, VICTIM)  # one refused address among allowed ones
    spellings = {
        "plain": VICTIM,
        "mapped": f"::ffff:{VICTIM}",
        "mapped-hex": "::ffff:7f00:1",
        "mapped-long": f"0:0:0:0:0:ffff:{VICTIM}",
        "nat64": "64:ff9b::7f00:1",
        "unspecified": "0.0.0.0",  # noqa: S104 - a host to refuse, not to bind
        "unspecified-v6": "::",
        "loopback-v6": "::1",
        "hosts-file-name": "localhost",
        "dns-name": "victim.test",
        "dns-mixed": "mixed.test",
    }
    before = connections(victim)
    at_admission = set()
    for name, host in spellings.items():
        try:
            await create_rq(kube, namespace, name, external(host, victim.port))
        except KubeError as exc:  # what CEL sees (0.0.0.0/8 in the test install) stops here
            assert exc.status == 403 and "refuses" in exc.message, (name, exc)
            at_admission.add(name)
    # The control: an allowed address, probed by both replicas.
    await create_rq(kube, namespace, "control", external(ALLOWED, allowed.port))
    await wait_for_ready(kube, namespace, "control")

    async def standby_probes_control() -> bool:
        return standby.health(namespace, "control")[0] == 200

    await eventually(standby_probes_control, timeout=30, what="the standby probing the control")
    for process in (leader, standby):
        assert samples_of(process, namespace, "control")  # the series of what is probed
    for name, host in spellings.items():
        if name in at_admission:
            continue
        rq = await wait_for_ready(kube, namespace, name, "False", "PolicyRefused")
        assert "refuses" in condition(rq, "Ready")["message"], (name, host)
        for process in (leader, standby):
            assert process.health(namespace, name)[0] == 404, (process.identity, name)
            assert samples_of(process, namespace, name) == [], (process.identity, name)
    # Several probe intervals later, nobody has dialled the victim but this test itself.
    probed = connections(victim)
    assert probed - before == 1, f"{probed - before - 1} connections reached the victim"


async def test_a_name_re_pointed_after_it_was_checked_is_never_dialled(
    replicas: tuple[OperatorProcess, OperatorProcess],
    kube: Kube,
    namespace: str,
    dns: LocalDNS,
    servers: tuple[RedisServer, RedisServer],
) -> None:
    leader, standby = replicas
    victim, allowed = servers
    await apply_secret(kube, namespace, "redis-auth", {"password": allowed.password or ""})
    dns.point("rebind.test", ALLOWED)
    await create_rq(kube, namespace, "rebind", external("rebind.test", allowed.port))
    await wait_for_ready(kube, namespace, "rebind")

    async def both_connected() -> bool:
        return all(p.health(namespace, "rebind")[0] == 200 for p in (leader, standby))

    await eventually(both_connected, timeout=30, what="both replicas probing rebind.test")

    # The zone's owner re-points the name at the victim and drops the connections, so that
    # every replica must dial again.
    before = connections(victim)
    dns.point("rebind.test", VICTIM)
    allowed.stop()
    rq = await wait_for_ready(kube, namespace, "rebind", "False", "PolicyRefused", timeout=30)
    message = condition(rq, "Reachable")["message"]
    assert "not dialled" in message and "rebind.test resolves into a network" in message

    # The standby refuses it too: at its next dial ("not dialled"), or at once when the
    # leader's status write makes it check the RedisQueue again (no probe at all).
    async def standby_refuses() -> bool:
        status, body = standby.health(namespace, "rebind")
        return status == 404 or (status == 503 and body.get("reason") == "refused")

    await eventually(standby_refuses, timeout=30, what="the standby refusing rebind.test")
    # Let both replicas try a few more times (1 s interval), then count who reached the victim.
    for _ in range(8):
        assert standby.health(namespace, "rebind")[0] != 200
        await asyncio.sleep(0.5)
    await wait_for_ready(kube, namespace, "rebind", "False", "PolicyRefused")
    assert connections(victim) - before == 1, "a replica dialled the re-pointed name"
    assert ("rebind.test", "A") in dns.questions  # the replicas did ask the test's server
