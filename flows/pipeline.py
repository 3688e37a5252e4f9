"""The `copydesk-run` flow, and `execute()`: what every copydesk flow runs.

Everything here is wiring over `copydesk.orchestration.execute_run`, the one
orchestration `copydesk.orchestration.run_batch` uses too (prepare, lock, open,
articles through a bounded pool, finish, close). The flow's hooks add Prefect:

    each article   a task run, `write-article: <topic>` (copydesk_flows.article_runs): its
                   state (Failed with the reason when the article is incomplete), duration,
                   logs and verdict; its Markdown artifact, made in the background as soon
                   as it is exported (at most ARTICLE_ARTIFACTS_AT_ONCE at once)
    after close    the run's artifacts (table, summary; copydesk_flows.artifacts), a fatal
                   API error raised with the summary attached, and the review pause when
                   asked for (copydesk_flows.review)

The pool (copydesk.orchestration.process_articles) still decides when an article starts: a
task run is made inside the hook, not submitted ahead, so 10,000 topics are not 10,000
pending task runs. A task run costs the local Prefect server CPU (its states go through the
events pipeline; bench/README.md has the figures); there is no result persistence and no
cache: resume relies on the run's call store (copydesk.store), never on Prefect's results.

`copydesk run` may start the run before Prefect is imported (copydesk.orchestration.start_run);
the flow run then attaches to it with the same hooks (`adopt_run`): the articles done before it
get their task runs when it attaches, with the records they logged before it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from contextlib import AbstractAsyncContextManager
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler
from prefect.states import Completed, State

from copydesk import events, rundir
from copydesk.article import Article, Status
from copydesk.orchestration import RunHooks, StartedRun, execute_run
from copydesk.errors import CopydeskError, NothingProduced
from copydesk.limiter import current_article
from copydesk.progress import batch_line
from copydesk.spec import load_spec
from copydesk.request import RunRequest
from copydesk.runner import PipelineRun, RunSummary
from copydesk.settings import Settings
from copydesk_flows.allowance import allowance_store_for
from copydesk_flows.article_runs import ArticleWork, run_article
from copydesk_flows.artifacts import (
    publish_article_artifact,
    publish_batch_artifact,
    publish_review_artifacts,
    publish_run_artifacts,
)
from copydesk_flows.review import review_run

log = logging.getLogger("copydesk.flows")

#: Article artifacts being sent to the Prefect server at once; the rest wait their turn.
ARTICLE_ARTIFACTS_AT_ONCE = 4


class FlowHooks(RunHooks[dict[str, Any]]):
    """The orchestration's hooks inside a flow run: a task run per article, artifacts, the review pause."""

    def __init__(self, *, review_timeout: float, artifacts: bool,
                 early_records: Callable[[int], list[logging.LogRecord]] | None = None) -> None:
        self.review_timeout = review_timeout
        self.artifacts = artifacts
        #: An adopted article's records from before its task run (copydesk.launch.EarlyRecords).
        self.early_records = early_records
        self._sending = asyncio.Semaphore(ARTICLE_ARTIFACTS_AT_ONCE)
        self._pending: set[asyncio.Task[None]] = set()
        #: The flow run's context (made inside it): an adopted article's task run belongs to it.
        self._context = contextvars.copy_context()
        #: The flow run's open Prefect client: every article artifact goes through it (a client
        #: per artifact cost ~35 ms of CPU each, bench/README.md "Issue 25: CPU per article cuts").
        context = FlowRunContext.get()
        client = context.client if context is not None else None
        self._client = client if isinstance(client, PrefectClient) else None

    async def article(self, run: PipelineRun, article: Article) -> None:
        """The article processed inside its task run (copydesk_flows.article_runs); outside a flow
        run (`execute` called on its own) as the plain run does."""
        if FlowRunContext.get() is None:
            await run.process(article)
            self._report(run, article)
            return
        await run_article(ArticleWork(run, article, self._report))

    async def adopt(self, run: PipelineRun, article: Article) -> None:
        """An article processed before the flow run attached: its task run now, with its records."""
        records = self.early_records(article.index) if self.early_records is not None else []
        work = ArticleWork(run, article, self._report, adopted=True, early_records=records)
        # in the flow run's context, not the early run's (which started before the flow run existed)
        await asyncio.get_running_loop().create_task(run_article(work), context=self._context.copy())

    def _report(self, run: PipelineRun, article: Article) -> None:
        if article.path:
            self.exported(run, article, run.resources.exporter.row(article, run.article_cost(article)))

    def exported(self, run: PipelineRun, article: Article, row: dict[str, Any]) -> None:
        """An article is exported: its artifact is made in the background."""
        if self.artifacts:
            task = asyncio.create_task(self._article_artifact(run, article, row))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _article_artifact(self, run: PipelineRun, article: Article, row: dict[str, Any]) -> None:
        async with self._sending:
            try:
                text = (run.run_dir / article.path).read_text(encoding="utf-8")
            except OSError:
                text = "(the article's file is missing)"
            await publish_article_artifact(run.spec.name, row, text, article.qc, article.index + 1,
                                           client=self._client)  # never raises

    async def articles_done(self) -> None:
        """Wait for the article artifacts still being sent."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def allowance_store(self, run: PipelineRun) -> AbstractAsyncContextManager[Any]:
        """Shared allowances live in the Prefect server (copydesk_flows.allowance)."""
        return allowance_store_for(run.spec.budget.shared)

    async def finished(self, run: PipelineRun, summary: RunSummary) -> dict[str, Any]:
        result = summary.to_dict()
        await self.articles_done()
        if self.artifacts:
            await publish_run_artifacts(run.run_dir, result, articles=False)
        if run.fatal is not None:
            run.fatal.summary = result  # type: ignore[attr-defined]  # the CLI still prints what was exported
            raise run.fatal
        if failure := summary.failure():  # nothing produced: the flow run is Failed, with this one line
            error = NothingProduced(failure)
            error.summary = result  # type: ignore[attr-defined]
            raise error
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
        await hooks.articles_done()  # also when the run failed: nothing is left sending


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


class _ExpectedErrors(logging.Filter):
    """copydesk's own errors (bad input, a refused key, a run that produced nothing) end the flow
    run Failed with their one-line message, which its state and `Finished in state Failed(...)`
    carry and `copydesk run` prints as `error: ...`. Prefect's "Encountered exception" record of
    them, a traceback printed before that line, is left out; any other exception keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, CopydeskError)


