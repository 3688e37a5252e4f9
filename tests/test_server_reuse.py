"""`copydesk run` with nothing started by hand: the first command starts the local Prefect
server (that of `copydesk server start`) and later ones reuse it; three commands started
at once end up with one server, and every run is in that server's database (the UI's).

Everything lives in a temporary state folder; the server is stopped at the end whatever
happens. COPYDESK_KEEP_SERVERS=false keeps the temporary per-process server.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SECRET_KEY, run_cli
from fake_openai import FakeOpenAI

from copydesk.prefect_server import RunServer, profile_api_url, server_for_run
from copydesk.services.process import pid_alive
from copydesk.settings import Settings


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No PREFECT_API_URL, no PREFECT_HOME (the server keeps its database in the state folder),
    servers kept; `copydesk server stop` afterwards whatever the test did."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "COPYDESK_", "PREFECT_API_URL", "PREFECT_HOME"))}
    env.update(COPYDESK_STATE_DIR=str(tmp_path / "state"), COPYDESK_KEEP_SERVERS="true",
               COPYDESK_BACKOFF_INITIAL="0.05", OPENAI_API_KEY=SECRET_KEY, COLUMNS="200",
               COPYDESK_OUTPUT_DIR=str(tmp_path / "outputs"))
    try:
        yield env
    finally:
        stop = run_cli(["server", "stop"], env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        record = tmp_path / "state" / "prefect-server.json"
        assert not record.exists()


def _flow_runs(api_url: str, state: Path) -> list[dict]:
    """The server's flow runs, asked with its password (the 0600 file in the state folder)."""
    client = "copydesk-test"
    auth = {"Authorization": "Basic " + base64.b64encode((state / "prefect-server.auth").read_bytes().strip()).decode()}
    token = httpx.get(f"{api_url}/csrf-token", params={"client": client}, headers=auth, trust_env=False).json()["token"]
    response = httpx.post(f"{api_url}/flow_runs/filter", json={}, trust_env=False,
                          headers={**auth, "Prefect-Csrf-Token": token, "Prefect-Csrf-Client": client})
    assert response.status_code == 200, response.text
    return response.json()


def test_three_commands_at_once_start_one_server_and_later_ones_reuse_it(
        env: dict[str, str], basic_spec: Path, tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("copydesk")
    with FakeOpenAI() as fake:
        env["OPENAI_BASE_URL"] = fake.url
        procs = [
            subprocess.Popen([str(exe), "run", str(basic_spec), "--topic", f"topic {n}", "--run-id", f"at-once-{n}",
                              "--out", str(tmp_path / "out")],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for n in range(3)
        ]
        results = [(proc.wait(timeout=400), *proc.communicate()) for proc in procs]
        for code, stdout, stderr in results:
            assert code == 0, stderr[-3000:] + stdout[-2000:]
        # Exactly one of them started the server and said so; the others found it.
        assert sum("started the local Prefect server" in stderr for _, _, stderr in results) == 1
        record = json.loads((tmp_path / "state" / "prefect-server.json").read_text())
        pid, api_url = record["pid"], record["url"]
        assert record["extra"]["auth"] is True  # three processes made one password, the server's
        assert pid_alive(pid)
        assert len(list((tmp_path / "state").glob("prefect-server*.json"))) == 1

        # A later command reuses it, silently.
        again = run_cli(["run", str(basic_spec), "--topic", "later", "--run-id", "later",
                         "--out", str(tmp_path / "out")], env, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "started the local Prefect server" not in again.stderr
        assert json.loads((tmp_path / "state" / "prefect-server.json").read_text())["pid"] == pid

    # Every run is a flow run in that server's database: what its UI shows.
    runs = _flow_runs(api_url, tmp_path / "state")
    assert len(runs) == 4 and {run["state_type"] for run in runs} == {"COMPLETED"}
    assert (tmp_path / "state" / "prefect" / "prefect.db").exists()  # its own database, in the state folder


def test_keep_servers_false_starts_nothing(tmp_path: Path) -> None:
    environ: dict[str, str] = {"PREFECT_HOME": str(tmp_path / "home")}
    chosen = server_for_run(Settings(state_dir=tmp_path / "state", keep_servers=False), environ)
    assert chosen == RunServer(None, "temporary")
    assert "PREFECT_API_URL" not in environ
    assert not (tmp_path / "state" / "prefect-server.json").exists()


def test_the_users_own_server_wins(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state", keep_servers=True)
    environ = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    assert server_for_run(settings, environ) == RunServer("http://127.0.0.1:9/api", "environment")
    # The active profile's PREFECT_API_URL (`prefect config set`) wins over starting one.
    home = tmp_path / "home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_URL = "http://127.0.0.1:8/api"\n[profiles.other]\n')
    environ = {"PREFECT_HOME": str(home)}
    assert profile_api_url(environ) == "http://127.0.0.1:8/api"
    assert server_for_run(settings, environ) == RunServer("http://127.0.0.1:8/api", "profile")
    assert profile_api_url({"PREFECT_HOME": str(home), "PREFECT_PROFILE": "other"}) is None
    assert not (tmp_path / "state" / "prefect-server.json").exists()


def test_a_recorded_server_slow_to_answer_is_waited_for_not_replaced(tmp_path: Path, monkeypatch) -> None:
    """On a busy machine the server's /api/health may miss the 2 s check while other commands
    use it: a run waits for it instead of replacing (killing) it."""
    import http.server
    import threading
    import time

    from conftest import free_port

    from copydesk import prefect_server
    from copydesk.services.process import ServerState, process_start_ticks, write_state

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_state(ServerState(name="prefect-server", pid=os.getpid(), port=port, url=api_url,
                            health_url=f"{api_url}/health", log_path="", started_at=time.time(),
                            proc_start=process_start_ticks(os.getpid()), extra={"ui": False, "auth": True}),
                state_dir)
    (state_dir / "prefect-server.auth").write_text("copydesk:the-password\n")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Health)
    threading.Timer(3.0, server.serve_forever).start()  # answers only after the first check gave up

    def no_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("a live server was replaced")

    monkeypatch.setattr(prefect_server._PrefectProcess, "start_background", no_start)
    try:
        environ: dict[str, str] = {"PREFECT_HOME": str(tmp_path / "home")}
        chosen = server_for_run(Settings(state_dir=state_dir, keep_servers=True), environ)
    finally:
        server.shutdown()
        server.server_close()
    assert chosen == RunServer(api_url, "local") and environ["PREFECT_API_URL"] == api_url
    assert environ["PREFECT_API_AUTH_STRING"] == "copydesk:the-password"  # handed to this run's Prefect client
