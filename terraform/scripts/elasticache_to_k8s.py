#!/usr/bin/env python3
"""Turn `terraform output -json` of an ElastiCache environment into Kubernetes objects.

Reads the outputs of terraform/environments/<env> on stdin (or --input) and writes a
multi-document YAML to stdout (or --output): first a Secret holding the AUTH token,
then an external-mode RedisQueue that points at the ElastiCache primary endpoint and
reads its password from that Secret.

    terraform -chdir=terraform/environments/production output -json \\
      | python3 terraform/scripts/elasticache_to_k8s.py --fetch-secret \\
          --namespace marketplace --name analysis-jobs --inject analysis-worker-redis \\
      | kubectl apply -f -

The AUTH token is not a Terraform output (it never enters Terraform state). It comes
from exactly one of:

* ``--fetch-secret``: ``aws secretsmanager get-secret-value`` on the secret ARN from
  the outputs (the AWS CLI with the caller's credentials; the token travels over the
  CLI's stdout pipe, never through process arguments);
* ``--auth-token-file PATH``: a file holding the token (for example written by a
  secrets tool, mode 0600);
* the environment variable ``REDIS_AUTH_TOKEN``.

There is deliberately no option that takes the token itself: process arguments are
visible to every user of the machine. The token is never written to stderr, and no
error message contains it.

Exit status: 0 on success, 2 on bad input or usage (with one line naming the problem).
Needs Python 3.11+ and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

API_VERSION = "redisqueue.dev/v1alpha1"
KIND = "RedisQueue"
#: The label the operator reads to tie an object to its RedisQueue.
LABEL_REDISQUEUE = "redisqueue.dev/redisqueue"

# Output names of terraform/environments/*/outputs.tf that the hand-off reads.
OUTPUT_HOST = "redis_primary_endpoint"
OUTPUT_PORT = "redis_port"
OUTPUT_TLS = "redis_tls_enabled"
OUTPUT_SECRET_ARN = "redis_auth_secret_arn"  # noqa: S105 - an output name
OUTPUT_ENVIRONMENT = "redisqueue_environment"  # optional: --environment wins
REQUIRED_OUTPUTS = (OUTPUT_HOST, OUTPUT_PORT, OUTPUT_TLS, OUTPUT_SECRET_ARN)

TOKEN_ENV_VAR = "REDIS_AUTH_TOKEN"  # noqa: S105 - the variable's name, not a token
ENVIRONMENTS = ("development", "production")
SECRET_VERSION_STAGES = ("AWSCURRENT", "AWSPREVIOUS", "AWSPENDING")
SECRET_FETCH_TIMEOUT_SECONDS = 60

# Kubernetes name rules (as the API server checks them) and ElastiCache's token rules.
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
_SECRET_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):secretsmanager:(?P<region>[a-z0-9-]+):[0-9]{12}:secret:.+$"
)
# ElastiCache AUTH tokens: 16-128 printable ASCII characters, none of space " / @.
_AUTH_TOKEN = re.compile(r"^[\x21-\x7e]{16,128}$")
_AUTH_TOKEN_FORBIDDEN = frozenset(' "/@')
_USERNAME = re.compile(r"^[^\s]{1,128}$")


class HandoffError(Exception):
    """A problem with the input or options; the message is safe to print (no secrets)."""


@dataclass(frozen=True)
class Endpoint:
    """What the Terraform outputs say about the cache."""

    host: str
    port: int
    tls: bool
    secret_arn: str
    environment: str | None


# --- Reading the Terraform outputs ------------------------------------------------------


def parse_outputs(text: str) -> dict[str, Any]:
    """Return {output name: value} from the text of ``terraform output -json``."""
    if not text.strip():
        raise HandoffError(
            "no input: pipe `terraform output -json` into this script or pass --input FILE"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HandoffError(
            f"input is not the JSON of `terraform output -json` "
            f"(line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    if not isinstance(document, dict):
        raise HandoffError("input is not the JSON object of `terraform output -json`")
    values: dict[str, Any] = {}
    for name, entry in document.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise HandoffError(
                f"terraform output {name!r} has no 'value': is this `terraform output -json`?"
            )
        values[name] = entry["value"]
    return values


def endpoint_from_outputs(outputs: Mapping[str, Any]) -> Endpoint:
    """Check the outputs the hand-off needs and return them typed."""
    missing = [name for name in REQUIRED_OUTPUTS if outputs.get(name) is None]
    if missing:
        raise HandoffError(
            "missing terraform output(s): "
            + ", ".join(missing)
            + " (apply terraform/environments/<env> with the current outputs.tf first)"
        )

    host = outputs[OUTPUT_HOST]
    if not isinstance(host, str) or not _HOSTNAME.match(host):
        raise HandoffError(f"terraform output {OUTPUT_HOST!r} is not a host name: {host!r}")

    port = outputs[OUTPUT_PORT]
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise HandoffError(f"terraform output {OUTPUT_PORT!r} is not a TCP port: {port!r}")

    tls = outputs[OUTPUT_TLS]
    if isinstance(tls, str) and tls in ("true", "false"):
        tls = tls == "true"
    if not isinstance(tls, bool):
        raise HandoffError(f"terraform output {OUTPUT_TLS!r} is not true or false: {tls!r}")

    secret_arn = outputs[OUTPUT_SECRET_ARN]
    if not isinstance(secret_arn, str) or not _SECRET_ARN.match(secret_arn):
        raise HandoffError(
            f"terraform output {OUTPUT_SECRET_ARN!r} is not a Secrets Manager secret ARN"
        )

    environment = outputs.get(OUTPUT_ENVIRONMENT)
    if environment is not None and environment not in ENVIRONMENTS:
        raise HandoffError(
            f"terraform output {OUTPUT_ENVIRONMENT!r} must be one of {', '.join(ENVIRONMENTS)}"
        )
    return Endpoint(host, port, tls, secret_arn, environment)


# --- Getting the AUTH token -------------------------------------------------------------


def check_token(token: str, source: str) -> str:
    """Validate an AUTH token against ElastiCache's rules without ever echoing it."""
    token = token.removesuffix("\n").removesuffix("\r")
    if not token:
        raise HandoffError(f"the AUTH token from {source} is empty")
    if not _AUTH_TOKEN.match(token) or _AUTH_TOKEN_FORBIDDEN.intersection(token):
        raise HandoffError(
            f"the AUTH token from {source} is not a valid ElastiCache token "
            f"({len(token)} characters; it needs 16-128 printable ASCII characters "
            'without spaces, ", / or @)'
        )
    return token


