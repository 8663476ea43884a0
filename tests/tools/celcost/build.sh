#!/usr/bin/env bash
# Builds celcost (the CEL cost of the admission policies, measured with kube-apiserver's own
# CEL environment; see main.go) from the Kubernetes modules pinned in go.mod here into
#   ${REDISQUEUE_TOOLS_CACHE:-<repo>/.cache}/celcost/<apiserver version>-<source hash>/bin/
# and prints that directory on stdout (progress goes to stderr). Idempotent, lock-protected
# and never leaves a half cache: see ../cached-go-build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"

version="$(awk '$1 == "k8s.io/apiserver" { print $2; exit }' "$here/go.mod")"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
  echo "build.sh: cannot read the k8s.io/apiserver version from $here/go.mod" >&2
  exit 1
}
source_hash="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"

dest="${REDISQUEUE_TOOLS_CACHE:-$repo_root/.cache}/celcost/$version-$source_hash"
# shellcheck source=../cached-go-build.sh
. "$here/../cached-go-build.sh"
cached_build_begin "celcost $version" "$dest" celcost

log "building celcost against k8s.io/apiserver $version (cold: a few minutes on 2 cores)"
(cd "$here" && go build -trimpath -ldflags "-s -w" -o "$scratch/celcost" .)

cached_build_finish
