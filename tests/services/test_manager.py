"""`copydesk services start|stop|status` through the manager functions, with the real local model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest_services import assert_stopped, make_settings

from copydesk.errors import ServiceError
from copydesk.services.llama import LlamaServer, local_model_endpoint
from copydesk.services.manager import services_status, start_services, stop_services
from copydesk.services.process import read_state


def test_unknown_service_is_named(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"unknown service 'redis'; choose from llama, languagetool"):
        start_services(make_settings(tmp_path), which=("redis",))


def test_status_of_nothing(tmp_path: Path) -> None:
    statuses = services_status(make_settings(tmp_path))
    assert [(s.name, s.running, s.pid, s.detail) for s in statuses] == [
        ("llama", False, None, "not running"),
        ("languagetool", False, None, "not running"),
    ]
    assert [s.detail for s in stop_services(make_settings(tmp_path))] == ["not running", "not running"]


def test_external_languagetool_is_reported_not_managed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, languagetool_url="http://127.0.0.1:9/")
    (started,) = start_services(settings, which=("languagetool",))
    assert (started.url, started.running, started.pid) == ("http://127.0.0.1:9", False, None)
    assert started.detail.startswith("external")
    (stopped,) = stop_services(settings, which=("languagetool",))
    assert stopped.detail == "external, not stopped"


@pytest.mark.integration
def test_background_start_find_status_stop(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    try:
        (started,) = start_services(settings, which=("llama",))
    except ServiceError as exc:
        pytest.fail(f"the local model server could not start: {exc}", pytrace=False)
    try:
        assert started.running and started.detail == "started" and started.pid
        assert started.url and started.url.endswith("/v1")

        # A new lookup finds it, in this process and in another one.
        found = LlamaServer(settings).find_running()
        assert found is not None and (found.pid, found.url) == (started.pid, started.url)
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from copydesk.services.process import find_running; "
                "s = find_running('llama', Path(sys.argv[1])); print(s.url if s else None)",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert other.stdout.strip() == started.url

        status = {s.name: s for s in services_status(settings)}
        assert (status["llama"].running, status["llama"].pid, status["llama"].url) == (True, started.pid, started.url)
        assert status["languagetool"].running is False

        # Starting again reuses it; an endpoint block uses it and leaves it running.
        (again,) = start_services(settings, which=("llama",))
        assert (again.detail, again.pid) == ("already running", started.pid)
        endpoint = local_model_endpoint(settings)
        with endpoint as url:
            assert url == started.url and endpoint.server is None
            assert httpx.get(url + "/models", trust_env=False).status_code == 200
        assert LlamaServer(settings).find_running() is not None
    finally:
        (stopped,) = stop_services(settings, which=("llama",))
    assert (stopped.detail, stopped.pid) == ("stopped", started.pid)
    port = int(started.url.rsplit(":", 1)[1].split("/")[0])
    assert_stopped(started.pid, port, started.url + "/models")
    assert read_state("llama", tmp_path) is None
    assert services_status(settings, which=("llama",))[0].running is False
