"""The Redis server of a provisioned RedisQueue: its resources, its redis.conf, the start-up
script that writes the users into it, and the checks the kubelet runs.

Pure: spec in, text and dicts out; :mod:`.workload` puts them into the pod.
"""

from __future__ import annotations

from typing import Final

from ..resource.identity import JSON
from ..resource.names import REDIS_PORT
from ..resource.quantities import parse_quantity
from ..resource.spec import ProvisionedRedis, RedisQueueSpec
from .acl import (
    ADMIN_PASSWORD_KEY,
    ADMIN_RULES,
    ADMIN_USER,
    APP_RULES,
    APP_USER,
    PROBE_KEYS_KEY,
    PROBE_PASSWORD_KEY,
    PROBE_RULES,
    PROBE_USER,
)

DATA_DIR: Final = "/data"
CONFIG_DIR: Final = "/run/redis"
CONFIG_FILE: Final = f"{CONFIG_DIR}/redis.conf"
#: UID/GID of the "redis" user in the official Redis images (Debian and Alpine alike).
REDIS_UID: Final = 999
#: Where the pod reads its secrets: mounted Secret volumes, never environment variables, so
#: policies that forbid Secrets in env vars admit the pod, and a changed Secret reaches the
#: files without a restart. ``auth``: the apps' password (spec.auth.secretRef or the generated
#: Secret) as ``password``; ``acl``: the operator's own users (``<name>-redis-acl``).
SECRETS_DIR: Final = "/run/secrets/redisqueue"
AUTH_DIR: Final = f"{SECRETS_DIR}/auth"
ACL_DIR: Final = f"{SECRETS_DIR}/acl"
AUTH_FILE: Final = f"{AUTH_DIR}/password"
#: Readable by the Redis group only (fsGroup), read-only for everyone.
SECRET_FILE_MODE: Final = 0o440

DEFAULT_CPU_REQUEST: Final = "50m"
DEFAULT_MEMORY_REQUEST: Final = "64Mi"
DEFAULT_MEMORY_LIMIT: Final = "256Mi"


def provisioned(spec: RedisQueueSpec) -> ProvisionedRedis:
    """``spec.redis.provision``; a ValueError in external mode."""
    if spec.redis.provision is None:
        raise ValueError("the RedisQueue is in external mode; there is nothing to provision")
    return spec.redis.provision


def resolved_resources(provision: ProvisionedRedis) -> JSON:
    """Container resources: the spec's values with defaults that never contradict them.

    A default request never exceeds a given limit and a default limit never undercuts a given
    request, so any partial spec yields a valid pair.
    """
    given = provision.resources
    req = given.requests if given is not None else None
    lim = given.limits if given is not None else None
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}

    cpu_limit = lim.cpu if lim is not None else None
    cpu_request = req.cpu if req is not None else None
    if cpu_request is None:
        cpu_request = DEFAULT_CPU_REQUEST
        if cpu_limit is not None and parse_quantity(cpu_limit) < parse_quantity(cpu_request):
            cpu_request = cpu_limit
    requests["cpu"] = cpu_request
    if cpu_limit is not None:
        limits["cpu"] = cpu_limit

    memory_limit = lim.memory if lim is not None else None
    memory_request = req.memory if req is not None else None
    if memory_request is None:
        memory_request = DEFAULT_MEMORY_REQUEST
        if memory_limit is not None and parse_quantity(memory_limit) < parse_quantity(
            memory_request
        ):
            memory_request = memory_limit
    if memory_limit is None:
        memory_limit = DEFAULT_MEMORY_LIMIT
        if parse_quantity(memory_request) > parse_quantity(memory_limit):
            memory_limit = memory_request
    requests["memory"] = memory_request
    limits["memory"] = memory_limit
    return {"requests": requests, "limits": limits}


def resolved_max_memory(provision: ProvisionedRedis) -> str:
    """Redis ``maxmemory``: the spec's value, else three quarters of the memory limit in bytes.

    The quarter left over covers Redis's own overhead and the copy-on-write pages of an AOF
    rewrite, so Redis answers "OOM command not allowed" before the kernel kills it.
    """
    if provision.max_memory is not None:
        return provision.max_memory
    limit = parse_quantity(resolved_resources(provision)["limits"]["memory"])
    return str(int(limit * 3 / 4))


