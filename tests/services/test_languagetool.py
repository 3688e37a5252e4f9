"""The embedded LanguageTool server: prerequisites, command line, and the real thing.

The integration tests use the jars `copydesk setup` put in vendor/languagetool (copydesk.toml) and Java
17+. Without them they fail (they are not skipped) with the command to run.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from conftest_services import assert_stopped, make_settings

from copydesk.errors import ServiceError
from copydesk.services.languagetool import (
    MAIN_CLASS,
    LanguageToolServer,
    jar_problem,
    languagetool_url,
    normalize_url,
)
from copydesk.services.process import ServerState, pid_alive, process_start_ticks, state_path

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- without a server


def test_missing_jars_say_what_to_run(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state", languagetool_dir=tmp_path / "nowhere")
    with pytest.raises(ServiceError, match=r"copydesk setup"):
        LanguageToolServer(settings).start()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "languagetool-server" in (jar_problem(empty) or "")


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(ServiceError, match=r"Java 17\+.*openjdk-17-jre-headless"):
        LanguageToolServer(make_settings(tmp_path)).check_prerequisites()


def test_bad_heap_setting_is_named(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, languagetool_heap="lots")
    with pytest.raises(ServiceError, match="COPYDESK_LANGUAGETOOL_HEAP"):
        LanguageToolServer(settings).check_prerequisites()


def test_command_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, languagetool_heap="300m", languagetool_dir=tmp_path / "jars")
    argv = LanguageToolServer(settings).build_command(12345)
    assert argv[0].endswith("java")
    assert "-Xmx300m" in argv and "-XX:+UseSerialGC" in argv
    assert argv[argv.index("-cp") + 1] == str(tmp_path / "jars" / "*")
    assert argv[-5:-2] == [MAIN_CLASS, "--port", "12345"]
    assert "--public" not in argv  # HTTPServer binds localhost unless --public
    # The server's own settings: one check thread per core (see SERVER_PROPERTIES).
    assert argv[-2] == "--config"
    assert Path(argv[-1]).read_text(encoding="utf-8") == "maxCheckThreads=2\n"
    assert Path(argv[-1]).parent == tmp_path
    bare = LanguageToolServer(settings, server_properties={}).build_command(12345)
    assert bare[-3:] == [MAIN_CLASS, "--port", "12345"]


def test_normalize_url() -> None:
    assert normalize_url("http://lt:8081/") == "http://lt:8081"
    assert normalize_url("http://lt:8081/v2/") == "http://lt:8081"
    assert normalize_url(" http://lt:8081/v2") == "http://lt:8081"


def test_configured_url_wins_without_starting_anything(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, languagetool_url="http://languagetool.internal:8010/v2/")
    endpoint = languagetool_url(settings)
    with endpoint as url:
        assert url == "http://languagetool.internal:8010"
        assert endpoint.server is None


# --------------------------------------------------------------------------- the real server


@pytest.mark.integration
def test_session_server_lists_the_fetched_languages(languagetool_base_url: str) -> None:
    assert httpx.get(languagetool_base_url + "/v2/healthcheck", trust_env=False).status_code == 200
    languages = {lang["longCode"] for lang in httpx.get(languagetool_base_url + "/v2/languages", trust_env=False).json()}
    assert {"en-US", "de-DE", "zh-CN"} <= languages


@pytest.mark.integration
def test_a_recorded_background_server_is_reused(languagetool_base_url: str, tmp_path: Path) -> None:
    # Record the session's server as if `copydesk services start` had left it in this state folder.
    port = int(languagetool_base_url.rsplit(":", 1)[1])
    pid = _pid_listening_on(port)
    state = ServerState(
        "languagetool",
        pid,
        port,
        languagetool_base_url,
        languagetool_base_url + "/v2/healthcheck",
        "",
        time.time(),
        proc_start=process_start_ticks(pid),
    )
    state_path("languagetool", tmp_path).write_text(state.to_json())
    endpoint = languagetool_url(make_settings(tmp_path))
    with endpoint as url:
        assert url == languagetool_base_url
        assert endpoint.server is None
    assert pid_alive(pid), "a reused background server is not stopped by the block"


@pytest.mark.integration
async def test_a_server_is_started_for_the_block_and_stopped_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "state")
    # this checkout's copydesk.toml keeps the jars in vendor/ (the tests run from the checkout)
    assert settings.languagetool_dir == ROOT / "vendor" / "languagetool"
    endpoint = languagetool_url(settings)
    started = time.monotonic()
    try:
        async with endpoint as url:
            startup = time.monotonic() - started
            server = endpoint.server
            assert server is not None and server.pid is not None
            pid, port, health = server.pid, server.port, server.health_url
            async with httpx.AsyncClient(trust_env=False) as client:
                assert (await client.get(url + "/v2/healthcheck")).status_code == 200
                codes = {lang["longCode"] for lang in (await client.get(url + "/v2/languages")).json()}
            assert "en-US" in codes
    except ServiceError as exc:
        pytest.fail(f"{exc}", pytrace=False)
    assert_stopped(pid, port, health)
    assert startup < 60


def _pid_listening_on(port: int) -> int:
    """The pid of the java process whose command line has `--port PORT` (Linux /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--port" in argv and str(port).encode() in argv and any(MAIN_CLASS.encode() == a for a in argv):
            return int(proc.name)
    raise AssertionError(f"no LanguageTool process with --port {port}")
