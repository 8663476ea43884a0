"""A real single-node Kubernetes cluster for the tests: the control plane plus a node.

On top of :class:`kube_controlplane.ControlPlane` (run with the Node authorizer,
NodeRestriction and every controller), this starts containerd (Debian's package, with runc
and the Debian CNI plugins), kube-scheduler, kube-proxy, the kubelet and CoreDNS (built by
``tests/node/build.sh``), loads the images ``tests/node/images.sh`` built on this machine,
and creates a ``local`` StorageClass with static PersistentVolumes. Nothing is pulled.

Host safety (see ``tests/node/README.md``): pods get 198.18.0.0/16 and Services
198.19.0.0/16 on a bridge of our own; an egress guard drops every packet from the pod range
that would leave the machine, and host packets to 198.18.0.0/15 that are not for the bridge,
loopback or a kube-proxy DNAT; one node per machine at a time (a lock). Everything the node
changes on the host is recorded in a state file first and undone by :meth:`Node.stop`: the
processes by their recorded PIDs, containers and shims, mounts, network namespaces, cgroups,
iptables chains, the bridge, sysctls and the paths the tools create outside the work dir.
A run that was SIGKILLed is cleaned up by the next start (or ``kube_node.py down``).

Command line::

    python tests/harness/kube_node.py up      # start in the background, print exports
    python tests/harness/kube_node.py down    # stop it (or clean up after a killed run)
    python tests/harness/kube_node.py up --fresh-host   # first remove what earlier nodes left
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

# Run as a script (``python tests/harness/kube_node.py``), the folder that holds the
# harness package goes on the import path, as the tests' conftest puts it there for pytest.
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.go_tools import refuse_go_builds
from harness.kube_controlplane import (
    REPO_ROOT,
    CommandError,
    ControlPlane,
    _die_with_parent,
    create_ca,
    ensure_binaries,
    issue_certificate,
    kill_process_group,
    kubeconfig_for,
    log_tail,
)

NODE_DIR = REPO_ROOT / "tests" / "node"
BUILD_SCRIPT = NODE_DIR / "build.sh"
IMAGES_SCRIPT = NODE_DIR / "images.sh"
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "coredns", "pause")

NODE_NAME = "redisqueue-node"
BRIDGE = "rqnode0"
#: The bridge's own MAC address, set when it is created. A bridge left to choose takes the
#: lowest MAC of its ports and changes it when that pod's veth goes; pods keep the old one in
#: their ARP cache until it is found stale (up to about 50 s), and meanwhile every packet to
#: the gateway (CoreDNS, the API server) is lost: lookups fail with EAI_AGAIN. An address set
#: by hand is never changed by the kernel. Locally administered, so no vendor's.
BRIDGE_MAC = "02:72:71:00:00:01"
POD_CIDR = "198.18.0.0/16"
GATEWAY = "198.18.0.1"  # the bridge's address: API server, kubelet and CoreDNS listen here
SERVICE_CIDR = "198.19.0.0/16"
GUARDED = "198.18.0.0/15"  # the only non-loopback addresses cluster traffic may use
CLUSTER_DOMAIN = "cluster.local"
STORAGE_CLASS = "local"
#: Static local volumes, reclaimed never (Retain): every provisioned Redis of a session uses
#: one for good, so there must be more than the node tests provision (more than 8 today).
PERSISTENT_VOLUMES = 32

#: The one node per machine: its lock and the state file that records what to undo.
RUN_DIR = Path("/run/redisqueue-node")
LOCK_FILE = RUN_DIR / "lock"
STATE_FILE = RUN_DIR / "state.json"
#: Work dirs are made with this prefix in the temporary folder (only under the node lock).
WORKDIR_PREFIX = "redisqueue-node-"
#: Below this much free space on the work dir's file system the kubelet evicts every pod
#: (DiskPressure) and taints the node: absolute, where its default is a share of the disk,
#: which on a large disk that is nearly full is gigabytes.
EVICTION_FREE = "512Mi"
#: What a start asks to find free there: images unpacked in containerd, container layers,
#: logs, etcd (a whole suite's node grows to about 0.8 GiB), above the eviction threshold.
MIN_FREE_BYTES = 2 << 30
GUARD_CHAIN = "RQNODE-GUARD"

#: sysctls the kubelet, kube-proxy or the bridge plugin change; restored on teardown.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/ipv4/conf/all/route_localnet",
    "net/netfilter/nf_conntrack_max",
)
#: Paths the node's tools create outside their work dir, as deep as they make them. A start
#: records the highest of each one's missing ancestors (``/usr/libexec/kubernetes`` on a
#: host without it, ``/usr/libexec`` itself on one without that), and teardown removes
#: exactly those: what existed before stays, what the node added goes.
HOST_PATHS = (
    "/run/containerd/io.containerd.runtime.v2.task",  # the shims' sockets and bundles
    "/run/containerd/runc",
    "/var/lib/cni/results",  # libcni's result cache (containerd's CRI has no option for it)
    "/var/lib/kubelet/device-plugins",
    "/var/lib/kubelet/plugins_registry",
    "/var/lib/kubelet/pod-resources",
    "/usr/libexec/kubernetes/kubelet-plugins/volume/exec",  # flex volumes
    "/etc/cni/net.d",
    "/var/lib/containers/cache",  # buildah and skopeo (images.sh)
    "/var/run/netns",
    "/run/netns",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/kubernetes/manifests",
    # buildah's network backends, when images.sh builds the operator image (which removes
    # them again); listed so that a leftover shows in the host snapshot.
    "/etc/containers/networks",
    "/run/containers/networks",
)
#: Where each of those trees begins: ``Node(fresh_host=True)`` removes these (when they hold
#: nothing but directories and the files NODE_FILES names) to give a test the host as a
#: machine that never ran a node has it.
NODE_TREES = (
    "/run/containerd",
    "/var/lib/cni",
    "/var/lib/kubelet",
    "/usr/libexec/kubernetes",
    "/etc/cni",
    "/var/lib/containers",
    "/run/netns",
    "/var/log/pods",
    "/var/log/containers",
    "/etc/kubernetes",
    "/etc/containers/networks",
    "/run/containers",
)
#: Files those tools leave in them: lock files, libcni's cached results for our network,
#: the image tools' blob-info cache.
NODE_FILES = (
    "cni.lock",
    "netavark.lock",
    "redisqueue-*",
    "cni-loopback-*",
    "blob-info-cache-v1.boltdb",
)
#: iptables chains the kubelet creates (kube-proxy's go with `kube-proxy --cleanup`).
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAMES = ("kubepods", "kubepods.slice", "k8s.io", "redisqueue-node")


class NodeError(RuntimeError):
    """The node could not be built, started or cleaned up."""


# --------------------------------------------------------------------------- building


def _run_script(cmd: list[str], stream_output: bool) -> list[str]:
    proc = subprocess.run(
        ["bash", *cmd],
        stdout=subprocess.PIPE,
        stderr=None if stream_output else subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(f"{cmd[0]} failed with exit code {proc.returncode}\n{proc.stderr or ''}")
    return proc.stdout.strip().splitlines()


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    tarball: Path


def ensure_node_artifacts(*, stream_output: bool = True) -> tuple[Path, dict[str, Image]]:
    """Build (or find cached) node binaries and images; return the bin dir and images."""
    refuse_go_builds("the test node", "node", NodeError)
    bin_dir = Path(_run_script([str(BUILD_SCRIPT)], stream_output)[-1])
    images: dict[str, Image] = {}
    for line in _run_script([str(IMAGES_SCRIPT), str(bin_dir / "pause")], stream_output):
        name, ref, tarball = line.split()
        images[name] = Image(name, ref, Path(tarball))
    return bin_dir, images


# --------------------------------------------------------------------------- host state


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = Path("/proc/sys", name).read_text().strip()
    return values


def write_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        with contextlib.suppress(OSError):
            path = Path("/proc/sys", name)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def iptables_chains() -> dict[str, set[str]]:
    """``{"v4 filter": {chain, ...}, ...}`` for both address families and the main tables."""
    chains: dict[str, set[str]] = {}
    for family, tool in (("v4", "iptables"), ("v6", "ip6tables")):
        for table in ("filter", "nat", "mangle", "raw"):
            out = _sh(tool, "-w", "-t", table, "-S", check=False).stdout
            chains[f"{family} {table}"] = {
                line.split()[1] for line in out.splitlines() if line.startswith("-N ")
            }
    return chains


def iptables_rules() -> list[str]:
    """Every rule of both families, counters stripped: the teardown check compares these."""
    rules = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            out = _sh(tool, "-w", "-t", table, "-S", check=False).stdout
            rules += [f"{tool} {table} {line}" for line in out.splitlines()]
    return rules


def host_snapshot() -> dict[str, Any]:
    """What a node could leave behind: compared before start and after stop by a test."""
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    links = sorted(
        line.split(":")[1].strip().split("@")[0]
        for line in _sh("ip", "-o", "link", "show").stdout.splitlines()
    )
    cgroups = sorted(
        str(p) for name in CGROUP_NAMES for p in CGROUP_ROOT.glob(f"*/{name}") if p.is_dir()
    )
    return {
        "iptables": iptables_rules(),
        "links": links,
        "mounts": mounts,
        "cgroups": cgroups,
        "sysctls": read_sysctls(),
        "paths": sorted(p for p in _host_path_chain() if os.path.lexists(p)),
        "workdirs": node_workdirs(),
    }


def node_workdirs() -> list[str]:
    """The nodes' work dirs in the temporary folder (each a few hundred MiB of images)."""
    return sorted(str(p) for p in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"))


def free_space_error(path: Path, needed: int = MIN_FREE_BYTES) -> str | None:
    """Why a node cannot start with its work dir in ``path``, or None when it has room."""
    stat = os.statvfs(path)
    available = stat.f_bavail * stat.f_frsize
    if available >= needed:
        return None
    return (
        f"the test node needs {needed / 2**30:.1f} GiB free on the file system of {path}"
        f" (its work dir: images, containers, logs, etcd; below {EVICTION_FREE} the kubelet"
        f" evicts every pod), and {available / 2**30:.2f} GiB are available. Free space there"
        " (old clones' .cache folders, earlier nodes' work dirs) or point TMPDIR at a larger"
        " file system."
    )


def _host_path_chain() -> set[str]:
    """The host paths and every ancestor of theirs below ``/``."""
    chain = set()
    for path in map(Path, HOST_PATHS):
        chain |= {str(p) for p in (path, *path.parents) if p != Path("/")}
    return chain


def missing_tops() -> list[str]:
    """For each host path that does not exist, its highest missing ancestor (or itself)."""
    tops = set()
    for path in map(Path, HOST_PATHS):
        if os.path.lexists(path):
            continue
        top = path
        for parent in path.parents:
            if os.path.lexists(parent):
                break
            top = parent
        tops.add(str(top))
    return sorted(tops)


def remove_node_trees() -> list[str]:
    """Remove what earlier nodes left in NODE_TREES; the trees left in place, and why.

    Only with the node lock held and no node running. A tree that holds anything but
    directories and NODE_FILES is someone else's (a real kubelet, a CNI installed on the
    host): it stays.
    """
    kept = []
    for tree in map(Path, NODE_TREES):
        if not os.path.lexists(tree):
            continue
        foreign = [
            str(p)
            for p in (tree, *tree.rglob("*"))
            if p.is_symlink()
            or not (p.is_dir() or (p.is_file() and any(fnmatch(p.name, n) for n in NODE_FILES)))
        ]
        if foreign or _sh("findmnt", "-rn", "-R", str(tree), check=False).stdout.strip():
            kept.append(f"{tree} (holds {', '.join(foreign[:3]) or 'mounts'})")
            continue
        shutil.rmtree(tree)
    return kept


def _guard_rules() -> list[tuple[str, list[str]]]:
    """(table, rule) pairs of the egress guard, in order."""
    return [
        # Pod traffic routed anywhere but back into the bridge (the outside world, or a
        # ClusterIP kube-proxy has not programmed yet) is dropped. mangle runs before the
        # filter chains kube-proxy and the kubelet insert themselves into.
        ("mangle", ["-A", GUARD_CHAIN, "-s", GUARDED, "!", "-o", BRIDGE, "-j", "DROP"]),
        ("mangle", ["-A", GUARD_CHAIN, "-d", GUARDED, "!", "-i", BRIDGE, "-j", "DROP"]),
        # The host's own packets to the cluster ranges: only to the bridge, loopback, or
        # rewritten by kube-proxy (the route seen here is the one before its DNAT).
        ("filter", ["-A", GUARD_CHAIN, "-d", GUARDED, "-o", "lo", "-j", "RETURN"]),
        ("filter", ["-A", GUARD_CHAIN, "-d", GUARDED, "-o", BRIDGE, "-j", "RETURN"]),
        (
            "filter",
            [
                "-A",
                GUARD_CHAIN,
                "-d",
                GUARDED,
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "RETURN",
            ],
        ),
        ("filter", ["-A", GUARD_CHAIN, "-d", GUARDED, "-j", "DROP"]),
    ]


def install_egress_guard() -> None:
    for table, hook in (("mangle", "FORWARD"), ("filter", "OUTPUT")):
        _sh("iptables", "-w", "-t", table, "-N", GUARD_CHAIN)
        _sh("iptables", "-w", "-t", table, "-I", hook, "1", "-j", GUARD_CHAIN)
    for table, rule in _guard_rules():
        _sh("iptables", "-w", "-t", table, *rule)


def remove_egress_guard() -> None:
    for table, hook in (("mangle", "FORWARD"), ("filter", "OUTPUT")):
        while (
            _sh(
                "iptables", "-w", "-t", table, "-D", hook, "-j", GUARD_CHAIN, check=False
            ).returncode
            == 0
        ):
            pass
        _sh("iptables", "-w", "-t", table, "-F", GUARD_CHAIN, check=False)
        _sh("iptables", "-w", "-t", table, "-X", GUARD_CHAIN, check=False)


def _remove_chains(names: Sequence[str], existed: dict[str, set[str]]) -> None:
    """Delete the chains ``names`` that did not exist before, and every jump to them."""
    for family, tool in (("v4", "iptables"), ("v6", "ip6tables")):
        for table in ("filter", "nat", "mangle", "raw"):
            before = existed.get(f"{family} {table}", set())
            out = _sh(tool, "-w", "-t", table, "-S", check=False).stdout
            targets = {n for n in names if n not in before and f"-N {n}" in out.splitlines()}
            if not targets:
                continue
            for line in out.splitlines():
                parts = line.split()
                if (
                    parts[:1] == ["-A"]
                    and "-j" in parts
                    and parts[parts.index("-j") + 1] in targets
                ):
                    _sh(tool, "-w", "-t", table, "-D", *parts[1:], check=False)
            for chain in targets:
                _sh(tool, "-w", "-t", table, "-F", chain, check=False)
            for chain in targets:
                _sh(tool, "-w", "-t", table, "-X", chain, check=False)


def unmount_under(prefixes: Sequence[str]) -> None:
    """Unmount every mount point below the prefixes, deepest first."""
    for _ in range(3):
        points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        ours = [
            p for p in points if any(p == x or p.startswith(x.rstrip("/") + "/") for x in prefixes)
        ]
        if not ours:
            return
        for point in sorted(set(ours), key=lambda p: p.count("/"), reverse=True):
            if _sh("umount", point, check=False).returncode != 0:
                _sh("umount", "-l", point, check=False)


def remove_cgroups() -> None:
    """rmdir the node's cgroups in every v1 hierarchy (and v2), deepest first."""
    for name in CGROUP_NAMES:
        for top in CGROUP_ROOT.glob(f"*/{name}"):
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, top]:
                with contextlib.suppress(OSError):
                    d.rmdir()


