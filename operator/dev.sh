#!/usr/bin/env bash
# One command for a developer: the health/metrics server on a local Redis.
#   ./operator/dev.sh            -> http://localhost:3000/api/health/redis
# Creates .venv on first use, then runs `redisqueue dev` (which uses REDIS_URL/.env when
# set, or else starts a local redis-server, installing it from Debian packages if root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
if [ ! -x .venv/bin/redisqueue ]; then
  "${PYTHON:-python3}" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[hiredis]"
fi
exec .venv/bin/redisqueue dev "$@"