def redis_config(spec: RedisQueueSpec) -> str:
    """The redis.conf of a provisioned Redis, without the password (added at startup)."""
    provision = provisioned(spec)
    lines = [
        f"port {REDIS_PORT}",
        f"dir {DATA_DIR}",
        f"appendonly {'yes' if provision.append_only else 'no'}",
        "appendfsync everysec",
        f"maxmemory {resolved_max_memory(provision)}",
        # A queue must never drop jobs to make room: refuse writes instead.
        "maxmemory-policy noeviction",
    ]
    # The spec refuses the directives above (and other operator-owned ones) as keys, and
    # any line break in a value, so each entry stays one directive of its own.
    lines += [f"{key} {value}" for key, value in sorted((provision.extra_config or {}).items())]
    return "\n".join(lines) + "\n"


def _user_line(user: str, rules: tuple[str, ...]) -> str:
    # A printf format: the hash (and the probe's key rules) are its arguments, never part of it.
    return f"user {user} reset on #%s {' '.join(rules)}"


def startup_script(spec: RedisQueueSpec) -> str:
    """The container command: write redis.conf with the users, then exec redis-server.

    Passwords come from the mounted Secret files and enter redis.conf as SHA-256 hashes
    (``#<hex>``): no password is ever in a process's arguments or environment, nor in the
    config file. The config lives on a memory-backed emptyDir, readable only by the Redis
    user (umask 077). Static config goes through a quoted heredoc: the shell expands nothing
    in it. The probe's key rules come from the operator's Secret, already written as quoted,
    byte-escaped redis.conf arguments (:func:`~.acl.probe_keys_conf`).
    """
    config = redis_config(spec)
    app_line = _user_line(APP_USER, APP_RULES)
    probe_line = _user_line(PROBE_USER, PROBE_RULES) + " %s"
    admin_line = _user_line(ADMIN_USER, ADMIN_RULES)
    return (
        "set -eu\n"
        "umask 077\n"
        f'[ -s {AUTH_FILE} ] || {{ echo "redis: empty password" >&2; exit 1; }}\n'
        "hash() {\n"
        '  h=$(sha256sum < "$1") || { echo "redis: cannot read $1" >&2; exit 1; }\n'
        "  h=${h%% *}\n"
        '  [ ${#h} -eq 64 ] || { echo "redis: cannot hash $1" >&2; exit 1; }\n'
        '  printf %s "$h"\n'
        "}\n"
        f"app=$(hash {AUTH_FILE})\n"
        f"probe=$(hash {ACL_DIR}/{PROBE_PASSWORD_KEY})\n"
        f"admin=$(hash {ACL_DIR}/{ADMIN_PASSWORD_KEY})\n"
        f"keys=$(cat {ACL_DIR}/{PROBE_KEYS_KEY})\n"
        f"cat > {CONFIG_FILE} <<'REDIS_CONF'\n"
        f"{config}"
        "REDIS_CONF\n"
        f"printf '{app_line}\\n' \"$app\" >> {CONFIG_FILE}\n"
        f'printf \'{probe_line}\\n\' "$probe" "$keys" >> {CONFIG_FILE}\n'
        f"printf '{admin_line}\\n' \"$admin\" >> {CONFIG_FILE}\n"
        "unset app probe admin keys h\n"
        f"exec redis-server {CONFIG_FILE}\n"
    )


#: redis-cli as the probe user, its password read from the mounted file into redis-cli's own
#: environment (REDISCLI_AUTH), never into an argument or the container's environment.
_CLI: Final = (
    f'REDISCLI_AUTH="$(cat {ACL_DIR}/{PROBE_PASSWORD_KEY})" '
    f"redis-cli --no-auth-warning --user {PROBE_USER} -h 127.0.0.1 -p {REDIS_PORT}"
)
#: Readiness: Redis answers the probe user's authenticated PING.
READINESS_SCRIPT: Final = f"{_CLI} ping | grep -q PONG"
#: Liveness: also alive while loading a large AOF at startup ("LOADING ..."), so a slow load is
#: not turned into a restart loop.
LIVENESS_SCRIPT: Final = (
    f"response=$({_CLI} ping 2>&1) || true\n"
    'case "$response" in PONG|*LOADING*) exit 0 ;; esac\n'
    'echo "$response" >&2\n'
    "exit 1\n"
)