def shim_pids(socket: str) -> list[int]:
    """containerd shims serving our socket (they outlive containerd)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = proc.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in args:
            pids.append(int(proc.name))
    return pids


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup(state: dict[str, Any]) -> None:
    """Undo everything ``state`` records; safe to repeat, safe after a SIGKILL."""
    workdir = Path(state["workdir"])
    socket = state.get("containerd_socket", "")
    ctr = state.get("ctr", "ctr")
    # 1. The kubelet first, so it restarts nothing; then every container, then the rest.
    pids: dict[str, int] = state.get("pids", {})
    if "kubelet" in pids:
        kill_process_group(pids["kubelet"], timeout=5)
    if socket and "containerd" in pids and _pid_alive(pids["containerd"]):
        out = subprocess.run(
            [ctr, "-a", socket, "-n", "k8s.io", "tasks", "ls", "-q"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout
        for task in out.split():
            subprocess.run(
                [ctr, "-a", socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", task],
                capture_output=True,
                check=False,
                timeout=30,
            )
        time.sleep(0.5 if out.split() else 0)
    for name in ("coredns", "kube-proxy", "kube-scheduler", "containerd"):
        if name in pids:
            kill_process_group(pids[name], timeout=5)
    if socket:
        for pid in shim_pids(socket):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # 2. kube-proxy's own rule clean-up, then the kubelet's chains.
    if state.get("kube_proxy"):
        subprocess.run(
            [state["kube_proxy"], "--cleanup", "--v=0"],
            capture_output=True,
            check=False,
            timeout=60,
        )
    chains_before = {k: set(v) for k, v in state.get("chains_before", {}).items()}
    _remove_chains(KUBELET_CHAINS, chains_before)
    # The pods' veths: deleting our end removes the pair at once, instead of whenever the
    # kernel frees the network namespace after its unmount.
    veths = _sh("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout
    for line in veths.splitlines():
        _sh("ip", "link", "delete", line.split(":")[1].strip().split("@")[0], check=False)
    # 3. Mounts (kubelet volumes, containerd snapshots, network namespaces), cgroups.
    unmount_under(
        [str(workdir), "/run/containerd", "/var/run/netns", "/run/netns", "/var/lib/kubelet"]
    )
    remove_cgroups()
    # 4. The bridge, sysctls, stray paths.
    _sh("ip", "link", "delete", BRIDGE, check=False)
    write_sysctls(state.get("sysctls", {}))
    # The guard goes last, once nothing is left to forward and ip_forward is as it was.
    remove_egress_guard()
    # 5. The control plane (by its recorded process groups), before the paths: a running
    # controller-manager re-creates a flex-volume dir the moment it is removed.
    for pid in reversed(list(state.get("control_plane_pids", {}).values())):
        kill_process_group(int(pid), timeout=5)
    # 6. The paths that did not exist before the start, from their highest missing ancestor.
    for path in sorted(state.get("paths_missing", []), reverse=True):
        if os.path.lexists(path):
            unmount_under([path])
            shutil.rmtree(path, ignore_errors=True)
    if not state.get("keep_workdir"):
        unmount_under([str(workdir)])
        shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        STATE_FILE.unlink()


def recover_stale() -> None:
    """Clean up after a node whose owner was killed (its state file is still there)."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return
    owner = int(state.get("owner", 0))
    if owner and owner != os.getpid() and _pid_alive(owner):
        raise NodeError(f"a node owned by pid {owner} is running (see {STATE_FILE})")
    print(
        f"kube_node: cleaning up after a node left by pid {owner}, its work dir"
        f" {state.get('workdir')} included",
        file=sys.stderr,
    )
    # A node kept for `kube_node.py up` keeps its work dir only while it runs: once another
    # start takes it down, nothing would ever remove the images it holds.
    cleanup({**state, "keep_workdir": False})