logging.getLogger("prefect.flow_runs").addFilter(_ExpectedErrors())


def get_run_logger_or(fallback: logging.Logger) -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return fallback


def _counts(run_dir: Path) -> dict[str, int]:
    summary = rundir.read_json(run_dir / rundir.SUMMARY_NAME)
    by_status = summary.get("by_status") if isinstance(summary, dict) else None
    return dict(by_status) if isinstance(by_status, dict) else {}


#: `copydesk-run` (the `copydesk run` command) does not pause for review: `copydesk review` does it
#: (the served flows take theirs from `copydesk serve --review-timeout`).
RUN_REVIEW_TIMEOUT: float = 0

#: The run in progress the next `copydesk-run` flow run attaches to (see `adopt_run`).
_STARTED: ContextVar[tuple[StartedRun, Any] | None] = ContextVar("copydesk_started_run", default=None)


@flow(name="copydesk-run", log_prints=False, validate_parameters=True)
async def run_pipeline(request: RunRequest) -> dict:
    """Generate, check and export one article per topic with a pipeline spec."""
    adopting = _STARTED.get()
    if adopting is None:
        result = await execute(request, review_timeout=RUN_REVIEW_TIMEOUT)
    else:
        result = await _attach(*adopting, review_timeout=RUN_REVIEW_TIMEOUT)
    return completed(result)  # type: ignore[return-value]  # the caller gets the dict, its state the message


