"""`copydesk server start`: the real local Prefect server, in a temporary state folder.

It accepts browser requests only from the UI's own origin (CORS), refuses state-changing
requests without Prefect's CSRF token, does not inherit the API key, and still serves
Prefect's own client and `copydesk run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import SECRET_KEY, run_cli
from fake_openai import FakeOpenAI

EVIL = "http://evil.example.test"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    """(API URL, environment that finds the server through its record, state folder)."""
    state = tmp_path_factory.mktemp("prefect-local") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_", "PREFECT_API_URL"))}
    env.pop("PREFECT_HOME", None)  # the server keeps its database under the state folder
    env.update(COPYDESK_STATE_DIR=str(state), OPENAI_API_KEY=SECRET_KEY, COLUMNS="200")
    start = run_cli(["server", "start", "--port", "0", "--no-ui"], env, timeout=240)
    assert start.returncode == 0, start.stderr + start.stdout
    (line,) = [ln for ln in start.stdout.splitlines() if ln.startswith("export PREFECT_API_URL=")]
    api_url = line.split("=", 1)[1]
    try:
        yield api_url, env, state
    finally:
        stop = run_cli(["server", "stop"], env, timeout=60)
        assert stop.returncode == 0, stop.stderr


def _origin(api_url: str) -> str:
    return api_url.removesuffix("/api")


def test_cross_origin_requests_get_no_permissive_cors_header(local_server) -> None:
    api_url, _, _ = local_server
    preflight = httpx.options(f"{api_url}/flows/filter", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"}, trust_env=False)
    assert preflight.headers.get("access-control-allow-origin") not in ("*", EVIL), preflight.headers
    simple = httpx.get(f"{api_url}/health", headers={"Origin": EVIL}, trust_env=False)
    assert simple.status_code == 200
    assert simple.headers.get("access-control-allow-origin") not in ("*", EVIL)
    # The UI's own origin is still allowed.
    own = httpx.get(f"{api_url}/health", headers={"Origin": _origin(api_url)}, trust_env=False)
    assert own.headers.get("access-control-allow-origin") == _origin(api_url)
    tunnel = _origin(api_url).replace("127.0.0.1", "localhost")
    own = httpx.get(f"{api_url}/health", headers={"Origin": tunnel}, trust_env=False)
    assert own.headers.get("access-control-allow-origin") == tunnel


def test_state_changing_requests_need_a_csrf_token(local_server) -> None:
    api_url, _, _ = local_server
    refused = httpx.post(f"{api_url}/flows/", json={"name": "planted-by-a-web-page"}, trust_env=False)
    assert refused.status_code == 403, refused.text
    assert "csrf" in refused.text.lower()
    # With a token fetched the way Prefect's client and UI do it, the same request works.
    client_id = "copydesk-test-client"
    token = httpx.get(f"{api_url}/csrf-token", params={"client": client_id}, trust_env=False)
    assert token.status_code == 200, token.text
    allowed = httpx.post(f"{api_url}/flows/", json={"name": "made-with-a-token"}, trust_env=False,
                         headers={"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client_id})
    assert allowed.status_code in (200, 201), allowed.text


def test_prefects_own_client_works_against_it(local_server) -> None:
    api_url, env, _ = local_server
    script = textwrap.dedent("""
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            flows = client.read_flows()
            print("flows", len(flows))
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**env, "PREFECT_API_URL": api_url},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flows ")


def test_the_server_does_not_inherit_the_api_key(local_server) -> None:
    _, _, state = local_server
    pid = json.loads((state / "prefect-server.json").read_text())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    assert SECRET_KEY not in environ and "OPENAI_" not in environ
    assert "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED=true" in environ


def test_copydesk_run_uses_it(local_server, basic_spec: Path, tmp_path: Path) -> None:
    api_url, env, _ = local_server
    with FakeOpenAI() as fake:
        run_env = {**env, "OPENAI_BASE_URL": fake.url, "COPYDESK_BACKOFF_INITIAL": "0.05"}
        out = tmp_path / "out"
        result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "CSRF"], run_env, timeout=240)
    assert result.returncode == 0, result.stderr + result.stdout
    # The flow run was recorded by this server (found through its record, PREFECT_API_URL unset).
    token = httpx.get(f"{api_url}/csrf-token", params={"client": "t"}, trust_env=False).json()["token"]
    count = httpx.post(f"{api_url}/flow_runs/count", json={}, trust_env=False,
                       headers={"Prefect-Csrf-Token": token, "Prefect-Csrf-Client": "t"})
    assert count.status_code == 200 and count.json() >= 1, count.text


HEALTH_SERVER = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"true")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_a_server_recorded_by_the_older_version_is_still_found_and_stopped(tmp_path: Path) -> None:
    from conftest import free_port

    from copydesk.prefect_server import running_server, stop_server
    from copydesk.services.process import pid_alive, process_start_ticks
    from copydesk.settings import Settings

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", HEALTH_SERVER, str(port)], start_new_session=True)
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        for _ in range(100):
            try:
                if httpx.get(f"{api_url}/health", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        state = tmp_path / "state"
        state.mkdir()
        (state / "prefect-server.json").write_text(json.dumps({  # the shape copydesk wrote before
            "pid": proc.pid, "port": port, "api_url": api_url, "ui_url": f"http://127.0.0.1:{port}",
            "log_path": "x.log", "home": None, "started_at": 1.0, "proc_start": process_start_ticks(proc.pid),
            "ui": False}))
        settings = Settings(state_dir=state)
        found = running_server(settings)
        assert found is not None and found.pid == proc.pid and found.api_url == api_url and found.ui is False
        stopped = stop_server(settings)
        assert stopped is not None and stopped.pid == proc.pid
        proc.wait(timeout=10)
        assert not pid_alive(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
