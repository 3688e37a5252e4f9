"""Each article is a Prefect task run: named after its topic, with its state, logs and verdict.

Through a real Prefect server (the session's `prefect_server`): a flow run of 3 topics, one of
which the fake API fails for good, has 3 task runs `write-article: <topic>`; the two finished
articles' are Completed, the failed one's is Failed with the article's reason. Each has its
logs, read back with the Prefect client. Once in process (`run_pipeline`, the articles run
inside their task runs) and once through the `copydesk run` command (which starts the run
before Prefect is imported: the flow run attaches to it and adopts the articles done before).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from copydesk.request import RunRequest

from conftest import SECRET_KEY, run_cli

TOPICS = ["Sourdough starters", "Broken topic", "Tidy commit messages"]
NAMES = {"write-article: Sourdough starters", "write-article: Broken topic", "write-article: Tidy commit messages"}


class FailsOneTopic(FakeOpenAI):
    """Answers every request but those whose prompt names the broken topic: HTTP 500, always."""

    def _answer(self, handler: Any, body: dict[str, Any]) -> None:
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        if "Broken topic" in prompt:
            self._send(handler, 500, {"error": {"message": "The server had an error"}})
            return
        super()._answer(handler, body)


def _read_flow_run(api_url: str, run_id: str) -> tuple[Any, list[Any], dict[str, list[Any]], list[Any]]:
    """The copydesk-run flow run for `run_id`, its task runs, each task run's logs, its artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterTaskRunId,
    )

    async def read() -> tuple[Any, list[Any], dict[str, list[Any]], list[Any]]:
        async with get_client() as client:
            runs = [r for r in await client.read_flow_runs()
                    if (r.parameters.get("request") or {}).get("run_id") == run_id]
            assert len(runs) == 1, f"expected one flow run for {run_id}, found {len(runs)}"
            run = runs[0]
            tasks: list[Any] = []
            logs: dict[str, list[Any]] = {}
            for _ in range(75):  # states arrive through the server's events pipeline, logs in batches
                tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
                logs = {t.name: await client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[t.id])))
                        for t in tasks}
                if (len(tasks) >= len(TOPICS) and all(t.state is not None and t.state.is_final() for t in tasks)
                        and all(any("Finished in state" in r.message for r in rs) for rs in logs.values())):
                    break
                await asyncio.sleep(0.2)
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
            return run, tasks, logs, artifacts

    with _api(api_url):
        return asyncio.run(read())


