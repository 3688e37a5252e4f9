"""ManagedServer mechanics, on a tiny Python HTTP server (fast, no extra installs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest_services import assert_stopped

from copydesk.errors import ServiceError
from copydesk.services.lease import ServerLease
from copydesk.services.process import (
    ManagedServer,
    ServerState,
    child_environment,
    find_running,
    pid_alive,
    process_start_ticks,
    read_state,
    state_path,
)

# A health-checkable server; with "ignore-term" it ignores SIGTERM (to test SIGKILL).
SERVER = r"""
import http.server, signal, sys
if "ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for arg in sys.argv:
    if arg.startswith("write-file="):
        open(arg.split("=", 1)[1], "w").write("the child's own file")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def tiny(state_dir: Path, *extra: str, **kwargs: object) -> ManagedServer:
    return ManagedServer(
        "tiny",
        lambda port: [sys.executable, "-c", SERVER, str(port), *extra],
        state_dir=state_dir,
        health_path="/health",
        **kwargs,  # type: ignore[arg-type]
    )


def test_context_manager_starts_answers_and_stops(tmp_path: Path) -> None:
    with tiny(tmp_path) as server:
        pid, port, health = server.pid, server.port, server.health_url
        assert pid is not None and pid_alive(pid)
        assert server.url == f"http://127.0.0.1:{port}"
        assert httpx.get(server.health_url, trust_env=False).json() == {"ok": True}
        log = server.log_path
        assert log is not None and log.parent == tmp_path / "logs" and "serving" in log.read_text()
    assert_stopped(pid, port, health)
    assert not log.exists(), "a clean stop removes the foreground log"
    server.stop()  # idempotent


def test_a_process_that_dies_fails_fast_with_its_log(tmp_path: Path) -> None:
    server = ManagedServer(
        "dies",
        lambda port: [sys.executable, "-c", "import sys; print('cannot open the model file'); sys.exit(3)"],
        state_dir=tmp_path,
        health_path="/",
        start_timeout=60,
    )
    started = time.monotonic()
    with pytest.raises(ServiceError) as info:
        server.start()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "exited with code 3" in message and "cannot open the model file" in message
    assert not server.is_running()


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    server = ManagedServer(
        "mute",
        lambda port: [sys.executable, "-c", "import time; print('loading'); time.sleep(600)"],
        state_dir=tmp_path,
        health_path="/",
        start_timeout=1.0,
    )
    with pytest.raises(ServiceError, match=r"did not answer .* within 1 s") as info:
        server.start()
    assert "loading" in str(info.value)
    assert not server.is_running()


def test_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    server = tiny(tmp_path, "ignore-term", stop_grace=0.5).start()
    pid = server.pid
    assert pid is not None
    started = time.monotonic()
    server.stop()
    assert 0.4 < time.monotonic() - started < 8
    assert not pid_alive(pid)


def test_background_state_is_found_by_another_process_and_stopped(tmp_path: Path) -> None:
    state, started = tiny(tmp_path).start_background()
    try:
        assert started
        recorded = json.loads(state_path("tiny", tmp_path).read_text())
        assert recorded["pid"] == state.pid and recorded["port"] == state.port
        assert recorded["proc_start"] == process_start_ticks(state.pid)
        # A new lookup in this process, and one from another process.
        assert tiny(tmp_path).find_running() == state
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from copydesk.services.process import find_running; "
                "s = find_running('tiny', Path(sys.argv[1])); print(s.pid if s else None)",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == str(state.pid)
        again, started_again = tiny(tmp_path).start_background()
        assert not started_again and again.pid == state.pid
    finally:
        stopped = tiny(tmp_path).stop_background()
    assert stopped is not None and stopped.pid == state.pid
    assert_stopped(state.pid, state.port, state.health_url)
    assert read_state("tiny", tmp_path) is None
    assert tiny(tmp_path).stop_background() is None