# --------------------------------------------------------------------------- the node


@dataclass
class Node:
    """The control plane plus one node; ``start()``/``stop()`` or a context manager."""

    die_with_parent: bool = True
    keep_workdir: bool = False
    #: Before recording the host, remove what earlier nodes left outside their work dirs
    #: (NODE_TREES) and their empty cgroups, so the record is a host that never ran a node:
    #: the teardown test's starting point. Done with the lock held, after any killed run's
    #: node is cleaned up.
    fresh_host: bool = False
    lock_timeout: float = 600.0
    startup_timeout: float = 180.0
    #: A start refuses, saying why, with less than this free for its work dir.
    min_free_bytes: int = MIN_FREE_BYTES

    plane: ControlPlane = field(init=False)
    workdir: Path = field(init=False, default=Path())
    bin_dir: Path = field(init=False, default=Path())
    images: dict[str, Image] = field(init=False, default_factory=dict)
    startup_seconds: float = field(init=False, default=0.0)
    timings: dict[str, float] = field(init=False, default_factory=dict)
    #: Host snapshots, taken once this node holds the lock and has cleaned up after any node
    #: whose owner was killed, so neither another run's node nor a killed run's leftovers are
    #: part of them: as the first start found the host, and as the latest start found it.
    host_before: dict[str, Any] = field(init=False, default_factory=dict)
    host_at_start: dict[str, Any] = field(init=False, default_factory=dict)
    #: With ``fresh_host``: the NODE_TREES that were left in place, and why.
    kept_trees: list[str] = field(init=False, default_factory=list)
    _state: dict[str, Any] = field(init=False, default_factory=dict)
    _lock_fd: int | None = field(init=False, default=None)
    _procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Node:
        if os.geteuid() != 0:
            raise NodeError("the test node needs root (containerd, iptables, mounts)")
        # A disk nearly full would start the node and then evict every pod it runs: say so now.
        no_room = free_space_error(Path(tempfile.gettempdir()), self.min_free_bytes)
        if no_room:
            raise NodeError(no_room)
        started = time.monotonic()
        cp_bin = ensure_binaries()
        self.bin_dir, self.images = ensure_node_artifacts()
        self.timings["build"] = time.monotonic() - started
        self._lock()
        try:
            recover_stale()
            if self.fresh_host:
                self.kept_trees = remove_node_trees()
                remove_cgroups()  # only empty ones go: no node runs while we hold the lock
            self.host_at_start = host_snapshot()
            if not self.host_before:
                self.host_before = self.host_at_start
            self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            self._state = {
                "owner": os.getpid(),
                "workdir": str(self.workdir),
                "keep_workdir": self.keep_workdir,
                "sysctls": read_sysctls(),
                # Removed on teardown: the highest missing ancestor of each host path.
                "paths_missing": missing_tops(),
                # What an earlier version of this file reads instead, should it clean up.
                "paths_before": sorted(p for p in _host_path_chain() if os.path.lexists(p)),
                "chains_before": {k: sorted(v) for k, v in iptables_chains().items()},
                "pids": {},
                "kube_proxy": str(self.bin_dir / "kube-proxy"),
                "ctr": shutil.which("ctr") or "ctr",
            }
            self._save()
            t0 = time.monotonic()
            self._start_all(cp_bin)
            self.startup_seconds = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if not self._state:
            self._unlock()
            return
        state, self._state = self._state, {}
        with contextlib.suppress(Exception):
            if getattr(self, "plane", None) is not None:
                state["control_plane_pids"] = self.plane.pids
        try:
            cleanup(state)
            if getattr(self, "plane", None) is not None:
                self.plane.stop()
        finally:
            for proc in self._procs.values():
                with contextlib.suppress(Exception):
                    proc.wait(timeout=1)
            self._procs.clear()
            self._unlock()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- clients

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        try:
            return self.plane.kubectl(*args, check=check, input=input, timeout=timeout)
        except CommandError as error:
            self._explain(error, args)
            raise

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        try:
            return self.plane.helm(*args, check=check, input=input, timeout=timeout)
        except CommandError as error:
            self._explain(error, args)
            raise

    def _explain(self, error: CommandError, args: Sequence[str]) -> None:
        """A failed wait for pods says why they are not ready: the failure alone does not."""
        if any(arg in ("wait", "rollout", "--wait") for arg in args):
            try:
                error.report = self.pod_report()
            except Exception as failure:  # the wait's own error matters more
                error.report = f"(no report: {failure!r})"

    def pod_report(self, log_lines: int = 8) -> str:
        """A node that is not Ready, under pressure or tainted; pods that are not ready and why;
        the latest Warning Events; the kubelet's and containerd's error lines.

        What a person would read with ``kubectl describe`` and ``kubectl logs`` when a wait
        times out, kept short: CI shows only the end of a failed run's output.
        """
        lines: list[str] = []
        nodes = self.plane.kubectl("get", "nodes", "-o", "json", check=False, timeout=30)
        for node in json.loads(nodes.stdout or "{}").get("items", []):
            # Ready should be True, every pressure condition False; taints keep pods away.
            wrong = [
                f"{c['type']}={c['status']} ({c.get('message', '')})"
                for c in node.get("status", {}).get("conditions", [])
                if (c["status"] == "True") != (c["type"] == "Ready")
            ]
            taints = [f"{t['key']}:{t['effect']}" for t in node.get("spec", {}).get("taints", [])]
            if wrong or taints:
                conditions = "; ".join(wrong) or "conditions as expected"
                lines.append(
                    f"node {node['metadata']['name']}: {conditions};"
                    f" taints {', '.join(taints) or 'none'}"
                )
        pods = self.plane.kubectl("get", "pods", "-A", "-o", "json", check=False, timeout=30)
        for pod in json.loads(pods.stdout or "{}").get("items", []):
            meta, status = pod["metadata"], pod.get("status", {})
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            if conditions.get("Ready", {}).get("status") == "True":
                continue
            where = f"{meta['namespace']}/{meta['name']}"
            lines.append(f"pod {where}: {status.get('phase')} on {status.get('podIP')}")
            for kind, condition in conditions.items():
                if condition.get("status") != "True":
                    reason = condition.get("reason", "")
                    lines.append(f"  {kind}=False {reason} {condition.get('message', '')}")
            for container in status.get("containerStatuses", []):
                state = container.get("state", {})
                last = container.get("lastState", {}).get("terminated", {})
                lines.append(
                    f"  container {container['name']}: restarts {container.get('restartCount')}"
                    f" state {json.dumps(state)[:300]}"
                    + (f" last exit {last.get('exitCode')} {last.get('reason')}" if last else "")
                )
                if "waiting" not in state or container.get("restartCount"):
                    logs = self.plane.kubectl(
                        "logs",
                        "-n",
                        meta["namespace"],
                        meta["name"],
                        "-c",
                        container["name"],
                        f"--tail={log_lines}",
                        *(["--previous"] if last else []),
                        check=False,
                        timeout=30,
                    )
                    for line in (logs.stdout or logs.stderr).splitlines()[-log_lines:]:
                        lines.append(f"    | {line[:300]}")
        events = self.plane.kubectl(
            "get",
            "events",
            "-A",
            "--field-selector=type=Warning",
            "-o",
            "json",
            check=False,
            timeout=30,
        )
        warnings = sorted(
            json.loads(events.stdout or "{}").get("items", []),
            key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "",
        )
        for event in warnings[-12:]:
            obj = event.get("involvedObject", {})
            lines.append(
                f"event {obj.get('kind')} {obj.get('namespace')}/{obj.get('name')}:"
                f" {event.get('reason')} x{event.get('count') or 1}"
                f" {(event.get('message') or '')[:300]}"
            )
        for name in ("kubelet", "containerd"):
            errors = [
                line
                for line in self.logs(name, 4000).splitlines()
                if line.startswith("E") or "level=error" in line
            ]
            lines.extend(f"{name}: {line[:300]}" for line in errors[-6:])
        return "\n".join(lines) or "every pod is ready"

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    def kill_container(self, container_id: str) -> None:
        """SIGKILL a container's process from the host: a real crash, not a graceful stop."""
        self._ctr("tasks", "kill", "-s", "SIGKILL", container_id)

    def import_images(self, images: Sequence[Image]) -> None:
        """Load more locally built images into the node's containerd (never pulled)."""
        for image in images:
            self._ctr("images", "import", "--no-unpack", str(image.tarball))
            self.images[image.name] = image

    def _ctr(self, *args: str) -> None:
        """``ctr`` against the node's containerd, in the namespace the kubelet uses."""
        _sh(self._state["ctr"], "-a", self._state["containerd_socket"], "-n", "k8s.io", *args)

    def logs(self, name: str, lines: int = 60) -> str:
        return log_tail(self.workdir / f"{name}.log", lines)

    # ---------------------------------------------------------------- internals

    def _lock(self) -> None:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                RUN_DIR.mkdir(parents=True, exist_ok=True)
                fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:
                continue  # the last holder removed the folder in between
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() > deadline:
                    raise NodeError(f"another test node holds {LOCK_FILE}") from None
                time.sleep(1)
                continue
            # A holder removes the file before it lets go (_unlock): a lock on a file that
            # is no longer the one at LOCK_FILE is worth nothing, the next run may already
            # hold the new one. Open the file anew and wait again.
            held = os.fstat(fd)
            try:
                current = os.stat(LOCK_FILE)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (
                held.st_dev,
                held.st_ino,
            ):
                self._lock_fd = fd
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            # Remove the file (and the folder, when nothing else is in it) while still
            # holding the lock, so that no run can take a lock on a file about to vanish.
            with contextlib.suppress(OSError):
                LOCK_FILE.unlink()
            with contextlib.suppress(OSError):
                RUN_DIR.rmdir()
            os.close(self._lock_fd)
            self._lock_fd = None

    def _save(self) -> None:
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2))
        tmp.replace(STATE_FILE)

    def _spawn(self, name: str, args: list[str], *, binary: str | None = None) -> None:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [binary or str(self.bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
            )
        self._procs[name] = proc
        self._state["pids"][name] = proc.pid
        self._save()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode}:\n{self.logs(name)}")

    def _wait(self, what: str, probe: Callable[[], bool], deadline: float) -> None:
        delay = 0.1
        while not probe():
            self._check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n} ---\n{self.logs(n, 25)}" for n in self._procs)
                raise NodeError(f"timed out waiting for {what}\n{logs}")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _mark(self, what: str, since: float) -> float:
        now = time.monotonic()
        self.timings[what] = now - since
        return now

    def _start_all(self, cp_bin: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        t = time.monotonic()
        # -- network first: the bridge (the API server listens on its address), the guard.
        _sh("ip", "link", "add", BRIDGE, "address", BRIDGE_MAC, "type", "bridge")
        _sh("ip", "addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
        _sh("ip", "link", "set", BRIDGE, "up")
        install_egress_guard()
        self._state["guard"] = True
        self._save()
        for name, value in (
            ("net/bridge/bridge-nf-call-iptables", "1"),
            ("net/ipv4/ip_forward", "1"),
        ):
            with contextlib.suppress(OSError):
                Path("/proc/sys", name).write_text(value + "\n")

        # -- control plane with the node's authorizer and every controller.
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir()
        self.plane = ControlPlane(
            bin_dir=cp_bin,
            workdir=self.workdir / "controlplane",
            die_with_parent=self.die_with_parent,
            address=GATEWAY,
            service_cluster_ip_range=SERVICE_CIDR,
            authorization_modes=("Node", "RBAC"),
            controllers=("*",),
        )
        # Certificates the API server needs are issued once its CA exists; so start it in
        # two steps: PKI first (done by start), kubelet client flags via extra args.
        kubelet_client = pki_dir / "apiserver-kubelet-client"
        # The aggregation layer (an extension API server such as KEDA's external metrics API
        # behind an APIService): the API server proxies to it as the front-proxy client,
        # with a CA of its own, and tells it the caller in the X-Remote-* headers.
        front_proxy_ca = pki_dir / "front-proxy-ca"
        front_proxy_client = pki_dir / "front-proxy-client"
        self.plane.extra_apiserver_args = (
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kubelet_client}.crt",
            f"--kubelet-client-key={kubelet_client}.key",
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={front_proxy_ca}.crt",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy_client}.crt",
            f"--proxy-client-key-file={front_proxy_client}.key",
            # To the extension server's pod address, not its ClusterIP: the API server runs
            # on the host, where a ClusterIP is only reachable once kube-proxy programmed it.
            "--enable-aggregator-routing=true",
        )
        cp_pki = self.workdir / "controlplane" / "pki"
        self.plane.extra_controller_manager_args = (
            f"--cluster-signing-cert-file={cp_pki / 'ca.crt'}",
            f"--cluster-signing-key-file={cp_pki / 'ca.key'}",
            "--allocate-node-cidrs=false",
            "--node-monitor-grace-period=40s",
        )

        def node_certificates(pki: Any) -> None:
            issue_certificate(
                pki.ca_cert,
                pki.ca_key,
                kubelet_client,
                "kube-apiserver-kubelet-client",
                organization="system:masters",
            )
            ca_crt, ca_key = create_ca(front_proxy_ca, "redisqueue-test-front-proxy-ca")
            issue_certificate(ca_crt, ca_key, front_proxy_client, "front-proxy-client")

        self.plane.on_pki = node_certificates
        self.plane.start()
        self._state["control_plane_pids"] = self.plane.pids
        self._save()
        t = self._mark("control_plane", t)
        pki = self.plane.pki
        server = self.plane.server

        def kubeconfig(name: str, cn: str, org: str | None = None) -> Path:
            crt, key = issue_certificate(
                pki.ca_cert, pki.ca_key, pki_dir / name, cn, organization=org
            )
            path = self.workdir / f"{name}.kubeconfig"
            path.write_text(kubeconfig_for(server, pki.ca_cert, crt, key, cn))
            path.chmod(0o600)
            return path

        # -- containerd
        cd = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True)
        socket = str(cd / "containerd.sock")
        self._state["containerd_socket"] = socket
        pause = self.images["pause"].ref
        (cd).mkdir()
        (cd / "config.toml").write_text(
            _containerd_config(cd, socket, pause, cni_conf, self.workdir / "cni" / "cache")
        )
        (cni_conf / "10-redisqueue.conflist").write_text(
            json.dumps(_cni_config(self.workdir / "cni" / "ipam"), indent=2)
        )
        containerd = shutil.which("containerd")
        if containerd is None:
            raise NodeError("containerd is missing: apt-get install -y containerd runc")
        self._spawn("containerd", ["--config", str(cd / "config.toml")], binary=containerd)
        self._wait("containerd socket", lambda: Path(socket).exists(), deadline)
        for image in self.images.values():
            if image.name == "python":
                continue
            self._ctr("images", "import", "--no-unpack", str(image.tarball))
        t = self._mark("containerd_and_images", t)

        # -- scheduler, kube-proxy, kubelet, CoreDNS
        sched_kc = kubeconfig("scheduler", "system:kube-scheduler")
        self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={sched_kc}",
                f"--authentication-kubeconfig={sched_kc}",
                f"--authorization-kubeconfig={sched_kc}",
                "--leader-elect=false",
                "--secure-port=0",
                "--bind-address=127.0.0.1",
                "--v=0",
            ],
        )
        proxy_kc = kubeconfig("kube-proxy", "system:kube-proxy")
        proxy_cfg = self.workdir / "kube-proxy.yaml"
        proxy_cfg.write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "clientConnection": {"kubeconfig": str(proxy_kc)},
                    "mode": "iptables",
                    "clusterCIDR": POD_CIDR,
                    "bindAddress": "127.0.0.1",
                    "healthzBindAddress": "",
                    "metricsBindAddress": "",
                    "nodePortAddresses": [f"{GATEWAY}/32"],
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "iptables": {"masqueradeAll": False, "localhostNodePorts": False},
                }
            )
        )
        self._spawn(
            "kube-proxy", [f"--config={proxy_cfg}", f"--hostname-override={NODE_NAME}", "--v=0"]
        )
        serving_crt, serving_key = issue_certificate(
            pki.ca_cert,
            pki.ca_key,
            pki_dir / "kubelet-serving",
            f"system:node:{NODE_NAME}",
            organization="system:nodes",
            server=True,
            dns_names=[NODE_NAME],
            ips=[GATEWAY],
        )
        kubelet_kc = kubeconfig("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        kubelet_root = self.workdir / "kubelet"
        kubelet_root.mkdir()
        kubelet_cfg = self.workdir / "kubelet.yaml"
        kubelet_cfg.write_text(
            json.dumps(_kubelet_config(pki.ca_cert, serving_crt, serving_key, socket, self.workdir))
        )
        self._spawn(
            "kubelet",
            [
                f"--config={kubelet_cfg}",
                f"--kubeconfig={kubelet_kc}",
                f"--root-dir={kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                "--v=0",
            ],
        )
        coredns_kc = kubeconfig("coredns", "redisqueue:coredns")
        self.kubectl("apply", "-f", "-", input=_COREDNS_RBAC)
        corefile = self.workdir / "Corefile"
        corefile.write_text(
            f".:53 {{\n  bind {GATEWAY}\n  errors\n"
            f"  kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{\n"
            f"    kubeconfig {coredns_kc} redisqueue-test\n    pods insecure\n"
            "    fallthrough in-addr.arpa\n    ttl 5\n  }\n  cache 5\n  loadbalance\n}\n"
        )
        self._spawn("coredns", [f"-conf={corefile}", "-dns.port=53"])

        def node_ready() -> bool:
            out = self.kubectl(
                "get",
                "node",
                NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            )
            return out.stdout.strip() == "True"

        self._wait("node Ready", node_ready, deadline)
        t = self._mark("node_ready", t)

        # -- storage: a no-provisioner class and static local volumes.
        self.kubectl("apply", "-f", "-", input=self._storage_manifest())
        self.timings["storage"] = time.monotonic() - t

    def _storage_manifest(self) -> str:
        docs: list[dict[str, Any]] = [
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            }
        ]
        for i in range(PERSISTENT_VOLUMES):
            path = self.workdir / "volumes" / f"pv{i}"
            path.mkdir(parents=True)
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": f"local-pv{i}"},
                    "spec": {
                        "capacity": {"storage": "2Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": STORAGE_CLASS,
                        "local": {"path": str(path)},
                        "nodeAffinity": {
                            "required": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "kubernetes.io/hostname",
                                                "operator": "In",
                                                "values": [NODE_NAME],
                                            }
                                        ]
                                    }
                                ]
                            }
                        },
                    },
                }
            )
        return "\n---\n".join(json.dumps(d) for d in docs)


