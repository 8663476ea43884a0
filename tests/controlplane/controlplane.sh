#!/usr/bin/env bash
# Local Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) for
# running things by hand against the same cluster the tests use.
#
#   tests/controlplane/controlplane.sh build    # build binaries if the cache lacks them
#   eval "$(tests/controlplane/controlplane.sh up)"   # start in the background + exports
#   tests/controlplane/controlplane.sh env      # print KUBECONFIG/PATH exports again
#   tests/controlplane/controlplane.sh status   # pids and resident memory
#   tests/controlplane/controlplane.sh down     # stop every process and remove the state
#
# The implementation is tests/harness/kube_controlplane.py (also used by the pytest fixtures);
# state lives in ${REDISQUEUE_CONTROLPLANE_CACHE:-<repo>/.cache/controlplane}/run/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo_root/.venv/bin/python" ]; then python="$repo_root/.venv/bin/python"; else python=python3; fi
fi
case "${1:-}" in
  build|up|down|env|status) exec "$python" "$repo_root/tests/harness/kube_controlplane.py" "$1" ;;
  *) echo "usage: $0 build|up|down|env|status" >&2; exit 2 ;;
esac
