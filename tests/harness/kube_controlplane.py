"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

The binaries are built from the pinned Go modules in ``tests/controlplane/`` by
``tests/controlplane/build.sh`` into a cache folder keyed by version (see
``tests/controlplane/README.md``). This module generates the PKI, starts the three
processes on free loopback ports, writes an admin kubeconfig and waits until the API
server is ready and the controller-manager is working. Every child runs in its own
process group, and ``stop()`` kills the groups; ``stop()`` is also registered with
``atexit`` and for SIGTERM/SIGHUP, and (by default) the children are told by the kernel
to die with the process that started them, so nothing is left behind when a test run
fails, is interrupted, or is killed.

Command line (what ``tests/controlplane/controlplane.sh`` runs)::

    python tests/harness/kube_controlplane.py build   # build or find the binaries, print bin dir
    python tests/harness/kube_controlplane.py up      # start in the background, print exports
    python tests/harness/kube_controlplane.py env     # print exports for the running one
    python tests/harness/kube_controlplane.py down    # stop it and remove its state
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Run as a script (``python tests/harness/kube_controlplane.py``), the folder that holds the
# harness package goes on the import path, as the tests' conftest puts it there for pytest.
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.go_tools import refuse_go_builds, run_build_script
from harness.pki import build_ca, certificate_builder, write_key, write_pair

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE_DIR = REPO_ROOT / "tests" / "controlplane"
BUILD_SCRIPT = CONTROLPLANE_DIR / "build.sh"
VERSIONS_FILE = CONTROLPLANE_DIR / "versions.env"
CACHE_ENV = "REDISQUEUE_CONTROLPLANE_CACHE"
# Set by tests/run.sh to the folder build.sh printed; used when it holds all binaries.
BIN_ENV = "REDISQUEUE_CONTROLPLANE_BIN"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl", "etcd", "helm")

