"""The `copydesk-run` flow, and `execute()`: what every copydesk flow runs.

Everything here is wiring. The work (calls, budget, QC, export) happens in
`copydesk.runner.PipelineRun`; tasks share its client, budget and limiter in
the flow's event loop, so the budget and the concurrency cap hold across the
whole batch. Resume does not rely on Prefect's result cache: the run's call
store does it for one `write()` per call (see copydesk.store).

`execute(request)` is the one orchestration every flow shares (the CLI's
`copydesk-run`, the `editor` and the scheduled deployments in flows/editor.py):

    prepare → open → one `article` task per topic (concurrently) → finish → close
    → artifacts (table, summary, one Markdown per article; flows/artifacts.py)
    → review: a pause waiting for an editor's decisions, when asked for (flows/review.py)

The article tasks must run in the flow's own process: the budget, the limiter
and the call store are in-process objects. `LocalRun` carries the run into the
tasks and refuses to be pickled or used in another process, so a task runner
that ships tasks elsewhere fails loudly instead of giving each process a budget
of its own. One process at a time runs a run folder (`run_folder_lock`): a
second run with the same run id is refused, never interleaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from copydesk.article import Article, Status
from copydesk.errors import InputError
from copydesk.runner import PipelineRun, RunRequest
from copydesk.settings import Settings

log = logging.getLogger("copydesk.flows")

#: Held by the process running a run folder (see `run_folder_lock`).
LOCK_NAME = ".run.lock"

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
    """Write, review and export one article (never raises: failures make it incomplete),
    then leave its Markdown artifact."""
    pipeline_run = run.get()
    await pipeline_run.process(article)
    if artifacts and pipeline_run.exporter is not None and article.path:
        from flows.artifacts import publish_article_artifact

        try:
            text = (pipeline_run.run_dir / article.path).read_text(encoding="utf-8")
        except OSError:
            text = "(the article's file is missing)"
        row = pipeline_run.exporter.row(article, pipeline_run.article_cost(article))
        await publish_article_artifact(pipeline_run.spec.name, row, text, article.qc, article.index + 1)
    return article


async def execute(
    request: RunRequest,
    *,
    settings: Settings | None = None,
    review_timeout: float = 0,
    artifacts: bool = True,
) -> dict[str, Any]:
    """Run one batch as the current flow run; returns the run summary as a dict.

    `review_timeout` > 0 pauses the flow run after export while any article
    needs review, for at most that many seconds (see flows/review.py).
    """
    run = PipelineRun.prepare(request, settings)
    with run_folder_lock(run.run_dir, run.run_id):
        return await _execute(run, review_timeout=review_timeout, artifacts=artifacts)


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """One process per run folder: a second run with the same run id (a double click, a retry on
    another worker while the first still runs) is refused instead of interleaving two call stores."""
    import socket

    from copydesk.locks import LockHeld, file_lock

    try:
        lock = file_lock(run_dir / LOCK_NAME, blocking=False, holder=f"pid {os.getpid()} on {socket.gethostname()}")
        lock.__enter__()
    except LockHeld as held:
        raise InputError(
            f"run {run_id} is already running ({held.holder}); wait for it to finish, or choose another run id"
        ) from None
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        yield


async def _execute(run: PipelineRun, *, review_timeout: float, artifacts: bool) -> dict[str, Any]:
    try:
        await run.open()
    except BaseException:
        await run.close()  # whatever open() had started (a local model, a grammar server)
        raise
    handle = LocalRun(run)
    try:
        await asyncio.gather(*(article_task(handle, article, artifacts) for article in run.articles))
        summary = run.finish()
    finally:
        await run.close()
    result = summary.to_dict()
    if artifacts:
        from flows.artifacts import publish_run_artifacts

        await publish_run_artifacts(run.run_dir, result, articles=False)
    if run.gateway is not None and run.gateway.fatal is not None:
        fatal = run.gateway.fatal
        fatal.summary = result  # the CLI still prints what was exported
        raise fatal
    if review_timeout > 0 and any(a.status == Status.NEEDS_REVIEW for a in run.articles):
        from flows.review import review_run

        outcome = await review_run(run.run_dir, timeout=review_timeout, pipeline=run.spec.name)
        if outcome is not None:
            result["review"] = outcome.to_dict()
            if outcome.changed:
                result["by_status"] = _counts(run.run_dir)
                if artifacts:
                    from flows.artifacts import publish_review_artifacts

                    await publish_review_artifacts(run.run_dir, result, outcome)
    return result


def _counts(run_dir: Any) -> dict[str, int]:
    import json

    try:
        return dict(json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["by_status"])
    except (OSError, ValueError, KeyError):
        return {}


@flow(name="copydesk-run", log_prints=False, validate_parameters=True)
async def run_pipeline(request: RunRequest) -> dict:
    """Generate, check and export one article per topic with a pipeline spec."""
    return await execute(request)
