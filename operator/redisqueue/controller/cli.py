"""The ``redisqueue`` command: ``dev``, ``operator``, ``settings``, ``crd``.

Only ``settings`` works with the client library alone; the other subcommands import the
operator's dependencies when they run and say which extra to install when they are absent.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlencode

from redisqueue import __version__
from redisqueue.contract import redact_url
from redisqueue.settings import SettingsError, load_settings

from .resource.spec import DEFAULT_HEALTH_INTERVAL_SECONDS, DEFAULT_HEALTH_TIMEOUT_SECONDS
from .telemetry.logs import LOG_FORMATS, configure

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: What `dev`, `crd` and `operator` import beyond the client library.
OPERATOR_EXTRA_MODULES = frozenset({"aiohttp", "kopf", "yaml"})


def keep_kubernetes_client_out() -> None:
    """Make ``import kubernetes_asyncio`` fail in this process, before kopf is imported.

    The operator talks to the API server with aiohttp and never uses a Kubernetes client
    library, but kopf imports kubernetes_asyncio when it is installed (as in a development
    environment) to recognise its model objects: some 900 modules and 35 MiB of memory for
    nothing. Left alone when something in the process imported kubernetes_asyncio already.
    """
    sys.modules.setdefault("kubernetes_asyncio", None)  # type: ignore[arg-type]


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value!r}")
    return number


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value!r}")
    return int(value)


def _global_flags(*, after_subcommand: bool) -> argparse.ArgumentParser:
    """The flags every subcommand takes too, so ``redisqueue operator --log-format json``
    works like ``redisqueue --log-format json operator``. After the subcommand they default
    to "not given", so they never undo the same flag given before it."""
    flags = argparse.ArgumentParser(add_help=False)
    level_default = argparse.SUPPRESS if after_subcommand else os.environ.get("LOG_LEVEL", "INFO")
    format_default = argparse.SUPPRESS if after_subcommand else os.environ.get("LOG_FORMAT", "text")
    flags.add_argument(
        "--log-level",
        default=level_default,
        choices=LOG_LEVELS,
        help="DEBUG, INFO, WARNING or ERROR (default INFO, or $LOG_LEVEL)",
    )
    flags.add_argument(
        "--log-format",
        default=format_default,
        choices=LOG_FORMATS,
        help="text for people, json for a log pipeline: one object per line with the "
        "RedisQueue's namespace and name (default text, or $LOG_FORMAT)",
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redisqueue",
        description="Redis job queues you can trust, on Kubernetes.",
        parents=[_global_flags(after_subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"redisqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_global_flags(after_subcommand=True)]

    dev = sub.add_parser(
        "dev", parents=common, help="serve /api/health/redis and /metrics against a local Redis"
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dev.add_argument(
        "--port",
        type=_port,
        default=_port(os.environ.get("PORT", "3000")),
        help="port to listen on (default 3000, or $PORT)",
    )
    dev.add_argument(
        "--interval",
        type=_positive,
        default=DEFAULT_HEALTH_INTERVAL_SECONDS,
        help=f"seconds between background probes (default {DEFAULT_HEALTH_INTERVAL_SECONDS:g})",
    )
    dev.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_HEALTH_TIMEOUT_SECONDS,
        help=f"PING timeout in seconds (default {DEFAULT_HEALTH_TIMEOUT_SECONDS:g})",
    )
    dev.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    dev.add_argument(
        "--no-start-redis",
        action="store_true",
        help="never start a local redis-server, even if none answers",
    )

    show = sub.add_parser(
        "settings", parents=common, help="print the resolved connection settings (no secrets)"
    )
    show.add_argument("--env-file", default=".env")

    sub.add_parser("crd", parents=common, help="print the RedisQueue CustomResourceDefinition")

    op = sub.add_parser(
        "operator", parents=common, help="run the operator against the current kubeconfig"
    )
    scope = op.add_mutually_exclusive_group()
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch RedisQueues in every namespace (the default)",
    )
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only this namespace (repeatable)",
    )
    op.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 - the in-cluster default
        help="address for health and metrics (default 0.0.0.0)",
    )
    op.add_argument("--port", type=_port, default=8080, help="health/metrics port (default 8080)")
    op.add_argument(
        "--auth",
        action="store_true",
        default=os.environ.get("REDISQUEUE_METRICS_AUTH", "").strip().lower() == "true",
        help="require a Kubernetes bearer token allowed to get the path (TokenReview and "
        "SubjectAccessReview) for /metrics and /api/health/... (default: $REDISQUEUE_METRICS_AUTH)",
    )
    op.add_argument(
        "--standalone",
        action="store_true",
        help="do not coordinate with other operator replicas (kopf peering)",
    )
    election = op.add_argument_group(
        "leader election",
        "run several replicas: one (the holder of a coordination.k8s.io Lease) writes, the "
        "others probe and serve health and metrics, and take over when it goes",
    )
    election.add_argument(
        "--leader-election", action="store_true", help="take part in leader election"
    )
    election.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="namespace of the Lease (default $POD_NAMESPACE)",
    )
    election.add_argument("--lease-name", default="redisqueue-operator", help="name of the Lease")
    election.add_argument(
        "--lease-duration",
        type=_positive,
        default=15.0,
        help="seconds a standby waits for a silent leader before taking over (default 15)",
    )
    election.add_argument(
        "--identity",
        default=os.environ.get("HOSTNAME", ""),
        help="this replica's name in the Lease (default $HOSTNAME)",
    )
    return parser


def _settings_command(env_file: str) -> int:
    settings = load_settings(env_file=env_file)
    env = settings.to_contract().to_env()
    if settings.unix_socket_path:  # the contract's form has no socket path: show the URL's
        env.pop("REDIS_HOST", None)
        env.pop("REDIS_PORT", None)
        env["REDIS_URL"] = f"unix://{settings.unix_socket_path}?db={settings.db}"
    if settings.url_options:  # redis-py options from the URL's query (never credentials)
        joiner = "&" if "?" in env["REDIS_URL"] else "?"
        env["REDIS_URL"] += joiner + urlencode(settings.url_options)
    for key, raw in env.items():
        shown = raw
        if key == "REDIS_PASSWORD":
            shown = "***"
        elif key == "REDIS_URL":
            shown = redact_url(raw)
        elif key == "REDIS_TLS_CA_CERT":
            shown = f"(PEM, {len(raw)} bytes)"
        print(f"{key}={shown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:  # from $LOG_LEVEL, which choices= does not check
        parser.error(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}")
    if args.log_format not in LOG_FORMATS:
        parser.error(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {args.log_format!r}")
    configure(args.log_level, args.log_format)
    if args.command in {"dev", "operator"}:
        from .telemetry.metrics import configure_created_series

        configure_created_series()
    try:
        if args.command == "dev":
            from .serving import devserver

            settings = load_settings(env_file=args.env_file)
            return devserver.run(
                settings,
                os.environ,
                host=args.host,
                port=args.port,
                interval=args.interval,
                timeout=args.timeout,
                start_redis=not args.no_start_redis,
                env_file=args.env_file,
            )
        if args.command == "settings":
            return _settings_command(args.env_file)
        if args.command == "crd":
            from .resource.crd import render_crd_yaml

            sys.stdout.write(render_crd_yaml())
            return 0
        if args.command == "operator":
            keep_kubernetes_client_out()
            from .api.login import NoClusterError
            from .runner import Election, run_operator

            election = None
            if args.leader_election:
                if not args.lease_namespace:
                    print(
                        "redisqueue operator: --leader-election needs --lease-namespace "
                        "(or $POD_NAMESPACE): the namespace the Lease lives in",
                        file=sys.stderr,
                    )
                    return 2
                if not args.identity:
                    print(
                        "redisqueue operator: --leader-election needs --identity (or "
                        "$HOSTNAME): a name unique to this replica",
                        file=sys.stderr,
                    )
                    return 2
                election = Election(
                    namespace=args.lease_namespace,
                    name=args.lease_name,
                    identity=args.identity,
                    lease_seconds=args.lease_duration,
                )
            try:
                return run_operator(
                    namespaces=args.namespace,
                    host=args.host,
                    port=args.port,
                    standalone=args.standalone or election is not None,
                    election=election,
                    auth=args.auth,
                )
            except NoClusterError as exc:
                print(f"redisqueue operator: {exc}", file=sys.stderr)
                return 1
    except SettingsError as exc:
        print(f"redisqueue: invalid setting: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in OPERATOR_EXTRA_MODULES:
            raise
        print(
            f"redisqueue {args.command}: needs the operator extra ({exc.name} is not installed):"
            ' pip install "redisqueue-operator[operator]"',
            file=sys.stderr,
        )
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
