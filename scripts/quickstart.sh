#!/usr/bin/env bash
# Quick start: set up, then write three English articles with the embedded
# defaults (the local SmolLM2 model and a local LanguageTool), no API key needed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
unset OPENAI_API_KEY OPENAI_BASE_URL
exec .venv/bin/copydesk run pipelines/tech-blog.yaml \
  --topic "Writing readable Python functions" \
  --topic "Why code review matters" \
  --topic "Getting started with unit tests" \
  "$@"