def test_stale_and_reused_pids_are_not_trusted(tmp_path: Path) -> None:
    # A dead pid: the record is dropped.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = ServerState("tiny", dead.pid, 1, "http://127.0.0.1:1", "http://127.0.0.1:1/health", "", time.time())
    state_path("tiny", tmp_path).write_text(stale.to_json())
    assert find_running("tiny", tmp_path) is None
    assert not state_path("tiny", tmp_path).exists()

    # A live pid that is another process (a different start time): not ours.
    with tiny(tmp_path) as server:
        assert server.pid is not None
        reused = ServerState(
            "tiny",
            server.pid,
            server.port,
            server.url,
            server.health_url,
            "",
            time.time(),
            proc_start=(process_start_ticks(server.pid) or 0) + 1,
        )
        state_path("tiny", tmp_path).write_text(reused.to_json())
        assert find_running("tiny", tmp_path) is None


def test_live_process_without_health_is_not_running(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = ServerState(
            "tiny",
            sleeper.pid,
            1,
            "http://127.0.0.1:1",
            "http://127.0.0.1:1/health",
            "",
            time.time(),
            proc_start=process_start_ticks(sleeper.pid),
        )
        state_path("tiny", tmp_path).write_text(record.to_json())
        assert find_running("tiny", tmp_path) is None
        assert state_path("tiny", tmp_path).exists(), "a live process's record is kept"
    finally:
        sleeper.kill()
        sleeper.wait()


async def test_endpoint_async_form_starts_and_stops(tmp_path: Path) -> None:
    holder: dict[str, ManagedServer] = {}

    def resolve() -> tuple[str, ManagedServer | None]:
        server = tiny(tmp_path).start()
        holder["server"] = server
        return server.url, server

    endpoint = ServerLease(resolve)
    async with endpoint as url:
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(url + "/health")).status_code == 200
        pid = holder["server"].pid
    assert pid is not None and not pid_alive(pid)


def test_missing_executable(tmp_path: Path) -> None:
    server = ManagedServer(
        "missing", lambda port: [str(tmp_path / "no-such-binary")], state_dir=tmp_path, health_path="/"
    )
    with pytest.raises(ServiceError, match="cannot start missing"):
        server.start()


# ------------------------------------------------------------------------------ child environment


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


#: What a shell running copydesk against its kept Prefect server, with a database of its own
#: and a few tools' tokens, holds: a child server other than Prefect's gets none of it.
PARENT_SECRETS = {
    "OPENAI_API_KEY": "sk-parent-SECRET-123456",
    "OPENAI_BASE_URL": "https://u:pw@api.example.test/v1",
    "PREFECT_API_KEY": "pnu_prefect_cloud_secret",
    "PREFECT_API_AUTH_STRING": "copydesk:client-auth-secret",
    "PREFECT_SERVER_API_AUTH_STRING": "copydesk:server-auth-secret",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:dbpw-secret@127.0.0.1/prefect",
    "PREFECT_SERVER_DATABASE_PASSWORD": "dbpw-secret",
    "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://prefect:olddb-secret@127.0.0.1/prefect",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "COPYDESK_SOME_TOKEN": "copydesk-token-secret",
    "COPYDESK_DB_PASSWORD": "copydesk-pw-secret",
    "COPYDESK_HOOK_AUTH": "copydesk-auth-secret",
    "ANTHROPIC_API_KEY": "other-api-key-secret",
}


