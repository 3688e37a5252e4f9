#!/usr/bin/env bash
# Maintainers only: re-resolve scripts/languagetool/pom.xml with Maven and write
# src/copydesk/languagetool.lock, the pinned list of jars `copydesk setup`
# downloads (Maven coordinates, SHA-1 and size of each jar). Run it after
# changing the pom (a language module, the LanguageTool version), then commit
# the lock. Users never need Maven: `copydesk setup` reads the lock.
#
# Needs: Maven (mvn) and Python 3.11+.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
POM="$ROOT/scripts/languagetool/pom.xml"
LOCK="$ROOT/src/copydesk/languagetool.lock"
list="$(mktemp)"
trap 'rm -f "$list"' EXIT
mvn -q -B -Dstyle.color=never -f "$POM" dependency:list -DincludeScope=runtime \
  -DoutputAbsoluteArtifactFilename=true -DoutputFile="$list" >/dev/null
python3 - "$list" "$LOCK" "$POM" <<'PY'
import hashlib, pathlib, re, sys
listing, lock, pom = (pathlib.Path(p) for p in sys.argv[1:])
version = re.search(r"<languagetool.version>(.*?)</languagetool.version>", pom.read_text()).group(1)
rows = []
for line in listing.read_text().splitlines():
    line = line.strip()
    if ":jar:" not in line:
        continue
    coords, _, rest = line.partition(":/")
    group, artifact, _kind, ver, _scope = coords.split(":")
    path = pathlib.Path("/" + rest.split(" -- ")[0])
    data = path.read_bytes()
    rows.append(f"{group}:{artifact}:{ver} {hashlib.sha1(data).hexdigest()} {len(data)}")
if any(":language-all:" in row for row in rows):
    sys.exit("lock: language-all was resolved; the exclusion in the pom does not work")
lock.write_text(
    "# The LanguageTool jars `copydesk setup` downloads from Maven Central, pinned.\n"
    "# Written by scripts/languagetool/lock.sh from scripts/languagetool/pom.xml; do not edit.\n"
    "# groupId:artifactId:version sha1 size\n"
    f"languagetool-version {version}\n" + "\n".join(sorted(rows)) + "\n"
)
print(f"lock: {len(rows)} jars of LanguageTool {version} -> {lock}")
PY
