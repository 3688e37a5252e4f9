"""Session-wide real servers for the integration tests (LanguageTool).

Imported by tests/services/conftest.py and tests/qc/conftest.py; it can also be
registered once for the whole suite with `pytest_plugins = ["conftest_services"]`
in tests/conftest.py. However many conftests import it, the server starts once
per session: the fixture starts it as a *background* service in one fixed
state folder under the session's basetemp, so a second fixture instance finds
it there (`find_running`) and only the instance that started it stops it.

A missing install is a failure, never a skip: the message says what to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from copydesk.errors import ServiceError
from copydesk.services.manager import ServiceStatus, start_services, stop_services
from copydesk.services.process import health_ok, pid_alive, port_open
from copydesk.settings import Settings


def assert_stopped(pid: int | None, port: int, health_url: str) -> None:
    """The process is gone and nothing answers its health URL any more.

    The port itself may be taken again at once by another process on a busy
    machine (tests of other suites bind free ports too), so an open port only
    fails the check if it still answers our server's health URL.
    """
    assert pid is not None and not pid_alive(pid), f"process {pid} is still running"
    assert not port_open(port) or not health_ok(health_url, timeout=1.0), f"port {port} still answers"


def make_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a test: its own state folder, no external LanguageTool."""
    values: dict[str, object] = {"state_dir": state_dir, "languagetool_url": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def services_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "copydesk-services-state"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def languagetool_service(services_state_dir: Path) -> Iterator[ServiceStatus]:
    """The real LanguageTool server, started once for the session (background mode)."""
    settings = make_settings(services_state_dir)
    try:
        (status,) = start_services(settings, which=("languagetool",))
    except ServiceError as exc:
        pytest.fail(f"LanguageTool is needed by the integration tests and could not start: {exc}", pytrace=False)
    yield status
    if status.detail == "started":  # this fixture instance owns it
        stop_services(settings, which=("languagetool",))
        assert status.url is not None
        assert_stopped(status.pid, int(status.url.rsplit(":", 1)[1]), status.url + "/v2/healthcheck")


@pytest.fixture(scope="session")
def languagetool_base_url(languagetool_service: ServiceStatus) -> str:
    """Base URL of the session's LanguageTool server (http://127.0.0.1:PORT)."""
    assert languagetool_service.url is not None
    return languagetool_service.url