_COREDNS_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "redisqueue:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "redisqueue:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "redisqueue:coredns"}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: "redisqueue:coredns"}
"""


def _containerd_config(root: Path, socket: str, pause: str, cni_conf: Path, cache: Path) -> str:
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # Root here lacks CAP_SYS_RESOURCE: runc could not lower oom_score_adj otherwise.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[plugins."io.containerd.runtime.v2.task"]
  platforms = ["linux/amd64"]
"""


def _cni_config(ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "redisqueue",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves the machine, so nothing to masquerade
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [
                        [{"subnet": POD_CIDR, "rangeStart": "198.18.1.2", "gateway": GATEWAY}]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }


def _kubelet_config(
    ca: Path, serving_crt: Path, serving_key: Path, socket: str, workdir: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": GATEWAY,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(serving_crt),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        # Pods never get the host's upstream resolver: only the cluster's CoreDNS.
        "resolvConf": "",
        "clusterDNS": [GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
        "staticPodPath": "",
        "volumePluginDir": str(workdir / "kubelet-plugins"),
        "podLogsDir": str(workdir / "pod-logs"),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "24h",
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": EVICTION_FREE,
            "imagefs.available": EVICTION_FREE,
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "registerNode": True,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": True,
        "localStorageCapacityIsolation": True,
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
    }


# --------------------------------------------------------------------------- CLI


def _cmd_up(fresh_host: bool) -> int:
    node = Node(die_with_parent=False, keep_workdir=True, fresh_host=fresh_host)
    node.start()
    node._unlock()
    print(f"export KUBECONFIG={node.kubeconfig}")
    print(f"export PATH={node.plane.bin_dir}:$PATH")
    print(
        f"# node up in {node.startup_seconds:.1f} s; `kube_node.py down` stops it", file=sys.stderr
    )
    os._exit(0)


def _cmd_down(lock_timeout: float = 60.0) -> int:
    # Under the node lock, as a start is: a node whose run is still alive holds it (and is
    # left alone), and the lock file of a killed run goes with the rest (_unlock).
    holder = Node(die_with_parent=False, lock_timeout=lock_timeout)
    try:
        holder._lock()
    except NodeError as exc:
        print(f"# {exc}: not taken down", file=sys.stderr)
        return 1
    try:
        try:
            state = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):
            print("# no node recorded", file=sys.stderr)
            return 0
        state["keep_workdir"] = False
        cleanup(state)
    finally:
        holder._unlock()
    print("# node stopped and cleaned up", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "up", "down"])
    parser.add_argument(
        "--fresh-host",
        action="store_true",
        help="up: first remove what earlier nodes left outside their work dirs",
    )
    args = parser.parse_args(argv)
    if args.command == "build":
        bin_dir, images = ensure_node_artifacts()
        print(bin_dir)
        for image in images.values():
            print(image.name, image.ref, image.tarball)
        return 0
    if args.command == "up":
        return _cmd_up(args.fresh_host)
    return _cmd_down()


if __name__ == "__main__":
    raise SystemExit(main())
