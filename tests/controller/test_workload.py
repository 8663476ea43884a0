"""The provisioned Redis as built from a spec: Service, StatefulSet, password Secret, config."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from redisqueue.controller.objects.meta import owner_reference
from redisqueue.controller.objects.workload import (
    LIVENESS_SCRIPT,
    PASSWORD_ENV,
    READINESS_SCRIPT,
    build_auth_secret,
    build_pvc_resize_patch,
    build_service,
    build_statefulset,
    claim_template_size,
    generate_password,
    redis_config,
    resolved_resources,
    startup_script,
)
from redisqueue.controller.resource.names import QueueNames
from redisqueue.controller.resource.spec import RedisQueueSpec, parse_spec

NAME, NAMESPACE = "analysis-jobs", "marketplace"
NAMES = QueueNames(NAMESPACE, NAME, "3f1c9a52-0000-4000-8000-000000000001")
OWNER = NAMES.owner


def provision(**fields: Any) -> RedisQueueSpec:
    return parse_spec({"redis": {"provision": fields}})


def external(**fields: Any) -> RedisQueueSpec:
    return parse_spec({"redis": {"external": {"host": "redis.example.com", **fields}}})


def statefulset(spec: RedisQueueSpec | None = None, **kwargs: Any) -> dict[str, Any]:
    spec = spec or provision()
    return build_statefulset(NAMES.with_spec(spec), spec, **kwargs)


def container(sts: dict[str, Any]) -> dict[str, Any]:
    (only,) = sts["spec"]["template"]["spec"]["containers"]
    return dict(only)


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


# --- names, owners, retention -------------------------------------------------------------


def test_the_objects_take_their_names_from_queue_names() -> None:
    sts = statefulset()
    assert sts["metadata"]["name"] == sts["spec"]["serviceName"] == NAMES.workload
    pvc_template = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert f"{pvc_template}-{sts['metadata']['name']}-0" == NAMES.data_claim
    assert build_service(NAMES, provision())["metadata"]["name"] == NAMES.workload
    secret = build_auth_secret(NAMES, "pw", owned=False)
    assert secret["metadata"]["name"] == NAMES.generated_secret


def test_owned_objects_carry_a_controller_owner_reference() -> None:
    expected = [
        {
            "apiVersion": "redisqueue.dev/v1alpha1",
            "kind": "RedisQueue",
            "name": NAME,
            "uid": OWNER["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert statefulset()["metadata"]["ownerReferences"] == expected
    assert build_service(NAMES, provision())["metadata"]["ownerReferences"] == (expected)


def test_volume_claims_are_not_owned_by_the_redisqueue() -> None:
    # Retain works because the PVC outlives the RedisQueue; only the retention policy
    # (Delete) lets the StatefulSet controller hand it to the garbage collector.
    template = statefulset()["spec"]["volumeClaimTemplates"][0]
    assert "ownerReferences" not in template["metadata"]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_pvc_retention_follows_the_deletion_policy(policy: str) -> None:
    spec = parse_spec({"redis": {"provision": {}}, "deletionPolicy": policy})
    retention = statefulset(spec)["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert retention == {"whenDeleted": policy, "whenScaled": "Retain"}


def test_service_selects_exactly_the_statefulset_pods() -> None:
    sts = statefulset()
    service = build_service(NAMES, provision())
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector == sts["spec"]["selector"]["matchLabels"] == NAMES.selector_labels
    assert selector.items() <= pod_labels.items()
    assert service["metadata"]["name"] == sts["spec"]["serviceName"]


def test_service_exposes_the_redis_port_by_name() -> None:
    service = build_service(NAMES, provision())
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"], port["name"]) == (6379, "redis", "redis")
    assert container(statefulset())["ports"][0]["name"] == "redis"
    assert service["metadata"]["namespace"] == NAMESPACE


def test_external_mode_has_nothing_to_provision() -> None:
    with pytest.raises(ValueError, match="external"):
        build_statefulset(NAMES, external())
    with pytest.raises(ValueError, match="external"):
        build_service(NAMES, external())


# --- the StatefulSet's pod -------------------------------------------------------------------


def test_statefulset_runs_one_replica() -> None:
    assert statefulset()["spec"]["replicas"] == 1


def test_password_reaches_the_pod_only_through_a_secret_reference() -> None:
    c = container(statefulset())
    assert c["env"] == [
        {
            "name": PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": "analysis-jobs-redis-auth", "key": "password"}},
        }
    ]
    for env in c["env"]:
        assert "value" not in env


def test_no_command_or_argument_carries_a_password() -> None:
    sts = statefulset()
    c = container(sts)
    commands = [
        *c["command"],
        *c.get("args", []),
        *c["readinessProbe"]["exec"]["command"],
        *c["livenessProbe"]["exec"]["command"],
    ]
    for text in commands:
        assert "--requirepass" not in text
        assert " -a " not in text and "--pass" not in text and "--user" not in text
    # redis-server gets only the config file path; the password goes into that file.
    assert c["command"][-1].rstrip().endswith("exec redis-server /run/redis/redis.conf")


def test_probes_ping_through_redis_cli_with_redisclI_auth() -> None:
    c = container(statefulset())
    assert PASSWORD_ENV == "REDISCLI_AUTH"
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["exec"]["command"][:2] == ["sh", "-c"]
        assert "redis-cli -h 127.0.0.1 -p 6379 ping" in probe["exec"]["command"][2]
    assert c["readinessProbe"]["exec"]["command"][2] == READINESS_SCRIPT
    assert c["livenessProbe"]["exec"]["command"][2] == LIVENESS_SCRIPT


def test_referenced_password_secret_is_used_instead_of_the_generated_one() -> None:
    spec = parse_spec(
        {"redis": {"provision": {}}, "auth": {"secretRef": {"name": "mine", "key": "token"}}}
    )
    ref = container(statefulset(spec))["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "mine", "key": "token"}


def test_pod_runs_non_root_with_a_read_only_root_filesystem() -> None:
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(sts)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container(sts)["volumeMounts"]}
    assert mounts == {"/data": "data", "/run/redis": "config", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["emptyDir"]["medium"] == "Memory"


def test_append_only_persistence_is_on_by_default() -> None:
    assert "appendonly yes\n" in redis_config(provision())
    assert "appendonly yes\n" in container(statefulset())["command"][2]
    assert "appendonly no\n" in redis_config(provision(appendOnly=False))


def test_redis_never_evicts_jobs_and_stops_below_the_memory_limit() -> None:
    config = redis_config(provision())
    assert "maxmemory-policy noeviction\n" in config
    assert f"maxmemory {256 * 2**20 * 3 // 4}\n" in config
    assert "maxmemory 1gb\n" in redis_config(provision(maxMemory="1gb"))
    limited = provision(resources={"limits": {"memory": "1Gi"}})
    assert f"maxmemory {2**30 * 3 // 4}\n" in redis_config(limited)


def test_resources_default_to_small_requests_and_a_memory_limit() -> None:
    assert resolved_resources(provision().redis.provision) == {  # type: ignore[arg-type]
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }
    assert container(statefulset())["resources"]["limits"] == {"memory": "256Mi"}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (
            {"requests": {"memory": "1Gi"}},
            {"requests": {"cpu": "50m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        ),
        (
            {"limits": {"memory": "32Mi", "cpu": "10m"}},
            {
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"cpu": "10m", "memory": "32Mi"},
            },
        ),
        (
            {"requests": {"cpu": 1}, "limits": {"cpu": 2, "memory": "512Mi"}},
            {"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "512Mi"}},
        ),
    ],
)
def test_resource_defaults_never_contradict_given_values(
    resources: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = provision(resources=resources)
    assert resolved_resources(spec.redis.provision) == expected  # type: ignore[arg-type]


# --- the data volume -------------------------------------------------------------------------


def test_claim_template_requests_the_spec_size_and_class() -> None:
    spec = provision(storage={"size": "5Gi", "storageClassName": "gp3"})
    template = statefulset(spec)["spec"]["volumeClaimTemplates"][0]
    assert template["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "gp3",
    }
    assert template["metadata"]["labels"] == NAMES.labels


def test_claim_template_keeps_the_live_size_so_updates_stay_valid() -> None:
    live = statefulset(provision(storage={"size": "1Gi"}))
    grown = provision(storage={"size": "10Gi"})
    updated = statefulset(grown, claim_size=claim_template_size(live))
    assert updated["spec"]["volumeClaimTemplates"] == live["spec"]["volumeClaimTemplates"]
    assert build_pvc_resize_patch("10Gi") == {
        "spec": {"resources": {"requests": {"storage": "10Gi"}}}
    }


def test_claim_template_size_of_a_statefulset_without_one() -> None:
    assert claim_template_size({"spec": {}}) is None


def test_spec_changes_touch_only_mutable_statefulset_fields() -> None:
    before = statefulset(provision())
    after = statefulset(
        parse_spec(
            {
                "redis": {"provision": {"image": "redis:7.4", "appendOnly": False}},
                "deletionPolicy": "Delete",
            }
        ),
        claim_size=claim_template_size(before),
    )
    for immutable in ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy"):
        assert before["spec"][immutable] == after["spec"][immutable], immutable
    assert before["spec"]["template"] != after["spec"]["template"]


def test_password_rotation_annotation_rolls_the_pod() -> None:
    annotated = statefulset(auth_revision="12345")["spec"]["template"]["metadata"]
    assert annotated["annotations"] == {"redisqueue.dev/auth-secret-revision": "12345"}
    assert "annotations" not in statefulset()["spec"]["template"]["metadata"]


# --- generated password Secret ---------------------------------------------------------------


def test_generated_secret_under_retain_has_no_owner() -> None:
    secret = build_auth_secret(NAMES, "pw", owned=False)
    assert "ownerReferences" not in secret["metadata"]
    assert secret["metadata"]["name"] == "analysis-jobs-redis-auth"
    assert base64.b64decode(secret["data"]["password"]).decode() == "pw"
    assert "stringData" not in secret


def test_generated_secret_under_delete_is_owned() -> None:
    secret = build_auth_secret(NAMES, "pw", owned=True)
    assert secret["metadata"]["ownerReferences"] == [owner_reference(OWNER)]


def test_generated_passwords_are_long_random_and_config_safe() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        assert len(password) >= 43
        assert password.replace("-", "").replace("_", "").isalnum()


def test_no_builder_output_contains_the_password_except_secrets() -> None:
    password = "a-very-recognisable-password"
    spec = provision()
    for body in (statefulset(spec), build_service(NAMES, spec)):
        assert all(password not in s for s in all_strings(body))
    secret = build_auth_secret(NAMES, password, owned=False)
    assert all(password not in s for s in all_strings(secret))  # base64 only


# --- the startup script against a real redis-server ------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_startup_script_starts_redis_with_any_password_and_hides_it(tmp_path: Path) -> None:
    port = _free_port()
    script = (
        startup_script(provision())
        .replace("/run/redis/", f"{tmp_path}/run/")
        .replace("dir /data", f"dir {tmp_path}/data")
        .replace("port 6379", f"port {port}")
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    password = "we\"ird \\pass'word\n$(id) ü #"
    env = {"PATH": os.environ["PATH"], PASSWORD_ENV: password}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL)
    cli_env = {"PATH": os.environ["PATH"], PASSWORD_ENV: password}
    try:
        probe = READINESS_SCRIPT.replace("6379", str(port))
        deadline = time.monotonic() + 10
        while subprocess.run(["sh", "-c", probe], env=cli_env, check=False).returncode:
            assert time.monotonic() < deadline, "redis never answered PONG"
            time.sleep(0.05)
        live = LIVENESS_SCRIPT.replace("6379", str(port))
        assert subprocess.run(["sh", "-c", live], env=cli_env, check=False).returncode == 0
        wrong = {"PATH": os.environ["PATH"], PASSWORD_ENV: "wrong"}
        assert subprocess.run(["sh", "-c", probe], env=wrong, check=False).returncode != 0
        # redis-server runs as the script's own pid (exec), without the password in
        # its arguments or environment.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline and password.encode() not in cmdline
        assert PASSWORD_ENV.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes()
        config = tmp_path / "run" / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert "appendonly yes" in config.read_text()
        assert password not in config.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_startup_script_refuses_an_empty_password(tmp_path: Path) -> None:
    script = startup_script(provision()).replace("/run/redis/", f"{tmp_path}/")
    result = subprocess.run(
        ["sh", "-c", script],
        env={"PATH": os.environ["PATH"], PASSWORD_ENV: ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "empty password" in result.stderr


# --- placement and extra configuration --------------------------------------------------------

PLACEMENT: dict[str, Any] = {
    "nodeSelector": {"node-pool": "queues"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
                ]
            }
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
    ],
    "priorityClassName": "queue-critical",
    "imagePullSecrets": [{"name": "registry-cred"}],
    "podAnnotations": {"backup.example.com/skip": "true"},
    "podLabels": {"team": "marketplace"},
    "extraConfig": {"slowlog-log-slower-than": "5000", "save": "900 1 300 10"},
}


def test_placement_fields_reach_the_pod_template() -> None:
    sts = statefulset(provision(**PLACEMENT), auth_revision="42")
    template = sts["spec"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == PLACEMENT["nodeSelector"]
    assert pod["tolerations"] == PLACEMENT["tolerations"]
    assert pod["affinity"] == PLACEMENT["affinity"]
    assert pod["priorityClassName"] == "queue-critical"
    assert pod["imagePullSecrets"] == [{"name": "registry-cred"}]
    # Without a labelSelector, a spread constraint counts this RedisQueue's own Redis pod.
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": NAMES.selector_labels}
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    # The user's labels and annotations add to the operator's, never replace them.
    assert template["metadata"]["labels"] == {**NAMES.labels, "team": "marketplace"}
    assert template["metadata"]["annotations"] == {
        "backup.example.com/skip": "true",
        "redisqueue.dev/auth-secret-revision": "42",
    }
    assert sts["spec"]["selector"]["matchLabels"] == NAMES.selector_labels


def test_without_placement_fields_the_pod_template_has_none_of_them() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints"):
        assert key not in pod, key
    assert "priorityClassName" not in pod and "imagePullSecrets" not in pod


def test_extra_config_lines_follow_the_operators_own() -> None:
    config = redis_config(provision(extraConfig=PLACEMENT["extraConfig"])).splitlines()
    assert config[-2:] == ["save 900 1 300 10", "slowlog-log-slower-than 5000"]
    assert "maxmemory-policy noeviction" in config[:-2]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_real_redis_server_runs_with_the_extra_config(tmp_path: Path) -> None:
    port = _free_port()
    spec = provision(extraConfig={"slowlog-log-slower-than": "5000", "hz": "20"})
    script = (
        startup_script(spec)
        .replace("/run/redis/", f"{tmp_path}/run/")
        .replace("dir /data", f"dir {tmp_path}/data")
        .replace("port 6379", f"port {port}")
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    env = {"PATH": os.environ["PATH"], PASSWORD_ENV: "pw-" + os.urandom(4).hex()}
    proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL)
    try:
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        deadline = time.monotonic() + 10
        while True:
            got = subprocess.run(
                [*cli, "config", "get", "slowlog-log-slower-than"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if got.stdout.split() == ["slowlog-log-slower-than", "5000"]:
                break
            assert time.monotonic() < deadline, got.stdout + got.stderr
            time.sleep(0.05)
        hz = subprocess.run(
            [*cli, "config", "get", "hz"], env=env, capture_output=True, text=True, check=True
        )
        assert hz.stdout.split() == ["hz", "20"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- second pass: what proves an object is the RedisQueue's, and who reaches its Redis ------


def test_objects_that_outlive_the_redisqueue_carry_its_uid() -> None:
    from redisqueue.controller.objects.workload import build_auth_secret

    for owned in (True, False):
        secret = build_auth_secret(NAMES, "pw", owned=owned)
        assert secret["metadata"]["annotations"] == {"redisqueue.dev/owner-uid": NAMES.uid}
    sts = statefulset(provision(), claim_owner=NAMES.uid)
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]
    assert claim["annotations"] == {"redisqueue.dev/owner-uid": NAMES.uid}
    # A StatefulSet made before claims were stamped keeps its (immutable) template as it is.
    old = statefulset(provision(), claim_owner=None)
    assert "annotations" not in old["spec"]["volumeClaimTemplates"][0]["metadata"]


def test_the_network_policy_selects_the_redis_pod_and_lets_in_the_apps_and_the_operator() -> None:
    from redisqueue.controller.objects.workload import OperatorPeer, build_network_policy

    peer = OperatorPeer("redisqueue-system", {"app.kubernetes.io/name": "redisqueue-operator"})
    default = build_network_policy(NAMES, provision(), peer)
    sts = statefulset(provision())
    assert default["metadata"]["ownerReferences"] == [owner_reference(OWNER)]
    assert default["spec"]["podSelector"] == sts["spec"]["selector"]
    assert default["spec"]["policyTypes"] == ["Ingress"]
    apps, operator = default["spec"]["ingress"]
    assert apps["from"] == [{"podSelector": {}}]  # the RedisQueue's own namespace
    assert operator["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "redisqueue-system"}
    }
    chosen = build_network_policy(
        NAMES,
        provision(
            networkPolicy={
                "allowFrom": [
                    {"podSelector": {"matchLabels": {"app": "worker"}}},
                    {
                        "namespaceSelector": {"matchLabels": {"team": "web"}},
                        "podSelector": {
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]
                        },
                    },
                ]
            }
        ),
        OperatorPeer(),
    )
    assert chosen["spec"]["ingress"] == [
        {
            "ports": [{"port": 6379, "protocol": "TCP"}],
            "from": [
                {"podSelector": {"matchLabels": {"app": "worker"}}},
                {
                    "podSelector": {
                        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]
                    },
                    "namespaceSelector": {"matchLabels": {"team": "web"}},
                },
            ],
        }
    ]  # no operator rule when the operator runs outside the cluster
