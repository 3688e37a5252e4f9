"""Test-wide set-up: no real network, no home folder, no real outputs/.

HOME and PREFECT_HOME point into a temporary folder before anything imports
Prefect; the API variables are cleared so no test can reach a real API by
accident. Tests that need servers start real ones: the fake OpenAI-compatible
API over loopback, one Prefect server per session, and (in their own modules)
LanguageTool and the local model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

_SANDBOX = Path(tempfile.mkdtemp(prefix="copydesk-tests-"))
os.environ["HOME"] = str(_SANDBOX / "home")
os.environ["PREFECT_HOME"] = str(_SANDBOX / "prefect")
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["COPYDESK_OUTPUT_DIR"] = str(_SANDBOX / "outputs")
os.environ["COPYDESK_STATE_DIR"] = str(_SANDBOX / "state")
# `copydesk run` leaves no Prefect server or LanguageTool behind in tests (tests/test_server_reuse.py
# turns it on in a folder of its own, and stops what it started).
os.environ["COPYDESK_KEEP_SERVERS"] = "false"
for _name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PREFECT_API_URL", "COPYDESK_LANGUAGETOOL_URL"):
    os.environ.pop(_name, None)
(_SANDBOX / "home").mkdir()

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SECRET_KEY = "sk-test-NEVER-PRINT-ME-1234567890"

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch import FakeBatchAPI  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

# Session fixtures for the real LanguageTool and llama.cpp servers.
pytest_plugins = ["conftest_services"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fake_api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def batch_api() -> Iterator[FakeBatchAPI]:
    """A fake OpenAI-compatible server with the Batch API (tests/fake_batch.py)."""
    with FakeBatchAPI() as fake:
        yield fake


@pytest.fixture
def batch_env(cli_env: dict[str, str], batch_api: FakeBatchAPI) -> dict[str, str]:
    """`cli_env` pointed at the fake Batch API, polling every 0.1 s."""
    return {**cli_env, "OPENAI_BASE_URL": batch_api.url, "COPYDESK_BATCH_POLL_SECONDS": "0.1"}


@pytest.fixture
def basic_spec(tmp_path: Path) -> Path:
    """A copy of the basic fixture pipeline and its prompts that a test may edit."""
    shutil.copytree(FIXTURES, tmp_path / "fixtures")
    return tmp_path / "fixtures" / "pipelines" / "basic.yaml"


@pytest.fixture
def gateway_spec(basic_spec: Path) -> Path:
    """The basic spec as behind a gateway: batch lines carry the upstream's names
    (`batch.model`, the expansion's `batch_model`), the outline a gateway alias."""
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["batch"] = {"model": "up-writer"}
    data["stages"]["expansion"]["batch_model"] = "up-writer-long"
    data["stages"]["outline"]["model"] = "gw-outliner"
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    return basic_spec


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One real Prefect server on loopback for the whole session."""
    port = free_port()
    env = {**os.environ, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_UI_ENABLED": "false"}
    log = open(_SANDBOX / "prefect-server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited: {(_SANDBOX / 'prefect-server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("prefect server did not answer /api/health within 120 s")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def cli_env(fake_api: FakeOpenAI, prefect_server: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the real `copydesk` command against the fake API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_"))}
    env.update(
        OPENAI_BASE_URL=fake_api.url,
        OPENAI_API_KEY=SECRET_KEY,
        PREFECT_API_URL=prefect_server,
        COPYDESK_BACKOFF_INITIAL="0.05",
        COPYDESK_BACKOFF_MAX="0.5",
        COPYDESK_STATE_DIR=str(tmp_path / "state"),
        COPYDESK_KEEP_SERVERS="false",
        COLUMNS="200",
    )
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("copydesk")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