def _token_from_secret_string(secret_string: str) -> str:
    """Accept a plain-string secret (what the module stores) or a JSON object with a
    ``password``, ``auth_token`` or ``token`` key (what other tooling often stores)."""
    stripped = secret_string.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError:
            return secret_string
        if isinstance(document, dict):
            for key in ("password", "auth_token", "token"):
                value = document.get(key)
                if isinstance(value, str):
                    return value
            raise HandoffError(
                "the Secrets Manager secret is a JSON object without a "
                "'password', 'auth_token' or 'token' string"
            )
    return secret_string


def fetch_token(secret_arn: str, *, aws_cli: str, profile: str | None, version_stage: str) -> str:
    """Read the token with ``aws secretsmanager get-secret-value``.

    Only the secret's ARN, never the token, is in the CLI's arguments; the token comes
    back on the CLI's stdout, which is captured and not echoed.
    """
    match = _SECRET_ARN.match(secret_arn)
    if match is None:  # pragma: no cover - endpoint_from_outputs checked it
        raise HandoffError("the secret ARN is malformed")
    executable = shutil.which(aws_cli)
    if executable is None:
        raise HandoffError(
            f"--fetch-secret needs the AWS CLI, but {aws_cli!r} is not on PATH "
            f"(install it, pass --aws-cli, or use --auth-token-file / {TOKEN_ENV_VAR})"
        )
    command = [
        executable,
        "secretsmanager",
        "get-secret-value",
        "--secret-id",
        secret_arn,
        "--version-stage",
        version_stage,
        "--region",
        match.group("region"),
        "--query",
        "SecretString",
        "--output",
        "text",
    ]
    if profile:
        command += ["--profile", profile]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=SECRET_FETCH_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HandoffError(
            f"aws secretsmanager get-secret-value did not answer within "
            f"{SECRET_FETCH_TIMEOUT_SECONDS} s"
        ) from None
    if result.returncode != 0:
        # The CLI's error names the problem (AccessDenied, ResourceNotFound, expired
        # credentials); it never contains the secret value, which it did not get.
        detail = " ".join(result.stderr.split())[:500] or "no error text"
        raise HandoffError(
            f"aws secretsmanager get-secret-value failed (exit {result.returncode}): {detail}"
        )
    return check_token(
        _token_from_secret_string(result.stdout), f"Secrets Manager ({version_stage})"
    )


def read_token_file(path: Path) -> str:
    """Read the token from a file.

    Messages do not repeat the path: someone who typed the token where the path belongs
    must not see it echoed into a terminal or CI log.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HandoffError(
            f"cannot read the file given to --auth-token-file: {exc.strerror or type(exc).__name__}"
        ) from None
    except UnicodeDecodeError:
        raise HandoffError("the file given to --auth-token-file is not UTF-8 text") from None
    return check_token(text, "--auth-token-file")


# --- Building the objects ---------------------------------------------------------------


def build_secret(
    *,
    name: str,
    namespace: str,
    key: str,
    token: str,
    queue_name: str,
    secret_arn: str,
) -> dict[str, Any]:
    """The Secret the RedisQueue's auth.secretRef points at."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "redisqueue",
                LABEL_REDISQUEUE: queue_name,
            },
            "annotations": {"redisqueue.dev/source-secret-arn": secret_arn},
        },
        "type": "Opaque",
        "stringData": {key: token},
    }


