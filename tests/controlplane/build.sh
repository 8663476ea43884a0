#!/usr/bin/env bash
# Builds the local control-plane binaries from the pinned Go modules:
#   kube-apiserver, kube-controller-manager, kubectl   (kubernetes/go.mod)
#   etcd                                               (etcd/go.mod)
#   helm                                               (helm/go.mod)
# into  ${REDISQUEUE_CONTROLPLANE_CACHE:-<repo>/.cache/controlplane}/<k8s>-<etcd>-<helm>/bin/
# and prints that directory on stdout (progress goes to stderr).
#
# Idempotent: when the versioned bin/ already holds all five binaries it exits at once
# without running go. Binaries are built into a scratch folder and moved into place
# only when all of them succeeded, so an interrupted build never leaves a half cache.
# Concurrent callers (two test runs) serialise on a lock file; the second one then
# finds the finished cache.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

cache_root="${REDISQUEUE_CONTROLPLANE_CACHE:-$repo_root/.cache/controlplane}"
key="${K8S_VERSION}-${ETCD_VERSION}-${HELM_VERSION}"
dest="$cache_root/$key"
# shellcheck source=../tools/cached-go-build.sh
. "$here/../tools/cached-go-build.sh"
cached_build_begin "the control plane $key" "$dest" \
  kube-apiserver kube-controller-manager kubectl etcd helm

# --- Kubernetes: stamp the release version so that clients (kubectl version, Helm's
# kubeVersion checks, discovery) see v1.X.Y instead of v0.0.0-master.
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
build_date="$(cd "$here/kubernetes" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (cold: 15-40 min on 2 cores)"
(cd "$here/kubernetes" && go build -trimpath -ldflags "$k8s_ldflags" -o "$scratch/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl)

# --- etcd: etcd's own main package lives in the repository's root module, which is not
# meant to be required; etcd/main.go calls server/v3/etcdmain the same way.
log "building etcd $ETCD_VERSION"
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$scratch/etcd" .)

# --- Helm: version plus the Kubernetes version its capability checks assume offline.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
log "building helm $HELM_VERSION"
(cd "$here/helm" && go build -trimpath -ldflags "$helm_ldflags" -o "$scratch/helm" helm.sh/helm/v3/cmd/helm)

cached_build_finish
