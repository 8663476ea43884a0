#!/usr/bin/env bash
# The whole test suite from a fresh checkout: installs what it needs, then lint, types, tests.
#
#   ./tests/run.sh            # everything (what CI runs); as root, the tests marked node
#                             # run in a second pytest process beside the others
#   ./tests/run.sh -k health  # extra arguments go to pytest
#   ./tests/run.sh --fast     # lint, types and the operator's fast tier (tests/controller)
#   ./tests/run.sh --no-go    # lint, types and every test that needs no Go-built binary
#
# Installs (once): redis-server and wrk from Debian packages (root, or tells you the command),
# a virtualenv with the project and its dev extras, the local Kubernetes control plane and
# the test tools built from Go modules into .cache/ (15-40 min cold on 2 cores, seconds
# warm), and, as root, the test node: containerd, runc, the CNI plugins and the image tools
# from Debian packages, kubelet/scheduler/kube-proxy/CoreDNS, prometheus-operator and KEDA
# from Go modules, and the images it runs (tests/node/README.md).
#
# --no-go builds nothing from Go: no control plane, no node, no promtool/prometheus,
# actionlint, terraform-docs or tofu; pytest runs with -m "not k8s and not node and not
# gotools" (a later -m of yours wins), and a test that asks for a Go-built binary anyway
# fails and says which marker it lacks. --fast is --no-go on tests/controller only: the
# reconciler, read side and steps against the in-memory API, under a minute.
#
# Environment:
#   REDISQUEUE_DEPS=lock      the versions of operator/constraints.txt, in .venv (default)
#   REDISQUEUE_DEPS=newest    the newest versions every range of pyproject.toml allows, in
#                             .venv-newest
#   REDISQUEUE_DEPS=floor     the declared floors of the direct dependencies (their own
#                             dependencies as new as those allow), in .venv-floor
#   REDISQUEUE_NO_SYSTEM_PACKAGES=1
#                             never run apt-get, as root too: a missing redis-server or
#                             python3-venv stops the run with the command to install it, and
#                             without the node's packages the tests marked `node` are skipped
#                             and say which packages are missing.
#   REDISQUEUE_SERIAL=1       one pytest process for everything, the node's tests included
#                             (the default when arguments for pytest are given)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
step() { printf '\n==> %s\n' "$*"; }

fast=0
node_tests=0
tier=()
case "${1:-}" in
  --fast) fast=1 tier=(tests/controller) && shift ;;
  --no-go) fast=1 && shift ;;
esac
deps="${REDISQUEUE_DEPS:-lock}"
case "$deps" in
  lock) venv=.venv ;;
  newest | floor) venv=".venv-$deps" ;;
  *)
    echo "REDISQUEUE_DEPS=$deps: accepted values are lock, newest and floor" >&2
    exit 2
    ;;
esac
case "${REDISQUEUE_NO_SYSTEM_PACKAGES:-}" in
  "" | 0) system_packages=1 ;;
  1) system_packages=0 ;;
  *)
    echo "REDISQUEUE_NO_SYSTEM_PACKAGES=${REDISQUEUE_NO_SYSTEM_PACKAGES}: accepted values are 1 and 0" >&2
    exit 2
    ;;
esac
# apt-get only as root, and not when told to leave the system packages alone.
may_install() { [ "$system_packages" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }

step "redis-server (Debian packages)"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if may_install; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "redis-server is missing: run  sudo apt-get install -y redis-server redis-tools" >&2
    exit 1
  fi
fi
redis-server --version

step "wrk (Debian package: the HTTP load generator of bench/bench.py)"
if ! command -v wrk >/dev/null; then
  if may_install; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: bench/bench.py skips its health benchmark and says so (sudo apt-get install -y wrk)"
  fi
fi
command -v wrk || true

step "Python environment ($venv, REDISQUEUE_DEPS=$deps)"
python="${PYTHON:-python3}"
new_venv() {
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv separately from python3.
    rm -rf "$venv"
    if may_install; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv "$venv"
    else
      echo "python3 -m venv failed: run  sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
}
[ -x "$venv/bin/python" ] || new_venv
# One constraints file per set: the committed lock, or a resolution made now from
# pyproject.toml's ranges by the uv that the lock pins (kept in .cache/uv/<version>/).
constraints="operator/constraints.txt"
if [ "$deps" != lock ]; then
  uv_version="$(sed -n 's/^uv==\([^ ;]*\).*/\1/p' operator/constraints.txt)"
  uv=".cache/uv/$uv_version/bin/uv"
  if [ ! -x "$uv" ]; then
    "$venv/bin/python" -m pip install --quiet --target ".cache/uv/$uv_version" "uv==$uv_version"
  fi
  constraints="$(mktemp)"
  trap 'rm -f "$constraints"' EXIT
  resolution=(--resolution highest)
  [ "$deps" = floor ] && resolution=(--resolution lowest-direct)
  "$uv" pip compile --quiet --no-header --python-version 3.11 \
    --extra operator --extra dev "${resolution[@]}" -o "$constraints" pyproject.toml
fi
# A venv holds exactly one resolution: when it changes (a new lock, a new release within a
# range, an edit of pyproject.toml), the venv is made anew rather than changed in place.
wanted="$(cat "$constraints" pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$venv/.redisqueue-constraints" 2>/dev/null)" != "$wanted" ]; then
  new_venv
  "$venv/bin/python" -m pip install --quiet -c "$constraints" -e ".[operator,dev]"
  echo "$wanted" > "$venv/.redisqueue-constraints"
