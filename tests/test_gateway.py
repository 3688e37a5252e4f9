"""copydesk behind LiteLLM's proxy, the gateway many teams put in front of their models.

The real proxy (`litellm`, installed by `scripts/setup.sh --dev` into .venv-litellm, apart
from Prefect's pins) is started on loopback by these tests with a config file they write,
in front of the project's fake upstream (tests/fake_batch.py) over real HTTP. No database,
no UI, no telemetry, no model-cost-map download (LITELLM_LOCAL_MODEL_COST_MAP, offline mode),
and no key of any real provider in its environment; an https proxy that leads nowhere stops
any request that would leave the machine.

Two gateways, as teams run them:
    bare   chat only (`gw-writer` -> the upstream's `up-writer`): /v1/moderations answers 500
           ("Missing credentials"), GET /v1/files passes through, an upload answers 500
           ("files_settings is not set")
    full   chat, a moderation model, and `files_settings` (files and batches passed to the
           upstream unchanged: a batch line's model is NOT rewritten from the gateway's alias)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from conftest import ROOT, free_port, run_cli
from fake_batch import FakeBatchAPI

LITELLM = Path(os.environ.get("COPYDESK_TEST_LITELLM") or ROOT / ".venv-litellm" / "bin" / "litellm")
pytestmark = pytest.mark.skipif(
    not LITELLM.exists(), reason=f"LiteLLM's proxy is not installed at {LITELLM} (scripts/setup.sh --dev installs it)"
)

MASTER_KEY = "sk-gateway-master-0123456789"
UPSTREAM_KEY = "upstream-key-never-shown"


class Gateway:
    """One LiteLLM proxy process on loopback with the config given; its log is kept for counting requests."""

    def __init__(self, config: dict[str, Any], folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "litellm.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = folder / "litellm.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._home = folder / "home"
        self._home.mkdir(exist_ok=True)

    def start(self) -> Gateway:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_OFFLINE_MODE": "true",
            "DO_NOT_TRACK": "1",
            "HTTPS_PROXY": "http://127.0.0.1:9",  # nothing may leave the machine: https goes nowhere
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
        started = time.monotonic()
        log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [str(LITELLM), "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self._home,
        )
        log.close()
        deadline = started + 180
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"litellm exited ({self._proc.returncode}): {self.log()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health/liveliness", timeout=2).status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"litellm did not answer within 180 s: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def requests(self, method: str, path: str) -> list[int]:
        """Positions in the log of the requests that reached the proxy with this method and path
        (uvicorn's access lines, `"POST /v1/files HTTP/1.1" 500`), query strings included."""
        pattern = re.compile(rf'"{method} {re.escape(path)}(?:\?[^ ]*)? HTTP/1\.1" \d{{3}}')
        return [m.start() for m in pattern.finditer(self.log())]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}/{path}", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)


def _chat_model(upstream: FakeBatchAPI) -> dict[str, Any]:
    return {"model_name": "gw-writer",
            "litellm_params": {"model": "openai/up-writer", "api_base": upstream.url, "api_key": UPSTREAM_KEY}}


def _config(models: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model_list": models, "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {"telemetry": False}, **extra}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeBatchAPI]]:
    """A gateway with chat only, in front of its own upstream."""
    with FakeBatchAPI(models=("up-writer",)) as upstream:
        gateway = Gateway(_config([_chat_model(upstream)]), tmp_path_factory.mktemp("bare-gateway")).start()
        try:
            yield gateway, upstream
        finally:
            gateway.stop()


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, FakeBatchAPI]]:
    """A gateway with chat, moderation and files_settings (files and batches to the upstream)."""
    with FakeBatchAPI(models=("up-writer",)) as upstream:
        moderation = {"model_name": "omni-moderation-latest",
                      "litellm_params": {"model": "openai/omni-moderation-latest", "api_base": upstream.url,
                                         "api_key": UPSTREAM_KEY}}
        files = [{"custom_llm_provider": "openai", "api_base": upstream.url, "api_key": UPSTREAM_KEY}]
        config = _config([_chat_model(upstream), moderation], files_settings=files)
        gateway = Gateway(config, tmp_path_factory.mktemp("full-gateway")).start()
        try:
            yield gateway, upstream
        finally:
            gateway.stop()


def _spec(basic_spec: Path, **changes: Any) -> Path:
    """The basic fixture pipeline on the gateway's alias, with `changes` (dotted keys) applied."""
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["model"] = "gw-writer"
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    basic_spec.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return basic_spec


def _env(cli_env: dict[str, str], gateway: Gateway, **extra: str) -> dict[str, str]:
    return {**cli_env, "OPENAI_BASE_URL": gateway.url, "OPENAI_API_KEY": MASTER_KEY, "COPYDESK_MAX_ATTEMPTS": "3",
            "COPYDESK_BATCH_POLL_SECONDS": "0.1", **extra}


