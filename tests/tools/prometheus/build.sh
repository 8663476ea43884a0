#!/usr/bin/env bash
# Builds promtool and the prometheus server from the pinned Go module (go.mod here)
# into  ${REDISQUEUE_TOOLS_CACHE:-<repo>/.cache}/prometheus/<version>/bin/
# and prints that directory on stdout (progress goes to stderr).
#
# Idempotent: when the versioned bin/ already holds both binaries it exits at once
# without running go. Binaries are built into a scratch folder and moved into place
# only when both succeeded, so an interrupted build never leaves a half cache.
# Concurrent callers (two test runs) serialise on a lock file; the second one then
# finds the finished cache.
#
# The server is built without the `builtinassets` tag: the web UI's compiled assets
# are not part of the Go module. Scraping, the TSDB, rule evaluation and the HTTP API
# (/api/v1/query, /-/ready, ...) work without them; only the browser UI is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"

# The pin lives in go.mod only. Prometheus 3.x tags its Go module v0.3MM.P for
# release 3.MM.P; the cache is keyed by the release version users know.
module_version="$(awk '$1 == "github.com/prometheus/prometheus" { print $2; exit }' "$here/go.mod")"
[[ "$module_version" =~ ^v0\.([0-9])([0-9]{2})\.([0-9]+)$ ]] || {
  echo "build.sh: cannot read the github.com/prometheus/prometheus version from $here/go.mod" >&2
  exit 1
}
version="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"

cache_root="${REDISQUEUE_TOOLS_CACHE:-$repo_root/.cache}/prometheus"
dest="$cache_root/$version"
# shellcheck source=../cached-go-build.sh
. "$here/../cached-go-build.sh"
cached_build_begin "prometheus $version" "$dest" promtool prometheus

build_date="$(cd "$here" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "20060102-15:04:05"}}{{end}}' github.com/prometheus/prometheus)"
pkg=github.com/prometheus/common/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Branch=release-${version%.*}"
ldflags+=" -X $pkg.BuildUser=redisqueue-tests -X $pkg.BuildDate=${build_date:-19700101-00:00:00}"

log "building promtool and prometheus $version ($module_version) (cold: several minutes on 2 cores)"
(cd "$here" && go build -trimpath -tags netgo -ldflags "$ldflags" -o "$scratch/" \
  github.com/prometheus/prometheus/cmd/promtool \
  github.com/prometheus/prometheus/cmd/prometheus)

cached_build_finish
