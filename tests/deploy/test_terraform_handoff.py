"""The Terraform hand-off end to end: recorded `terraform output -json` -> Secret and
RedisQueue -> accepted by the API server -> Ready through the operator, against a local
TLS redis-server standing in for ElastiCache (same TLS-required, AUTH-token setup)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    OperatorProcess,
    apply_secret,
    condition,
    read_secret,
    wait_for_ready,
)
from harness.redis_server import RedisServer, TLSFiles
from redisqueue.client import create_client
from redisqueue.controller.api.kube import Kube
from redisqueue.settings import load_settings

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "terraform" / "scripts" / "elasticache_to_k8s.py"
FIXTURE = REPO / "tests" / "fixtures" / "terraform-output.json"


@pytest.fixture
def elasticache_stand_in(tmp_path: Path, tls_files: TLSFiles) -> Iterator[RedisServer]:
    # ElastiCache AUTH tokens are 16-128 printable characters without @, " or /.
    token = "HandoffToken-" + secrets.token_hex(12)
    server = RedisServer(tmp_path / "elasticache", password=token, tls=tls_files).start()
    yield server
    server.stop()


async def test_terraform_outputs_become_a_ready_external_redisqueue(
    operator: OperatorProcess,
    kube: Kube,
    namespace: str,
    control_plane: ControlPlane,
    elasticache_stand_in: RedisServer,
    tls_files: TLSFiles,
) -> None:
    outputs = json.loads(FIXTURE.read_text())
    outputs["redis_primary_endpoint"]["value"] = "localhost"  # the test certificate's name
    outputs["redis_port"]["value"] = elasticache_stand_in.port
    token = elasticache_stand_in.password or ""
    rendered = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--namespace",
            namespace,
            "--name",
            "analysis-jobs",
            "--inject",
            "analysis-worker-redis",
            "--ca-secret",
            "test-ca:ca.crt",
        ],
        input=json.dumps(outputs),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "REDIS_AUTH_TOKEN": token},
    )
    assert rendered.returncode == 0, rendered.stderr
    assert token not in rendered.stderr
    docs = list(yaml.safe_load_all(rendered.stdout))
    assert [d["kind"] for d in docs] == ["Secret", "RedisQueue"]

    # A real ElastiCache endpoint has a public CA; the stand-in's CA comes in a Secret.
    await apply_secret(kube, namespace, "test-ca", {"ca.crt": tls_files.ca_pem})
    applied = control_plane.kubectl("apply", "--server-side", "-f", "-", input=rendered.stdout)
    assert "created" in applied.stdout or "serverside-applied" in applied.stdout

    rq = await wait_for_ready(kube, namespace, "analysis-jobs", timeout=90)
    assert rq["status"]["mode"] == "external"
    assert rq["status"]["endpoint"] == f"localhost:{elasticache_stand_in.port}"
    assert condition(rq, "Injected")["status"] == "True"
    env = await read_secret(kube, namespace, "analysis-worker-redis")
    assert env is not None and env["REDIS_TLS"] == "true"
    assert env["REDIS_POOL_MAX_CONNECTIONS"] == "100"  # production environment from outputs
    app = create_client(load_settings(env, env_file=None), name="handoff")
    assert app.ping() is True
    app.close()
