"""The one orchestration of a run, shared by the plain-asyncio path and the Prefect flows.

    prepare  check the input (spec, templates, vars, topics, run id); nothing starts
    lock     one process per run folder (a second run with the same id is refused);
             then the run's manifest is written (copydesk.rundir)
    open     the run's resources (copydesk.resources), closed again whatever happens
    process  every article through `hooks.article`, a bounded number writing at once
    finish   CSV, QC report, summary, metrics
    close    the resources
    after    `hooks.finished`, still holding the lock (the flow's artifacts and review pause)

`run_batch()` is this sequence with the default hooks; `copydesk_flows.pipeline`
passes hooks that add the flow run's task runs and artifacts. `start_run()` starts the
sequence for a reporter that is not ready yet (`copydesk run` imports Prefect meanwhile);
the reporter's hooks attach to it later and adopt what it did so far (`StartedRun.attach`). At most `ARTICLES_PER_CALL_SLOT` x
concurrency articles are being written (making their calls) at once; a written
article goes on to its checks and export without holding up the next one's calls,
at most `ARTICLES_CHECKED_PER_CALL_SLOT` x concurrency of them at once. The rest wait
in order, so 10,000 topics do not mean 10,000 coroutines (and their calls) queued at
once, and a slow checker (LanguageTool on a busy machine) slows the checks, not the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from copydesk import rundir
from copydesk.allowance import AllowanceStore
from copydesk.article import Article
from copydesk.errors import InputError
from copydesk.limiter import article_order
from copydesk.locks import LockHeld, file_lock
from copydesk.redact import install_log_redaction
from copydesk.request import RunRequest
from copydesk.runner import ARTICLE_WRITTEN, PipelineRun, RunSummary
from copydesk.settings import Settings
from copydesk.spec import PipelineSpec

#: Held by the process running a run folder (see `run_folder_lock`).
LOCK_NAME = rundir.RUN_LOCK_NAME

#: Articles being written at once per call slot: enough that every slot has a call to
#: make while other articles wait on theirs, few enough that waiting stays bounded.
ARTICLES_PER_CALL_SLOT = 2

#: Written articles waiting for or in their checks at once, per call slot: the backlog a
#: slow checker may build before new articles wait for it (each holds only its text).
ARTICLES_CHECKED_PER_CALL_SLOT = 4

R = TypeVar("R")


class RunHooks(Generic[R]):
    """How a caller joins in the orchestration; the defaults are the plain-asyncio run."""

    async def article(self, run: PipelineRun, article: Article) -> None:
        """Process one article (write, check, export); must not raise for the article's own failures."""
        await run.process(article)

    async def adopt(self, run: PipelineRun, article: Article) -> None:
        """An article processed before these hooks took over a run in progress (`StartedRun.attach`):
        report it as `article` would have. The plain run has nothing to report."""

    def allowance_store(self, run: PipelineRun) -> AbstractAsyncContextManager[AllowanceStore | None]:
        """Where shared allowances (budget.shared) live. The plain-asyncio run has none: a spec
        that names one is refused there (copydesk.resources says how to start a server)."""
        return contextlib.nullcontext(None)

    async def finished(self, run: PipelineRun, summary: RunSummary) -> R:
        """After the resources are closed, still holding the run folder's lock; its value is the run's."""
        return summary  # type: ignore[return-value]


async def execute_run(
    request: RunRequest,
    hooks: RunHooks[R],
    *,
    settings: Settings | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    articles_in_flight: int | None = None,
) -> R:
    """Run one batch, start to end (see the module docstring). Bad input raises an
    `InputError` before anything starts; whatever `open` started is closed on every path.
    Every log record of the process is redacted from here on (copydesk.redact)."""
    install_log_redaction()
    run = PipelineRun.prepare(request, settings)
    with run_folder_lock(run.run_dir, run.run_id):
        run.claim_folder()
        async with hooks.allowance_store(run) as store, \
                run.open_resources(transport=transport, allowance_store=store) as resources:
            run.start(resources)
            # batch mode: every article at once, so that each stage is one batch (copydesk.batch)
            in_flight = len(run.articles) if resources.mode == "batch" else ARTICLES_PER_CALL_SLOT * resources.concurrency
            limit = articles_in_flight or in_flight
            await process_articles(run, hooks, limit, ARTICLES_CHECKED_PER_CALL_SLOT * resources.concurrency)
            if resources.shared is not None:
                await resources.shared.observe()  # the allowance as the run ends, for the summary
            summary = run.finish()
        return await hooks.finished(run, summary)


