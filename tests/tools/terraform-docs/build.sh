#!/usr/bin/env bash
# Builds terraform-docs (for the Terraform module READMEs' input and output tables) from the Go module pinned in go.mod here into
#   ${REDISQUEUE_TOOLS_CACHE:-<repo>/.cache}/terraform-docs/<version>/bin/
# and prints that directory on stdout (progress goes to stderr). Idempotent, lock-protected
# and never leaves a half cache: see ../cached-go-build.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"

version="$(awk '$1 == "github.com/terraform-docs/terraform-docs" { print $2; exit }' "$here/go.mod")"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
  echo "build.sh: cannot read the github.com/terraform-docs/terraform-docs version from $here/go.mod" >&2
  exit 1
}

dest="${REDISQUEUE_TOOLS_CACHE:-$repo_root/.cache}/terraform-docs/$version"
# shellcheck source=../cached-go-build.sh
. "$here/../cached-go-build.sh"
cached_build_begin "terraform-docs $version" "$dest" terraform-docs

log "building terraform-docs $version (cold: about a minute on 2 cores)"
(cd "$here" && go build -trimpath -ldflags "-s -w " -o "$scratch/" github.com/terraform-docs/terraform-docs)

cached_build_finish
