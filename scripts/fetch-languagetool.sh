#!/usr/bin/env bash
# Resolve the LanguageTool HTTP server and the language modules copydesk needs
# from Maven Central into vendor/languagetool/ (jars only, one flat folder).
#
#   scripts/fetch-languagetool.sh           fetch (a quick no-op when up to date)
#   scripts/fetch-languagetool.sh --check   fetch, then start the server once on a
#                                           free 127.0.0.1 port and check that
#                                           /v2/healthcheck answers and
#                                           /v2/languages lists en-US
#   scripts/fetch-languagetool.sh --force   fetch again even when up to date
#
# What is resolved is declared in scripts/languagetool/pom.xml (languagetool-server
# without language-all, plus the language-* modules listed there); the version
# is the pom's <languagetool.version> unless COPYDESK_LANGUAGETOOL_VERSION is set.
# The destination is COPYDESK_LANGUAGETOOL_DIR if set (the same variable
# copydesk reads), else vendor/languagetool under the project root.
#
# Needs: Maven (mvn) and Java 17+ (Debian: apt-get install -y maven openjdk-17-jre-headless).
# A stamp file records the version and a hash of the pom, so a second run with
# nothing changed returns at once without calling Maven.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$ROOT/scripts/languagetool/pom.xml"
DEST="${COPYDESK_LANGUAGETOOL_DIR:-$ROOT/vendor/languagetool}"
STAMP="$DEST/.copydesk-fetched"
MAIN_CLASS="org.languagetool.server.HTTPServer"

check=0
force=0
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fetch-languagetool: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

die() { echo "fetch-languagetool: error: $*" >&2; exit 1; }
say() { echo "fetch-languagetool: $*"; }

pom_version="$(sed -n 's:.*<languagetool.version>\(.*\)</languagetool.version>.*:\1:p' "$POM" | head -n1)"
VERSION="${COPYDESK_LANGUAGETOOL_VERSION:-$pom_version}"
[ -n "$VERSION" ] || die "no <languagetool.version> in $POM"
stamp_line="version=$VERSION pom=$(sha256sum "$POM" | cut -d' ' -f1)"

JAVA=java
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
  JAVA="$JAVA_HOME/bin/java"  # the same choice copydesk makes
fi

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 \
    || die "java not found; LanguageTool $VERSION needs Java 17+ (Debian: apt-get install -y openjdk-17-jre-headless)"
  local major
  major="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  if [ -n "$major" ] && [ "$major" -lt 17 ]; then
    die "java $major found; LanguageTool $VERSION needs Java 17+ (set JAVA_HOME or put a newer java first on PATH)"
  fi
}

fetch() {
  command -v mvn >/dev/null 2>&1 \
    || die "mvn not found (Debian: apt-get install -y maven)"
  mkdir -p "$(dirname "$DEST")"
  # Resolve into a sibling folder and swap it in, so an interrupted run never
  # leaves a half-filled vendor/languagetool that looks complete.
  local tmp
  tmp="$(mktemp -d "$(dirname "$DEST")/.languagetool.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  say "resolving LanguageTool $VERSION from Maven Central (languagetool-server + $(grep -o 'language-[a-z][a-z]*</artifactId>' "$POM" | sed 's:</artifactId>::' | grep -v language-all | tr '\n' ' ')) ..."
  # Maven's output is shown only when it fails (-q still prints colour resets).
  local out
  if ! out="$(mvn -q -B -Dstyle.color=never -f "$POM" \
      -Dlanguagetool.version="$VERSION" \
      dependency:copy-dependencies \
      -DoutputDirectory="$tmp" \
      -DincludeScope=runtime 2>&1)"; then
    echo "$out" >&2
    die "Maven could not resolve LanguageTool $VERSION (see the output above)"
  fi
  [ -f "$tmp/languagetool-server-$VERSION.jar" ] || die "languagetool-server-$VERSION.jar missing after resolution"
  [ -f "$tmp/language-en-$VERSION.jar" ] || die "language-en-$VERSION.jar missing after resolution"
  if ls "$tmp"/language-all-*.jar >/dev/null 2>&1; then
    die "language-all was resolved; the exclusion in $POM does not work"
  fi
  chmod 755 "$tmp"
  echo "$stamp_line" > "$tmp/.copydesk-fetched"
  rm -rf "$DEST"
  mv "$tmp" "$DEST"
  trap - EXIT
  say "$(ls "$DEST"/*.jar | wc -l) jars, $(du -sh "$DEST" | cut -f1) in $DEST"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

check_server() {
  command -v curl >/dev/null 2>&1 || die "--check needs curl"
  local port log pid started ready=0
  port="$(free_port)"
  log="$(mktemp)"
  started=$(date +%s)
  "$JAVA" -Xmx512m -XX:+UseSerialGC -cp "$DEST/*" "$MAIN_CLASS" --port "$port" >"$log" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/v2/healthcheck" >/dev/null 2>&1; then ready=1; break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [ "$ready" != 1 ]; then
    tail -n 30 "$log" >&2
    die "the LanguageTool server did not answer /v2/healthcheck (log above)"
  fi
  local languages
  languages="$(curl -sf "http://127.0.0.1:$port/v2/languages")" || die "/v2/languages failed"
  echo "$languages" | grep -q '"longCode":"en-US"' || die "/v2/languages does not list en-US: $languages"
  say "server OK on 127.0.0.1:$port after $(( $(date +%s) - started )) s; languages: $(echo "$languages" | grep -o '"longCode":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$log"
  trap - EXIT
}

check_java
if [ "$force" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp_line" ] \
   && [ -f "$DEST/languagetool-server-$VERSION.jar" ]; then
  say "LanguageTool $VERSION already in $DEST"
else
  fetch
fi
if [ "$check" = 1 ]; then
  check_server
fi