def completed(result: dict[str, Any]) -> State:
    """The flow run's final state: Completed, its message saying how many articles failed (incomplete)."""
    by_status = result.get("by_status") or {}
    articles = int(result.get("articles") or 0)
    failed = int(by_status.get(Status.INCOMPLETE.value, 0))
    if failed:
        message = f"{failed} of {articles} article(s) failed (incomplete); the others finished"
    else:
        message = f"all {articles} article(s) finished"
    return Completed(message=message, data=result)


async def adopt_run(started: StartedRun, early: Any = None) -> dict[str, Any]:
    """The `copydesk-run` flow run of a run that `copydesk run` started before Prefect was
    imported (copydesk.orchestration.start_run): the same flow run, hooks, task runs,
    artifacts and summary as `run_pipeline(request)`. `early` holds copydesk's log records
    from before the flow run (copydesk.launch.EarlyRecords); they go to its logs, each
    article's to its task run. If the flow run cannot start, the run is stopped."""
    token = _STARTED.set((started, early))
    try:
        return await run_pipeline(started.request)
    finally:
        _STARTED.reset(token)
        await started.abandon()  # a no-op when the flow run saw it to the end


async def _attach(started: StartedRun, early: Any, *, review_timeout: float) -> dict[str, Any]:
    """Inside the flow run: FlowHooks take the run over (copydesk.orchestration.StartedRun.attach).
    Records of articles that started before the flow run wait for their task run (`early`
    keeps them); the rest go to the flow run (those from before it are handed over)."""
    records = _FlowRunLogs(FlowRunContext.get(), started.relay.started_early)
    hooks = FlowHooks(review_timeout=review_timeout, artifacts=True,
                      early_records=early.take_article if early is not None else None)
    if early is not None:
        records.replay(early.take(started.relay.started_early))
    try:
        return await started.attach(hooks)
    finally:
        await hooks.articles_done()
        records.close()


class _FlowRunLogs(logging.Filter):
    """copydesk's log records for Prefect's API log handlers while the flow run attaches to a run
    started before it: those of an article that started before the flow run wait for its task
    run (copydesk.launch.EarlyRecords keeps them; `adopted` hands them over); others without a
    run context get the flow run's id."""

    def __init__(self, context: FlowRunContext | None, started_early: set[int]) -> None:
        super().__init__()
        self.flow_run_id = context.flow_run.id if context is not None and context.flow_run is not None else None
        self.started_early = started_early
        self.handlers = [h for h in logging.getLogger("copydesk").handlers if isinstance(h, APILogHandler)]
        for handler in self.handlers:
            handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "copydesk_replayed", False) or getattr(record, "task_run_id", None) \
                or TaskRunContext.get() is not None:
            return True  # handed over, or logged inside a task run (an adopted article's report)
        index = current_article()
        if index is not None and index in self.started_early:
            return False
        if self.flow_run_id is not None and not getattr(record, "flow_run_id", None):
            record.flow_run_id = self.flow_run_id
        return True

    def replay(self, records: list[logging.LogRecord]) -> None:
        """Records logged outside any article before the flow run existed (the console showed them)."""
        for record in records:
            record.copydesk_replayed = True
            if self.flow_run_id is not None:
                record.flow_run_id = self.flow_run_id
            for handler in self.handlers:
                handler.handle(record)

    def close(self) -> None:
        for handler in self.handlers:
            handler.removeFilter(self)


def drain_prefect_services() -> bool:
    """Send what Prefect's background services (the API log and events workers) still hold,
    as their own exit hooks would; for a process that ends with os._exit (copydesk.launch).
    False when this Prefect has no such internal API (then let the normal exit do it)."""
    try:
        from prefect._internal.concurrency.services import _QueueServiceBase  # noqa: PLC0415
    except ImportError:
        return False
    _QueueServiceBase.drain_all(at_exit=True)  # every service's instances (one shared registry)
    return True

