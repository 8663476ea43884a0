"""The provisioned Redis as built from a spec: Service, StatefulSet, password Secret, config."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.provisioned_redis import ProvisionedRedis, secret_files
from harness.queue_specs import NAME, NAMES, NAMESPACE, external, provision
from redisqueue.controller.objects.acl import (
    ADMIN_USER,
    PROBE_USER,
    build_acl_secret,
    password_hash,
)
from redisqueue.controller.objects.meta import owner_reference
from redisqueue.controller.objects.server import (
    LIVENESS_SCRIPT,
    READINESS_SCRIPT,
    SECRETS_DIR,
    redis_config,
    resolved_resources,
    startup_script,
)
from redisqueue.controller.objects.workload import (
    build_auth_secret,
    build_pvc_resize_patch,
    build_service,
    build_statefulset,
    claim_template_size,
    generate_password,
)
from redisqueue.controller.resource.spec import RedisQueueSpec, parse_spec

OWNER = NAMES.owner


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


def test_no_environment_variable_of_the_pod_references_a_secret() -> None:
    # Policies such as Kyverno's disallow-secrets-from-env-vars admit the pod: its secrets
    # come from mounted Secret volumes only.
    pod = statefulset()["spec"]["template"]["spec"]
    for c in pod["containers"] + pod.get("initContainers", []):
        assert "envFrom" not in c
        for env in c.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), env
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"] == {
        "secretName": "analysis-jobs-redis-auth",
        "items": [{"key": "password", "path": "password"}],
        "defaultMode": 0o440,
    }
    assert volumes["acl"]["secret"] == {
        "secretName": "analysis-jobs-redis-acl",
        "defaultMode": 0o440,
    }
    mounts = {m["name"]: m for m in container(statefulset())["volumeMounts"]}
    assert mounts["auth"] == {
        "name": "auth",
        "mountPath": f"{SECRETS_DIR}/auth",
        "readOnly": True,
    }
    assert mounts["acl"]["readOnly"] is True


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
        assert "--requirepass" not in text and "requirepass" not in text
        assert " -a " not in text and "--pass" not in text
    # redis-server gets only the config file path; the users go into that file.
    assert c["command"][-1].rstrip().endswith("exec redis-server /run/redis/redis.conf")


def test_probes_ping_as_the_probe_user_with_the_password_from_its_file() -> None:
    c = container(statefulset())
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["exec"]["command"][:2] == ["sh", "-c"]
        script = probe["exec"]["command"][2]
        assert f"--user {PROBE_USER} -h 127.0.0.1 -p 6379 ping" in script
        assert f'REDISCLI_AUTH="$(cat {SECRETS_DIR}/acl/probe-password)"' in script
    assert c["readinessProbe"]["exec"]["command"][2] == READINESS_SCRIPT
    assert c["livenessProbe"]["exec"]["command"][2] == LIVENESS_SCRIPT


def test_referenced_password_secret_is_mounted_instead_of_the_generated_one() -> None:
    spec = parse_spec(
        {"redis": {"provision": {}}, "auth": {"secretRef": {"name": "mine", "key": "token"}}}
    )
    volumes = {v["name"]: v for v in statefulset(spec)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == "mine"
    assert volumes["auth"]["secret"]["items"] == [{"key": "token", "path": "password"}]


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
    assert mounts == {
        "/data": "data",
        "/run/redis": "config",
        "/tmp": "tmp",
        f"{SECRETS_DIR}/auth": "auth",
        f"{SECRETS_DIR}/acl": "acl",
    }
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


def start_redis(
    root: Path, spec: RedisQueueSpec, password: str, *, admin: str = "admin-pw"
) -> tuple[ProvisionedRedis, str]:
    """The pod's Redis from its Secret files; returns it and the probe's password."""
    probe = "probe-" + os.urandom(8).hex()
    acl = build_acl_secret(NAMES, admin_password=admin, probe_password=probe, queues=spec.queues)
    started = ProvisionedRedis(root, spec)
    started.mount(password.encode(), secret_files(acl))
    return started.start(), probe


WEIRD_PASSWORD = "we\"ird \\pass'word\n$(id) ü #"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_startup_script_makes_the_users_from_secret_files_and_hides_the_passwords(
    tmp_path: Path,
) -> None:
    spec = provision()
    started, probe = start_redis(tmp_path, spec, WEIRD_PASSWORD)
    env = {"PATH": os.environ["PATH"]}
    try:
        assert started.client(WEIRD_PASSWORD).ping() is True  # the apps: default user
        assert started.client(probe, PROBE_USER).ping() is True
        assert started.client("admin-pw", ADMIN_USER).ping() is True
        with pytest.raises(redis.AuthenticationError):
            started.client("wrong").ping()
        live = started.script(LIVENESS_SCRIPT)
        assert subprocess.run(["sh", "-c", live], env=env, check=False).returncode == 0
        # A probe file that no longer matches fails readiness.
        (tmp_path / "secrets" / "acl" / "probe-password").write_text("wrong")
        ready = started.script(READINESS_SCRIPT)
        assert subprocess.run(["sh", "-c", ready], env=env, check=False).returncode != 0
        # redis-server runs as the script's own pid (exec), without a password in its
        # arguments or environment; its config holds hashes only.
        assert started.proc is not None
        cmdline = Path(f"/proc/{started.proc.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline and WEIRD_PASSWORD.encode() not in cmdline
        environ = Path(f"/proc/{started.proc.pid}/environ").read_bytes()
        assert WEIRD_PASSWORD.encode() not in environ and b"REDISCLI_AUTH" not in environ
        config = tmp_path / "run" / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        text = config.read_text()
        assert "appendonly yes" in text and "requirepass" not in text
        assert WEIRD_PASSWORD not in text and probe not in text and "admin-pw" not in text
        assert f"#{password_hash(WEIRD_PASSWORD)}" in text
    finally:
        started.stop()


FORBIDDEN_COMMANDS = (
    ("CONFIG", "GET", "maxmemory"),
    ("CONFIG", "SET", "maxmemory", "1"),
    ("DEBUG", "OBJECT", "x"),
    ("MODULE", "LIST"),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("ACL", "LIST"),
    ("ACL", "SETUSER", "x", "on"),
    ("ACL", "WHOAMI"),
    ("SHUTDOWN", "NOSAVE"),
)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_apps_and_probe_cannot_administer_redis_and_the_probe_reads_only_its_queues(
    tmp_path: Path,
) -> None:
    weird_key = 'jobs *[a]? "q" \\ \u00fc'
    spec = parse_spec(
        {
            "redis": {"provision": {}},
            "queues": [
                {"key": "phase1:jobs", "type": "list"},
                {"key": weird_key, "type": "list"},
                {"key": "events", "type": "stream", "group": "workers"},
            ],
        }
    )
    started, probe = start_redis(tmp_path, spec, "app-pw")
    try:
        app = started.client("app-pw")
        app.lpush("phase1:jobs", "a")
        app.lpush(weird_key, "b")
        app.lpush("jobs x[a]y", "c")  # matches the key's glob if it were not escaped
        app.xgroup_create("events", "workers", mkstream=True)
        assert app.keys("phase1:*") == ["phase1:jobs"]  # ordinary app commands work
        prober = started.client(probe, PROBE_USER)
        assert prober.llen("phase1:jobs") == 1 and prober.llen(weird_key) == 1
        assert prober.xlen("events") == 0
        assert prober.xpending("events", "workers")["pending"] == 0
        assert "redis_version" in prober.info()
        for denied in (
            lambda: prober.llen("jobs x[a]y"),
            lambda: prober.get("phase1:jobs"),
            lambda: prober.lpush("phase1:jobs", "x"),
            lambda: prober.keys("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                denied()
        admin = started.client("admin-pw", ADMIN_USER)
        with pytest.raises(redis.exceptions.NoPermissionError):
            admin.llen("phase1:jobs")
        for who in (app, prober):
            for command in FORBIDDEN_COMMANDS:
                with pytest.raises(redis.exceptions.ResponseError):
                    who.execute_command(*command)
        assert app.llen("phase1:jobs") == 1  # nothing was flushed
    finally:
        started.stop()


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_startup_script_refuses_an_empty_password(tmp_path: Path) -> None:
    redis_of_pod = ProvisionedRedis(tmp_path, provision())
    redis_of_pod.mount(b"", {"admin-password": b"a", "probe-password": b"p", "probe-keys": b""})
    result = subprocess.run(
        ["sh", "-c", redis_of_pod.script(startup_script(provision()))],
        env={"PATH": os.environ["PATH"]},
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
    sts = statefulset(provision(**PLACEMENT))
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
    assert template["metadata"]["annotations"] == {"backup.example.com/skip": "true"}
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
    spec = provision(extraConfig={"slowlog-log-slower-than": "5000", "hz": "20"})
    started, probe = start_redis(tmp_path, spec, "pw-" + os.urandom(4).hex())
    try:
        assert "slowlog-log-slower-than 5000" in (tmp_path / "run" / "redis.conf").read_text()
        info = started.client("admin-pw", ADMIN_USER)
        with pytest.raises(redis.exceptions.NoPermissionError):
            info.config_get("hz")  # nobody may read or change the config at run time
        assert started.client(probe, PROBE_USER).info("server")["configured_hz"] == 20
    finally:
        started.stop()


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
    from redisqueue.controller.objects.network import OperatorPeer, build_network_policy

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