async def process_articles(run: PipelineRun, hooks: RunHooks[R], limit: int, backlog: int = 0) -> None:
    """Every article through `hooks.article`, started in topic order: at most `limit` of
    them being written at once, and at most `backlog` more that are written and being
    checked and exported (`copydesk.runner.ARTICLE_WRITTEN` says when an article is
    written; a hook that never says so holds its writing slot to the end).

    If one raises (an internal error, not an article's failure), the others are
    cancelled and the error propagates: the run does not finish, and its resources are
    closed on the way out. An article that never started (the budget closed, a fatal
    API error) is still taken in turn and fails at once, without a call, so it gets its row."""
    if limit < 1:
        raise ValueError("articles in flight must be at least 1")
    writing = asyncio.Semaphore(limit)
    in_progress = asyncio.Semaphore(limit + max(backlog, 0))
    gateway = run.resources.gateway

    async def one(article: Article) -> None:
        released = False

        def written() -> None:
            nonlocal released
            if not released:
                released = True
                writing.release()

        token = ARTICLE_WRITTEN.set(written)
        try:
            # the oldest article's calls first (copydesk.limiter); batch mode's scope (copydesk.batch)
            with article_order(article.index), gateway.article_scope(article.index):
                await hooks.article(run, article)
        finally:
            ARTICLE_WRITTEN.reset(token)
            written()
            in_progress.release()

    try:
        async with asyncio.TaskGroup() as group:
            for article in run.articles:
                await in_progress.acquire()
                await writing.acquire()
                group.create_task(one(article))
    except BaseExceptionGroup as failed:  # the first article's error, as it was raised
        raise failed.exceptions[0] from None


async def run_batch(
    request: RunRequest,
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    articles_in_flight: int | None = None,
) -> RunSummary:
    """The whole run with plain asyncio: `execute_run` with the default hooks."""
    return await execute_run(
        request, RunHooks[RunSummary](), settings=settings, transport=transport,
        articles_in_flight=articles_in_flight,
    )


class Relay(RunHooks[tuple[PipelineRun, RunSummary]]):
    """The hooks of a run started before its reporter is ready (see `start_run`). Until a
    reporter attaches (`StartedRun.attach`), each article is processed as the plain run does;
    the reporter adopts it (`RunHooks.adopt`) when it attaches, or as soon as it is done if it
    was in progress then. Articles started after that go through the reporter's own `article`
    hook: one set of hooks reports the whole run. The run's value is the run and its summary,
    for the reporter to finish with (`RunHooks.finished`)."""

    def __init__(self) -> None:
        self.hooks: RunHooks[Any] | None = None
        #: The articles (their index) that started before a reporter attached.
        self.started_early: set[int] = set()
        self._done_early: list[tuple[PipelineRun, Article]] = []

    async def article(self, run: PipelineRun, article: Article) -> None:
        if self.hooks is not None:
            await self.hooks.article(run, article)
            return
        self.started_early.add(article.index)
        await run.process(article)
        if self.hooks is None:
            self._done_early.append((run, article))
        else:
            await self.hooks.adopt(run, article)

    async def attach(self, hooks: RunHooks[Any]) -> None:
        """`hooks` report the run from now on; the articles done so far are adopted, in order."""
        self.hooks = hooks
        done, self._done_early = self._done_early, []
        for run, article in done:
            await hooks.adopt(run, article)

    async def finished(self, run: PipelineRun, summary: RunSummary) -> tuple[PipelineRun, RunSummary]:
        return run, summary


@dataclass
class StartedRun:
    """A run under way (`start_run`), waiting for its reporter to attach."""

    request: RunRequest
    task: asyncio.Task[tuple[PipelineRun, RunSummary]]
    relay: Relay = field(repr=False)

    async def attach(self, hooks: RunHooks[R]) -> R:
        """`hooks` take over the run: they adopt what it did so far, take each article from now
        on, and finish it (`hooks.finished`, once the run has closed its resources)."""
        await self.relay.attach(hooks)
        run, summary = await self.task
        return await hooks.finished(run, summary)

    async def abandon(self) -> None:
        """Stop the run if it still runs (its reporter failed); what it exported stays, and
        its calls are in the call store for a resume."""
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def can_start_early(request: RunRequest, spec: PipelineSpec) -> bool:
    """Whether a run may start before Prefect is ready: realtime calls, and no shared allowance
    (that lives in the Prefect server, and batch mode reports each batch to the flow run)."""
    return spec.budget.shared is None and (request.mode or spec.mode) == "realtime"


def start_run(request: RunRequest, settings: Settings | None = None) -> StartedRun:
    """Start the run now (`execute_run` with a `Relay`, as a task of the running loop); its
    reporter attaches later (`StartedRun.attach`)."""
    relay = Relay()
    task = asyncio.get_running_loop().create_task(execute_run(request, relay, settings=settings))
    return StartedRun(request, task, relay)


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """One process per run folder: a second run with the same run id (a double click, a retry on
    another worker while the first still runs) is refused instead of interleaving two call stores."""
    held_lock = contextlib.ExitStack()
    try:
        held_lock.enter_context(
            file_lock(run_dir / LOCK_NAME, blocking=False, holder=f"pid {os.getpid()} on {socket.gethostname()}")
        )
    except LockHeld as held:
        raise InputError(
            f"run {run_id} is already running ({held.holder}); wait for it to finish, or choose another run id"
        ) from None
    with held_lock:  # released when the block ends, however it ends
        yield