# Controllers a test cluster needs: ownerReference garbage collection, namespace
# deletion, the default ServiceAccount and its token, the kube-root-ca.crt ConfigMap,
# aggregated ClusterRoles (admin/edit/view) and ServiceCIDR bookkeeping. No cloud
# provider, no node or pod lifecycle (there is no kubelet).
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "service-cidr-controller",
)
#: Service addresses stay in 198.18.0.0/15, the test cluster's range: this plane has no
#: kube-proxy and routes nothing, but no test address is ever in a private range.
SERVICE_CLUSTER_IP_RANGE = "198.19.255.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
WORKDIR_PREFIX = "redisqueue-k8s-"
OWNER_FILE = "owner.pid"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started."""


class CommandError(subprocess.CalledProcessError):
    """A failed kubectl/helm call; unlike CalledProcessError its message shows the output."""

    #: what the cluster looked like when a wait failed (filled in by the node's clients)
    report: str = ""

    def __str__(self) -> str:
        cmd = self.cmd if isinstance(self.cmd, str) else " ".join(map(str, self.cmd))
        text = (
            f"command {cmd!r} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )
        if self.report:
            return f"{text}\n--- the cluster at that moment ---\n{self.report}"
        return text


# --------------------------------------------------------------------------- versions


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse ``versions.env`` (KEY=value lines, ``#`` comments)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip().strip("\"'")
    return versions


def cache_root() -> Path:
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else REPO_ROOT / ".cache" / "controlplane"


def bin_dir_for_versions(versions: dict[str, str] | None = None) -> Path:
    v = versions or read_versions()
    key = f"{v['K8S_VERSION']}-{v['ETCD_VERSION']}-{v['HELM_VERSION']}"
    return cache_root() / key / "bin"


def binaries_present(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in BINARIES)


def ensure_binaries(*, stream_output: bool = True) -> Path:
    """Return the versioned bin dir, running ``build.sh`` first when it is incomplete.

    A warm cache costs one ``stat`` per binary; a cold one runs the Go build (minutes).
    """
    refuse_go_builds("the control plane", "k8s", ControlPlaneError)
    preset = os.environ.get(BIN_ENV)
    if preset and binaries_present(Path(preset)):
        return Path(preset)
    bin_dir = bin_dir_for_versions()
    if binaries_present(bin_dir):
        return bin_dir
    started = time.monotonic()
    built = run_build_script(BUILD_SCRIPT, ControlPlaneError, stream_output=stream_output)
    if not binaries_present(built):
        raise ControlPlaneError(f"{BUILD_SCRIPT} reported {built} but binaries are missing")
    if stream_output:
        print(
            f"control-plane binaries ready in {time.monotonic() - started:.0f} s: {built}",
            file=sys.stderr,
        )
    return built


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    kcm_cert: Path
    kcm_key: Path
    sa_key: Path
    sa_pub: Path


def _generate_pki(
    directory: Path,
    service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
    serving_ips: Sequence[str] = ("127.0.0.1",),
) -> _Pki:
    """A CA, the API server's serving cert, two client certs and the SA signing key."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(minutes=5)
    not_after = now + dt.timedelta(days=7)

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_cert, ca_key = build_ca("redisqueue-test-ca", not_before, not_after)
    ca_name = ca_cert.subject

    def issue(
        subject: x509.Name, usage: x509.ObjectIdentifier, sans: Sequence[x509.GeneralName] = ()
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            certificate_builder(subject, ca_name, key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), False)
        return builder.sign(ca_key, hashes.SHA256()), key

    serving_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        *(x509.IPAddress(ipaddress.IPv4Address(ip)) for ip in serving_ips),
        x509.IPAddress(next(ipaddress.IPv4Network(service_cidr).hosts())),
    ]
    serving, serving_key = issue(
        name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, serving_sans
    )
    # The admin is a member of system:masters, bound to cluster-admin by RBAC bootstrap.
    admin, admin_key = issue(name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    # The controller-manager gets the same identity as in a kubeadm cluster: only its
    # bootstrap ClusterRole, with each controller acting as its own ServiceAccount.
    kcm, kcm_key = issue(name("system:kube-controller-manager"), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = _Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        kcm_cert=directory / "controller-manager.crt",
        kcm_key=directory / "controller-manager.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
    )
    pem = serialization.Encoding.PEM
    pki.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    write_key(pki.ca_key, ca_key)
    pki.serving_cert.write_bytes(serving.public_bytes(pem))
    write_key(pki.serving_key, serving_key)
    pki.admin_cert.write_bytes(admin.public_bytes(pem))
    write_key(pki.admin_key, admin_key)
    pki.kcm_cert.write_bytes(kcm.public_bytes(pem))
    write_key(pki.kcm_key, kcm_key)
    write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


def create_ca(out: Path, common_name: str) -> tuple[Path, Path]:
    """A CA of its own (e.g. the aggregation layer's front proxy); writes ``out``.crt/.key."""
    now = dt.datetime.now(dt.UTC)
    cert, key = build_ca(common_name, now - dt.timedelta(minutes=5), now + dt.timedelta(days=7))
    return write_pair(out, cert, key)


def _kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A self-contained kubeconfig (certificates embedded, so it can be copied anywhere)."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "redisqueue-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "redisqueue-test", "context": {"cluster": "redisqueue-test", "user": user}}
        ],
        "current-context": "redisqueue-test",
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is valid YAML