def _api(url: str) -> Any:
    """Prefect's client pointed at `url` (its settings may have been read at import already)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: url})


def _check_task_runs(api_url: str, run_id: str) -> None:
    flow_run, tasks, logs, artifacts = _read_flow_run(api_url, run_id)
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert flow_run.state.message == "1 of 3 article(s) failed (incomplete); the others finished"
    assert {t.name for t in tasks} == NAMES and len(tasks) == 3
    states = {t.name: t.state for t in tasks}
    assert states["write-article: Sourdough starters"].is_completed()
    assert states["write-article: Tidy commit messages"].is_completed()
    failed = states["write-article: Broken topic"]
    assert failed.is_failed()
    assert failed.message.startswith("API error:") and "HTTP 500" in failed.message, failed.message
    for name, records in logs.items():
        assert records, f"{name} has no logs"
        assert any("Finished in state" in r.message for r in records), [r.message for r in records]
        assert not any("NoneType: None" in r.message for r in records), [r.message for r in records]
    broken = [r.message for r in logs["write-article: Broken topic"]]
    # copydesk's own warning, logged while the article was written, is on its task run
    assert any("call failed after 1 attempt(s)" in m for m in broken), broken
    assert not any("call failed" in r.message for n, rs in logs.items() if n != "write-article: Broken topic"
                   for r in rs)
    # each exported article's artifact belongs to its task run
    by_task = {t.id: t.name for t in tasks}
    owned = {by_task.get(a.task_run_id) for a in artifacts if a.key and "articles" not in a.key
             and "run-summary" not in a.key}
    assert {"write-article: Sourdough starters", "write-article: Tidy commit messages"} <= owned
    assert SECRET_KEY not in json.dumps([r.message for rs in logs.values() for r in rs])


@pytest.fixture
def copydesk_logs_to_api():
    """copydesk's logger wired to Prefect's API log handler, as PREFECT_LOGGING_EXTRA_LOGGERS=copydesk
    does for `copydesk run` and `copydesk serve` (copydesk.prefect_server.prefect_defaults)."""
    from prefect.logging.handlers import APILogHandler

    logger, handler = logging.getLogger("copydesk"), APILogHandler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_flow_run_has_one_task_run_per_article(basic_spec, prefect_server, tmp_path, monkeypatch,
                                                 copydesk_logs_to_api):
    from copydesk_flows.pipeline import run_pipeline

    with FailsOneTopic() as fake:
        for name, value in {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": SECRET_KEY, "COPYDESK_MAX_ATTEMPTS": "1",
                            "COPYDESK_STATE_DIR": str(tmp_path / "state"), "COPYDESK_KEEP_SERVERS": "false"}.items():
            monkeypatch.setenv(name, value)
        request = RunRequest(spec_path=str(basic_spec), topics=TOPICS, out_dir=str(tmp_path / "out"),
                             run_id="task-runs-flow", concurrency=2)
        with _api(prefect_server):
            result = asyncio.run(run_pipeline(request))
    assert result["by_status"].get("incomplete") == 1 and result["exit_code"] == 0
    _check_task_runs(prefect_server, "task-runs-flow")


def test_copydesk_run_gives_the_same_task_runs(basic_spec, cli_env, tmp_path):
    with FailsOneTopic() as fake:
        env = {**cli_env, "OPENAI_BASE_URL": fake.url, "COPYDESK_MAX_ATTEMPTS": "1"}
        proc = run_cli(["run", str(basic_spec), "--run-id", "task-runs-cli", "--out", str(tmp_path / "out"),
                        *sum((["-t", t] for t in TOPICS), [])], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "task-runs-cli" / "summary.json").read_text())
    assert summary["by_status"].get("incomplete") == 1
    _check_task_runs(cli_env["PREFECT_API_URL"], "task-runs-cli")


@pytest.mark.parametrize(("topic", "name"), [
    ("a" * 200, "write-article: " + "a" * 59 + "…"),
    ("  spaced \t out\n", "write-article: spaced out"),
    ("\x1b[2J\u200b", "write-article: (no topic)"),
])
def test_task_run_names_are_one_short_safe_line(topic, name):
    from copydesk_flows.article_runs import task_run_name

    assert task_run_name(topic) == name


async def test_hooks_that_attach_to_a_run_in_progress_report_every_article_once(basic_spec, tmp_path):
    """copydesk.orchestration.start_run, then StartedRun.attach: the articles done before are
    adopted, those started after go through the attached hooks' `article`, none twice or lost,
    and the attached hooks finish the run (what the copydesk-run flow run does, without Prefect)."""
    from copydesk import events
    from copydesk.orchestration import RunHooks, start_run
    from copydesk.settings import Settings

    class Recording(RunHooks[str]):
        def __init__(self) -> None:
            self.adopted: list[int] = []
            self.live: list[int] = []

        async def adopt(self, run: Any, article: Any) -> None:
            assert article.status.value != "incomplete" or article.reasons  # processed already
            self.adopted.append(article.index)

        async def article(self, run: Any, article: Any) -> None:
            await run.process(article)
            self.live.append(article.index)

        async def finished(self, run: Any, summary: Any) -> str:
            return f"finished {summary.articles}"

    finished: list[str] = []
    unsubscribe = events.subscribe(lambda e: finished.append(e.topic) if isinstance(e, events.ArticleFinished) else None)
    try:
        with FakeOpenAI(latency=0.02) as fake:
            request = RunRequest(spec_path=str(basic_spec), topics=[f"topic {n}" for n in range(12)],
                                 out_dir=str(tmp_path), run_id="attach", concurrency=1)
            started = start_run(request, Settings(OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET_KEY))
            while len(finished) < 2:
                await asyncio.sleep(0.01)
            hooks = Recording()
            assert await started.attach(hooks) == "finished 12"
    finally:
        unsubscribe()
    assert hooks.adopted and hooks.live, (hooks.adopted, hooks.live)
    assert sorted(hooks.adopted + hooks.live) == list(range(12))
    assert 0 in hooks.adopted and 11 in hooks.live  # the first started before, the last after


def test_the_kept_server_batches_its_task_run_services_unless_told_otherwise(tmp_path, monkeypatch):
    from copydesk.prefect_server import TASK_RUN_SERVICES, server_environment
    from copydesk.settings import Settings

    settings = Settings(COPYDESK_STATE_DIR=str(tmp_path))
    env = server_environment(settings, port=4321, ui=False, auth=None)
    assert {k: env[k] for k in TASK_RUN_SERVICES} == TASK_RUN_SERVICES
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED", "true")  # the operator wants automations
    env = server_environment(settings, port=4321, ui=False, auth=None)
    assert "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED" not in env  # theirs passes through unchanged
