"""Turning a RedisQueue's spec and the Secrets it names into its connection contract.

Errors are :class:`SetupError`\\ s whose messages name the Secret and key, never a value.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from redisqueue.contract import ConnectionContract

from ..objects.acl import PROBE_PASSWORD_KEY, PROBE_USER
from ..objects.appsecret import build_contract
from ..resource.errors import SetupError
from ..resource.identity import JSON
from ..resource.names import QueueNames, SecretKeyRef
from ..resource.spec import RedisQueueSpec
from ..resource.status import Reason

#: Secret types that hold a credential of the cluster or of another system. The operator never
#: reads them for a RedisQueue and never writes into them, whoever asks.
SPECIAL_SECRET_TYPES: Final = frozenset(
    {
        "kubernetes.io/service-account-token",
        "kubernetes.io/tls",
        "kubernetes.io/dockercfg",
        "kubernetes.io/dockerconfigjson",
        "bootstrap.kubernetes.io/token",
    }
)

#: Reads Secret ``name`` of the RedisQueue's namespace; ``what`` says in errors what for.
ReadSecret = Callable[[str, str], Awaitable[JSON]]


def refuse_special(secret: Mapping[str, Any], namespace: str, name: str, what: str) -> None:
    """Raise :class:`SetupError` when ``secret`` is of a type the operator never touches."""
    kind = secret.get("type") or "Opaque"
    if kind in SPECIAL_SECRET_TYPES:
        raise SetupError(
            Reason.SECRET_REFUSED,
            f"Secret {namespace}/{name} ({what}) is of type {kind}; the operator never reads "
            "or writes service-account-token, TLS, docker-config or bootstrap-token Secrets: "
            "use an Opaque Secret",
        )


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
    names: QueueNames, spec: RedisQueueSpec, read: ReadSecret
) -> ConnectionContract:
    """The contract for ``spec``, reading the Secrets it names with ``read``."""
    host, port = names.endpoint(spec)
    password = ca_pem = None
    if (ref := names.password_ref(spec)) is not None:
        secret = await read(ref.name, "password")
        password = secret_value(secret, names.namespace, ref, "password")
    if (ref := names.ca_ref(spec)) is not None:
        secret = await read(ref.name, "TLS CA certificate")
        ca_pem = secret_value(secret, names.namespace, ref, "TLS CA certificate")
    return build_contract(spec, host, port, password, ca_pem=ca_pem)


async def resolve_probe_credential(
    names: QueueNames, spec: RedisQueueSpec, contract: ConnectionContract, read: ReadSecret
) -> ConnectionContract:
    """What the operator's probe connects with: for a provisioned Redis its own user
    ``redisqueue-probe`` (PING, INFO and the queue depths only), whose password is in the
    Secret ``<name>-redis-acl``; for an external Redis, the credentials of ``spec.auth``."""
    if spec.mode != "provision":
        return contract
    secret = await read(names.acl_secret, "the operator's probe user")
    ref = SecretKeyRef(names.acl_secret, PROBE_PASSWORD_KEY)
    password = secret_value(secret, names.namespace, ref, "the operator's probe user")
    return dataclasses.replace(contract, username=PROBE_USER, password=password)
