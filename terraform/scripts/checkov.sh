#!/usr/bin/env bash
# Static security scan of terraform/ with checkov (configuration and reasons for
# skipped checks: terraform/.checkov.yaml and the #checkov:skip comments).
#
#   terraform/scripts/checkov.sh                # scan terraform/, fail on any finding
#   terraform/scripts/checkov.sh -o json        # extra arguments go to checkov
#
# checkov runs from its own virtualenv under .cache/checkov/<version>/, created
# on first use from PyPI. It is kept out of the project's .venv on purpose:
# checkov depends on bc-python-hcl2, which installs a Python package named
# "hcl2" over the one from python-hcl2 (used by tests/deploy/test_terraform.py), and
# the two are not compatible.
set -euo pipefail

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${CHECKOV_VENV:-$repo/.cache/checkov/$CHECKOV_VERSION}"

# A virtualenv names its own path in every script it installs, so the marker holds that
# path: one made elsewhere (a checkout moved, a .cache copied from another) is made again.
if [[ "$(cat "$venv/.installed" 2>/dev/null)" != "$venv" ]]; then
  echo "checkov.sh: installing checkov $CHECKOV_VERSION into $venv" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
  echo "$venv" > "$venv/.installed"
fi

cd "$repo"
exec "$venv/bin/checkov" --config-file terraform/.checkov.yaml "$@"
