#!/usr/bin/env bash
# Builds the node's binaries from pinned modules into
#   ${REDISQUEUE_NODE_CACHE:-<repo>/.cache/node}/<k8s>-<coredns>-<inputs>/bin/
# and prints that directory on stdout (progress on stderr):
#   kubelet, kube-scheduler, kube-proxy   (../controlplane/kubernetes/go.mod, same release
#                                          and the same build flags as the control plane)
#   coredns                               (coredns/go.mod, coredns/main.go: minimal plugins)
#   pause                                 (build/pause/linux/pause.c of the same module, gcc -static)
# <inputs> is a hash of the files that decide what is built (this script, both go.mod/go.sum,
# coredns/main.go), so a change to any of them builds once into a new folder.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
cp_dir="$here/../controlplane"
# shellcheck source=../controlplane/versions.env
. "$cp_dir/versions.env"
# shellcheck source=versions.env
. "$here/versions.env"

inputs="$(cat "$here/build.sh" "$cp_dir/kubernetes/go.mod" "$cp_dir/kubernetes/go.sum" \
  "$here/coredns/go.mod" "$here/coredns/go.sum" "$here/coredns/main.go" | sha256sum | cut -c1-12)"
cache_root="${REDISQUEUE_NODE_CACHE:-$repo_root/.cache/node}"
key="${K8S_VERSION}-${COREDNS_VERSION}-${inputs}"
dest="$cache_root/$key"
# shellcheck source=../tools/cached-go-build.sh
. "$here/../tools/cached-go-build.sh"
cached_build_begin "the node $key" "$dest" kubelet kube-scheduler kube-proxy coredns pause

# Same version stamping as ../controlplane/build.sh, so the node reports the release.
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
build_date="$(cd "$cp_dir/kubernetes" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
log "building kubelet, kube-scheduler, kube-proxy $K8S_VERSION (warm Go cache: about a minute)"
(cd "$cp_dir/kubernetes" && go build -trimpath -ldflags "$k8s_ldflags" -o "$scratch/" \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-proxy)

log "building coredns $COREDNS_VERSION"
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$scratch/coredns" .)

# The pause container's one program, from the same Kubernetes release's source.
k8s_src="$(cd "$cp_dir/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
command -v gcc >/dev/null || { log "gcc is needed to build pause (apt-get install gcc libc6-dev)"; exit 1; }
log "building pause from $k8s_src/build/pause/linux/pause.c"
gcc -Os -Wall -Werror -static -DVERSION="$K8S_VERSION" -o "$scratch/pause" "$k8s_src/build/pause/linux/pause.c"
strip "$scratch/pause"

cached_build_finish
