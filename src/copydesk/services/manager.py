"""`copydesk services start|stop|status`: the embedded servers as background services.

    start_services(settings)      start llama and languagetool (or `which`) detached,
                                  recorded under settings.state_dir; healthy ones are reused
    stop_services(settings)       SIGTERM (then SIGKILL) the recorded servers
    services_status(settings)     what runs, with pid and URL

Each returns one `ServiceStatus` per service, in the order asked. Later
copydesk processes find these servers through `languagetool_url` and
`local_model_endpoint` instead of starting their own. With
COPYDESK_LANGUAGETOOL_URL set, "languagetool" is that external server: it is
neither started nor stopped, only reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from copydesk.errors import ServiceError
from copydesk.services.languagetool import LanguageToolServer, normalize_url
from copydesk.services.llama import LlamaServer
from copydesk.services.process import ManagedServer, find_running, health_ok, pid_alive, read_state
from copydesk.settings import Settings

SERVICE_NAMES: tuple[str, ...] = ("llama", "languagetool")


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    url: str | None
    #: One human line: "started", "already running", "stopped", "not running", "external", ...
    detail: str = ""
    log_path: str | None = None


def make_server(name: str, settings: Settings) -> ManagedServer:
    if name == "llama":
        return LlamaServer(settings)
    if name == "languagetool":
        return LanguageToolServer(settings)
    raise ServiceError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")


def _names(which: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(which))  # unique, in order
    unknown = [n for n in names if n not in SERVICE_NAMES]
    if unknown:
        raise ServiceError(f"unknown service {', '.join(map(repr, unknown))}; choose from {', '.join(SERVICE_NAMES)}")
    return names


def _external(name: str, settings: Settings) -> ServiceStatus | None:
    if name == "languagetool" and settings.languagetool_url:
        url = normalize_url(settings.languagetool_url)
        up = health_ok(url + "/v2/healthcheck")
        return ServiceStatus(
            name,
            up,
            None,
            url,
            f"external (COPYDESK_LANGUAGETOOL_URL){'' if up else ', not answering'}",
        )
    return None


def start_services(settings: Settings, which: Sequence[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Start the services in the background (concurrently), reusing healthy ones.

    Raises ServiceError naming every service that failed; the others are left running.
    """
    names = _names(which)

    def start_one(name: str) -> ServiceStatus:
        external = _external(name, settings)
        if external is not None:
            return external
        state, started = make_server(name, settings).start_background()
        return ServiceStatus(
            name, True, state.pid, state.url, "started" if started else "already running", state.log_path
        )

    results: dict[str, ServiceStatus] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {name: pool.submit(start_one, name) for name in names}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except ServiceError as exc:
                errors.append(f"{name}: {exc}")
    if errors:
        raise ServiceError("could not start " + "\n".join(errors))
    return [results[name] for name in names]


def stop_services(settings: Settings, which: Sequence[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Stop the recorded background servers. Stopping what is not running is not an error."""
    statuses = []
    for name in _names(which):
        external = _external(name, settings)
        if external is not None:
            statuses.append(ServiceStatus(name, external.running, None, external.url, "external, not stopped"))
            continue
        state = make_server(name, settings).stop_background()
        if state is None:
            statuses.append(ServiceStatus(name, False, None, None, "not running"))
        else:
            statuses.append(ServiceStatus(name, False, state.pid, state.url, "stopped", state.log_path))
    return statuses


def services_status(settings: Settings, which: Sequence[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    statuses = []
    for name in _names(which):
        external = _external(name, settings)
        if external is not None:
            statuses.append(external)
            continue
        running = find_running(name, settings.state_dir)
        if running is not None:
            statuses.append(ServiceStatus(name, True, running.pid, running.url, "running", running.log_path))
            continue
        state = read_state(name, settings.state_dir)
        if state is not None and pid_alive(state.pid, state.proc_start):
            statuses.append(
                ServiceStatus(name, False, state.pid, state.url, "process alive but not answering", state.log_path)
            )
        else:
            statuses.append(ServiceStatus(name, False, None, None, "not running"))
    return statuses
