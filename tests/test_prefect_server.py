"""`copydesk server start`: the real local Prefect server, in a temporary state folder.

It requires its password (Prefect's basic auth: a foreign Host header or a request without
credentials gets 401), accepts browser requests only from the UI's own origin (CORS),
refuses state-changing requests without Prefect's CSRF token, does not inherit the API key,
keeps its state folder private, and still serves Prefect's own client, a shell that ran
`eval "$(copydesk server env)"`, `copydesk run` and `copydesk budget`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, SECRET_KEY, run_cli
from fake_openai import FakeOpenAI

EVIL = "http://evil.example.test"
REBIND = "rebind.attacker.example:4200"


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    """(API URL, environment that finds the server through its record, state folder); started
    under umask 022, the usual default that makes files readable by everyone."""
    state = tmp_path_factory.mktemp("prefect-local") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_", "PREFECT_API_URL"))}
    env.pop("PREFECT_HOME", None)  # the server keeps its database under the state folder
    env.update(COPYDESK_STATE_DIR=str(state), OPENAI_API_KEY=SECRET_KEY, COLUMNS="200")
    old = os.umask(0o022)
    try:
        start = run_cli(["server", "start", "--port", "0", "--no-ui"], env, timeout=240)
    finally:
        os.umask(old)
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


def _password(state: Path) -> str:
    return (state / "prefect-server.auth").read_text(encoding="utf-8").strip()


def _basic(auth: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def _authed(api_url: str, state: Path, client: str = "copydesk-test") -> dict[str, str]:
    """Credentials and a CSRF token, as Prefect's client and the logged-in UI send them."""
    headers = _basic(_password(state))
    token = httpx.get(f"{api_url}/csrf-token", params={"client": client}, headers=headers, trust_env=False)
    assert token.status_code == 200, token.text
    return {**headers, "Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client}


def test_the_kept_server_refuses_requests_without_its_password(local_server) -> None:
    """Issue #20, finding 7: a DNS-rebinding page (a foreign Host header, the browser's own
    origin) or any client without the password gets 401; only the health check answers."""
    api_url, _, state = local_server
    password = _password(state)
    assert re.fullmatch(r"copydesk:[A-Za-z0-9_-]{40,}", password)
    # Nothing without the password: not the CSRF token a page would fetch first, not a read; a
    # write is refused too (403 by the CSRF check that comes first, for want of that token).
    for headers in ({}, {"Host": REBIND}, {"Host": REBIND, "Origin": f"http://{REBIND}"},
                    _basic("copydesk:guessed"), _basic("admin:pass"), {"Authorization": "Bearer " + password}):
        token = httpx.get(f"{api_url}/csrf-token", params={"client": "page"}, headers=headers, trust_env=False)
        assert token.status_code == 401, (headers, token.status_code, token.text)
        for path in ("/admin/version", "/flows/00000000-0000-0000-0000-000000000000", "/work_pools/"):
            response = httpx.get(f"{api_url}{path}", headers=headers, trust_env=False)
            assert response.status_code == 401, (headers, path, response.text)
        for path in ("/flows/filter", "/flows/", "/deployments/filter"):
            response = httpx.post(f"{api_url}{path}", json={"name": "planted"}, headers=headers, trust_env=False)
            assert response.status_code in (401, 403), (headers, path, response.text)
    # Even with a CSRF token (fetched by a real client), a request without the password gets 401.
    csrf = {k: v for k, v in _authed(api_url, state).items() if k != "Authorization"}
    for headers in (csrf, {**csrf, "Host": REBIND}):
        response = httpx.post(f"{api_url}/flows/filter", json={}, headers=headers, trust_env=False)
        assert response.status_code == 401, response.text
    assert httpx.get(f"{api_url}/health", headers={"Host": REBIND}, trust_env=False).status_code == 200
    # With the password (and the CSRF token for a write) the same requests work.
    assert httpx.post(f"{api_url}/flows/filter", json={}, headers=_authed(api_url, state),
                      trust_env=False).status_code == 200
    assert httpx.get(f"{api_url}/admin/version", headers=_basic(password), trust_env=False).status_code == 200


def test_cross_origin_requests_get_no_permissive_cors_header(local_server) -> None:
    api_url, _, state = local_server
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
    api_url, _, state = local_server
    refused = httpx.post(f"{api_url}/flows/", json={"name": "planted-by-a-web-page"}, trust_env=False,
                         headers=_basic(_password(state)))
    assert refused.status_code == 403, refused.text
    assert "csrf" in refused.text.lower()
    # With a token fetched the way Prefect's client and UI do it, the same request works.
    allowed = httpx.post(f"{api_url}/flows/", json={"name": "made-with-a-token"}, trust_env=False,
                         headers=_authed(api_url, state))
    assert allowed.status_code in (200, 201), allowed.text


CLIENT_SCRIPT = textwrap.dedent("""
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        flows = client.read_flows()
        print("flows", len(flows))
""")


def test_a_shell_gets_the_server_from_copydesk_server_env_without_the_password_printed(local_server) -> None:
    """`eval "$(copydesk server env)"` gives a shell (a worker, Prefect's CLI) the URL and the auth
    string; the printed lines hold neither the password nor anything to paste into a log.
    `copydesk server password` prints it, on request only; `status` says where it is."""
    api_url, env, state = local_server
    password = _password(state)
    printed = run_cli(["server", "env"], env)
    assert printed.returncode == 0, printed.stderr
    assert password.split(":", 1)[1] not in printed.stdout + printed.stderr
    assert f"export PREFECT_API_URL={api_url}" in printed.stdout
    assert "PREFECT_API_AUTH_STRING" in printed.stdout and "prefect-server.auth" in printed.stdout
    shell = {k: v for k, v in env.items() if not k.startswith("PREFECT_API")}
    exe = Path(sys.executable).with_name("copydesk")
    result = subprocess.run(["bash", "-c", f'eval "$("{exe}" server env)" && exec "{sys.executable}" -c "$0"',
                             CLIENT_SCRIPT], env=shell, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flows ")
    # Without the auth line, Prefect's own client is refused.
    refused = subprocess.run([sys.executable, "-c", CLIENT_SCRIPT], env={**shell, "PREFECT_API_URL": api_url},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr[-2000:]

    shown = run_cli(["server", "password"], env)
    assert shown.returncode == 0 and shown.stdout.strip() == password, shown.stderr
    status = run_cli(["server", "status"], env)
    assert status.returncode == 0 and "password: required" in status.stdout, status.stdout + status.stderr
    assert "prefect-server.auth" in status.stdout.replace("\n", "")
    assert password.split(":", 1)[1] not in status.stdout + status.stderr


def test_the_server_gets_its_auth_string_and_no_client_secret(local_server) -> None:
    _, _, state = local_server
    pid = json.loads((state / "prefect-server.json").read_text())["pid"]
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
                   if "=" in item)
    assert SECRET_KEY not in environ.values() and not [k for k in environ if k.startswith("OPENAI_")]
    assert environ["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert environ["PREFECT_SERVER_API_AUTH_STRING"] == _password(state)  # the server's own setting
    assert "PREFECT_API_AUTH_STRING" not in environ and "PREFECT_API_KEY" not in environ  # a client's


def _modes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [folder, *folder.rglob("*")]}


def test_copydesk_run_and_budget_use_it_and_keep_their_files_private(local_server, basic_spec: Path,
                                                                     tmp_path: Path) -> None:
    """`copydesk run` and `copydesk budget status` find the server through its record and bring
    its password themselves (issue #20, finding 7). After the run, under umask 022, the state
    folder is 0700 and everything in it 0600/0700, the Prefect database included; the run
    folder follows the umask but its call store and lock are 0600 (finding 12)."""
    api_url, env, state = local_server
    with FakeOpenAI() as fake:
        run_env = {**env, "OPENAI_BASE_URL": fake.url, "COPYDESK_BACKOFF_INITIAL": "0.05"}
        out = tmp_path / "out"
        old = os.umask(0o022)
        try:
            result = run_cli(["run", str(basic_spec), "--out", str(out), "--topic", "CSRF", "--run-id", "private"],
                             run_env, timeout=240)
        finally:
            os.umask(old)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "without a password" not in result.stderr
    # The flow run was recorded by this server (found through its record, PREFECT_API_URL unset).
    count = httpx.post(f"{api_url}/flow_runs/count", json={}, trust_env=False, headers=_authed(api_url, state))
    assert count.status_code == 200 and count.json() >= 1, count.text
    budget = run_cli(["budget", "status", "--json"], env, timeout=120)
    assert budget.returncode == 0 and json.loads(budget.stdout) == [], budget.stderr

    state_modes = _modes(state)
    assert state_modes.pop(".") == "0o700"
    wrong = {name: mode for name, mode in state_modes.items()
             if mode != ("0o700" if (state / name).is_dir() else "0o600")}
    assert wrong == {}, state_modes
    for name in ("prefect-server.json", "prefect-server.auth", "prefect-server.lock", "logs/prefect-server.log",
                 "prefect", "prefect/prefect.db"):
        assert name in state_modes, sorted(state_modes)

    run_modes = _modes(out / "private")
    assert run_modes["calls.jsonl"] == "0o600" and run_modes[".run.lock"] == "0o600", run_modes
    assert run_modes["."] == "0o755" and run_modes["articles.csv"] == "0o644", run_modes  # the umask's


def test_a_server_without_a_password_is_reported_and_replaced(tmp_path: Path) -> None:
    """A server an older copydesk started (recorded without `auth`): the commands that find it
    say so, and `copydesk server start` replaces it with one that requires a password."""
    from conftest import free_port

    from copydesk.services.process import ServerState, pid_alive, process_start_ticks, write_state

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", HEALTH_SERVER, str(port)], start_new_session=True)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_", "PREFECT_API_URL"))}
    env.pop("PREFECT_HOME", None)
    env.update(COPYDESK_STATE_DIR=str(state), COLUMNS="200")
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        _wait_healthy(api_url)
        write_state(ServerState(name="prefect-server", pid=proc.pid, port=port, url=api_url,
                                health_url=f"{api_url}/health", log_path="", started_at=time.time(),
                                proc_start=process_start_ticks(proc.pid), group=True,
                                extra={"home": None, "ui": False}), state)
        status = run_cli(["server", "status"], env)
        assert status.returncode == 0 and "without a password" in status.stderr, status.stdout + status.stderr
        printed = run_cli(["server", "env"], env)
        assert "without a password" in printed.stderr and "PREFECT_API_AUTH_STRING" not in printed.stdout
        started = run_cli(["server", "start", "--port", "0", "--no-ui"], env, timeout=240)
        assert started.returncode == 0, started.stderr
        assert f"replaced the Prefect server without a password (pid {proc.pid})" in started.stderr
        proc.wait(timeout=10)
        record = json.loads((state / "prefect-server.json").read_text())
        assert record["extra"]["auth"] is True and record["pid"] != proc.pid and pid_alive(record["pid"])
        assert httpx.get(f"{record['url']}/admin/version", trust_env=False).status_code == 401
    finally:
        run_cli(["server", "stop"], env, timeout=60)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_healthy(api_url: str) -> None:
    for _ in range(100):
        try:
            if httpx.get(f"{api_url}/health", trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{api_url}/health never answered")


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


# ------------------------------------------------------------------------------ the password, unit


def test_one_password_per_state_folder_made_once_private_and_kept(tmp_path: Path, monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from copydesk.prefect_server import auth_export_line, server_auth_string
    from copydesk.settings import Settings

    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    settings = Settings(state_dir=tmp_path / "state")
    assert server_auth_string(settings) is None and auth_export_line(settings) is None  # nothing made by a read
    old = os.umask(0o022)
    try:
        with ThreadPoolExecutor(8) as pool:  # commands starting at once agree on one
            made = set(pool.map(lambda _: server_auth_string(settings, create=True), range(16)))
    finally:
        os.umask(old)
    (password,) = made
    path = tmp_path / "state" / "prefect-server.auth"
    assert oct(stat.S_IMODE(path.stat().st_mode)) == "0o600"
    assert oct(stat.S_IMODE((tmp_path / "state").stat().st_mode)) == "0o700"
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["prefect-server.auth"]  # no temporary file left
    assert server_auth_string(settings, create=True) == password  # kept across restarts
    line = auth_export_line(settings)
    assert line == f'export PREFECT_API_AUTH_STRING="$(cat {path.resolve()})"' and password not in line
    # The user's own server auth string wins, and the shell line names it instead of printing it.
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "me:mine")
    assert server_auth_string(settings) == "me:mine"
    assert auth_export_line(settings) == 'export PREFECT_API_AUTH_STRING="$PREFECT_SERVER_API_AUTH_STRING"'


def test_commands_pointed_at_the_kept_server_get_its_password(tmp_path: Path, monkeypatch) -> None:
    """PREFECT_API_URL naming the kept server (a shell that kept only that line of an older
    `copydesk server env`) brings its auth string too; another server's URL does not, and the
    user's own PREFECT_API_AUTH_STRING is left alone."""
    from copydesk.prefect_server import use_local_server
    from copydesk.services.process import ServerState, write_state
    from copydesk.settings import Settings

    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    state = tmp_path / "state"
    url = "http://127.0.0.1:4200/api"
    write_state(ServerState(name="prefect-server", pid=os.getpid(), port=4200, url=url, health_url=f"{url}/health",
                            log_path="", started_at=time.time(), extra={"auth": True}), state)
    (state / "prefect-server.auth").write_text("copydesk:kept\n")
    settings = Settings(state_dir=state)
    environ = {"PREFECT_API_URL": url + "/"}
    assert use_local_server(settings, environ) == url + "/" and environ["PREFECT_API_AUTH_STRING"] == "copydesk:kept"
    other = {"PREFECT_API_URL": "http://127.0.0.1:9999/api"}
    use_local_server(settings, other)
    assert "PREFECT_API_AUTH_STRING" not in other
    own = {"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": "me:mine"}
    use_local_server(settings, own)
    assert own["PREFECT_API_AUTH_STRING"] == "me:mine"


def test_serve_refuses_to_start_with_the_wrong_password(local_server, tmp_path: Path) -> None:
    """`copydesk serve` pointed at the kept server with a wrong PREFECT_API_AUTH_STRING says so
    before serving anything (its flow runs would all be refused)."""
    api_url, env, _ = local_server
    (tmp_path / "pipelines").mkdir()
    result = run_cli(["serve", "--pipelines", str(tmp_path / "pipelines"), "--metrics-port", "0"],
                     {**env, "PREFECT_API_URL": api_url, "PREFECT_API_AUTH_STRING": "copydesk:wrong"}, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "refused the credentials" in result.stderr and "copydesk server env" in result.stderr
