"""The embedded LanguageTool HTTP server, run from the jars in settings.languagetool_dir.

    with languagetool_url(settings) as url:          # or: async with
        GrammarChecker(url, "en-US").check(text)

`languagetool_url` uses, in this order: `COPYDESK_LANGUAGETOOL_URL`; a server
left running by `copydesk services start`; else a server started for the
block and stopped after it (start-up to /v2/healthcheck takes 1-2 s here;
the first check of a language then loads its rules: en-US ~2.5-5 s, de-DE
~7-12 s and +300 MB RSS, zh-CN ~0.3 s).

The server must include es, ca and pt: LanguageTool 6.8's language
identifier looks them up at start-up and the server dies without them
(the lock lists them).

The jars come from Maven Central through `copydesk setup` (copydesk.provision: the
pinned jars of src/copydesk/languagetool.lock, languagetool-server without
language-all plus the language modules, resolved once from
scripts/languagetool/pom.xml). LanguageTool 6.6 and later need Java 17+.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from copydesk.errors import ServiceError
from copydesk.private import private_dir, write_private
from copydesk.services.lease import ServerLease
from copydesk.services.process import ManagedServer, command_output, find_running, start_detached
from copydesk.settings import Settings

NAME = "languagetool"
MAIN_CLASS = "org.languagetool.server.HTTPServer"
HEALTH_PATH = "/v2/healthcheck"
MIN_JAVA = 17
FETCH_HINT = "run `copydesk setup`"

#: JVM options for a small shared machine (2 cores). SerialGC: no GC threads
#: competing with the model server, and the smallest footprint.
#: The heap cap comes from settings.languagetool_heap.
JVM_OPTIONS = (
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Dfile.encoding=UTF-8",
    "-Djava.awt.headless=true",
)

#: The JIT of a server that lives for one run (COPYDESK_KEEP_SERVERS=false, tests): C1 only
#: (TieredStopAtLevel=1) starts fastest and needs no warm-up; on 2 busy cores the C2
#: compiler threads competed with the checks themselves (bench/languagetool_bench.py:
#: /v2/healthcheck after 1.0-1.7 s vs 1.2-3.4 s, first en-US check 2.5-4.8 s vs 3.9-9.0 s).
#: A kept server (`start_background`) uses the full tiered JIT instead: once C2 has compiled
#: the hot code, a check costs about half the CPU (3,400 words: 0.95-1.05 s against 2.1 s,
#: bench/README.md), which is what a 2-core machine running a batch runs out of; the
#: warm-up that gets it there runs once, in the background (copydesk.services.warmup).
ONE_RUN_JIT = ("-XX:TieredStopAtLevel=1",)

#: The server's own settings (its --config file), chosen with
#: bench/languagetool_batch_bench.py on the same 2-core machine, busy with other work
#: (load average 4-8), variants back to back (figures in bench/README.md):
#: - maxCheckThreads=2, one check per core: the same CPU per 1,000 words as the default
#:   of 10 threads and ~130 MB less RSS (335 vs 467 MB after 150 articles).
#: - the JIT (ONE_RUN_JIT): a fresh server with the full tiered JIT (C2) took 94 CPU-s
#:   against 79 for 150 articles of ~550 words, and a fresh C2 server spent 72 CPU-s on a
#:   100-article run against C1's 40: C2 only pays once it is warm, so one-run servers stay
#:   C1-only and kept servers get C2 plus a warm-up (copydesk.services.warmup); warm, the
#:   same 100-article run cost its LanguageTool 23-29 CPU-s.
#: - pipelineCaching: no difference beyond the noise (0.53 and 0.71 vs 0.68 CPU-s).
#: - a result cache (cacheSize) answers repeated sentences from memory; it saved ~20 % on
#:   the bench's text, which repeats sentences, and is left off so the figures stay those
#:   of checking every sentence. pipelinePrewarming is not usable: LanguageTool 6.8
#:   prewarms a fixed list of languages (ru-RU among them) and dies at start with
#:   copydesk's language subset.
SERVER_PROPERTIES: dict[str, str] = {"maxCheckThreads": "2"}

_HEAP = re.compile(r"^\d+[kKmMgG]?$")
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def find_java() -> str:
    """The java executable: $JAVA_HOME/bin/java, else the first on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise ServiceError(
            f"LanguageTool needs Java {MIN_JAVA}+ and no `java` was found on PATH or in JAVA_HOME; "
            "install it (Debian: apt-get install -y openjdk-17-jre-headless), "
            f"then {FETCH_HINT}, or set COPYDESK_LANGUAGETOOL_URL to a running server"
        )
    return found


@functools.lru_cache(maxsize=8)
def java_major_version(java: str) -> int | None:
    """Major version of `java` (8 for 1.8), or None when it cannot be told."""
    output = command_output([java, "-version"])
    match = _JAVA_VERSION.search(output) if output is not None else None
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def jar_problem(directory: Path) -> str | None:
    """Why `directory` cannot run the LanguageTool server, or None when it can."""
    if not directory.is_dir():
        return f"{directory} does not exist"
    if not any(directory.glob("languagetool-server-*.jar")):
        return f"{directory} has no languagetool-server-*.jar"
    if not any(directory.glob("language-*.jar")):
        return f"{directory} has no language module (language-*.jar)"
    return None