def _run(spec: Path, out: Path, run_id: str, topics: list[str], env: dict[str, str], *extra: str):
    args = ["run", str(spec), "--out", str(out), "--run-id", run_id, *extra]
    for topic in topics:
        args += ["-t", topic]
    return run_cli(args, env)


def _frame(out: Path, run_id: str) -> pd.DataFrame:
    return pd.read_csv(out / run_id / "articles.csv", encoding="utf-8-sig", keep_default_na=False)


def test_the_gateway_starts_and_answers_as_the_issue_found_it(bare):
    gateway, _ = bare
    print(f"LiteLLM {LITELLM} started in {gateway.startup_seconds:.1f} s")
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    moderation = httpx.post(f"{gateway.url}/moderations", json={"model": "omni-moderation-latest", "input": ["x"]},
                            headers=headers, timeout=30)
    assert moderation.status_code == 500  # not 404: the reason copydesk never fell back before
    assert gateway.get("files?purpose=batch&limit=1").status_code == 200  # a list probe passes
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "gw-writer", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}}
    upload = httpx.post(f"{gateway.url}/files", files={"file": ("x.jsonl", json.dumps(line).encode() + b"\n")},
                        data={"purpose": "batch"}, headers=headers, timeout=30)
    assert upload.status_code == 500 and "files_settings" in upload.text


# ------------------------------------------------------------------------------ moderation


def test_moderation_unavailable_fail_exits_2_before_any_chat_call(bare, basic_spec, cli_env, tmp_path):
    gateway, upstream = bare
    spec = _spec(basic_spec, **{"qc.moderation.on_unavailable": "fail"})
    chats_before, moderations_before = len(upstream.state.requests), len(gateway.requests("POST", "/v1/moderations"))
    gateway_chats_before = len(gateway.requests("POST", "/v1/chat/completions"))
    result = _run(spec, tmp_path / "out", "mod-fail", ["alpha", "beta"], _env(cli_env, gateway))
    assert result.returncode == 2, result.stderr
    said = " ".join(result.stderr.split())
    assert "error: qc.moderation" in said and f"{gateway.url}/moderations" in said
    assert "HTTP 500" in said and "Missing credentials" in said  # the endpoint, the status, the gateway's words
    assert "Traceback" not in result.stderr
    assert len(upstream.state.requests) == chats_before  # no chat call reached the upstream
    assert len(gateway.requests("POST", "/v1/chat/completions")) == gateway_chats_before  # nor the gateway
    assert len(gateway.requests("POST", "/v1/moderations")) == moderations_before + 1  # asked once, not retried
    assert MASTER_KEY not in result.stderr + result.stdout


@pytest.mark.parametrize("policy", ["local", "review"])
def test_moderation_unavailable_local_or_review_is_said_once_at_the_start(policy, bare, basic_spec, cli_env, tmp_path):
    gateway, upstream = bare
    spec = _spec(basic_spec, **{"qc.moderation.on_unavailable": policy})
    moderations_before = len(gateway.requests("POST", "/v1/moderations"))
    chats_before = len(gateway.requests("POST", "/v1/chat/completions"))
    out = tmp_path / "out"
    result = _run(spec, out, f"mod-{policy}", ["alpha", "beta"], _env(cli_env, gateway))
    assert result.returncode == 0, result.stderr
    moderations = gateway.requests("POST", "/v1/moderations")[moderations_before:]
    chats = gateway.requests("POST", "/v1/chat/completions")[chats_before:]
    assert len(moderations) == 1  # the preflight only: no article was sent to the failing endpoint
    assert chats and moderations[0] < chats[0]  # and it came before the first chat call
    assert result.stderr.count("the moderation endpoint is unavailable") == 1
    frame = _frame(out, f"mod-{policy}")
    summary = json.loads((out / f"mod-{policy}" / "summary.json").read_text())
    assert any("on_unavailable: " + policy in note for note in summary["notes"])
    report = json.loads((out / f"mod-{policy}" / "qc_report.json").read_text())
    if policy == "local":
        assert set(frame["status"]) == {"published"}
        assert {a["qc"]["moderation"]["provider"] for a in report["articles"]} == {"local"}
        assert "moderating with the local classifier" in result.stderr
    else:
        assert set(frame["status"]) == {"needs_review"}
        assert all("preflight" in reasons for reasons in frame["reasons"])
        assert "held for review" in result.stderr


def test_moderation_through_a_gateway_with_a_moderation_model(full, basic_spec, cli_env, tmp_path):
    gateway, upstream = full
    spec = _spec(basic_spec, **{"qc.moderation.on_unavailable": "fail"})
    before = len(upstream.moderation_requests)
    result = _run(spec, tmp_path / "out", "mod-ok", ["alpha"], _env(cli_env, gateway))
    assert result.returncode == 0, result.stderr
    assert len(upstream.moderation_requests) >= before + 2  # the preflight, then the article
    assert upstream.moderation_requests[before]["input"] == ["preflight"]
    assert set(_frame(tmp_path / "out", "mod-ok")["status"]) == {"published"}


