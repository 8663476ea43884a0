"""The Redis users of a provisioned Redis, their rules, and the Secret of the operator's own.

A provisioned Redis has three users, so that no one holds more than it needs:

* ``default``, the apps' user. Apps authenticate with the password alone (the contract
  carries no ``REDIS_USERNAME``), as they always did. It may run every command but the
  administrative ones: no CONFIG, DEBUG, MODULE, ACL, SHUTDOWN, MONITOR, FLUSHALL or FLUSHDB.
* ``redisqueue-probe``, the operator's health probe (and the pod's own readiness check):
  PING, INFO, and read-only LLEN, XLEN and XPENDING on exactly the keys of ``spec.queues``.
* ``redisqueue-admin``, which only the operator uses, to change passwords on the running
  Redis: PING, ACL SETUSER / GETUSER and CLIENT LIST, on no key.

Passwords reach Redis as SHA-256 hashes (``#<hex>``): the start-up script hashes the mounted
Secret files, and a rotation adds and removes hashes with ACL SETUSER, so redis.conf and the
operator's commands never hold a password in clear text. The apps' user may hold several
passwords at once, which is what lets a rotation keep the old one valid while apps move.

The probe's and the admin's passwords live in the Secret ``<name>-redis-acl``, generated once
by the operator, never injected anywhere; it also holds the probe's key rules, so a Redis that
restarts finds them next to the passwords. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

from ..resource.identity import JSON
from ..resource.names import QueueNames
from ..resource.spec import Queue
from .meta import b64, metadata

APP_USER: Final = "default"
PROBE_USER: Final = "redisqueue-probe"
ADMIN_USER: Final = "redisqueue-admin"

#: Everything but administration. ``-@admin`` takes CONFIG, DEBUG, MODULE, SHUTDOWN, MONITOR,
#: CLIENT LIST/KILL, replication and persistence control; the rest is named.
APP_RULES: Final = ("~*", "&*", "+@all", "-@admin", "-acl", "-flushall", "-flushdb")
#: The probe's commands; its keys follow from spec.queues (:func:`probe_key_rules`).
PROBE_RULES: Final = ("resetchannels", "-@all", "+ping", "+info", "+llen", "+xlen", "+xpending")
#: Only what changing passwords on a running Redis needs.
ADMIN_RULES: Final = (
    "resetkeys",
    "resetchannels",
    "-@all",
    "+ping",
    "+acl|setuser",
    "+acl|getuser",
    "+client|list",
)

# Keys of the Secret <name>-redis-acl.
ADMIN_PASSWORD_KEY: Final = "admin-password"  # noqa: S105 - a key name
PROBE_PASSWORD_KEY: Final = "probe-password"  # noqa: S105 - a key name
#: The probe's key rules as redis.conf arguments (one line, every byte escaped).
PROBE_KEYS_KEY: Final = "probe-keys"

#: Characters a Redis key pattern gives a meaning (glob); a literal key escapes them.
_GLOB_SPECIAL: Final = frozenset("*?[]\\")
_WHITESPACE: Final = frozenset(" \t\n\v\f\r")
#: Bytes written as themselves inside a quoted redis.conf argument; all others as \xHH.
_CONF_PLAIN: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:"
)


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis keeps for ``password`` (ACL ``#<hash>``)."""
    return hashlib.sha256(password.encode()).hexdigest()


def glob_escape(key: str) -> str:
    """A Redis key pattern that matches ``key``: exactly, unless the key holds whitespace,
    which Redis refuses in an ACL key pattern; each such character becomes ``?`` (any one
    character), so the probe may also read the few keys that differ from it only there."""
    return "".join("?" if c in _WHITESPACE else f"\\{c}" if c in _GLOB_SPECIAL else c for c in key)


def probe_key_rules(queues: Iterable[Queue]) -> tuple[str, ...]:
    """Read-only access (``%R~``) to exactly the queue keys, in a stable order."""
    return tuple(sorted({f"%R~{glob_escape(queue.key)}" for queue in queues}))


def conf_argument(value: str) -> str:
    """``value`` as one double-quoted redis.conf argument that no byte can break out of."""
    escaped = "".join(chr(b) if b in _CONF_PLAIN else f"\\x{b:02x}" for b in value.encode())
    return f'"{escaped}"'


def probe_keys_conf(queues: Iterable[Queue]) -> str:
    """The probe's key rules as they follow its ``user`` line in redis.conf."""
    return " ".join(conf_argument(rule) for rule in probe_key_rules(queues))


def build_acl_secret(
    names: QueueNames, *, admin_password: str, probe_password: str, queues: Iterable[Queue]
) -> JSON:
    """The Secret ``<name>-redis-acl``: the operator's own users of a provisioned Redis.

    Always owned by the RedisQueue (these users exist only for the Redis it runs), and stamped
    with its uid like every Secret the operator generates (the object-shape policy admits no
    other). Create it with new random passwords once; later applies keep the passwords read
    back from it and change only the probe's key rules.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(names, names.acl_secret, stamped=True),
        "type": "Opaque",
        "data": {
            ADMIN_PASSWORD_KEY: b64(admin_password),
            PROBE_PASSWORD_KEY: b64(probe_password),
            PROBE_KEYS_KEY: b64(probe_keys_conf(queues)),
        },
    }
