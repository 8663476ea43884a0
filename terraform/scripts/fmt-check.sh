#!/usr/bin/env bash
# Check that every Terraform file under terraform/ is in canonical format:
#   tofu fmt -check -recursive terraform/
#
# OpenTofu comes from its Go module (the Go module proxy is the only source of
# binaries here) and is built once per version into .cache/tofu/<version>/bin
# (git-ignored). `go install github.com/opentofu/opentofu/cmd/tofu@<version>`
# refuses the module because its go.mod has a replace directive (its HCL
# fork), so the module is downloaded and cmd/tofu is built inside it, with the
# module's own go.mod and go.sum. A cold build takes several minutes of CPU.
#
#   terraform/scripts/fmt-check.sh          # check, print a diff, exit 3 if unformatted
#   terraform/scripts/fmt-check.sh --fix    # rewrite the files instead
set -euo pipefail

TOFU_VERSION="${TOFU_VERSION:-v1.12.6}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${TOFU_CACHE:-$repo/.cache/tofu/$TOFU_VERSION}"
tofu="$cache/bin/tofu"

if [[ ! -x "$tofu" ]]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "fmt-check.sh: building tofu needs the go toolchain" >&2
    exit 2
  fi
  echo "fmt-check.sh: building OpenTofu $TOFU_VERSION into $cache (first run only)" >&2
  module="github.com/opentofu/opentofu@$TOFU_VERSION"
  # Outside any Go module, so a go.mod nearby cannot interfere.
  (cd "$(mktemp -d)" && go mod download "$module")
  src="$(go env GOMODCACHE)/$module"
  mkdir -p "$cache/bin"
  (
    cd "$src"
    GOFLAGS="-mod=readonly -buildvcs=false" go build -trimpath \
      -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
      -o "$tofu.partial" ./cmd/tofu
  )
  mv "$tofu.partial" "$tofu"
fi

cd "$repo"
# No CLI configuration is needed to format files; this also silences the
# warning about a missing ~/.tofurc.
export TF_CLI_CONFIG_FILE=/dev/null
if [[ "${1:-}" == "--fix" ]]; then
  exec "$tofu" fmt -recursive terraform/
fi
exec "$tofu" fmt -check -recursive -diff terraform/