fi
"$venv/bin/python" - <<'PY'
import importlib.metadata as metadata
from packaging.requirements import Requirement

print("direct dependencies (pyproject.toml range -> installed):")
for line in metadata.requires("redisqueue-operator") or []:
    req = Requirement(line)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", "operator", "dev")):
        continue
    print(f"  {req.name:20} {str(req.specifier) or '(any)':14} {metadata.version(req.name)}")
PY

if [ "$fast" = 1 ]; then
  # Nothing below builds from Go; a test that asks for such a binary fails and says why.
  export REDISQUEUE_NO_GO_BUILDS=1
  step "Go-built tools: skipped (--fast, --no-go)"
else
  step "Kubernetes control plane (kube-apiserver, etcd, controller-manager, kubectl, helm)"
  started=$SECONDS
  bin_dir="$(tests/controlplane/build.sh)"
  echo "binaries in $bin_dir ($((SECONDS - started)) s)"
  export REDISQUEUE_CONTROLPLANE_BIN="$bin_dir"

  step "Prometheus tools (promtool, prometheus)"
  started=$SECONDS
  prometheus_bin="$(tests/tools/prometheus/build.sh)"
  echo "binaries in $prometheus_bin ($((SECONDS - started)) s)"
  export REDISQUEUE_PROMETHEUS_BIN="$prometheus_bin"

  step "Go tools (actionlint, terraform-docs)"
  for tool in actionlint terraform-docs; do
    started=$SECONDS
    tool_bin="$(tests/tools/$tool/build.sh)"
    echo "$tool in $tool_bin ($((SECONDS - started)) s)"
    var="REDISQUEUE_$(echo "$tool" | tr 'a-z-' 'A-Z_')_BIN"
    export "$var=$tool_bin"
  done

  step "Test node (kubelet, scheduler, kube-proxy, CoreDNS, containerd, images built here)"
  # Needs root: containerd, iptables (the egress guard), mounts, and the Debian packages of
  # tests/node/packages.txt. Without them the tests marked `node` are skipped and say why.
  if [ "$(id -u)" = 0 ]; then
    missing=()
    while read -r pkg; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done < <(grep -v '^#' tests/node/packages.txt)
    if [ "${#missing[@]}" -gt 0 ] && may_install; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
      missing=()
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
      echo "REDISQUEUE_NO_SYSTEM_PACKAGES=1 and ${missing[*]} missing: the tests marked 'node' will be skipped"
    else
      started=$SECONDS
      node_tests=1
      node_bin="$(tests/node/build.sh)"
      tests/node/images.sh "$node_bin/pause" >/dev/null
      echo "node binaries in $node_bin, images in .cache/images ($((SECONDS - started)) s)"
      # prometheus-operator and KEDA from their Go modules, and their images
      # (tests/node/ecosystem/).
      for component in prometheus-operator keda; do
        started=$SECONDS
        tests/node/ecosystem/images.sh "$component" >/dev/null
        echo "$component binaries and images in .cache ($((SECONDS - started)) s)"
      done
    fi
  else
    echo "not root: the tests marked 'node' will be skipped"
  fi
fi

step "ruff (lint and format)"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .

step "mypy (strict)"
"$venv/bin/mypy"

step "import contracts (lint-imports)"
"$venv/bin/lint-imports" --no-cache

step "pytest"
pytest=("$venv/bin/python" -m pytest --durations=20)
status=0
if [ "$node_tests" = 1 ] && [ "$#" = 0 ] && [ "${REDISQUEUE_SERIAL:-0}" != 1 ]; then
  # The node's tests mostly wait on the cluster (rollouts, grace periods, an alert's `for:`,
  # KEDA's cooldown) while the rest mostly wait on control planes starting: run as two
  # pytest processes side by side, the node's output shown when both are done. They share
  # nothing but the host: ports are free ones, work dirs their own.
  node_log=".cache/pytest-node.log"
  "${pytest[@]}" -p no:cacheprovider -m node > "$node_log" 2>&1 &
  node_pid=$!
  # A background job ignores the terminal's Ctrl-C, and SIGTERM skips pytest's teardown: on
  # either, stop the node's half, then take down the node it left, from its state file.
  trap 'kill -TERM "$node_pid" 2>/dev/null; wait "$node_pid"
        "$venv/bin/python" tests/harness/kube_node.py down; exit 130' INT TERM
  set +e
  "${pytest[@]}" -m "not node"
  rest=$?
  printf '\n==> pytest, the tests marked node (run beside the others; log in %s)\n' "$node_log"
  wait "$node_pid"
  node=$?
  set -e
  cat "$node_log"
  # Nothing narrows either half, so each must have run tests: its exit 5 is a failure too.
  status=$rest
  [ "$status" = 0 ] && status=$node
else
  marks=()
  [ "$fast" = 1 ] && marks=(-m "not k8s and not node and not gotools")
  set +e
  "${pytest[@]}" "${marks[@]}" "${tier[@]}" "$@"
  status=$?
  set -e
fi
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