def issue_certificate(
    ca_cert: Path,
    ca_key: Path,
    out: Path,
    common_name: str,
    *,
    organization: str | None = None,
    server: bool = False,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Issue a certificate signed by the control plane's CA; writes ``out``.crt/.key."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    not_before, not_after = now - dt.timedelta(minutes=5), now + dt.timedelta(days=7)
    builder = (
        certificate_builder(x509.Name(attrs), ca.subject, key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.IPv4Address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    cert = builder.sign(signer, hashes.SHA256())
    return write_pair(out, cert, key)


def kubeconfig_for(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A self-contained kubeconfig for ``user`` (public name of the helper below)."""
    return _kubeconfig(server, ca, cert, key, user)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGKILLs it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def kill_process_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL whatever is still alive after ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        # Reap our own child if it is the leader, so it does not linger as a zombie.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pgid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, 0)


def log_tail(log: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a process's log file ("" while there is none)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


_live: set[ControlPlane] = set()
_live_lock = threading.Lock()
_handlers_installed = False


def _stop_all() -> None:
    with _live_lock:
        planes = list(_live)
    for plane in planes:
        plane.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    # Behave as if the signal had not been caught: default action (terminate).
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup_handlers() -> None:
    global _handlers_installed  # noqa: PLW0603 - one-time process-wide registration
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            # Only take over signals nobody else handles; SIGINT stays KeyboardInterrupt,
            # which unwinds pytest's fixtures (and atexit runs after that).
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports.

    ``start()`` builds the binaries if needed, starts the processes and returns once
    ``/readyz`` answers ok and the controller-manager has created the ``default``
    ServiceAccount. ``stop()`` kills every process group it started and removes the
    working directory (unless ``keep_workdir``). Usable as a context manager.

    With ``die_with_parent`` (the default) the kernel kills the children when the
    *thread* that started them ends, so start it from a thread that outlives it (the
    main thread, as pytest fixtures do); ``controlplane.sh up`` turns it off.
    """

    bin_dir: Path | None = None
    workdir: Path | None = None
    controllers: Sequence[str] = DEFAULT_CONTROLLERS
    die_with_parent: bool = True
    keep_workdir: bool = False
    startup_timeout: float = 90.0
    extra_apiserver_args: Sequence[str] = ()
    #: Where the API server listens and what it advertises (a node's pods must reach it).
    address: str = "127.0.0.1"
    service_cluster_ip_range: str = SERVICE_CLUSTER_IP_RANGE
    authorization_modes: Sequence[str] = ("RBAC",)
    extra_controller_manager_args: Sequence[str] = ()
    #: Called with the fresh PKI before the API server starts (to issue more certificates).
    on_pki: Callable[[_Pki], object] | None = None

    server: str = field(init=False, default="")
    kubeconfig: Path = field(init=False, default=Path())
    startup_seconds: float = field(init=False, default=0.0)
    _children: list[_Child] = field(init=False, default_factory=list, repr=False)
    _own_workdir: bool = field(init=False, default=False, repr=False)
    _pki: _Pki | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.bin_dir is not None:
            self.bin_dir = Path(self.bin_dir)
        if self.workdir is not None:
            self.workdir = Path(self.workdir)

    def __hash__(self) -> int:
        return id(self)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ControlPlane:
        if self._children:
            raise ControlPlaneError("control plane already started")
        if self.bin_dir is None:
            self.bin_dir = ensure_binaries()
        if self.workdir is None:
            remove_stale_workdirs()
            self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            (self.workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        _install_cleanup_handlers()
        with _live_lock:
            _live.add(self)
        started = time.monotonic()
        try:
            self._start_processes()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop everything this object started; safe to call more than once."""
        children, self._children = self._children, []
        for child in reversed(children):  # controller-manager, apiserver, then etcd
            if child.proc.poll() is None or _group_alive(child.proc.pid):
                kill_process_group(child.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=5)
        with _live_lock:
            _live.discard(self)
        if self._own_workdir and not self.keep_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pki(self) -> _Pki:
        """The certificates and keys of this control plane (after ``start()``)."""
        assert self._pki is not None, "control plane not started"
        return self._pki

    @property
    def pids(self) -> dict[str, int]:
        return {child.name: child.proc.pid for child in self._children}

    # ---------------------------------------------------------------- clients

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, with the bin dir first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        # Keep helm's state (repositories, cache) and kubectl's discovery cache out of the
        # user's home.
        assert self.workdir is not None
        for var, sub in (
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
            ("KUBECACHEDIR", "kube-cache"),
        ):
            env.setdefault(var, str(self.workdir / sub))
        return env

    def run(
        self,
        binary: str,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        cmd = [str(self.bin_dir / binary), *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def wait_established(self, crd: str, timeout: float = 60.0) -> None:
        """Wait until the CustomResourceDefinition ``crd`` is Established.

        Not ``kubectl wait --for=condition=Established``: right after the create, before the
        API server has written any condition, that fails with an accessor error at once.
        """
        deadline = time.monotonic() + timeout
        path = '{.status.conditions[?(@.type=="Established")].status}'
        while True:
            answer = self.kubectl("get", f"crd/{crd}", "-o", f"jsonpath={path}", check=False)
            if answer.returncode == 0 and answer.stdout.strip() == "True":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"crd/{crd} not Established after {timeout} s: {answer.stderr}")
            time.sleep(0.2)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "kubectl",
            f"--kubeconfig={self.kubeconfig}",
            *args,
            check=check,
            input=input,
            timeout=timeout,
        )

    def helm(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "helm",
            f"--kubeconfig={self.kubeconfig}",
            *args,
            check=check,
            input=input,
            timeout=timeout,
        )

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each process (Linux /proc), for reporting."""
        result: dict[str, int] = {}
        for child in self._children:
            try:
                status = Path(f"/proc/{child.proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    result[child.name] = int(line.split()[1]) * 1024
        return result

    # ---------------------------------------------------------------- internals

    @property
    def audit_log(self) -> Path:
        """The API server's own record of every write a ServiceAccount made (JSON lines)."""
        assert self.workdir is not None
        return self.workdir / "audit.log"

    def _audit_policy(self) -> Path:
        # Requests by ServiceAccounts (the operator's among them), at Metadata level: who,
        # what, when, with which User-Agent; never a body (Secrets pass by).
        assert self.workdir is not None
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\n"
            "kind: Policy\n"
            "omitStages: [RequestReceived]\n"
            "rules:\n"
            "  - level: Metadata\n"
            "    userGroups: [system:serviceaccounts]\n"
            "  - level: None\n"
        )
        return policy

    def audited(self, user_agent_prefix: str) -> list[dict[str, Any]]:
        """Audit events of ServiceAccounts' requests whose User-Agent starts with
        ``user_agent_prefix``, in the order the API server completed them."""
        events = []
        for line in self.audit_log.read_text().splitlines():
            event = json.loads(line)
            if str(event.get("userAgent", "")).startswith(user_agent_prefix):
                events.append(event)
        return events

    def audited_writes(self, user_agent_prefix: str) -> list[dict[str, Any]]:
        """The writes among :meth:`audited`."""
        return [
            e
            for e in self.audited(user_agent_prefix)
            if e.get("verb") in {"create", "update", "patch", "delete"}
        ]

    def _spawn(self, name: str, args: list[str]) -> _Child:
        assert self.workdir is not None and self.bin_dir is not None
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group: killpg reaches everything
                preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
            )
        child = _Child(name, proc, log)
        self._children.append(child)
        return child

    def _check_alive(self) -> None:
        for child in self._children:
            code = child.proc.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{child.name} exited with code {code} during startup; log {child.log}:\n"
                    f"{child.tail()}"
                )

    def _start_processes(self) -> None:
        assert self.workdir is not None
        deadline = time.monotonic() + self.startup_timeout
        serving_ips = sorted({"127.0.0.1", self.address})
        pki = self._pki = _generate_pki(
            self.workdir / "pki", self.service_cluster_ip_range, serving_ips
        )
        if self.on_pki is not None:
            self.on_pki(pki)

        etcd_client, etcd_peer = free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            [
                "--name=redisqueue-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=redisqueue-test=http://127.0.0.1:{etcd_peer}",
                "--initial-cluster-state=new",
                # Test data is thrown away afterwards; skipping fsync makes writes fast.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait(
            lambda: _http_ok(f"http://127.0.0.1:{etcd_client}/health"), deadline, "etcd /health"
        )
        del etcd

        port = free_port()
        self.server = f"https://{self.address}:{port}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--authorization-mode={','.join(self.authorization_modes)}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={self.service_cluster_ip_range}",
                "--allow-privileged=true",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                "--v=0",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",
                *self.extra_apiserver_args,
            ],
        )

        admin_config = _kubeconfig(self.server, pki.ca_cert, pki.admin_cert, pki.admin_key, "admin")
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(admin_config)
        self.kubeconfig.chmod(0o600)
        kcm_config = self.workdir / "controller-manager.kubeconfig"
        kcm_config.write_text(
            _kubeconfig(
                self.server,
                pki.ca_cert,
                pki.kcm_cert,
                pki.kcm_key,
                "system:kube-controller-manager",
            )
        )
        kcm_config.chmod(0o600)

        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._wait(
            lambda: _http_ok(f"{self.server}/readyz", ctx), deadline, "kube-apiserver /readyz"
        )

        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_config}",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--secure-port=0",
                "--bind-address=127.0.0.1",
                f"--cluster-name=redisqueue-test-{port}",
                "--concurrent-gc-syncs=5",
                # Its volume controllers create (and re-create, when it is removed) the
                # flex-volume dir, /usr/libexec/kubernetes/... by default: keep it in ours.
                f"--flex-volume-plugin-dir={self.workdir / 'flex-volume'}",
                "--v=0",
                *self.extra_controller_manager_args,
            ],
        )
        if "serviceaccount-controller" in self.controllers:
            # The controller-manager's first visible act: a `default` ServiceAccount.
            url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
            self._wait(lambda: _http_ok(url, ctx), deadline, "controller-manager (default SA)")

    def _wait(self, probe: Callable[[], bool], deadline: float, what: str) -> None:
        delay = 0.05
        while True:
            self._check_alive()
            if probe():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name} ---\n{c.tail()}" for c in self._children)
                raise ControlPlaneError(f"timed out waiting for {what}\n{logs}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def remove_stale_workdirs() -> None:
    """Remove working dirs left by runs that were SIGKILLed (their owner pid is gone)."""
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((path / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------- CLI


def _state_dir() -> Path:
    return cache_root() / "run"


def _exports(state: dict[str, Any]) -> str:
    return (
        f"export KUBECONFIG={state['kubeconfig']}\n"
        f"export PATH={state['bin_dir']}:$PATH\n"
        f"# kube-apiserver {state['server']}\n"
    )


def _read_state() -> dict[str, Any] | None:
    path = _state_dir() / "state.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _cmd_up() -> int:
    state = _read_state()
    if state and any(_group_alive(pid) for pid in state["pids"].values()):
        print(_exports(state), end="")
        print("# already running; `controlplane.sh down` stops it", file=sys.stderr)
        return 0
    run_dir = _state_dir()
    shutil.rmtree(run_dir, ignore_errors=True)
    plane = ControlPlane(workdir=run_dir / "work", die_with_parent=False, keep_workdir=True)
    plane.start()
    with _live_lock:
        _live.discard(plane)  # outlive this command: `down` stops it
    state = {
        "server": plane.server,
        "kubeconfig": str(plane.kubeconfig),
        "bin_dir": str(plane.bin_dir),
        "workdir": str(plane.workdir),
        "pids": plane.pids,
        "startup_seconds": round(plane.startup_seconds, 2),
    }
    (run_dir / "state.json").write_text(json.dumps(state, indent=2))
    print(_exports(state), end="")
    print(f"# started in {plane.startup_seconds:.1f} s", file=sys.stderr)
    return 0


def _cmd_down() -> int:
    state = _read_state()
    if state is None:
        print("# no control plane recorded as running", file=sys.stderr)
        return 0
    # Reverse start order: controller-manager, apiserver, etcd.
    for pid in reversed(list(state["pids"].values())):
        kill_process_group(int(pid))
    shutil.rmtree(_state_dir(), ignore_errors=True)
    print("# stopped", file=sys.stderr)
    return 0


def _cmd_env() -> int:
    state = _read_state()
    if state is None:
        print("# no control plane running; `controlplane.sh up` starts one", file=sys.stderr)
        return 1
    print(_exports(state), end="")
    return 0


def _iter_rss(state: dict[str, Any]) -> Iterator[tuple[str, int]]:
    for name, pid in state["pids"].items():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    yield name, int(line.split()[1]) * 1024


def _cmd_status() -> int:
    state = _read_state()
    if state is None:
        print("not running")
        return 1
    total = 0
    for name, rss in _iter_rss(state):
        total += rss
        print(f"{name:<24} pid {state['pids'][name]:<8} rss {rss / 2**20:7.1f} MiB")
    print(f"{'total':<37} rss {total / 2**20:7.1f} MiB")
    print(f"server {state['server']}, started in {state['startup_seconds']} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "up", "down", "env", "status"])
    args = parser.parse_args(argv)
    if args.command == "build":
        print(ensure_binaries())
        return 0
    commands: dict[str, Callable[[], int]] = {
        "up": _cmd_up,
        "down": _cmd_down,
        "env": _cmd_env,
        "status": _cmd_status,
    }
    return commands[args.command]()


@contextlib.contextmanager
def scratch_namespace(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], test_name: str, prefix: str
) -> Iterator[str]:
    """A namespace named after the test (``prefix``, the name as a DNS label, a random suffix),
    deleted without waiting when the test ends."""
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")
    suffix = secrets.token_hex(3)
    name = f"{prefix}-{base[: 63 - len(suffix) - len(prefix) - 2].rstrip('-')}-{suffix}"
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


if __name__ == "__main__":
    raise SystemExit(main())
