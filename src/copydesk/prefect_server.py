"""A local Prefect server (API and UI) for one machine: `copydesk server start|stop|status|env`.

    start_server(settings, port=4200)   `prefect server start` on 127.0.0.1 through
                                        services.process.ManagedServer (detached, minimal
                                        environment, /api/health awaited, state file
                                        <state_dir>/prefect-server.json), telemetry off,
                                        a password (Prefect's basic auth), CORS limited to
                                        the UI's origin, CSRF protection on
    stop_server(settings)               SIGTERM its process group, SIGKILL after a grace period
    running_server(settings)            the recorded server if it is alive and answers
    use_local_server(settings, env)     sets PREFECT_API_URL (and its auth string) to that
                                        server when PREFECT_API_URL is unset
    server_for_run(settings, env)       what `copydesk run` uses: PREFECT_API_URL, the profile's,
                                        the recorded server, or (settings.keep_servers) that
                                        server started now on first use and left running
    server_auth_string(settings)        the server's "user:password"; auth_path(settings) its file
    prefect_defaults(logging_level=)    telemetry off and quiet logs for `copydesk run`/`serve`

The server binds 127.0.0.1 only, and requires Prefect's HTTP basic auth
(`server.api.auth_string`): a random "copydesk:<password>" made once per state
folder and kept in <state_dir>/prefect-server.auth (0600), or the user's own
PREFECT_SERVER_API_AUTH_STRING. Every copydesk command that uses this server sets
PREFECT_API_AUTH_STRING for itself and the flow runs it starts; the UI asks for it
once (`copydesk server password` prints it). So a web page on another origin, or
one reached by DNS rebinding (Prefect 3.9 has no Host-header check), cannot drive
the API: the browser does not know the password. Only GET /api/health and
/api/ready answer without it. A server recorded without a password (started by an
older copydesk) is reported by every command that finds it, and replaced by
`copydesk server start`.

Its database lives in <state_dir>/prefect/ (PREFECT_HOME of the server process,
0700), unless PREFECT_HOME or PREFECT_SERVER_DATABASE_CONNECTION_URL is already set.

This module does not import Prefect; it runs `python -m prefect` as a subprocess.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copydesk.errors import ServiceError
from copydesk.private import create_private, make_private, private_dir
from copydesk.services.process import (
    HOST,
    ManagedServer,
    ServerState,
    find_running,
    free_port,
    health_ok,
    pid_alive,
    port_open,
    read_state,
    state_path,
    write_state,
)
from copydesk.settings import Settings

NAME = "prefect-server"
DEFAULT_PORT = 4200
START_TIMEOUT = 120.0
STOP_GRACE = 15.0

#: The server's password file in the state folder (0600), and the user name in it.
AUTH_FILE = "prefect-server.auth"
AUTH_USER = "copydesk"

#: Telemetry off: no internet here, and nobody asked for it.
QUIET_ENV = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def prefect_defaults(environ: MutableMapping[str, str] | None = None, *, logging_level: str,
                     console_level: str | None = None) -> None:
    """Offline-friendly Prefect settings for this process and the runs it starts (`copydesk run`
    and `serve`); the user's own values win. Prefect reads them when it is first imported.
    `logging_level` is what reaches the flow and task runs' logs; `console_level`, when given,
    what of it the terminal shows."""
    environ = os.environ if environ is None else environ
    for name, value in QUIET_ENV.items():
        environ.setdefault(name, value)
    environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "copydesk")
    environ.setdefault("PREFECT_LOGGING_LEVEL", logging_level)
    if console_level is not None:
        environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", console_level)
    # Prefect's temporary server migrates a fresh database first (16-20 s on 2 cores, more
    # when the machine is busy); its default 20 s start-up limit fails a first run.
    environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@dataclass(frozen=True)
class PrefectServer:
    """The recorded local server, as `copydesk server` reports it."""

    pid: int
    port: int
    api_url: str
    ui_url: str
    log_path: str
    home: str | None
    started_at: float
    proc_start: int | None = None
    ui: bool = True
    #: It requires the auth string; False: started by an older copydesk, open to any local web page.
    auth: bool = False

    @classmethod
    def from_state(cls, state: ServerState) -> PrefectServer:
        return cls(
            pid=state.pid,
            port=state.port,
            api_url=state.url,
            ui_url=f"http://{HOST}:{state.port}",
            log_path=state.log_path,
            home=state.extra.get("home"),
            started_at=state.started_at,
            proc_start=state.proc_start,
            ui=bool(state.extra.get("ui", True)),
            auth=bool(state.extra.get("auth", False)),
        )


def unprotected_notice(server: PrefectServer) -> str:
    """What to tell the user about a server without a password."""
    return (f"the local Prefect server (pid {server.pid}, {server.api_url}) was started by an older copydesk "
            "without a password: any web page open on this machine can drive its API. Restart it with "
            "`copydesk server start` (it replaces that server with one that requires a password)")


# ------------------------------------------------------------------------------ the password


def auth_path(settings: Settings) -> Path:
    """The file (0600) that holds the local server's auth string."""
    return Path(settings.state_dir) / AUTH_FILE


