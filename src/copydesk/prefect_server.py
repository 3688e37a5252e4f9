"""A local Prefect server (API and UI) for one machine: `copydesk server start|stop|status|env`.

    start_server(settings, port=4200)   `prefect server start` on 127.0.0.1, detached, with
                                        telemetry off; waits for /api/health; records
                                        <state_dir>/prefect-server.json (pid, port, URL, log)
    stop_server(settings)               SIGTERM its process group, SIGKILL after a grace period
    running_server(settings)            the recorded server if it is alive and answers
    use_local_server(settings, env)     sets PREFECT_API_URL to that server when it is unset

The server binds 127.0.0.1 only: the Prefect UI has no login by default. Its
database lives in <state_dir>/prefect/ (PREFECT_HOME of the server process),
unless PREFECT_HOME or PREFECT_SERVER_DATABASE_CONNECTION_URL is already set.
If PREFECT_SERVER_API_AUTH_STRING is set (Prefect's basic auth, "user:password"),
the server requires it and the clients need PREFECT_API_AUTH_STRING.

This module does not import Prefect; it runs `python -m prefect` as a subprocess.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path

from copydesk.errors import ServiceError
from copydesk.services.process import health_ok, log_tail, pid_alive, port_open, process_start_ticks, stop_pid
from copydesk.settings import Settings

NAME = "prefect-server"
HOST = "127.0.0.1"
DEFAULT_PORT = 4200
START_TIMEOUT = 120.0
STOP_GRACE = 15.0

#: Telemetry off: no internet here, and nobody asked for it.
QUIET_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@dataclass(frozen=True)
class PrefectServer:
    pid: int
    port: int
    api_url: str
    ui_url: str
    log_path: str
    home: str | None
    started_at: float
    proc_start: int | None = None
    ui: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> PrefectServer:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def state_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / f"{NAME}.json"


def log_file(settings: Settings) -> Path:
    return Path(settings.state_dir) / "logs" / f"{NAME}.log"


@contextlib.contextmanager
def _lock(settings: Settings) -> Iterator[None]:
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(settings.state_dir) / f"{NAME}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read(settings: Settings) -> PrefectServer | None:
    try:
        return PrefectServer.from_json(state_file(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def running_server(settings: Settings) -> PrefectServer | None:
    """The recorded server if its process lives and /api/health answers; a dead record is removed."""
    state = _read(settings)
    if state is None:
        return None
    if not pid_alive(state.pid, state.proc_start):
        with contextlib.suppress(OSError):
            state_file(settings).unlink()
        return None
    return state if health_ok(f"{state.api_url}/health") else None


def server_environment(settings: Settings, *, port: int, ui: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(QUIET_ENV)
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env["PREFECT_SERVER_UI_ENABLED"] = env["PREFECT_UI_ENABLED"] = "true" if ui else "false"
    # The server must not talk to another server: it *is* the API.
    env.pop("PREFECT_API_URL", None)
    if "PREFECT_HOME" not in env and "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env:
        env["PREFECT_HOME"] = str(Path(settings.state_dir).resolve() / "prefect")
    return env


def start_server(
    settings: Settings,
    *,
    port: int = DEFAULT_PORT,
    ui: bool = True,
    timeout: float = START_TIMEOUT,
) -> tuple[PrefectServer, bool]:
    """Start the server detached (or reuse a healthy one); returns (server, started_now)."""
    with _lock(settings):
        existing = running_server(settings)
        if existing is not None:
            return existing, False
        stale = _read(settings)
        if stale is not None and pid_alive(stale.pid, stale.proc_start):
            stop_pid(stale.pid, grace=STOP_GRACE, proc_start=stale.proc_start, group=True)  # alive but not answering: replace it
        if port == 0:
            from copydesk.services.process import free_port

            port = free_port()
        if port_open(port):
            raise ServiceError(
                f"port {port} on {HOST} is already in use (another Prefect server?); "
                "choose another with --port, or point PREFECT_API_URL at the running one"
            )
        env = server_environment(settings, port=port, ui=ui)
        log_path = log_file(settings)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port),
                "--analytics-off", "--ui" if ui else "--no-ui"]
        with open(log_path, "ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # outlives this command; stopped as a group
                close_fds=True,
            )
        api_url = f"http://{HOST}:{port}/api"
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise ServiceError(
                    f"the Prefect server exited with code {proc.returncode} while starting; "
                    f"last lines of {log_path}:\n{log_tail(log_path)}"
                )
            if health_ok(f"{api_url}/health", timeout=1.0):
                break
            if time.monotonic() > deadline:
                stop_pid(proc.pid, grace=STOP_GRACE, group=True)
                raise ServiceError(
                    f"the Prefect server did not answer {api_url}/health within {timeout:.0f} s and was "
                    f"stopped; last lines of {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.25)
        state = PrefectServer(
            pid=proc.pid,
            port=port,
            api_url=api_url,
            ui_url=f"http://{HOST}:{port}",
            log_path=str(log_path),
            home=env.get("PREFECT_HOME"),
            started_at=time.time(),
            proc_start=process_start_ticks(proc.pid),
            ui=ui,
        )
        path = state_file(settings)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(state.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return state, True


def stop_server(settings: Settings) -> PrefectServer | None:
    """Stop the recorded server; None when none was running."""
    with _lock(settings):
        state = _read(settings)
        if state is None:
            return None
        stopped = stop_pid(state.pid, grace=STOP_GRACE, proc_start=state.proc_start, group=True)
        with contextlib.suppress(OSError):
            state_file(settings).unlink()
        return state if stopped else None


def use_local_server(settings: Settings | None = None, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Point this process's Prefect client at the local server (when PREFECT_API_URL is unset).

    Returns the API URL in effect (the user's own, or the local server's), or None when
    there is neither: Prefect then starts a temporary server of its own.
    """
    environ = os.environ if environ is None else environ
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    state = running_server(settings or Settings())
    if state is None:
        return None
    environ["PREFECT_API_URL"] = state.api_url
    return state.api_url