def build_redisqueue(
    *,
    name: str,
    namespace: str,
    environment: str,
    endpoint: Endpoint,
    auth_secret_name: str,
    auth_secret_key: str,
    username: str | None,
    inject: Sequence[str],
    ca_secret: tuple[str, str] | None,
) -> dict[str, Any]:
    """The external-mode RedisQueue pointing at the ElastiCache primary endpoint."""
    tls: dict[str, Any] = {"enabled": endpoint.tls}
    if ca_secret is not None:
        tls["caSecretRef"] = {"name": ca_secret[0], "key": ca_secret[1]}
    auth: dict[str, Any] = {"secretRef": {"name": auth_secret_name, "key": auth_secret_key}}
    if username is not None:
        auth["username"] = username
    spec: dict[str, Any] = {
        "environment": environment,
        "redis": {"external": {"host": endpoint.host, "port": endpoint.port, "tls": tls}},
        "auth": auth,
    }
    if inject:
        spec["inject"] = [{"secretName": secret_name} for secret_name in inject]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "redisqueue"},
        },
        "spec": spec,
    }


def render(documents: Sequence[Mapping[str, Any]]) -> str:
    """Multi-document YAML, in the given order."""
    return yaml.safe_dump_all(
        documents, sort_keys=False, explicit_start=True, default_flow_style=False
    )


# --- Command line -----------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that never repeats the values of unknown arguments.

    A mistyped ``--auth-token s3cr3t`` must not print ``s3cr3t`` back to the terminal
    (or a CI log): only the option names are reported.
    """

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            message = "unrecognized arguments (values not shown)"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _name(pattern: re.Pattern[str], what: str, max_length: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > max_length or not pattern.match(value):
            raise argparse.ArgumentTypeError(f"{value!r} is not a valid {what}")
        return value

    return check


_secret_name = _name(_DNS1123_SUBDOMAIN, "Kubernetes Secret name", 253)


def _secret_ref(value: str) -> tuple[str, str]:
    name, _, key = value.partition(":")
    _secret_name(name)
    key = key or "ca.crt"
    if not _SECRET_KEY.match(key):
        raise argparse.ArgumentTypeError(f"{key!r} is not a valid Secret key")
    return name, key


def _username(value: str) -> str:
    if not _USERNAME.match(value):
        raise argparse.ArgumentTypeError("the username must be 1-128 characters, no spaces")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (exposed for the docs and tests)."""
    parser = _Parser(
        prog="elasticache_to_k8s.py",
        description=(
            "Render a Kubernetes Secret (AUTH token) and an external-mode RedisQueue from "
            "`terraform output -json` of terraform/environments/<env>."
        ),
        epilog=(
            "The token comes from --fetch-secret, --auth-token-file or the environment "
            f"variable {TOKEN_ENV_VAR}, never from an argument. Exit status 2 means bad "
            "input or usage."
        ),
        allow_abbrev=False,
    )
    parser.add_argument(
        "--input",
        "-i",
        default="-",
        metavar="FILE",
        help="file with `terraform output -json` (default: stdin)",
    )
    parser.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="write the YAML here, created with mode 0600 (default: stdout)",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        required=True,
        type=_name(_DNS1123_LABEL, "namespace", 63),
        help="namespace of the RedisQueue and its Secrets",
    )
    parser.add_argument(
        "--name",
        required=True,
        type=_name(_DNS1035_LABEL, "RedisQueue name", 63),
        help="name of the RedisQueue",
    )
    parser.add_argument(
        "--inject",
        action="append",
        default=[],
        type=_secret_name,
        metavar="SECRET",
        help="application Secret that receives the connection contract (repeatable)",
    )
    parser.add_argument(
        "--environment",
        choices=ENVIRONMENTS,
        help=f"spec.environment (default: the {OUTPUT_ENVIRONMENT!r} output, else production)",
    )
    parser.add_argument(
        "--auth-secret-name",
        type=_secret_name,
        metavar="NAME",
        help="name of the Secret holding the token (default: <name>-redis-auth)",
    )
    parser.add_argument(
        "--auth-secret-key",
        default="password",
        type=_name(_SECRET_KEY, "Secret key", 253),
        metavar="KEY",
        help="key of the token in that Secret (default: password)",
    )
    parser.add_argument(
        "--username",
        type=_username,
        help="ElastiCache RBAC user (auth.username); omit for the default user and AUTH token",
    )
    parser.add_argument(
        "--ca-secret",
        type=_secret_ref,
        metavar="NAME[:KEY]",
        help="Secret with a PEM CA bundle for tls.caSecretRef (key default: ca.crt); "
        "not needed for ElastiCache, whose certificates chain to public CAs",
    )

    token = parser.add_argument_group(
        "AUTH token source (exactly one; the environment variable is used when no option is)"
    )
    sources = token.add_mutually_exclusive_group()
    sources.add_argument(
        "--fetch-secret",
        action="store_true",
        help="read the token with `aws secretsmanager get-secret-value` on the "
        f"{OUTPUT_SECRET_ARN!r} output",
    )
    sources.add_argument(
        "--auth-token-file",
        type=Path,
        metavar="PATH",
        help="read the token from this file",
    )
    sources.add_argument(
        "--no-secret",
        action="store_true",
        help="render only the RedisQueue; the Secret is managed elsewhere "
        "(for example by the External Secrets Operator)",
    )
    token.add_argument(
        "--secret-version-stage",
        choices=SECRET_VERSION_STAGES,
        default="AWSCURRENT",
        help="with --fetch-secret: which version to read (AWSPREVIOUS rolls back a rotation)",
    )
    token.add_argument("--aws-profile", metavar="PROFILE", help="with --fetch-secret: AWS profile")
    token.add_argument(
        "--aws-cli",
        default=os.environ.get("AWS_CLI", "aws"),
        metavar="PATH",
        help="with --fetch-secret: AWS CLI executable (default: $AWS_CLI or aws)",
    )

    parser.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="accept redis_tls_enabled = false (refused for production)",
    )
    return parser