def server_auth_string(settings: Settings, *, create: bool = False) -> str | None:
    """The local server's auth string, "user:password": the user's own
    PREFECT_SERVER_API_AUTH_STRING, else the state folder's file, made now (random, 0600)
    when `create` and it is missing. None: neither exists."""
    own = os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
    if own:
        return own
    path = auth_path(settings)
    for _ in range(2):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text or not create:
            return text or None
        # Made once per state folder; of processes racing to make it, the first one's wins.
        create_private(private_dir(path.parent) / path.name, f"{AUTH_USER}:{secrets.token_urlsafe(32)}\n")
    raise ServiceError(f"{path}: the Prefect server's password file is empty; delete it and start the server again")


def auth_export_line(settings: Settings) -> str | None:
    """`export PREFECT_API_AUTH_STRING=...` for a shell, reading the secret where it is kept
    (the file, or the shell's own PREFECT_SERVER_API_AUTH_STRING): the line never holds it."""
    if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
        return 'export PREFECT_API_AUTH_STRING="$PREFECT_SERVER_API_AUTH_STRING"'
    path = auth_path(settings)
    if not path.is_file():
        return None
    return f'export PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(path.resolve()))})"'


def _use_server(server: PrefectServer, settings: Settings, environ: MutableMapping[str, str],
                warn: Callable[[str], None] | None) -> None:
    """This process (and the flow runs it starts) talks to `server`: its URL and auth string."""
    environ["PREFECT_API_URL"] = server.api_url
    if server.auth:
        auth = server_auth_string(settings)
        if auth and not environ.get("PREFECT_API_AUTH_STRING"):
            environ["PREFECT_API_AUTH_STRING"] = auth
    elif warn is not None:
        warn(unprotected_notice(server))


def _auth_for_url(url: str, settings: Settings, environ: MutableMapping[str, str]) -> None:
    """PREFECT_API_URL (or the profile's) names the local server: its auth string too, unless set
    (e.g. a shell that kept only the PREFECT_API_URL line of an older `copydesk server env`)."""
    state = read_state(NAME, Path(settings.state_dir))
    if (state is None or not state.extra.get("auth") or environ.get("PREFECT_API_AUTH_STRING")
            or url.rstrip("/") != state.url.rstrip("/")):
        return
    auth = server_auth_string(settings)
    if auth:
        environ["PREFECT_API_AUTH_STRING"] = auth


def _upgrade_record(settings: Settings) -> None:
    """Rewrite a record of copydesk before the one process helper (api_url, no url) in today's
    shape, so a server started by the older version can still be found and stopped."""
    path = state_path(NAME, Path(settings.state_dir))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "url" in data or "api_url" not in data:
            return
        state = ServerState(
            name=NAME, pid=int(data["pid"]), port=int(data["port"]), url=data["api_url"],
            health_url=f"{data['api_url']}/health", log_path=str(data.get("log_path", "")),
            started_at=float(data.get("started_at", 0.0)), proc_start=data.get("proc_start"), group=True,
            extra={"home": data.get("home"), "ui": bool(data.get("ui", True))},
        )
    except (OSError, ValueError, TypeError, KeyError):
        return
    write_state(state, Path(settings.state_dir))


def running_server(settings: Settings) -> PrefectServer | None:
    """The recorded server if its process lives and /api/health answers; a dead record is removed."""
    _upgrade_record(settings)
    state = find_running(NAME, Path(settings.state_dir))
    return PrefectServer.from_state(state) if state is not None else None


#: The kept server's services for one task run per article (bench/taskrun_server_cpu.py, bench/README.md):
#: the task run recorder and the event persister read and write in batches instead of one event
#: per transaction, and the triggers service (automations) is off. With Prefect's defaults a task
#: run cost this server ~29 ms of CPU; with these ~3 ms. The user's own values win.
TASK_RUN_SERVICES = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


