"""`copydesk setup`'s LanguageTool download: the pinned jars from a Maven repository.

The jars are those of `languagetool.lock` (package data, written by
scripts/languagetool/lock.sh from scripts/languagetool/pom.xml with Maven): Maven
coordinates, SHA-1 and size of each. `fetch_languagetool` downloads the missing ones
from `settings.maven_url` (Maven Central, a mirror, or a file:// folder in Maven's
layout) into the jar folder:

- each file goes to `NAME.jar.part` first and becomes `NAME.jar` only once its size
  and SHA-1 match the lock; an interrupted download resumes from the `.part` (an HTTP
  Range request) on the next call, and a failed read is retried from where it stopped;
- a jar already in the folder with the right SHA-1 is kept, so pointing
  COPYDESK_LANGUAGETOOL_DIR at a copy downloaded before reuses it;
- jars the lock does not list are removed at the end (the folder is a classpath), and
  a stamp (`.copydesk-setup`, the lock's SHA-256) makes the next call a quick no-op.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from copydesk.errors import ServiceError

LOCK_NAME = "languagetool.lock"
STAMP = ".copydesk-setup"
CHUNK = 256 * 1024
ATTEMPTS = 5

#: called with the number of bytes just written
Advance = Callable[[int], None]


@dataclass(frozen=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha1: str
    size: int

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def path(self) -> str:
        """The jar's path in a Maven repository."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"


@dataclass(frozen=True)
class Lock:
    version: str
    jars: tuple[Jar, ...]
    digest: str  # SHA-256 of the lock's text: the stamp

    @property
    def total_bytes(self) -> int:
        return sum(jar.size for jar in self.jars)


def read_lock(text: str | None = None) -> Lock:
    """The lock shipped with the package (or `text`)."""
    if text is None:
        text = resources.files("copydesk").joinpath(LOCK_NAME).read_text(encoding="utf-8")
    version, jars = "", []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "languagetool-version" and len(fields) == 2:
            version = fields[1]
            continue
        coords = fields[0].split(":")
        if len(fields) != 3 or len(coords) != 3 or len(fields[1]) != 40 or not fields[2].isdigit():
            raise ServiceError(f"{LOCK_NAME} line {number}: expected 'group:artifact:version sha1 size'")
        jars.append(Jar(*coords, sha1=fields[1].lower(), size=int(fields[2])))
    if not version or not jars:
        raise ServiceError(f"{LOCK_NAME}: no languagetool-version or no jars")
    return Lock(version=version, jars=tuple(jars), digest=hashlib.sha256(text.encode()).hexdigest())


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - Maven's published checksum, not a security boundary alone
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def up_to_date(dest: Path, lock: Lock) -> bool:
    """The folder holds this lock's jars (the stamp matches and every jar has its size)."""
    try:
        if (dest / STAMP).read_text(encoding="utf-8").strip() != lock.digest:
            return False
    except OSError:
        return False
    return all(_size(dest / jar.filename) == jar.size for jar in lock.jars)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def missing_jars(dest: Path, lock: Lock, *, verify: bool = True) -> list[Jar]:
    """The jars still to download: absent, or (verify) present with another SHA-1."""
    missing = []
    for jar in lock.jars:
        path = dest / jar.filename
        if _size(path) != jar.size or (verify and sha1_of(path) != jar.sha1):
            missing.append(jar)
    return missing


def _read_from(url: str, offset: int) -> Iterator[bytes]:
    """The bytes of `url` from `offset` on (file:// or http(s)://)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        with open(unquote(parsed.path), "rb") as handle:
            handle.seek(offset)
            while chunk := handle.read(CHUNK):
                yield chunk
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = httpx.Timeout(60.0, connect=15.0)
    with httpx.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        if response.status_code == 404:
            raise ServiceError(f"{url}: not found (404); is the Maven repository URL right?")
        response.raise_for_status()
        if offset and response.status_code != 206:
            raise ServiceError(f"{url}: the server ignored the Range request")  # start over
        yield from response.iter_bytes()  # as it arrives: a cut-off answer keeps what came


def _download(jar: Jar, base_url: str, dest: Path, advance: Advance) -> None:
    """One jar into dest, through NAME.part, resumed and retried; checked against the lock."""
    url = f"{base_url.rstrip('/')}/{jar.path}"
    part = dest / f"{jar.filename}.part"
    if _size(part) > jar.size:
        part.unlink()
    advance(max(_size(part), 0))
    for attempt in range(1, ATTEMPTS + 1):
        offset = max(_size(part), 0)
        try:
            with open(part, "ab") as handle:
                for chunk in _read_from(url, offset):
                    handle.write(chunk)
                    advance(len(chunk))
            break
        except (httpx.HTTPError, OSError, ServiceError) as exc:
            if isinstance(exc, ServiceError) and "404" in str(exc) or attempt == ATTEMPTS:
                raise ServiceError(f"downloading {url} failed: {exc}") from exc
            if isinstance(exc, ServiceError):  # no Range support: start this file again
                advance(-_size(part))
                part.unlink(missing_ok=True)
            time.sleep(min(2.0 ** (attempt - 1), 20.0))
    if _size(part) != jar.size or sha1_of(part) != jar.sha1:
        part.unlink(missing_ok=True)
        raise ServiceError(
            f"{url}: the file does not match the lock's size and SHA-1 ({jar.size} bytes, {jar.sha1}); "
            "deleted, run `copydesk setup` again"
        )
    os.replace(part, dest / jar.filename)


def fetch_languagetool(
    dest: Path, base_url: str, lock: Lock, *, force: bool = False, progress: Callable[[int], Advance] | None = None
) -> list[Jar]:
    """Make `dest` hold exactly the lock's jars; returns the jars downloaded.

    `progress(total_bytes)` is called once with the bytes to download and returns the
    callback told of each chunk.
    """
    if not force and up_to_date(dest, lock):
        return []
    dest.mkdir(parents=True, exist_ok=True)
    (dest / STAMP).unlink(missing_ok=True)
    todo = missing_jars(dest, lock)
    advance = progress(sum(jar.size for jar in todo)) if progress else (lambda _n: None)
    for jar in todo:
        (dest / jar.filename).unlink(missing_ok=True)
        _download(jar, base_url, dest, advance)
    wanted = {jar.filename for jar in lock.jars}
    for stale in dest.glob("*.jar"):
        if stale.name not in wanted:
            stale.unlink()
    (dest / STAMP).write_text(lock.digest + "\n", encoding="utf-8")
    return todo