def normalize_url(url: str) -> str:
    """Base URL without a trailing '/' or '/v2' (language_tool_python adds '/v2/' itself)."""
    url = url.strip().rstrip("/")
    if url.endswith("/v2"):
        url = url[: -len("/v2")]
    return url


class LanguageToolServer(ManagedServer):
    """LanguageTool's HTTP server (`org.languagetool.server.HTTPServer`) on 127.0.0.1."""

    name = NAME
    health_path = HEALTH_PATH

    def __init__(
        self,
        settings: Settings,
        *,
        start_timeout: float = 120.0,
        stop_grace: float = 10.0,
        jvm_options: Sequence[str] = JVM_OPTIONS,
        server_properties: dict[str, str] | None = None,
    ) -> None:
        super().__init__(state_dir=settings.state_dir, start_timeout=start_timeout, stop_grace=stop_grace)
        self.settings = settings
        self.jar_dir = settings.jar_dir
        self.heap = settings.languagetool_heap.strip()
        self.jvm_options = tuple(jvm_options)
        self.kept = False  # set by start_background: a long-lived server gets the full JIT and a warm-up
        self.server_properties = dict(SERVER_PROPERTIES if server_properties is None else server_properties)

    def check_prerequisites(self) -> None:
        if not _HEAP.match(self.heap):
            raise ServiceError(
                f"COPYDESK_LANGUAGETOOL_HEAP={self.heap!r} is not a Java heap size; use e.g. 512m or 1g"
            )
        java = find_java()
        major = java_major_version(java)
        if major is not None and major < MIN_JAVA:
            raise ServiceError(
                f"{java} is Java {major}; LanguageTool needs Java {MIN_JAVA}+ "
                "(Debian: apt-get install -y openjdk-17-jre-headless, or point JAVA_HOME at a newer JDK)"
            )
        problem = jar_problem(self.jar_dir)
        if problem is not None:
            raise ServiceError(
                f"LanguageTool is not installed: {problem}; {FETCH_HINT} "
                "(or set COPYDESK_LANGUAGETOOL_DIR to a folder of its jars, "
                "or COPYDESK_LANGUAGETOOL_URL to a running server)"
            )

    def build_command(self, port: int) -> list[str]:
        command = [
            find_java(),
            f"-Xmx{self.heap}",
            *self.jvm_options,
            *(() if self.kept else ONE_RUN_JIT),
            "-cp",
            str(self.jar_dir / "*"),
            MAIN_CLASS,
            "--port",
            str(port),
        ]
        if self.server_properties:
            command += ["--config", str(self._write_properties())]
        return command

    def start_background(self, timeout: float | None = None, *, extra: Any = None) -> tuple[Any, bool]:
        """Start it detached for later runs too (the full JIT), then warm it up in the background
        (copydesk.services.warmup) when it was started now."""
        self.kept = True
        state, started = super().start_background(timeout, extra=extra)
        if started and self.settings.languagetool_warmup_words > 0:
            start_warmup(state.url, Path(state.log_path).with_name(f"{NAME}-warmup.log"),
                         words=self.settings.languagetool_warmup_words)
        return state, started

    def _write_properties(self) -> Path:
        """The server's --config file in the state folder (0600, written whole under a temporary
        name, then renamed: servers starting at once read one complete file)."""
        path = private_dir(self.state_dir) / f"{NAME}.properties"
        return write_private(path, "".join(f"{key}={value}\n" for key, value in self.server_properties.items()))


def start_warmup(url: str, log_path: Path, *, words: int) -> subprocess.Popen[bytes]:
    """The warm-up, detached and at a lower CPU priority (it ends by itself; see copydesk.services.warmup)."""
    return start_detached([sys.executable, "-m", "copydesk.services.warmup", url, "--words", str(words)],
                          log_path, nice=10)


def languagetool_url(settings: Settings) -> ServerLease:
    """Context manager (sync or async) yielding the base URL of a LanguageTool server.

    COPYDESK_LANGUAGETOOL_URL if set; else a healthy background server
    (`copydesk services start`); else, with settings.keep_servers (the default),
    one started now in the background and left running for the next run (as
    `copydesk services start` would: its JVM start and rule loading are paid once);
    else one started now and stopped when the block ends.
    """

    def resolve() -> tuple[str, ManagedServer | None]:
        if settings.languagetool_url:
            return normalize_url(settings.languagetool_url), None
        running = find_running(NAME, settings.state_dir)
        if running is not None:
            return running.url, None
        if settings.keep_servers:
            state, _ = LanguageToolServer(settings).start_background()  # locked: one start for all commands
            return state.url, None
        server = LanguageToolServer(settings).start()
        return server.url, server

    return ServerLease(resolve)