def server_environment(settings: Settings, *, port: int, ui: bool, auth: str | None) -> dict[str, str]:
    """What the server process gets on top of `child_environment()` (which never passes the API key).

    `auth` ("user:password") is required on every request but the health checks. The
    browser-facing API also accepts only the UI's own origin (CORS) and requires Prefect's
    CSRF token on every state-changing request; Prefect's own client and UI fetch the token
    themselves. The user's own PREFECT_SERVER_* values for those win."""
    # The UI's own origin, however the operator's browser names this machine (an SSH tunnel: localhost).
    origin = f"http://{HOST}:{port},http://localhost:{port}"
    env = dict(QUIET_ENV)
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env["PREFECT_SERVER_UI_ENABLED"] = env["PREFECT_UI_ENABLED"] = "true" if ui else "false"
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    for setting, value in (("CORS_ALLOWED_ORIGINS", origin), ("CSRF_PROTECTION_ENABLED", "true")):
        # Prefect 3 reads PREFECT_SERVER_API_<X>, then PREFECT_SERVER_<X>: the user's own, under either name, wins.
        if f"PREFECT_SERVER_API_{setting}" not in os.environ and f"PREFECT_SERVER_{setting}" not in os.environ:
            env[f"PREFECT_SERVER_API_{setting}"] = value
    env.update({name: value for name, value in TASK_RUN_SERVICES.items() if name not in os.environ})
    if "PREFECT_HOME" not in os.environ and "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in os.environ:
        env["PREFECT_HOME"] = str(Path(settings.state_dir).resolve() / "prefect")
    return env


