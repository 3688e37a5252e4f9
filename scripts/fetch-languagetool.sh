#!/usr/bin/env bash
# Download the LanguageTool jars into this checkout's vendor/languagetool/ (the folder
# copydesk.toml names), through the same code as `copydesk setup`: the pinned jars of
# src/copydesk/languagetool.lock from Maven Central, checksums verified, resumable.
#
#   scripts/fetch-languagetool.sh           fetch (a quick no-op when up to date)
#   scripts/fetch-languagetool.sh --check   fetch, then start the server once and check
#                                           that it answers and lists en-US
#   scripts/fetch-languagetool.sh --force   check every jar's SHA-1, download what differs
#
# COPYDESK_LANGUAGETOOL_DIR overrides the folder and COPYDESK_MAVEN_URL the repository (a
# mirror; file:// works). To change the LanguageTool version or its languages, edit
# scripts/languagetool/pom.xml and run scripts/languagetool/lock.sh (needs Maven).
#
# Needs: the virtualenv of scripts/setup.sh (or PYTHON=...) and Java 17+.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
done
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
exec "$PYTHON" -m copydesk setup "$@"
