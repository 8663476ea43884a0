"""Turning the Secrets a RedisQueue names into its contract: what errors say, and which
Secrets are never read."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from redisqueue.controller.readside.contracts import secret_value
from redisqueue.controller.readside.secrets import SPECIAL_SECRET_TYPES, refuse_special
from redisqueue.controller.resource.errors import SetupError
from redisqueue.controller.resource.names import SecretKeyRef


def secret(data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "type": kind,
        "metadata": {"name": "s"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


async def read(found: dict[str, Any], key: str) -> str:
    return secret_value(found, "ns", SecretKeyRef("s", key), "password")


async def test_a_missing_key_is_named_without_listing_the_secrets_other_keys() -> None:
    with pytest.raises(SetupError) as info:
        await read(secret({"db-password": b"x", "api-token": b"y"}), "password")
    assert info.value.reason == "SecretKeyNotFound"
    assert "'password'" in info.value.message
    assert "db-password" not in info.value.message and "api-token" not in info.value.message


async def test_a_value_that_is_not_utf8_is_said_plainly() -> None:
    with pytest.raises(SetupError) as info:
        await read(secret({"password": b"\xff\xfe\x00"}), "password")
    assert info.value.reason == "SecretValueInvalid"
    assert info.value.message == "Secret ns/s key 'password' (password) is not valid UTF-8 text"


async def test_a_utf8_value_is_read() -> None:
    assert await read(secret({"password": "pä55".encode()}), "password") == "pä55"


@pytest.mark.parametrize("kind", sorted(SPECIAL_SECRET_TYPES))
def test_special_secret_types_are_refused(kind: str) -> None:
    with pytest.raises(SetupError) as info:
        refuse_special(secret({}, kind), "ns", "s", "password")
    assert info.value.reason == "SecretRefused"
    assert kind in info.value.message


def test_opaque_and_untyped_secrets_are_accepted() -> None:
    refuse_special(secret({}), "ns", "s", "password")
    refuse_special({"metadata": {"name": "s"}}, "ns", "s", "password")
