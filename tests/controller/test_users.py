"""The users of a running provisioned Redis, changed as its admin: against a real
redis-server started by the pod's own start-up script."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.provisioned_redis import ProvisionedRedis, secret_files
from redisqueue.controller.objects.acl import (
    APP_USER,
    PROBE_USER,
    build_acl_secret,
    password_hash,
    probe_key_rules,
)
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import parse_spec
from redisqueue.controller.steps.users import RedisUsers, UsersUnavailable

NAMES = QueueNames("shop", "jobs", "uid-1")
SPEC = parse_spec({"redis": {"provision": {}}, "queues": [{"key": "phase1:jobs"}]})
ADMIN = "admin-secret-value"
PROBE = "probe-secret-value"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ProvisionedRedis]:
    acl = build_acl_secret(NAMES, admin_password=ADMIN, probe_password=PROBE, queues=SPEC.queues)
    started = ProvisionedRedis(tmp_path, SPEC)
    started.mount(b"first-password", secret_files(acl))
    started.start()
    yield started
    started.stop()


async def test_a_second_password_works_next_to_the_first_until_the_first_is_removed(
    server: ProvisionedRedis,
) -> None:
    users = RedisUsers(server.host, server.port, ADMIN)
    try:
        before = await users.user(APP_USER)
        assert before.passwords == {password_hash("first-password")}
        await users.add_password(APP_USER, password_hash("second-password"))
        await users.add_password(APP_USER, password_hash("second-password"))  # idempotent
        assert server.accepts("first-password") and server.accepts("second-password")
        kept = server.client("first-password")
        assert kept.ping() is True
        await asyncio.sleep(1.1)  # CLIENT LIST counts whole seconds
        assert await users.connections_older_than(APP_USER, 0.5) == 1
        await users.remove_passwords(APP_USER, {password_hash("first-password")})
        assert not server.accepts("first-password") and server.accepts("second-password")
        assert kept.ping() is True  # authenticated before: stays authenticated
        assert (await users.user(APP_USER)).passwords == {password_hash("second-password")}
        await users.remove_passwords(APP_USER, set())  # nothing to remove: no command
        kept.close()
    finally:
        await users.close()


async def test_probe_keys_are_replaced_not_added(server: ProvisionedRedis) -> None:
    users = RedisUsers(server.host, server.port, ADMIN)
    prober = server.client(PROBE, PROBE_USER)
    try:
        assert prober.llen("phase1:jobs") == 0
        other = parse_spec({"redis": {"provision": {}}, "queues": [{"key": "other*"}]})
        await users.set_probe_keys(probe_key_rules(other.queues))
        assert prober.llen("other*") == 0
        with pytest.raises(redis.exceptions.NoPermissionError):
            prober.llen("phase1:jobs")
        with pytest.raises(redis.exceptions.NoPermissionError):
            prober.llen("other-key")  # the * of the key is literal
    finally:
        prober.close()
        await users.close()


async def test_failures_name_the_endpoint_and_never_a_password(server: ProvisionedRedis) -> None:
    wrong = RedisUsers(server.host, server.port, "not-the-admin-password")
    with pytest.raises(UsersUnavailable) as caught:
        await wrong.user(APP_USER)
    await wrong.close()
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert "not-the-admin-password" not in str(caught.value)
    # The apps' user cannot change users, whatever it is told.
    app = server.client("first-password")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command("ACL", "SETUSER", APP_USER, ">mine")
    app.close()
    server.stop()
    gone = RedisUsers(server.host, server.port, ADMIN)
    with pytest.raises(UsersUnavailable, match="ACL GETUSER failed"):
        await gone.user(APP_USER)
    await gone.close()


def test_the_users_secret_is_controlled_by_and_stamped_with_its_redisqueue() -> None:
    # The object-shape policy admits a generated Secret only with the RedisQueue's uid on it.
    acl = build_acl_secret(NAMES, admin_password=ADMIN, probe_password=PROBE, queues=SPEC.queues)
    meta = acl["metadata"]
    assert meta["annotations"] == {"redisqueue.dev/owner-uid": NAMES.uid}
    assert [ref["uid"] for ref in meta["ownerReferences"]] == [NAMES.uid]
    assert meta["ownerReferences"][0]["controller"] is True
