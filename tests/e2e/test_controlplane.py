"""Proofs that the local control plane is a real Kubernetes: versions, RBAC, CRD schema and
CEL validation, server-side apply, conflicts, watches, garbage collection, namespace
deletion, ServiceAccount tokens, Helm, and clean shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from harness.kube_controlplane import (
    BUILD_SCRIPT,
    ControlPlane,
    bin_dir_for_versions,
    read_versions,
    remove_stale_workdirs,
)
from harness.polling import wait_for

pytestmark = pytest.mark.k8s

VERSIONS = read_versions()
K8S_VERSION = VERSIONS["K8S_VERSION"]
HELM_VERSION = VERSIONS["HELM_VERSION"]
TINY_CHART = Path(__file__).resolve().parents[1] / "fixtures" / "tiny-chart"


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cp.kubectl("get", *args, "-o", "json").stdout)
    return data


def exists(cp: ControlPlane, *args: str) -> bool:
    proc = cp.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


# --------------------------------------------------------------------------- versions, RBAC


def test_kubectl_version_shows_stamped_server_version(control_plane: ControlPlane) -> None:
    versions = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION
    assert versions["serverVersion"]["gitTreeState"] == "clean"
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    minor = K8S_VERSION.split(".")[1]
    assert (versions["serverVersion"]["major"], versions["serverVersion"]["minor"]) == ("1", minor)
    # The plain text form a person reads.
    text = control_plane.kubectl("version").stdout
    assert f"Server Version: {K8S_VERSION}" in text


def test_rbac_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    admin = control_plane.kubectl("auth", "can-i", "*", "*")
    assert admin.stdout.strip() == "yes"

    control_plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    who = f"--as=system:serviceaccount:{namespace}:nobody"
    for args in (("*", "*"), ("get", "secrets"), ("list", "configmaps")):
        proc = control_plane.kubectl("auth", "can-i", *args, "-n", namespace, who, check=False)
        assert proc.stdout.strip() == "no", (args, proc.stdout, proc.stderr)
        assert proc.returncode == 1
    forbidden = control_plane.kubectl("get", "configmaps", "-n", namespace, who, check=False)
    assert forbidden.returncode != 0
    assert "Forbidden" in forbidden.stderr


# --------------------------------------------------------------------------- CRD + CEL


def widget_crd(group: str) -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "required": ["size", "minReplicas", "maxReplicas"],
        "properties": {
            "size": {"type": "string", "enum": ["small", "large"]},
            "minReplicas": {"type": "integer", "minimum": 0},
            "maxReplicas": {"type": "integer", "minimum": 0},
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.minReplicas <= self.maxReplicas",
                "message": "minReplicas must not exceed maxReplicas",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema},
                        }
                    },
                }
            ],
        },
    }


def widget(group: str, name: str, namespace: str, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def test_crd_schema_and_cel_validation(control_plane: ControlPlane, namespace: str) -> None:
    group = f"g{secrets.token_hex(4)}.tests.redisqueue.example"
    crd = f"widgets.{group}"
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(widget_crd(group)))
    try:
        control_plane.wait_established(crd)

        ok = widget(group, "ok", namespace, size="small", minReplicas=1, maxReplicas=3)
        control_plane.kubectl("apply", "--server-side", "-f", "-", input=ok)
        stored = get_json(control_plane, f"widgets.{group}", "ok", "-n", namespace)
        assert stored["spec"] == {"size": "small", "minReplicas": 1, "maxReplicas": 3}

        cel = widget(group, "bad-cel", namespace, size="small", minReplicas=5, maxReplicas=2)
        rejected = control_plane.kubectl("apply", "-f", "-", input=cel, check=False)
        assert rejected.returncode != 0
        assert "minReplicas must not exceed maxReplicas" in rejected.stderr
        assert "Invalid value" in rejected.stderr

        enum = widget(group, "bad-enum", namespace, size="huge", minReplicas=0, maxReplicas=1)
        rejected = control_plane.kubectl("apply", "-f", "-", input=enum, check=False)
        assert rejected.returncode != 0
        assert "Unsupported value" in rejected.stderr and '"huge"' in rejected.stderr

        # A CEL rule also guards updates of an existing object.
        patch = json.dumps({"spec": {"minReplicas": 9}})
        rejected = control_plane.kubectl(
            "patch", f"widgets.{group}", "ok", "-n", namespace, "--type=merge", "-p", patch,
            check=False,
        )  # fmt: skip
        assert "minReplicas must not exceed maxReplicas" in rejected.stderr
        assert not exists(control_plane, f"widgets.{group}", "bad-cel", "-n", namespace)
    finally:
        control_plane.kubectl("delete", "crd", crd, "--wait=false", check=False)


def test_server_side_apply_reports_field_manager_conflicts(
    control_plane: ControlPlane, namespace: str
) -> None:
    cm = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "shared", "namespace": namespace},
            "data": {"owner": "alice"},
        }
    )
    control_plane.kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=cm)
    changed = cm.replace('"alice"', '"bob"')
    conflict = control_plane.kubectl(
        "apply", "--server-side", "--field-manager=bob", "-f", "-", input=changed, check=False
    )
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower() and "alice" in conflict.stderr
    control_plane.kubectl(
        "apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-",
        input=changed,
    )  # fmt: skip
    managers = get_json(
        control_plane, "configmap", "shared", "-n", namespace, "--show-managed-fields"
    )
    assert [m["manager"] for m in managers["metadata"]["managedFields"]] == ["bob"]


# --------------------------------------------------------------------------- controllers


def test_owned_child_is_garbage_collected(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get_json(control_plane, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(child))
    control_plane.kubectl("create", "configmap", "bystander", "-n", namespace)

    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: not exists(control_plane, "configmap", "child", "-n", namespace),
        what="the garbage collector to delete the owned ConfigMap",
    )
    assert exists(control_plane, "configmap", "bystander", "-n", namespace)


def test_deleted_namespace_finishes_terminating(control_plane: ControlPlane) -> None:
    name = f"t-terminating-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("create", "configmap", "content", "-n", name, "--from-literal=a=b")
    control_plane.kubectl("create", "serviceaccount", "worker", "-n", name)
    # The serviceaccount controller is running: every new namespace gets `default`.
    wait_for(lambda: exists(control_plane, "serviceaccount", "default", "-n", name), 30)

    control_plane.kubectl("delete", "namespace", name, "--wait=false")
    wait_for(
        lambda: not exists(control_plane, "namespace", name),
        timeout=90,
        what=f"namespace {name} to finish terminating",
    )


# --------------------------------------------------------------------------- tokens


def test_service_account_token_identity_is_limited_to_its_role(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    kc = control_plane.kubectl
    kc("create", "serviceaccount", "reader", "-n", namespace)
    kc("create", "role", "configmap-reader", "--verb=get,list,watch", "--resource=configmaps",
       "-n", namespace)  # fmt: skip
    kc("create", "rolebinding", "reader", "--role=configmap-reader",
       f"--serviceaccount={namespace}:reader", "-n", namespace)  # fmt: skip
    kc("create", "configmap", "visible", "-n", namespace)

    token = kc("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()
    assert token.count(".") == 2  # a signed JWT

    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    token_config = {
        **admin,
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [
            {"name": "reader", "context": {"cluster": "redisqueue-test", "user": "reader"}}
        ],
        "current-context": "reader",
    }
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump(token_config))

    def as_reader(*args: str) -> subprocess.CompletedProcess[str]:
        return control_plane.run("kubectl", f"--kubeconfig={path}", *args, check=False)

    whoami = json.loads(as_reader("auth", "whoami", "-o", "json").stdout)
    user = whoami["status"]["userInfo"]
    assert user["username"] == f"system:serviceaccount:{namespace}:reader"
    assert f"system:serviceaccounts:{namespace}" in user["groups"]

    listed = as_reader("get", "configmaps", "-n", namespace, "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert "configmap/visible" in listed.stdout.split()

    for args in (
        ("get", "secrets", "-n", namespace),
        ("get", "configmaps", "-n", "default"),
        ("create", "configmap", "nope", "-n", namespace),
        ("delete", "configmap", "visible", "-n", namespace),
        ("get", "namespaces"),
    ):
        denied = as_reader(*args)
        assert denied.returncode != 0, args
        assert "forbidden" in denied.stderr.lower(), (args, denied.stderr)

    bogus = as_reader(f"--token={token[:-4]}AAAA", "get", "configmaps", "-n", namespace)
    assert bogus.returncode != 0 and "Unauthorized" in bogus.stderr


# --------------------------------------------------------------------------- Helm


def test_helm_install_and_uninstall(control_plane: ControlPlane, namespace: str) -> None:
    version = control_plane.helm("version", "--template", "{{.Version}}").stdout.strip()
    assert version == HELM_VERSION

    # Offline rendering uses the Kubernetes version stamped into helm at build time.
    minor = K8S_VERSION.split(".")[1]
    rendered = control_plane.helm("template", "offline", str(TINY_CHART)).stdout
    assert f'kubeVersion: "v1.{minor}.0"' in rendered

    control_plane.helm(
        "install", "tiny", str(TINY_CHART), "-n", namespace, "--set", "greeting=hi",
        "--wait", "--timeout", "60s",
    )  # fmt: skip
    status = json.loads(control_plane.helm("status", "tiny", "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    cm = get_json(control_plane, "configmap", "tiny-tiny", "-n", namespace)
    # Rendered against the live API server, whose version is the stamped release.
    assert cm["data"] == {"greeting": "hi", "kubeVersion": K8S_VERSION}
    assert exists(control_plane, "serviceaccount", "tiny-tiny", "-n", namespace)

    control_plane.helm("uninstall", "tiny", "-n", namespace, "--wait", "--timeout", "60s")
    assert not exists(control_plane, "configmap", "tiny-tiny", "-n", namespace)
    assert not exists(control_plane, "serviceaccount", "tiny-tiny", "-n", namespace)
    releases = control_plane.helm("list", "-n", namespace, "--all", "-q").stdout.split()
    assert "tiny" not in releases
    assert not control_plane.kubectl(
        "get", "secrets", "-n", namespace, "-l", "owner=helm,name=tiny", "-o", "name"
    ).stdout.strip()


# --------------------------------------------------------------------------- async client


async def test_kube_api_conflicts_and_watches(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    created = await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"n": "1"})
    )
    stale_version = created.metadata.resource_version
    created.data = {"n": "2"}
    await core.replace_namespaced_config_map("cm", namespace, created)

    created.data = {"n": "3"}
    created.metadata.resource_version = stale_version
    with pytest.raises(ApiException) as conflict:
        await core.replace_namespaced_config_map("cm", namespace, created)
    assert conflict.value.status == 409

    listing = await core.list_namespaced_config_map(namespace)
    seen: list[tuple[str, str]] = []

    async def follow() -> None:
        w = watch.Watch()
        async with w.stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=listing.metadata.resource_version,
            timeout_seconds=30,
        ) as stream:
            async for event in stream:
                seen.append((event["type"], event["object"].metadata.name))
                if event["type"] == "DELETED":
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.2)
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="watched"))
    )
    await core.delete_namespaced_config_map("watched", namespace)
    await asyncio.wait_for(watcher, timeout=30)
    assert seen[-2:] == [("ADDED", "watched"), ("DELETED", "watched")]


# --------------------------------------------------------------------------- lifecycle


def test_start_time_and_idle_memory(control_plane: ControlPlane) -> None:
    rss = control_plane.rss_bytes()
    assert set(rss) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    total_mib = sum(rss.values()) / 2**20
    detail = ", ".join(f"{name} {value / 2**20:.0f} MiB" for name, value in rss.items())
    print(
        f"\ncontrol plane: started in {control_plane.startup_seconds:.1f} s; "
        f"RSS {total_mib:.0f} MiB ({detail})"
    )
    # Binaries are cached by the time a test runs, so this is a warm start.
    assert control_plane.startup_seconds < 15, control_plane.startup_seconds


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


STARTER = textwrap.dedent(
    """
    import json, signal, sys, time
    # Ctrl-C as in a terminal, even when this run was started in the background (a
    # non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {tests!r})
    from harness.kube_controlplane import ControlPlane
    from pathlib import Path
    plane = ControlPlane(bin_dir=Path({bin_dir!r})).start()
    print(json.dumps({{"pids": plane.pids, "workdir": str(plane.workdir)}}), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: signal.Signals(s).name
)
def test_processes_are_cleaned_up_when_the_runner_dies(
    control_plane: ControlPlane, sig: signal.Signals
) -> None:
    """A second control plane in a child Python process; killing that process (politely,
    with Ctrl-C, or with SIGKILL) must take etcd, kube-apiserver and the controller-
    manager with it."""
    script = STARTER.format(
        tests=str(Path(__file__).resolve().parents[1]), bin_dir=str(control_plane.bin_dir)
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started: dict[str, Any] = {}
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        assert line, runner.stderr.read() if runner.stderr else ""
        started = json.loads(line)
        pids: dict[str, int] = started["pids"]
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert all(_alive(pid) for pid in pids.values())

        runner.send_signal(sig)
        runner.wait(timeout=30)
        wait_for(
            lambda: not any(_alive(pid) for pid in pids.values()),
            timeout=20,
            what=f"children to exit after {sig.name}",
        )
        if sig != signal.SIGKILL:  # a runner that could clean up also removed its files
            assert not Path(started["workdir"]).exists()
        else:  # a killed one could not: the next start removes them
            assert Path(started["workdir"]).exists()
            remove_stale_workdirs()
            assert not Path(started["workdir"]).exists()
    finally:
        if started:
            shutil.rmtree(started["workdir"], ignore_errors=True)
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for stream in (runner.stdout, runner.stderr):
            if stream is not None:
                stream.close()


def test_stop_is_complete_and_idempotent(control_plane: ControlPlane) -> None:
    assert control_plane.bin_dir is not None
    plane = ControlPlane(bin_dir=control_plane.bin_dir).start()
    pids = list(plane.pids.values())
    workdir = plane.workdir
    assert workdir is not None and workdir.exists()
    plane.stop()
    plane.stop()
    assert not any(_alive(pid) for pid in pids)
    assert not workdir.exists()


def test_warm_build_does_not_run_go(tmp_path: Path) -> None:
    """With the versioned cache complete, build.sh answers at once and never calls go."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    calls = tmp_path / "go-calls"
    fake_go = fake_bin / "go"
    fake_go.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    fake_go.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == bin_dir_for_versions()
    assert not calls.exists()
    assert elapsed < 2, elapsed
