"""A subprocess server on a free 127.0.0.1 port, health-checked, stopped for sure.

`ManagedServer` runs one server process two ways:

- in the foreground, as a context manager: `with server: ...` starts it, waits
  until its health URL answers, and stops it (SIGTERM, then SIGKILL after a
  grace period) when the block ends. Its output goes to
  `<state_dir>/logs/<name>-<port>.log`, deleted after a clean stop and kept
  (and quoted in the error) when the start fails.
- in the background, for `copydesk services start`: `start_background()`
  starts it in its own session, so it outlives the command, and records
  `<state_dir>/<name>.json` (pid, port, URLs, log). Later processes find it
  with `find_running(name, state_dir)`, which trusts the record only when the
  pid is alive, is still the same process (its start time is recorded against
  pid reuse) and the health URL answers. `stop_background()` stops it. Its
  output goes to `<state_dir>/logs/<name>.log`.

Every child gets `child_environment()` (copydesk.services.environment): an
allowlist of the caller's environment (PATH, HOME, locale, TZ, TMPDIR, JAVA_HOME,
the COPYDESK_* settings, and the prefixes the server asks for in `env_prefixes`),
never a secret (OPENAI_*, *_API_KEY, *PASSWORD*, *TOKEN*, *SECRET*, *AUTH*) unless
its name starts with one of `env_keep`, plus what the server itself is given
(`env=`). It starts with umask 077: what it writes is its owner's alone.

The state folder and its logs folder are 0700, the state files, logs and locks
0600 (copydesk.private).

A foreground server shares the caller's process group, so Ctrl-C reaches it
too, and it is stopped when the interpreter exits normally. A caller killed
with SIGKILL leaves it running: `copydesk services status` cannot see it (it
has no state file); find it in `ps` by its port.

Servers bind 127.0.0.1 only. Every failure raises `ServiceError` with the
log's last lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import httpx

from copydesk.errors import ServiceError
from copydesk.locks import file_lock
from copydesk.private import PRIVATE_UMASK, open_private, private_dir, write_private
from copydesk.services.environment import child_environment

HOST = "127.0.0.1"
#: Lines of the server's log quoted in an error.
LOG_TAIL_LINES = 25
_BIND_ERRORS = ("address already in use", "bindexception", "errno 98")

@dataclass(frozen=True)
class ServerState:
    """What the state file of a background server records."""

    name: str
    pid: int
    port: int
    url: str
    health_url: str
    log_path: str
    started_at: float
    command: list[str] = field(default_factory=list)
    #: The process's start time in clock ticks since boot (Linux), against pid reuse.
    proc_start: int | None = None
    #: Stop the whole process group (the server leads its own session and has children).
    group: bool = False
    #: Whatever else the owner of the server records (e.g. the Prefect UI's URL).
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> ServerState:
        data = json.loads(text)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# --------------------------------------------------------------------------- helpers


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in ticks) from /proc/<pid>/stat, or None off Linux/if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def process_start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def pid_alive(pid: int, proc_start: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, if `proc_start` is given, is that same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it is just not ours
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: os.kill is all we can know
    state, ticks = stat
    if state in ("Z", "X"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
        return False
    return proc_start is None or ticks == proc_start


def health_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET url answers 2xx. Never uses proxies from the environment."""
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.is_success


def log_tail(path: Path | str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(the log is empty)"


def stop_pid(pid: int, *, grace: float = 10.0, proc_start: int | None = None, group: bool = False) -> bool:
    """SIGTERM `pid`, SIGKILL it after `grace` seconds. False when it was not running.

    `group=True` signals its whole process group too (for a server that leads its own
    session and has children, such as uvicorn's)."""
    if not pid_alive(pid, proc_start):
        return False
    _signal(pid, signal.SIGTERM, group)
    if _wait_gone(pid, proc_start, grace):
        return True
    _signal(pid, signal.SIGKILL, group)
    if not _wait_gone(pid, proc_start, 5.0):
        raise ServiceError(f"process {pid} did not exit after SIGKILL")
    return True


def _signal(pid: int, sig: signal.Signals, group: bool) -> None:
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # a session leader's pid is its group id
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, proc_start: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid, proc_start):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- state files


def state_path(name: str, state_dir: Path) -> Path:
    return Path(state_dir) / f"{name}.json"


