"""The `copydesk-run` flow, and `execute()`: what every copydesk flow runs.

Everything here is wiring over `copydesk.orchestration.execute_run`, the one
orchestration `copydesk.orchestration.run_batch` uses too (prepare, lock, open,
articles through a bounded pool, finish, close). The flow's hooks add Prefect:

    each article   its own `article` task (write, check, export), then its Markdown artifact
    after close    the run's artifacts (table, summary; copydesk_flows.artifacts), a fatal
                   API error raised with the summary attached, and the review pause when
                   asked for (copydesk_flows.review)

The article tasks must run in the flow's own process: the budget, the limiter
and the call store are in-process objects. `LocalRun` carries the run into the
tasks and refuses to be pickled or used in another process, so a task runner
that ships tasks elsewhere fails loudly instead of giving each process a budget
of its own. Resume does not rely on Prefect's result cache: the run's call store
does it for one `write()` per call (see copydesk.store).
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.exceptions import MissingContextError
from prefect.cache_policies import NO_CACHE

from copydesk import events, rundir
from copydesk.article import Article, Status
from copydesk.orchestration import RunHooks, execute_run
from copydesk.errors import CopydeskError
from copydesk.progress import batch_line
from copydesk.spec import load_spec
from copydesk.request import RunRequest
from copydesk.runner import PipelineRun, RunSummary
from copydesk.settings import Settings
from copydesk_flows.allowance import allowance_store_for
from copydesk_flows.artifacts import (
    publish_article_artifact,
    publish_batch_artifact,
    publish_review_artifacts,
    publish_run_artifacts,
)
from copydesk_flows.review import review_run

log = logging.getLogger("copydesk.flows")

CROSS_PROCESS_MESSAGE = (
    "copydesk's article tasks must run in the flow run's own process: the token budget, the concurrency "
    "limiter and the call store of a run are in-process objects, and a copy in another process would "
    "spend a budget of its own. Use the default task runner (scale out with more flow runs, i.e. more "
    "workers, instead)."
)


class LocalRun:
    """A `PipelineRun` handed to tasks; it cannot leave the process that opened it."""

    __slots__ = ("run", "pid")

    def __init__(self, run: PipelineRun) -> None:
        self.run = run
        self.pid = os.getpid()

    def get(self) -> PipelineRun:
        if os.getpid() != self.pid:
            raise RuntimeError(CROSS_PROCESS_MESSAGE)
        return self.run

    def __reduce__(self) -> Any:
        raise TypeError(CROSS_PROCESS_MESSAGE)

    def __repr__(self) -> str:
        return f"LocalRun({self.run.run_id})"


@task(name="article", cache_policy=NO_CACHE, task_run_name="article-{article.index}")
async def article_task(run: LocalRun, article: Article, artifacts: bool = True) -> Article:
    """Write, check and export one article (never raises: failures make it incomplete),
    then leave its Markdown artifact."""
    pipeline_run = run.get()
    await pipeline_run.process(article)
    if artifacts and article.path:
        try:
            text = (pipeline_run.run_dir / article.path).read_text(encoding="utf-8")
        except OSError:
            text = "(the article's file is missing)"
        row = pipeline_run.resources.exporter.row(article, pipeline_run.article_cost(article))
        await publish_article_artifact(pipeline_run.spec.name, row, text, article.qc, article.index + 1)
    return article


class FlowHooks(RunHooks[dict[str, Any]]):
    """The orchestration's hooks inside a flow run: tasks, artifacts, the review pause."""

    def __init__(self, *, review_timeout: float, artifacts: bool) -> None:
        self.review_timeout = review_timeout
        self.artifacts = artifacts
        self._handle: LocalRun | None = None

    async def article(self, run: PipelineRun, article: Article) -> None:
        if self._handle is None:
            self._handle = LocalRun(run)
        await article_task(self._handle, article, self.artifacts)

    def allowance_store(self, run: PipelineRun) -> AbstractAsyncContextManager[Any]:
        """Shared allowances live in the Prefect server (copydesk_flows.allowance)."""
        return allowance_store_for(run.spec.budget.shared)

    async def finished(self, run: PipelineRun, summary: RunSummary) -> dict[str, Any]:
        result = summary.to_dict()
        if self.artifacts:
            await publish_run_artifacts(run.run_dir, result, articles=False)
        if run.fatal is not None:
            run.fatal.summary = result  # type: ignore[attr-defined]  # the CLI still prints what was exported
            raise run.fatal
        if self.review_timeout > 0 and any(a.status == Status.NEEDS_REVIEW for a in run.articles):
            outcome = await review_run(run.run_dir, timeout=self.review_timeout, pipeline=run.spec.name)
            if outcome is not None:
                result["review"] = outcome.to_dict()
                if outcome.changed:
                    result["by_status"] = _counts(run.run_dir)
                    if self.artifacts:
                        await publish_review_artifacts(run.run_dir, result, outcome)
        return result


async def execute(
    request: RunRequest,
    *,
    settings: Settings | None = None,
    review_timeout: float = 0,
    artifacts: bool = True,
) -> dict[str, Any]:
    """Run one batch as the current flow run; returns the run summary as a dict.

    `review_timeout` > 0 pauses the flow run after export while any article
    needs review, for at most that many seconds (see copydesk_flows.review).
    """
    hooks = FlowHooks(review_timeout=review_timeout, artifacts=artifacts)
    progress = _BatchProgress(request, artifacts)
    unsubscribe = events.subscribe(progress)
    try:
        return await execute_run(request, hooks, settings=settings)
    finally:
        unsubscribe()
        await asyncio.gather(*progress.tasks, return_exceptions=True)


class _BatchProgress:
    """Batch mode: each change of a batch in the flow run's logs and as an artifact, while it runs."""

    def __init__(self, request: RunRequest, artifacts: bool) -> None:
        try:
            self.pipeline = load_spec(request.spec_path).name
        except CopydeskError:  # the run itself reports it
            self.pipeline = Path(request.spec_path).stem
        self.artifacts = artifacts
        self.logger = get_run_logger_or(log)
        self.tasks: set[asyncio.Task[None]] = set()

    def __call__(self, event: events.Event) -> None:
        if not isinstance(event, events.BatchUpdate):
            return
        line = batch_line(event)
        self.logger.info("%s", line)
        if self.artifacts:
            task = asyncio.get_running_loop().create_task(publish_batch_artifact(self.pipeline, line, event))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


def get_run_logger_or(fallback: logging.Logger) -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return fallback


def _counts(run_dir: Path) -> dict[str, int]:
    summary = rundir.read_json(run_dir / rundir.SUMMARY_NAME)
    by_status = summary.get("by_status") if isinstance(summary, dict) else None
    return dict(by_status) if isinstance(by_status, dict) else {}


@flow(name="copydesk-run", log_prints=False, validate_parameters=True)
async def run_pipeline(request: RunRequest) -> dict:
    """Generate, check and export one article per topic with a pipeline spec."""
    return await execute(request)
