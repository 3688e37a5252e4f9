#!/usr/bin/env bash
# Set up everything the tests need (including the real servers' installs), then
# run the whole test suite. CI runs exactly this (.ci/run).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --dev || exit 1
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/python -m pytest -q -rfEs "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