def read_state(name: str, state_dir: Path) -> ServerState | None:
    """The recorded background server `name`, alive or not; None without a readable record."""
    try:
        return ServerState.from_json(state_path(name, state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def find_running(name: str, state_dir: Path, *, health_timeout: float = 2.0) -> ServerState | None:
    """The background server `name` if its pid is alive and its health URL answers.

    A record whose process is gone is deleted. A live process that does not
    answer (still starting, or hung) is left alone and reported as not running.
    """
    state = read_state(name, state_dir)
    if state is None:
        return None
    if not pid_alive(state.pid, state.proc_start):
        with contextlib.suppress(OSError):
            state_path(name, state_dir).unlink()
        return None
    if not health_ok(state.health_url, timeout=health_timeout):
        return None
    return state


def _state_lock(name: str, state_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Serialises background starts and stops of one service across processes."""
    return file_lock(private_dir(state_dir) / f"{name}.lock")


def write_state(state: ServerState, state_dir: Path) -> None:
    """Record `state` atomically (a reader never sees half a file)."""
    private_dir(state_dir)
    write_private(state_path(state.name, state_dir), state.to_json())


def command_output(argv: Sequence[str], *, timeout: float = 30) -> str | None:
    """stdout and stderr of a short command run with `child_environment()` (`java -version`), or None
    when it cannot run or does not end within `timeout` seconds."""
    try:
        done = subprocess.run(  # noqa: S603 - the caller's fixed arguments
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=child_environment(),
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stderr + done.stdout


def start_detached(argv: Sequence[str], log_path: Path, *, nice: int = 0) -> subprocess.Popen[bytes]:
    """A helper process that ends by itself, in its own session (it outlives the caller), with
    `child_environment()`, umask 077, its output appended to `log_path` (0600) and, with `nice`, a
    lower CPU priority. Not a server: no port, no state file (the LanguageTool warm-up)."""
    private_dir(log_path.parent)
    with open_private(log_path, "ab") as log:
        return popen(argv, log, env=child_environment(), nice=nice)


def popen(argv: Sequence[str], log: IO[bytes], *, env: dict[str, str], cwd: Path | None = None,
          new_session: bool = True, nice: int = 0) -> subprocess.Popen[bytes]:
    """The one way copydesk starts a process: no stdin, output to `log`, `env` only, no inherited
    file descriptors, umask 077; in its own session with `new_session`, at a lower priority with `nice`."""
    return subprocess.Popen(  # noqa: S603 - the caller's fixed arguments
        list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        start_new_session=new_session, close_fds=True, umask=PRIVATE_UMASK,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509
    )


def _terminate(proc: subprocess.Popen[bytes], grace: float, group: bool = False) -> None:
    """Stop a child (and its process group with `group`): SIGTERM, then SIGKILL after
    `grace` seconds; always reaps it."""
    if proc.poll() is not None:
        return
    _signal(proc.pid, signal.SIGTERM, group)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(proc.pid, signal.SIGKILL, group)
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- the server


class ManagedServer:
    """One server subprocess. Subclasses give `name`, `build_command` and `health_path`.

    `command` may be passed instead of overriding `build_command`: a function
    from the port to the argv list. `port` fixes the port (default: a free one,
    retried on a lost race); `env` is added to `child_environment()`;
    `stop_group` stops the server's whole process group (background only).
    """

    name: str = "server"
    health_path: str = "/"
    #: Path appended to http://127.0.0.1:PORT to form `url` (e.g. "/v1").
    url_path: str = ""
    #: Variables the child must not inherit even though `child_environment()` allows them.
    drop_env: tuple[str, ...] = ()
    #: Name prefixes the child inherits on top of `child_environment()`'s allowlist ...
    env_prefixes: tuple[str, ...] = ()
    #: ... and the prefixes of secrets it needs (every other secret stays out).
    env_keep: tuple[str, ...] = ()

    def __init__(
        self,
        name: str | None = None,
        command: Callable[[int], Sequence[str]] | None = None,
        *,
        state_dir: Path,
        health_path: str | None = None,
        url_path: str | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 10.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        stop_group: bool = False,
    ) -> None:
        if name is not None:
            self.name = name
        if health_path is not None:
            self.health_path = health_path
        if url_path is not None:
            self.url_path = url_path
        self._command = command
        self.state_dir = Path(state_dir)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.env = dict(env) if env is not None else {}
        self.cwd = cwd
        self.fixed_port = port or None
        self.stop_group = stop_group
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._background = False
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # ---- what subclasses provide --------------------------------------------

    def build_command(self, port: int) -> list[str]:
        if self._command is None:
            raise NotImplementedError(f"{type(self).__name__} needs build_command() or command=")
        return [str(part) for part in self._command(port)]

    def check_prerequisites(self) -> None:
        """Raise ServiceError (with the fix) when the server cannot start here."""

    # ---- where it is ----------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError(f"{self.name} has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + self.url_path

    @property
    def health_url(self) -> str:
        return self.base_url + self.health_path

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- foreground -------------------------------------------------------------

    def start(self, timeout: float | None = None) -> Self:
        """Start on a free port and wait until healthy. Retries once on a port race."""
        for attempt in range(3):
            self.spawn()
            try:
                self.wait_ready(timeout)
                return self
            except ServiceError:
                if attempt < 2 and self._lost_port_race():
                    continue
                raise
        raise AssertionError("unreachable")

    def spawn(self, *, background: bool = False) -> None:
        """Start the process without waiting for it (see `wait_ready`)."""
        if self.is_running():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        self.check_prerequisites()
        port = self.fixed_port or free_port()
        if self.fixed_port and port_open(port):
            raise ServiceError(f"port {port} on {HOST} is already in use; {self.name} needs another port")
        private_dir(self.state_dir)
        private_dir(self.logs_dir)
        log_path = self.logs_dir / (f"{self.name}.log" if background else f"{self.name}-{port}.log")
        argv = self.build_command(port)
        env = child_environment(self.env, prefixes=self.env_prefixes, keep=self.env_keep)
        for name in self.drop_env:
            env.pop(name, None)
        with open_private(log_path, "wb") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = popen(argv, log, env=env, cwd=self.cwd, new_session=background)
            except OSError as exc:
                raise ServiceError(f"cannot start {self.name} ({argv[0]}): {exc}") from exc
        self._proc, self._port, self._log_path, self._background = proc, port, log_path, background
        if not background:
            # Stopped at interpreter exit even if nobody called stop().
            self._finalizer = weakref.finalize(self, _terminate, proc, self.stop_grace)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the health URL answers; fail fast when the process dies."""
        proc = self._proc
        if proc is None:
            raise ServiceError(f"{self.name} has not been started")
        timeout = self.start_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        delay = 0.05
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    self._proc = None
                    if self._finalizer is not None:
                        self._finalizer.detach()
                        self._finalizer = None
                    raise ServiceError(
                        f"{self.name} exited with code {code} while starting "
                        f"(command: {' '.join(proc.args)}); last lines of {self._log_path}:\n"  # type: ignore[arg-type]
                        f"{log_tail(self._log_path or '')}"
                    )
                try:
                    if client.get(self.health_url).is_success:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    self.stop(keep_log=True)
                    raise ServiceError(
                        f"{self.name} did not answer {self.health_url} within {timeout:.0f} s "
                        f"and was stopped; last lines of {self._log_path}:\n{log_tail(self._log_path or '')}"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.25)

    def stop(self, *, keep_log: bool = False) -> None:
        """SIGTERM, then SIGKILL after the grace period. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        clean = proc.poll() is None
        _terminate(proc, self.stop_grace, group=self._background and self.stop_group)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._background:
            self._forget_state(proc.pid)
        elif clean and not keep_log and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
        self._proc = None

    def _lost_port_race(self) -> bool:
        if self.fixed_port:
            return False
        text = log_tail(self._log_path or "", 200).lower()
        return any(marker in text for marker in _BIND_ERRORS)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- background -------------------------------------------------------------

    def find_running(self) -> ServerState | None:
        """The background server of this name, if alive and healthy (any process may have started it)."""
        return find_running(self.name, self.state_dir)

    def start_background(
        self, timeout: float | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> tuple[ServerState, bool]:
        """Start detached and record it (with `extra`); reuse a healthy one. Returns (state, started_now)."""
        with _state_lock(self.name, self.state_dir):
            existing = self.find_running()
            if existing is not None:
                return existing, False
            stale = read_state(self.name, self.state_dir)
            if stale is not None and pid_alive(stale.pid, stale.proc_start):
                # Alive but not answering: hung or still starting. Replace it.
                stop_pid(stale.pid, grace=self.stop_grace, proc_start=stale.proc_start, group=stale.group)
            for attempt in range(3):
                self.spawn(background=True)
                try:
                    self.wait_ready(timeout)
                    break
                except ServiceError:
                    if attempt < 2 and self._lost_port_race():
                        continue
                    raise
            proc = self._proc
            assert proc is not None
            state = ServerState(
                name=self.name,
                pid=proc.pid,
                port=self.port,
                url=self.url,
                health_url=self.health_url,
                log_path=str(self._log_path),
                started_at=time.time(),
                command=[str(a) for a in proc.args],  # type: ignore[union-attr]
                proc_start=process_start_ticks(proc.pid),
                group=self.stop_group,
                extra=dict(extra or {}),
            )
            write_state(state, self.state_dir)
            return state, True

    def stop_background(self) -> ServerState | None:
        """Stop the recorded background server. Returns its record, or None if none was running."""
        with _state_lock(self.name, self.state_dir):
            state = read_state(self.name, self.state_dir)
            if state is None:
                return None
            if self._proc is not None and self._proc.pid == state.pid:
                _terminate(self._proc, self.stop_grace, group=state.group)  # our own child: reap it
                self._proc = None
                stopped = True
            else:
                stopped = stop_pid(state.pid, grace=self.stop_grace, proc_start=state.proc_start, group=state.group)
            with contextlib.suppress(OSError):
                state_path(self.name, self.state_dir).unlink()
            return state if stopped else None

    def _forget_state(self, pid: int) -> None:
        state = read_state(self.name, self.state_dir)
        if state is not None and state.pid == pid:
            with contextlib.suppress(OSError):
                state_path(self.name, self.state_dir).unlink()
