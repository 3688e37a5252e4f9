"""`copydesk run` starts its calls while Prefect is imported; the flow run adopts the run in progress.

Run through the real `copydesk` command against a real Prefect server. A `sitecustomize`
on PYTHONPATH makes the import of copydesk_flows.pipeline (Prefect) take 3 s longer, so
the test can tell whether the calls waited for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Fault, default_reply

from copydesk.orchestration import can_start_early
from copydesk_flows.artifacts import artifact_key
from copydesk.request import RunRequest
from copydesk.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]

SLOW_IMPORT = """
import builtins, importlib, os, time
_import_module = importlib.import_module

def import_module(name, package=None):
    if name == "copydesk_flows.pipeline":
        time.sleep(float(os.environ["SLOW_FLOWS_IMPORT"]))
        module = _import_module(name, package)
        with open(os.environ["FLOWS_IMPORTED_AT"], "w") as f:
            f.write(repr(time.time()))
        return module
    return _import_module(name, package)

importlib.import_module = import_module
"""


@pytest.fixture
def slow_flows_import(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_IMPORT)
    pythonpath = os.pathsep.join(p for p in [str(site), os.environ.get("PYTHONPATH", "")] if p)
    return {"PYTHONPATH": pythonpath, "SLOW_FLOWS_IMPORT": "3", "FLOWS_IMPORTED_AT": str(tmp_path / "imported_at")}


def _prefect_flow_run(api_url: str, run_id: str) -> tuple[object, list[object], list[str]]:
    """The copydesk-run flow run whose parameters name `run_id`, its artifacts and its log messages."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    async def read() -> tuple[object, list[object], list[str]]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            mine = [r for r in runs if (r.parameters.get("request") or {}).get("run_id") == run_id]
            assert len(mine) == 1, f"expected one flow run for {run_id}, found {len(mine)}"
            run = mine[0]
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            return run, artifacts, [log.message for log in logs]

    os.environ["PREFECT_API_URL"] = api_url
    return asyncio.run(read())


def test_calls_start_before_prefect_is_imported_and_the_flow_run_adopts_the_run(
    basic_spec, cli_env, tmp_path, slow_flows_import
):
    arrivals: list[float] = []
    lock = threading.Lock()
    imported = tmp_path / "imported_at"
    late: list[float] = []

    def reply(body: dict) -> str:
        # One call fails for good before the flow run exists, one after (each logs a warning inside an
        # article that started before the flow run): both warnings must reach the flow run's logs.
        with lock:
            arrivals.append(time.time())
            if len(arrivals) == 3:
                fake.inject(Fault("500"))
            if not late and imported.exists() and time.time() - float(imported.read_text() or "inf") > 1.5:
                late.append(time.time())
                fake.inject(Fault("500"))
        return default_reply(body)

    with FakeOpenAI(reply=reply, latency=0.4) as fake:
        env = {**cli_env, **slow_flows_import, "OPENAI_BASE_URL": fake.url, "COPYDESK_MAX_ATTEMPTS": "1"}
        started = time.time()
        proc = subprocess.run(
            [str(Path(sys.executable).with_name("copydesk")), "run", str(basic_spec), "--run-id", "head-start",
             "--out", str(tmp_path / "out"), "-c", "4", *sum((["-t", f"topic {n}"] for n in range(12)), [])],
            env=env, capture_output=True, text=True, timeout=240, cwd=ROOT,
        )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the article whose call failed is incomplete
    imported_at = float((tmp_path / "imported_at").read_text())
    assert imported_at - started >= 3  # the import was slowed down as asked
    before = [t for t in arrivals if t < imported_at]
    assert len(before) >= 6, f"only {len(before)} call(s) before Prefect was imported"  # the calls did not wait

    assert late, "the run ended before Prefect was imported: make it longer"
    summary = json.loads((tmp_path / "out" / "head-start" / "summary.json").read_text())
    assert summary["articles"] == 12 and summary["calls"] == len(arrivals)
    run, artifacts, logs = _prefect_flow_run(cli_env["PREFECT_API_URL"], "head-start")
    assert run.state is not None and run.state.is_completed()
    keys = {a.key for a in artifacts}
    exported = [p.stem for p in (tmp_path / "out" / "head-start").glob("*/*.md")]
    assert len(exported) >= 10  # every article but (at most) the two whose call failed
    assert {artifact_key("basic", slug) for slug in exported} <= keys  # including those exported before the flow run
    assert {artifact_key("basic", "articles"), artifact_key("basic", "run-summary")} <= keys
    # the warnings logged inside articles started before the flow run existed, before and after it
    # started, are in the flow run's logs
    assert sum("call failed after 1 attempt" in message for message in logs) == 2, logs


def test_runs_that_need_prefect_first_do_not_start_early(basic_spec):
    spec = load_spec(basic_spec)
    request = RunRequest(spec_path=str(basic_spec), topics=["x"])
    assert can_start_early(request, spec)
    assert not can_start_early(request.model_copy(update={"mode": "batch"}), spec)
    assert not can_start_early(request.model_copy(update={"mode": "auto"}), spec)
    shared = spec.model_copy(update={"budget": spec.budget.model_copy(update={"shared": object()})})
    assert not can_start_early(request, shared)


EXIT_NOW = """
import sys
from prefect import flow, get_run_logger
from copydesk import launch

@flow(name="exit-now-check", flow_run_name=sys.argv[1])
def last_words():
    get_run_logger().warning("the last words of %s", sys.argv[1])

last_words()
launch.exit_now(3)
raise SystemExit("exit_now returned")
"""


def test_exit_now_sends_the_last_logs_before_it_ends_the_process(prefect_server, tmp_path):
    """`copydesk run` ends without Python's finalization (launch.exit_now), but only after
    Prefect's log worker has sent what is queued: a warning logged just before the end is in
    the flow run's logs, and the exit code is the run's."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    name = f"exit-now-{time.time_ns()}"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "30"}
    proc = subprocess.run([sys.executable, "-c", EXIT_NOW, name], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]

    async def messages() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            assert len(runs) == 1
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
            return [log.message for log in logs]

    assert f"the last words of {name}" in asyncio.run(messages())
