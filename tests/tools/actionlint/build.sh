#!/usr/bin/env bash
# Builds actionlint (for the release workflow (.github/workflows/)) from the Go module pinned in go.mod here into
#   ${REDISQUEUE_TOOLS_CACHE:-<repo>/.cache}/actionlint/<version>/bin/
# and prints that directory on stdout (progress goes to stderr). Idempotent, lock-protected
# and never leaves a half cache: see ../cached-go-build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"

version="$(awk '$1 == "github.com/rhysd/actionlint" { print $2; exit }' "$here/go.mod")"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
  echo "build.sh: cannot read the github.com/rhysd/actionlint version from $here/go.mod" >&2
  exit 1
}

dest="${REDISQUEUE_TOOLS_CACHE:-$repo_root/.cache}/actionlint/$version"
# shellcheck source=../cached-go-build.sh
. "$here/../cached-go-build.sh"
cached_build_begin "actionlint $version" "$dest" actionlint

log "building actionlint $version (cold: about a minute on 2 cores)"
(cd "$here" && go build -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=$version" -o "$scratch/" github.com/rhysd/actionlint/cmd/actionlint)

cached_build_finish