def _read_input(source: str) -> str:
    if source == "-":
        if sys.stdin.isatty():
            raise HandoffError(
                "no input: pipe `terraform output -json` into this script or pass --input FILE"
            )
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise HandoffError(
            f"cannot read --input {source!r}: {exc.strerror or type(exc).__name__}"
        ) from None


def _write_output(target: str, text: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # The file holds a credential: create it private, before the first byte is written.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(target, flags, stat.S_IRUSR | stat.S_IWUSR)
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise HandoffError(
            f"cannot write --output {target!r}: {exc.strerror or type(exc).__name__}"
        ) from None


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point without the exception-to-exit-status translation."""
    args = build_parser().parse_args(argv)
    endpoint = endpoint_from_outputs(parse_outputs(_read_input(args.input)))

    environment = args.environment or endpoint.environment or "production"
    if not endpoint.tls:
        if environment == "production":
            raise HandoffError(
                f"terraform output {OUTPUT_TLS!r} is false, but production requires TLS "
                "(the ElastiCache module always enables it: are these the right outputs?)"
            )
        if not args.allow_plaintext:
            raise HandoffError(
                f"terraform output {OUTPUT_TLS!r} is false: the AUTH token would cross the "
                "network in clear text (pass --allow-plaintext for a development endpoint)"
            )

    auth_secret_name = args.auth_secret_name or f"{args.name}-redis-auth"
    documents: list[dict[str, Any]] = []
    if not args.no_secret:
        if args.fetch_secret:
            token = fetch_token(
                endpoint.secret_arn,
                aws_cli=args.aws_cli,
                profile=args.aws_profile,
                version_stage=args.secret_version_stage,
            )
        elif args.auth_token_file is not None:
            token = read_token_file(args.auth_token_file)
        elif os.environ.get(TOKEN_ENV_VAR):
            token = check_token(os.environ[TOKEN_ENV_VAR], f"${TOKEN_ENV_VAR}")
        else:
            raise HandoffError(
                "no AUTH token source: pass --fetch-secret or --auth-token-file PATH, set "
                f"{TOKEN_ENV_VAR}, or pass --no-secret if the Secret is managed elsewhere"
            )
        documents.append(
            build_secret(
                name=auth_secret_name,
                namespace=args.namespace,
                key=args.auth_secret_key,
                token=token,
                queue_name=args.name,
                secret_arn=endpoint.secret_arn,
            )
        )
    documents.append(
        build_redisqueue(
            name=args.name,
            namespace=args.namespace,
            environment=environment,
            endpoint=endpoint,
            auth_secret_name=auth_secret_name,
            auth_secret_key=args.auth_secret_key,
            username=args.username,
            inject=args.inject,
            ca_secret=args.ca_secret,
        )
    )
    _write_output(args.output, render(documents))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run, turning input problems into one line on stderr and exit status 2."""
    try:
        return run(argv)
    except HandoffError as exc:
        print(f"elasticache_to_k8s.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