class _PrefectProcess(ManagedServer):
    """`prefect server start` under the one process helper (the server must not talk to another
    server: it *is* the API, so PREFECT_API_URL is left out of its environment). Of the
    caller's PREFECT_* settings it keeps its own secrets (PREFECT_SERVER_*: the database
    URL and password, the auth string), never a client's (PREFECT_API_KEY, PREFECT_API_AUTH_STRING)."""

    name = NAME
    health_path = "/api/health"
    url_path = "/api"
    drop_env = ("PREFECT_API_URL",)
    env_prefixes = ("PREFECT_",)
    env_keep = ("PREFECT_SERVER_", "PREFECT_API_DATABASE_")

    def __init__(self, settings: Settings, *, port: int, ui: bool, timeout: float, auth: bool = True) -> None:
        self.ui = ui
        super().__init__(
            state_dir=Path(settings.state_dir),
            port=port,
            env=server_environment(settings, port=port, ui=ui, auth=server_auth_string(settings, create=True)
                                   if auth else None),
            start_timeout=timeout,
            stop_grace=STOP_GRACE,
            stop_group=True,  # uvicorn runs as a child of `prefect server start`
        )

    def build_command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port),
                "--analytics-off", "--ui" if self.ui else "--no-ui"]

    def check_prerequisites(self) -> None:
        """Its own database folder (and the database an older copydesk left readable) is private."""
        home = self.env.get("PREFECT_HOME")
        if home:
            private_dir(home)
            for path in Path(home).glob("prefect.db*"):
                make_private(path)

    def start_background(
        self, timeout: float | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> tuple[ServerState, bool]:
        """Start it detached (or find it running), recorded as requiring the auth string."""
        return super().start_background(timeout, extra={**(extra or {}), "auth": True})


def start_server(
    settings: Settings,
    *,
    port: int = DEFAULT_PORT,
    ui: bool = True,
    timeout: float = START_TIMEOUT,
) -> tuple[PrefectServer, bool, PrefectServer | None]:
    """Start the server detached (or reuse a healthy one); returns (server, started_now, the
    server without a password it replaced, if any)."""
    existing = running_server(settings)
    replaced = None
    if existing is not None and existing.auth:
        return existing, False, None
    if existing is not None:  # started by an older copydesk, without a password: replace it
        replaced = stop_server(settings)
    if port == 0:
        port = free_port()
    elif port_open(port):
        raise ServiceError(
            f"port {port} on {HOST} is already in use (another Prefect server?); "
            "choose another with --port, or point PREFECT_API_URL at the running one"
        )
    server = _PrefectProcess(settings, port=port, ui=ui, timeout=timeout)
    home = server.env.get("PREFECT_HOME") or os.environ.get("PREFECT_HOME")
    state, started = server.start_background(extra={"home": home, "ui": ui})
    return PrefectServer.from_state(state), started, replaced


def stop_server(settings: Settings) -> PrefectServer | None:
    """Stop the recorded server; None when none was running."""
    _upgrade_record(settings)
    server = _PrefectProcess(settings, port=DEFAULT_PORT, ui=False, timeout=START_TIMEOUT, auth=False)
    state = server.stop_background()
    return PrefectServer.from_state(state) if state is not None else None


def use_local_server(
    settings: Settings | None = None,
    environ: MutableMapping[str, str] | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> str | None:
    """Point this process's Prefect client at the local server (when PREFECT_API_URL is unset),
    with its auth string (PREFECT_API_AUTH_STRING, unless set); `warn` hears of a server
    without a password.

    Returns the API URL in effect (the user's own, or the local server's), or None when
    there is neither: Prefect then starts a temporary server of its own.
    """
    settings = settings or Settings()
    environ = os.environ if environ is None else environ
    if environ.get("PREFECT_API_URL"):
        _auth_for_url(environ["PREFECT_API_URL"], settings, environ)
        return environ["PREFECT_API_URL"]
    state = running_server(settings)
    if state is None:
        return None
    _use_server(state, settings, environ, warn)
    return state.api_url


def profile_api_url(environ: MutableMapping[str, str] | None = None) -> str | None:
    """PREFECT_API_URL of the active Prefect profile, read from its profiles file without
    importing Prefect (Prefect reads its settings once, when it is first imported)."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = (data.get("profiles") or {}).get(active) or {}
    value = profile.get("PREFECT_API_URL") if isinstance(profile, dict) else None
    return str(value) if value else None


#: How long a recorded server whose process lives may take to answer before a run replaces it.
BUSY_SERVER_GRACE = 30.0


def _slow_server(settings: Settings) -> PrefectServer | None:
    """The recorded server when its process lives but answered too slowly just now (a busy
    machine): it is given BUSY_SERVER_GRACE seconds before anyone replaces it, since other
    commands may be using it."""
    state = read_state(NAME, Path(settings.state_dir))
    if state is None or not pid_alive(state.pid, state.proc_start):
        return None
    deadline = time.monotonic() + BUSY_SERVER_GRACE
    while time.monotonic() < deadline:
        if health_ok(state.health_url, timeout=5.0):
            return PrefectServer.from_state(state)
        time.sleep(0.5)
    return None


@dataclass(frozen=True)
class RunServer:
    """The Prefect API a `copydesk run` talks to, and where it came from."""

    #: None: Prefect's temporary per-process server (COPYDESK_KEEP_SERVERS=false).
    api_url: str | None
    #: "environment", "profile", "local" (a running `copydesk server start`), "started", "temporary"
    source: str
    ui_url: str | None = None
    #: The local server has no password (started by an older copydesk): `unprotected_notice`.
    unprotected: PrefectServer | None = None


def server_for_run(settings: Settings | None = None, environ: MutableMapping[str, str] | None = None) -> RunServer:
    """Point this process's Prefect client at a lasting server before Prefect is imported.

    PREFECT_API_URL (environment, then the active profile) wins. Else the local server of
    `copydesk server start` is used when it runs, and, with settings.keep_servers (the
    default), started now when it does not: the first command pays its start (a fresh
    database is migrated first), every later one finds it. Its database keeps every run
    for the UI. Several commands starting at once wait on one lock, and all but the
    first find the server the first one started. With keep_servers false nothing is
    started here and Prefect starts its temporary server inside this process, as before.
    """
    settings = settings or Settings()
    environ = os.environ if environ is None else environ
    if environ.get("PREFECT_API_URL"):
        _auth_for_url(environ["PREFECT_API_URL"], settings, environ)
        return RunServer(environ["PREFECT_API_URL"], "environment")
    if url := profile_api_url(environ):
        _auth_for_url(url, settings, environ)
        return RunServer(url, "profile")
    existing = running_server(settings) or _slow_server(settings)
    if existing is None and not settings.keep_servers:
        return RunServer(None, "temporary")
    source = "local"
    if existing is None:
        _upgrade_record(settings)
        # 4200 when it is free; a port of its own when anything else holds 4200. The start
        # itself is locked: whoever comes second finds the first one's server and reuses it.
        preferred = not port_open(DEFAULT_PORT)
        for attempt in range(2):  # 4200, then a free port if another server took 4200 meanwhile
            port = DEFAULT_PORT if preferred and attempt == 0 else free_port()
            process = _PrefectProcess(settings, port=port, ui=True, timeout=START_TIMEOUT)
            home = process.env.get("PREFECT_HOME") or os.environ.get("PREFECT_HOME")
            try:
                state, started = process.start_background(extra={"home": home, "ui": True})
                break
            except ServiceError:
                if attempt == 1 or port != DEFAULT_PORT or not port_open(DEFAULT_PORT):
                    raise
        existing = PrefectServer.from_state(state)
        source = "started" if started else "local"
    _use_server(existing, settings, environ, None)
    return RunServer(existing.api_url, source, existing.ui_url if existing.ui else None,
                     None if existing.auth else existing)
