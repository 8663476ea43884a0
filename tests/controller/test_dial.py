"""Every probe connection resolves, checks and dials the checked address (fast tier).

Real redis-servers; name resolution is the one input replaced here: ``getaddrinfo`` of the
event loop answers from a table the test sets (the end-to-end test,
tests/e2e/test_tenancy_hosts_e2e.py, uses a real DNS server instead).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

from harness.redis_server import RedisServer, TLSFiles
from redisqueue.contract import ConnectionContract
from redisqueue.controller.probing.endpoints import EndpointPool
from redisqueue.controller.probing.probe import Probe
from redisqueue.controller.resource.policy import ENV_DENIED_HOSTS, OperatorPolicy


def answers(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Make the running loop resolve the names in ``table`` to its addresses (asked: logged)."""
    asked: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in table:
            asked.append(host)
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (a, port),
                )
                for a in table[host]
            ]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


def connections(server: RedisServer) -> int:
    """Connections the server has accepted so far (this question's own included)."""
    with server.admin() as admin:
        return int(admin.info("stats")["total_connections_received"])


def checker(denied: str) -> Callable[[str, Any], str | None]:
    return OperatorPolicy.from_env({ENV_DENIED_HOSTS: denied}).address_problem


async def _probe(
    contract: ConnectionContract, pool: EndpointPool, name: str = "q"
) -> tuple[Probe, Any]:
    probe = Probe(contract, namespace="dial", name=name, timeout=1, endpoints=pool)
    return probe, await probe.check()


async def test_a_name_that_resolves_into_a_denied_network_is_not_dialled(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    asked = answers(monkeypatch, {"rebind.example": [redis_server.host]})
    pool = EndpointPool(dial_check=checker("127.0.0.0/8"))
    contract = ConnectionContract(
        host="rebind.example", port=redis_server.port, password=redis_server.password
    )
    before = connections(redis_server)
    probe, result = await _probe(contract, pool)
    try:
        assert not result.ok and result.reason == "refused"
        assert "not dialled" in (result.error or "")
        assert "rebind.example resolves into a network the operator refuses" in (result.error or "")
        assert asked  # resolved by the dial itself
        assert connections(redis_server) - before == 1  # only this test's own question
    finally:
        await probe.close()


async def test_one_denied_address_among_allowed_ones_refuses_the_dial(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    answers(monkeypatch, {"mixed.example": ["192.0.2.10", redis_server.host]})
    pool = EndpointPool(dial_check=checker(f"{redis_server.host}/32"))
    contract = ConnectionContract(host="mixed.example", port=redis_server.port)
    probe, result = await _probe(contract, pool)
    await probe.close()
    assert result.reason == "refused"


async def test_the_checked_address_is_dialled_and_a_re_pointed_name_is_not(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    table = {"cache.example": [redis_server.host]}
    answers(monkeypatch, table)
    pool = EndpointPool(dial_check=checker("10.0.0.0/8"))
    contract = ConnectionContract(
        host="cache.example", port=redis_server.port, password=redis_server.password
    )
    probe, first = await _probe(contract, pool)
    try:
        assert first.ok
        # Re-pointed into the denied network, and the connection dropped: the next dial
        # resolves again and refuses, instead of reaching the new address.
        table["cache.example"] = ["10.1.2.3"]
        admin = redis_server.admin()
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.close()
        results = [await probe.check() for _ in range(3)]
        assert results[-1].reason == "refused", results
    finally:
        await probe.close()


async def test_tls_verifies_the_name_while_dialling_the_checked_address(
    monkeypatch: pytest.MonkeyPatch, tls_redis_server: RedisServer, tls_files: TLSFiles
) -> None:
    # The certificate is for "localhost"; the name resolves (here) to the server's address.
    answers(monkeypatch, {"localhost": [tls_redis_server.host]})
    pool = EndpointPool(dial_check=checker("10.0.0.0/8"))
    contract = ConnectionContract(
        host="localhost",
        port=tls_redis_server.port,
        password=tls_redis_server.password,
        tls=True,
        tls_ca_cert=tls_files.ca_pem,
    )
    probe, result = await _probe(contract, pool)
    await probe.close()
    assert result.ok, result


async def test_pings_to_one_endpoint_go_one_at_a_time_shared_by_every_caller_waiting(
    redis_server: RedisServer,
) -> None:
    pool = EndpointPool(dial_check=checker("10.0.0.0/8"))
    contract = redis_server.contract()
    probe = Probe(contract, namespace="dial", name="flood", timeout=1, endpoints=pool)
    admin = redis_server.admin()
    try:
        before = int(admin.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        answered = 0

        async def caller() -> None:  # asks again as soon as it is answered
            nonlocal answered
            while loop.time() - started < 1.0:
                assert (await probe.check()).ok
                answered += 1

        await asyncio.gather(*(caller() for _ in range(20)))
        sent = int(admin.info("commandstats")["cmdstat_ping"]["calls"]) - before
    finally:
        admin.close()
        await probe.close()
    assert answered >= 100
    # Without sharing, every answer would cost a PING.
    assert sent * 4 <= answered, (sent, answered)


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
        "0.0.0.0",  # noqa: S104 - an address to deny, not to bind
        "::",
        "127.0.0.53",
        "::1",
    ],
)
def test_every_spelling_of_a_denied_address_is_denied(address: str) -> None:
    assert OperatorPolicy().denies_address(ipaddress.ip_address(address)), address
