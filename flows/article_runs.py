"""One Prefect task run per article: `write-article: <topic>`, its state, duration, logs and verdict.

The orchestration's bounded pool (copydesk.orchestration.process_articles) decides when an
article starts; its hook (copydesk_flows.pipeline.FlowHooks.article) then runs the article
inside its task run, `run_article`. The task run is the article's coroutine itself, run by
Prefect's task engine in the same event loop and contextvars context, so:

- everything copydesk logs while the article is processed (its coroutines, and the threads
  `asyncio.to_thread` starts for its checks) carries Prefect's task run context, and
  Prefect's API log handler (on the `copydesk` logger, PREFECT_LOGGING_EXTRA_LOGGERS) files
  it under the task run;
- the article's Markdown artifact, made in the background from inside it, belongs to it;
- a completed one's result is its verdict (status, reasons; the whole QC verdict is in the
  artifact), kept in memory only: `persist_result=False` and `NO_CACHE`, so no result is written and nothing
  is looked up or paid twice (a resumed run reuses its calls from copydesk's call store);
- an incomplete article returns a Failed state whose message is its reason: a Failed task run
  without a traceback. The flow run itself still completes (copydesk_flows.pipeline says how
  many articles failed in its final state's message).

An article processed before the flow run existed (`copydesk run` starts early,
copydesk.orchestration.StartedRun) gets its task run when the flow run attaches: the same
task, which then only reports (its duration is the report's, and its records from before are
handed to it, see `adopted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.states import Failed, State

from copydesk.article import Article, Status
from copydesk.controls import clean_line
from copydesk.redact import redact
from copydesk.runner import PipelineRun

#: A task run's name: this prefix and the topic, cut to `TOPIC_IN_NAME` characters.
TASK_NAME = "write-article"
TOPIC_IN_NAME = 60
#: A failed task run's message: the article's reasons, cut to this many characters.
REASON_CHARS = 500


def task_run_name(topic: str) -> str:
    """`write-article: <topic>`, on one line, without control characters, at most TOPIC_IN_NAME of the topic."""
    text = " ".join(clean_line(topic).split()) or "(no topic)"
    if len(text) > TOPIC_IN_NAME:
        text = text[: TOPIC_IN_NAME - 1].rstrip() + "…"
    return f"{TASK_NAME}: {text}"


def failure_message(article: Article) -> str:
    """An incomplete article's reasons, as its Failed task run's message."""
    text = "; ".join(" ".join(r.split()) for r in article.reasons) or "incomplete (no reason recorded)"
    text = redact(text)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def verdict(article: Article) -> dict[str, Any]:
    """The task run's result: what QC decided (the article's artifact has the whole verdict)."""
    return {"topic": article.topic, "status": article.status.value, "reasons": list(article.reasons),
            "path": article.path or None}


@dataclass
class ArticleWork:
    """What one task run works on (handed over in a context variable: the task's parameters
    stay two plain values, which Prefect scans for upstream results in every call)."""

    run: PipelineRun
    article: Article
    #: Called once the article is processed (inside the task run): its artifact.
    report: Callable[[PipelineRun, Article], None]
    #: Processed already, before the flow run attached (an early start): its task run only reports it.
    adopted: bool = False
    #: Records logged for an adopted article before its task run existed.
    early_records: Iterable[logging.LogRecord] = ()
    done: bool = False


_WORK: ContextVar[ArticleWork | None] = ContextVar("copydesk_article_work", default=None)


def _name(parameters: dict[str, Any]) -> str:
    return task_run_name(str(parameters.get("topic", "")))


@task(name=TASK_NAME, task_run_name=_name, persist_result=False, cache_policy=NO_CACHE, log_prints=False,
      retries=0)
async def write_article(topic: str, number: int) -> Any:
    """Write, check and export one article (copydesk.runner.PipelineRun.process)."""
    work = _WORK.get()
    if work is None:
        raise RuntimeError("write_article runs only through copydesk_flows.article_runs.run_article")
    if work.adopted:
        adopted(work.early_records)
    else:
        await work.run.process(work.article)
    work.report(work.run, work.article)
    work.done = True
    if work.article.status == Status.INCOMPLETE:
        return Failed(message=failure_message(work.article))  # its verdict: the artifact, the run's files
    return verdict(work.article)


async def run_article(work: ArticleWork) -> State:
    """The article as its task run; returns the task run's final state. An error that is not the
    article's own failure (the run's internal error, a cancellation) is raised as it was raised."""
    token = _WORK.set(work)
    try:
        state = await write_article(work.article.topic, work.article.index + 1, return_state=True)
    finally:
        _WORK.reset(token)
    if not work.done:
        await state.aresult(raise_on_failure=True)  # re-raises the task's exception
    return state


class _ReturnedFailures(logging.Filter):
    """An incomplete article's task run ends Failed with its reason, which Prefect's
    `Finished in state Failed('...')` line states. Its "Task run failed with state: ..."
    record before that line (an error with an empty traceback, `NoneType: None`) is left out;
    a task run failed by an exception keeps its record and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        no_exception = not record.exc_info or record.exc_info[1] is None
        return not (no_exception and str(record.msg).startswith("Task run failed with state: "))


logging.getLogger("prefect.task_runs").addFilter(_ReturnedFailures())


def adopted(records: Iterable[logging.LogRecord]) -> None:
    """Hand records logged before this task run existed to its logs (Prefect's API log handlers
    of the `copydesk` logger; the console showed them when they were logged)."""
    context = TaskRunContext.get()
    if context is None:
        return
    handlers = [h for h in logging.getLogger("copydesk").handlers if isinstance(h, APILogHandler)]
    for record in records:
        record.flow_run_id = context.task_run.flow_run_id
        record.task_run_id = context.task_run.id
        record.copydesk_replayed = True
        for handler in handlers:
            handler.handle(record)
