#!/usr/bin/env bash
# Set up everything copydesk needs on a fresh machine; quick when already done.
#
#   scripts/setup.sh            virtualenv .venv, copydesk with the embedded model
#                               (llama-cpp-python is compiled from source the first
#                               time: ~5-6 min on 2 cores; pip caches the wheel),
#                               and the LanguageTool jars from Maven Central
#                               (`copydesk setup`, into vendor/languagetool: copydesk.toml)
#   scripts/setup.sh --dev      also the test tools: pytest, Playwright's driver, and
#                               (as root, with apt) Debian's prometheus (promtool),
#                               chromium for the browser test and postgresql for the
#                               several-machines test (Prefect on PostgreSQL); and
#                               LiteLLM's proxy in a virtualenv of its own, .venv-litellm
#                               (the gateway tests; its pins never meet Prefect's)
#
# Needs: Python 3.11+, Java 17+ (LanguageTool), a C/C++ toolchain and cmake
# (llama.cpp). Only package registries (PyPI, Maven Central) are contacted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
dev=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup: unknown argument: $arg" >&2; exit 2 ;;
  esac
done
say() { echo "setup: $*"; }

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv"
  "$PYTHON" -m venv .venv
fi

extras="local"
[ "$dev" = 1 ] && extras="local,dev"
stamp=".venv/.copydesk-installed"
hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
installed="$(cat "$stamp" 2>/dev/null || true)"
if [ "$installed" = "$hash local,dev" ] || [ "$installed" = "$hash $extras" ]; then
  say "Python dependencies up to date"
else
  say "installing copydesk and its dependencies (.[$extras]); the llama.cpp build takes ~5-6 min the first time"
  .venv/bin/python -m pip install -q --upgrade pip
  CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$hash $extras" > "$stamp"
fi

bash scripts/fetch-languagetool.sh

# LiteLLM's proxy for tests/test_gateway.py, apart from copydesk's own dependencies. 1.107.0 was a
# compromised release: the version is pinned, and changed only on purpose.
LITELLM_VERSION="1.108.7"
if [ "$dev" = 1 ]; then
  if [ "$(cat .venv-litellm/.installed 2>/dev/null || true)" != "$LITELLM_VERSION" ]; then
    say "installing LiteLLM's proxy $LITELLM_VERSION into .venv-litellm (the gateway tests)"
    [ -x .venv-litellm/bin/python ] || "$PYTHON" -m venv .venv-litellm
    .venv-litellm/bin/python -m pip install -q --upgrade pip
    .venv-litellm/bin/python -m pip install -q "litellm[proxy]==$LITELLM_VERSION"
    echo "$LITELLM_VERSION" > .venv-litellm/.installed
  fi
fi

if [ "$dev" = 1 ]; then
  missing=()
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # initdb and pg_ctl are not on PATH in Debian's package: look where it puts them
  pg_found=0
  for dir in $(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)") /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] && [ -x "$dir/createdb" ] && pg_found=1
  done
  [ "$pg_found" = 1 ] || missing+=(postgresql)
  if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing Debian packages: ${missing[*]}"
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    else
      say "missing: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
      exit 1
    fi
  fi
fi
say "ready"
