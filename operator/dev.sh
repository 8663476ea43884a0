#!/usr/bin/env bash
# One command for a developer: the health/metrics server on a local Redis.
#   ./operator/dev.sh            -> http://localhost:3000/api/health/redis
# Creates .venv on first use, then runs `redisqueue dev` (which uses REDIS_URL/.env when
# set, or else starts a local redis-server, installing it from Debian packages if root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
if [ ! -x .venv/bin/python ]; then
  if ! "${PYTHON:-python3}" -m venv .venv >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv separately from python3.
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "${PYTHON:-python3}" -m venv .venv
    else
      echo "python3 -m venv failed: run  sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
fi
# The dev server is part of the operator extra (aiohttp); install it when it is missing, at
# the versions the tests and the image use (the lock, operator/constraints.txt).
if ! .venv/bin/python -c "import redisqueue.controller.devserver" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c operator/constraints.txt -e ".[operator]"
fi
exec .venv/bin/redisqueue dev "$@"
