#!/usr/bin/env bash
# The whole test suite from a fresh checkout: installs what it needs, then lint, types, tests.
#
#   ./tests/run.sh            # everything (what CI runs)
#   ./tests/run.sh -k health  # extra arguments go to pytest
#
# Installs (once): redis-server from Debian packages (root, or tells you the command),
# a virtualenv in .venv with the project and its dev extras, the local Kubernetes
# control plane and the test tools built from Go modules into .cache/ (15-40 min cold on 2
# cores, seconds warm), and, as root, the test node: containerd, runc, the CNI plugins and
# the image tools from Debian packages, kubelet/scheduler/kube-proxy/CoreDNS, prometheus-operator
# and KEDA from Go modules, and the images it runs (tests/node/README.md).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
step() { printf '\n==> %s\n' "$*"; }

step "redis-server (Debian packages)"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "redis-server is missing: run  sudo apt-get install -y redis-server redis-tools" >&2
    exit 1
  fi
fi
redis-server --version

step "Python environment (.venv)"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv separately from python3.
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$python" -m venv .venv
    else
      echo "python3 -m venv failed: run  sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[operator,dev]"

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
# Needs root: containerd, iptables (the egress guard), mounts. Without it the tests marked
# `node` are skipped and say why.
if [ "$(id -u)" = 0 ]; then
  node_packages=(containerd runc containernetworking-plugins iptables mmdebstrap umoci skopeo buildah gcc libc6-dev)
  missing=()
  for pkg in "${node_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  started=$SECONDS
  node_bin="$(tests/node/build.sh)"
  tests/node/images.sh "$node_bin/pause" >/dev/null
  echo "node binaries in $node_bin, images in .cache/images ($((SECONDS - started)) s)"
  # prometheus-operator and KEDA from their Go modules, and their images (tests/node/ecosystem/).
  for component in prometheus-operator keda; do
    started=$SECONDS
    tests/node/ecosystem/images.sh "$component" >/dev/null
    echo "$component binaries and images in .cache ($((SECONDS - started)) s)"
  done
else
  echo "not root: the tests marked 'node' will be skipped"
fi

step "ruff (lint and format)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy (strict)"
.venv/bin/mypy

step "import contracts (lint-imports)"
.venv/bin/lint-imports --no-cache

step "pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