# ------------------------------------------------------------------------------ batch


def test_auto_mode_falls_back_to_realtime_when_the_gateway_refuses_uploads(bare, basic_spec, cli_env, tmp_path):
    gateway, upstream = bare
    spec = _spec(basic_spec, **{"qc.moderation.provider": "local"})
    uploads_before = len(gateway.requests("POST", "/v1/files"))
    started = time.monotonic()
    out = tmp_path / "out"
    result = _run(spec, out, "auto", ["alpha"], _env(cli_env, gateway), "--mode", "auto")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 60, f"took {took:.0f} s"  # was 15 minutes and counting (61 uploads)
    assert len(gateway.requests("POST", "/v1/files")) == uploads_before + 1  # one probe, no retry layers
    assert result.stderr.count("mode: auto:") == 1 and "files_settings is not set" in result.stderr
    summary = json.loads((out / "auto" / "summary.json").read_text())
    assert summary["mode"] == "realtime" and summary["by_status"] == {"published": 1}
    assert (out / "auto" / _frame(out, "auto")["path"][0]).is_file()


def test_batch_mode_against_a_gateway_without_files_settings_fails_fast(bare, basic_spec, cli_env, tmp_path):
    gateway, upstream = bare
    spec = _spec(basic_spec, **{"qc.moderation.provider": "local"})
    uploads_before = len(gateway.requests("POST", "/v1/files"))
    chats_before = len(upstream.state.requests)
    result = _run(spec, tmp_path / "out", "batch-refused", ["alpha"], _env(cli_env, gateway), "--mode", "batch")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    said = " ".join(result.stderr.split())
    assert "error: mode: batch" in said and "HTTP 500" in said and "files_settings is not set" in said
    assert len(gateway.requests("POST", "/v1/files")) == uploads_before + 1
    assert len(upstream.state.requests) == chats_before


def test_batch_through_the_gateway_with_files_settings_and_batch_model(full, basic_spec, cli_env, tmp_path):
    gateway, upstream = full
    spec = _spec(basic_spec, **{"qc.moderation.provider": "local", "batch.model": "up-writer"})
    created_before, uploads_before = len(upstream.created), len(upstream.uploads)
    out = tmp_path / "out"
    result = _run(spec, out, "batch-ok", ["gateway one", "gateway two"], _env(cli_env, gateway), "--mode", "batch")
    assert result.returncode == 0, result.stderr
    lines = [line for upload in upstream.uploads[uploads_before:] for line in upload]
    assert lines and {line["body"]["model"] for line in lines} == {"up-writer"}  # batch.model, not the alias
    assert upstream.probes and upstream.deleted  # the preflight's one-line file, deleted again
    frame = _frame(out, "batch-ok")
    assert set(frame["status"]) == {"published"}
    # the tokens in the CSV are the gateway's: the usage in the output files it serves
    gateway_usage = 0
    for batch in upstream.created[created_before:]:
        state = gateway.get(f"batches/{batch['id']}").json()
        content = gateway.get(f"files/{state['output_file_id']}/content")
        assert content.status_code == 200
        gateway_usage += sum(json.loads(row)["response"]["body"]["usage"]["total_tokens"]
                             for row in content.text.splitlines() if row.strip())
    assert frame["total_tokens"].sum() == gateway_usage > 0


def test_batch_lines_with_the_gateways_alias_fail_and_a_run_that_produced_nothing_exits_1(
        full, basic_spec, cli_env, tmp_path, prefect_server):
    gateway, upstream = full
    spec = _spec(basic_spec, **{"qc.moderation.provider": "local"})  # no batch.model: lines carry gw-writer
    out = tmp_path / "out"
    result = _run(spec, out, "batch-alias", ["alias one", "alias two"], _env(cli_env, gateway), "--mode", "batch")
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert "error: no article was produced: all 2 incomplete" in said and "gw-writer" in said
    assert "Traceback" not in result.stderr
    assert "incomplete" in result.stdout and "(first: " in result.stdout  # the summary table, with the reason
    summary = json.loads((out / "batch-alias" / "summary.json").read_text())
    assert summary["exit_code"] == 1 and summary["by_status"] == {"incomplete": 2}
    state = _flow_run_state(prefect_server, "batch-alias")
    assert state["type"] == "FAILED" and "no article was produced" in state["message"]
    assert "\n" not in state["message"]


def _flow_run_state(api: str, run_id: str) -> dict[str, Any]:
    """The state of the copydesk-run flow run of `run_id` on the Prefect server."""
    runs = httpx.post(f"{api}/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 50},
                      timeout=30).json()
    for run in runs:
        if (run.get("parameters") or {}).get("request", {}).get("run_id") == run_id:
            return run["state"]
    raise AssertionError(f"no flow run of {run_id}")
