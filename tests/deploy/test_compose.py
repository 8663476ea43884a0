"""docker-compose.yml and the image: checked as files (no container engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def test_redis_requires_a_password_from_env_and_persists_append_only() -> None:
    redis = compose()["services"]["redis"]
    assert "${REDIS_DEV_PASSWORD:?" in redis["environment"]["REDIS_PASSWORD"]
    script = "\n".join(redis["command"])
    assert "appendonly yes" in script
    assert "requirepass" in script and "exec redis-server /tmp/redis.conf" in script
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose()["volumes"]


def test_no_password_in_any_process_argument() -> None:
    redis = compose()["services"]["redis"]
    script = "\n".join(redis["command"])
    # the password only reaches a config file (via a shell builtin) and REDISCLI_AUTH
    exec_lines = [line for line in script.splitlines() if line.strip().startswith("exec")]
    assert exec_lines and all("PASSWORD" not in line for line in exec_lines)
    assert "unset REDIS_PASSWORD" in script
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH" in redis["environment"]
    assert "-a " not in health and "PASSWORD" not in health and "--pass" not in health


def test_health_service_is_built_from_the_operator_image_and_runs_non_root() -> None:
    health = compose()["services"]["health"]
    assert health["build"]["dockerfile"] == "operator/Dockerfile"
    assert health["user"].split(":")[0] != "0"
    assert health["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "127.0.0.1:3000:3000" in health["ports"]


def test_image_runs_as_a_non_root_user() -> None:
    dockerfile = (REPO / "operator" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}


def test_env_example_separates_dev_and_prod_and_env_is_ignored() -> None:
    example = (REPO / ".env.example").read_text()
    assert "REDIS_ENV=development" in example
    assert "REDIS_DEV_PASSWORD=" in example and "REDIS_PROD_PASSWORD=" in example
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
