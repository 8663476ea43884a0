#!/usr/bin/env bash
# Builds one component of the test node's monitoring and autoscaling ecosystem from its own
# Go module, at the version pinned in ../versions.env, into
#   ${REDISQUEUE_ECOSYSTEM_CACHE:-<repo>/.cache}/<component>/<version>-<inputs>/bin/
# and prints that directory on stdout (progress on stderr):
#
#   build.sh prometheus-operator   operator, prometheus-config-reloader
#   build.sh keda                  keda (cmd/operator), keda-adapter (cmd/adapter: the
#                                  external metrics API server)
#
# KEDA is built as its own main module (its go.mod, go.sum and replace directives, as its
# release Makefile builds it), straight from the Go module cache after `go mod download`.
# prometheus-operator's go.mod replaces its nested API modules with folders its module zip
# does not carry, so it is built through prometheus-operator/go.mod here, which requires them
# at the same version. <inputs> hashes this script, versions.env and that go.mod/go.sum, so a
# change of any builds once into a new folder. Idempotent, lock-protected, never a half cache: see ../../tools/cached-go-build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"
# shellcheck source=../versions.env
. "$here/../versions.env"

component="${1:?usage: build.sh prometheus-operator|keda}"
case "$component" in
  prometheus-operator)
    module=github.com/prometheus-operator/prometheus-operator
    version="$PROMETHEUS_OPERATOR_VERSION"
    binaries=(operator prometheus-config-reloader) ;;
  keda)
    module=github.com/kedacore/keda/v2
    version="$KEDA_VERSION"
    binaries=(keda keda-adapter) ;;
  *) echo "build.sh: unknown component '$component': prometheus-operator or keda" >&2; exit 2 ;;
esac

inputs="$(cat "$here/build.sh" "$here/../versions.env" "$here/prometheus-operator/go.mod" \
  "$here/prometheus-operator/go.sum" | sha256sum | cut -c1-12)"
dest="${REDISQUEUE_ECOSYSTEM_CACHE:-$repo_root/.cache}/$component/$version-$inputs"
# shellcheck source=../../tools/cached-go-build.sh
. "$here/../../tools/cached-go-build.sh"
cached_build_begin "$component $version" "$dest" "${binaries[@]}"

started=$SECONDS
if [ "$component" = prometheus-operator ]; then
  src="$here/prometheus-operator"
  pinned="$(awk -v m="$module" '$1 == m { print $2; exit }' "$src/go.mod")"
  [ "$pinned" = "$version" ] || {
    log "$src/go.mod requires $module $pinned, versions.env says $version"; exit 1; }
else
  # The module's source (with its go.sum) in the module cache; -mod=readonly from
  # cached_build_begin would refuse `go mod download` outside a module.
  src="$(cd / && GOFLAGS= go mod download -json "$module@$version" \
    | awk -F'"' '$2 == "Dir" { print $4 }')"
  [ -d "$src" ] || { log "could not download $module@$version"; exit 1; }
fi
build_date="$(cd / && GOFLAGS= go list -m -json "$module@$version" | awk -F'"' '$2 == "Time" { print $4 }')"
log "downloading the dependencies of $module@$version"
(cd "$src" && go mod download)
log "dependencies ready in $((SECONDS - started)) s"

case "$component" in
  prometheus-operator)
    pkg=github.com/prometheus/common/version
    ldflags="-s -w -X $pkg.Version=${version#v} -X $pkg.Revision=unknown"
    ldflags+=" -X $pkg.Branch=release-$(echo "${version#v}" | cut -d. -f1,2)"
    ldflags+=" -X $pkg.BuildUser=redisqueue-tests -X $pkg.BuildDate=${build_date:-unknown}"
    log "building prometheus-operator and prometheus-config-reloader $version (cold: several minutes on 2 cores)"
    (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$scratch/" \
      "$module/cmd/operator" "$module/cmd/prometheus-config-reloader") ;;
  keda)
    ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=${version#v}"
    ldflags+=" -X github.com/kedacore/keda/v2/version.GitCommit=unknown"
    log "building keda (operator) and keda-adapter (metrics API server) $version (cold: many minutes on 2 cores)"
    (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$scratch/keda" ./cmd/operator)
    (cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$scratch/keda-adapter" ./cmd/adapter) ;;
esac

cached_build_finish
