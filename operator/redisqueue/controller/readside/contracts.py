"""Turning a RedisQueue's spec and the Secrets it names into its connection contract.

Errors are :class:`SetupError`\\ s whose messages name the Secret and key, never a value.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from redisqueue.contract import ConnectionContract

from ..objects.appsecret import build_contract
from ..resource.errors import SetupError
from ..resource.names import QueueNames, SecretKeyRef
from ..resource.spec import RedisQueueSpec
from ..resource.status import Reason
from .secrets import SecretStore, refuse_special


def decode_secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """The text under ``key`` of a Secret's ``data``; None when absent or not valid text."""
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def secret_value(secret: Mapping[str, Any], namespace: str, ref: SecretKeyRef, what: str) -> str:
    """The text under ``ref.key`` of ``secret``, or a :class:`SetupError` naming the key."""
    refuse_special(secret, namespace, ref.name, what)
    if ref.key not in (secret.get("data") or {}):
        # The Secret's other key names are not listed: they are not the author's to see.
        raise SetupError(
            Reason.SECRET_KEY_NOT_FOUND,
            f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({what})",
        )
    value = decode_secret_value(secret, ref.key)
    if value is None:
        raise SetupError(
            Reason.SECRET_VALUE_INVALID,
            f"Secret {namespace}/{ref.name} key {ref.key!r} ({what}) is not valid UTF-8 text",
        )
    return value


async def resolve_contract(
    names: QueueNames, spec: RedisQueueSpec, secrets: SecretStore
) -> ConnectionContract:
    """The contract for ``spec``, with the Secrets it names from ``secrets``."""
    assert names.endpoint is not None, "names.with_spec(spec) first"
    host, port = names.endpoint
    password = ca_pem = None
    if (ref := names.password) is not None:
        secret = await secrets.get(names.namespace, ref.name, "password")
        password = secret_value(secret, names.namespace, ref, "password")
    if (ref := names.ca) is not None:
        secret = await secrets.get(names.namespace, ref.name, "TLS CA certificate")
        ca_pem = secret_value(secret, names.namespace, ref, "TLS CA certificate")
    return build_contract(spec, host, port, password, ca_pem=ca_pem)
