"""The ``redisqueue`` command: ``dev``, ``operator``, ``settings``, ``crd``.

Only ``settings`` works with the client library alone; the other subcommands import the
operator's dependencies when they run and say which extra to install when they are absent.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from urllib.parse import urlencode

from redisqueue.contract import redact_url
from redisqueue.settings import SettingsError, load_settings

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
#: What `dev`, `crd` and `operator` import beyond the client library.
OPERATOR_EXTRA_MODULES = frozenset({"aiohttp", "kopf", "kubernetes_asyncio", "yaml"})


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redisqueue", description="Redis job queues you can trust, on Kubernetes."
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = sub.add_parser("dev", help="serve /api/health/redis and /metrics against a local Redis")
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
        default=10.0,
        help="seconds between background probes (default 10)",
    )
    dev.add_argument(
        "--timeout", type=_positive, default=2.0, help="PING timeout in seconds (default 2)"
    )
    dev.add_argument("--env-file", default=".env", help="dotenv file to read (default .env)")
    dev.add_argument(
        "--no-start-redis",
        action="store_true",
        help="never start a local redis-server, even if none answers",
    )

    show = sub.add_parser("settings", help="print the resolved connection settings (no secrets)")
    show.add_argument("--env-file", default=".env")

    sub.add_parser("crd", help="print the RedisQueue CustomResourceDefinition")

    op = sub.add_parser("operator", help="run the operator against the current kubeconfig")
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
        "--standalone",
        action="store_true",
        help="do not coordinate with other operator replicas (kopf peering)",
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    try:
        if args.command == "dev":
            from . import devserver

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
            from .crd import render_crd_yaml

            sys.stdout.write(render_crd_yaml())
            return 0
        if args.command == "operator":
            from .runner import run_operator

            return run_operator(
                namespaces=args.namespace,
                host=args.host,
                port=args.port,
                standalone=args.standalone,
            )
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