@pytest.mark.parametrize("background", [False, True])
def test_children_get_a_minimal_environment_without_the_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    """Read from the child's real /proc/PID/environ: no key, no Prefect auth string or database
    setting, no *TOKEN*/*PASSWORD*/*SECRET*/*AUTH* (issue #20, finding 11)."""
    for name, value in PARENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SOME_OTHER_TOOL_SETTING", "x")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    monkeypatch.setenv("COPYDESK_LANGUAGETOOL_HEAP", "256m")
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    server = tiny(tmp_path, env={"EXTRA_FOR_THIS_SERVER": "1"})
    if background:
        state, _ = server.start_background()
        pid = state.pid
    else:
        server.start()
        pid = server.pid
    try:
        env = _environ_of(pid)
    finally:
        server.stop_background() if background else server.stop()
    assert os.environ["OPENAI_API_KEY"] == "sk-parent-SECRET-123456"  # the parent has it ...
    assert not any(name.startswith("OPENAI_") for name in env), env  # ... the child does not
    assert not set(PARENT_SECRETS) & set(env), env
    assert not any(name.startswith("PREFECT_") for name in env), env  # not a Prefect server: no PREFECT_* at all
    assert "SOME_OTHER_TOOL_SETTING" not in env
    assert all("secret" not in value.lower() for value in env.values())
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    assert env["LC_ALL"] == "C.UTF-8" and env["TZ"] == "Asia/Shanghai"
    assert env["COPYDESK_LANGUAGETOOL_HEAP"] == "256m"
    assert env["EXTRA_FOR_THIS_SERVER"] == "1"


def test_child_environment_allowlist() -> None:
    base = {"PATH": "/bin", "OPENAI_API_KEY": "k", "OPENAI_ORG_ID": "o", "JAVA_HOME": "/jdk",
            "LANG": "C.UTF-8", "PREFECT_API_URL": "http://x/api", "PREFECT_API_KEY": "p",
            "COPYDESK_STATE_DIR": "/s", "MY_TOKEN": "t", "GITHUB_TOKEN": "g", "TMPDIR": "/tmp",
            "PREFECT_SERVER_DATABASE_PASSWORD": "db", "PREFECT_SERVER_API_AUTH_STRING": "u:p",
            "PREFECT_API_AUTH_STRING": "u:p", "PREFECT_HOME": "/h", "COPYDESK_X_SECRET": "s"}
    # LanguageTool, the local model, the warm-up: no PREFECT_* at all, no secret.
    assert child_environment({"PORT": "1"}, base=base) == {
        "PATH": "/bin", "JAVA_HOME": "/jdk", "LANG": "C.UTF-8", "COPYDESK_STATE_DIR": "/s", "TMPDIR": "/tmp",
        "PORT": "1",
    }
    # The Prefect server: PREFECT_*, and of the secrets only its own (PREFECT_SERVER_*).
    prefect = child_environment(base=base, prefixes=("PREFECT_",), keep=("PREFECT_SERVER_", "PREFECT_API_DATABASE_"))
    assert prefect == {
        "PATH": "/bin", "JAVA_HOME": "/jdk", "LANG": "C.UTF-8", "COPYDESK_STATE_DIR": "/s", "TMPDIR": "/tmp",
        "PREFECT_API_URL": "http://x/api", "PREFECT_HOME": "/h",
        "PREFECT_SERVER_DATABASE_PASSWORD": "db", "PREFECT_SERVER_API_AUTH_STRING": "u:p",
    }


def test_state_files_logs_and_locks_are_private(tmp_path: Path) -> None:
    """Issue #20, finding 12: the state folder 0700; its logs folder, state file, log and lock
    0600 whatever the umask; what the child itself writes is private too (umask 077)."""
    state_dir = tmp_path / "state"
    server = tiny(state_dir, f"write-file={state_dir / 'written-by-the-child'}")
    old = os.umask(0o022)
    try:
        state, _ = server.start_background()
        try:
            modes = {path.relative_to(state_dir).as_posix(): path.stat().st_mode & 0o777
                     for path in [state_dir, *state_dir.rglob("*")]}
        finally:
            server.stop_background()
    finally:
        os.umask(old)
    assert modes == {".": 0o700, "logs": 0o700, "logs/tiny.log": 0o600, "tiny.json": 0o600, "tiny.lock": 0o600,
                     "written-by-the-child": 0o600}, modes
    assert state.pid > 0
