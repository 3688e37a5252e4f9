"""The command line's one door into the Prefect layer, `copydesk_flows`.

Layers, top to bottom: the command line (copydesk.cli, copydesk.serve_cli and this
module) -> copydesk_flows (Prefect flows, tasks, deployments) -> the core library
(every other copydesk module; it imports neither Prefect nor copydesk_flows).
The command line reaches Prefect only through the functions here, and each
imports its part of copydesk_flows on first use: importing Prefect takes about
1.5 s, which `validate`, `plan`, `review` and `--help` should not pay.
.importlinter states these rules and tests/test_layers.py enforces them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from copydesk.limiter import current_article

if TYPE_CHECKING:  # annotations only: importing this module stays cheap
    from copydesk.request import RunRequest
    from copydesk.settings import Settings
    from copydesk.spec import PipelineSpec


async def run_flow(request: RunRequest, spec: PipelineSpec) -> dict[str, Any]:
    """`copydesk run`: the run as a `copydesk-run` flow run; returns its summary.

    Importing Prefect and copydesk_flows takes ~1.5-2.5 s of CPU. A realtime run without a
    shared allowance (copydesk.orchestration.can_start_early) does not wait for it: its calls
    start at once while a worker thread imports Prefect, and the flow run then attaches to the
    run in progress (copydesk_flows.pipeline.adopt_run): the same flow run, hooks, task runs,
    artifacts and summary.
    """
    from copydesk.orchestration import can_start_early, start_run
    from copydesk.resources import startup_executor

    # on the run's start-up thread, one thing after the other with the gate's building
    importing = asyncio.get_running_loop().run_in_executor(startup_executor(), importlib.import_module,
                                                           "copydesk_flows.pipeline")
    if not can_start_early(request, spec):
        flows = await importing
        return await flows.run_pipeline(request)
    early = EarlyRecords()
    logging.getLogger("copydesk").addHandler(early)
    try:
        started = start_run(request)
        try:
            flows = await importing
        except BaseException:
            await started.abandon()
            raise
        return await flows.adopt_run(started, early)
    finally:
        logging.getLogger("copydesk").removeHandler(early)


class EarlyRecords(logging.Handler):
    """copydesk's log records from before the flow run exists, kept for its logs: those logged
    outside any article for the flow run (`take`), each article's for its task run
    (`take_article`; copydesk_flows.pipeline.adopt_run). Once the flow run has attached, it
    keeps only the records of articles that started before it (their task runs are made when
    they are done). Meanwhile records are shown on the console as Python shows records that
    no handler takes (warnings and worse, on stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.by_article: dict[int, list[logging.LogRecord]] = {}
        self.started_early: set[int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        index = current_article()
        if self.started_early is not None:  # the flow run is there: its handlers take the rest
            if index is not None and index in self.started_early:
                self.by_article.setdefault(index, []).append(record)
            return
        if index is None:
            self.records.append(record)
        else:
            self.by_article.setdefault(index, []).append(record)
        if record.levelno >= logging.WARNING and logging.lastResort is not None:
            logging.lastResort.handle(record)

    def take(self, started_early: set[int]) -> list[logging.LogRecord]:
        """The flow run attaches: the records logged outside any article so far; from now on only
        the records of `started_early` articles are kept."""
        self.started_early = started_early
        records, self.records = self.records, []
        return records

    def take_article(self, index: int) -> list[logging.LogRecord]:
        """An article's records so far (its task run is being made)."""
        return self.by_article.pop(index, [])


def build_deployments(settings: Settings, *, review_timeout: int, editor_review_timeout: int) -> Any:
    """`copydesk serve`: the deployments to offer (a copydesk_flows.deployments.DeploymentPlan)."""
    from copydesk_flows.deployments import build_deployments as build  # lazy: Prefect's import time

    return build(settings, review_timeout=review_timeout, editor_review_timeout=editor_review_timeout)


def serve_deployments(deployments: list[Any], *, limit: int | None) -> None:
    """`copydesk serve`: serve them until interrupted."""
    from copydesk_flows.serving import serve  # lazy: Prefect's import time

    serve(deployments, limit=limit)


def profile_api_url() -> str | None:
    """PREFECT_API_URL from the active Prefect profile (`prefect config set PREFECT_API_URL=...`)."""
    from copydesk_flows.serving import profile_api_url as from_profile  # lazy: Prefect's import time

    return from_profile()


def check_shared_allowance(spec: PipelineSpec) -> None:
    """`copydesk run` with budget.shared: the allowance is recorded and the spec agrees with it
    (`InputError` otherwise), before the flow run starts."""

    from copydesk_flows.allowance import check_recorded  # lazy: Prefect's import time

    asyncio.run(check_recorded(spec))


def allowance_statuses(name: str | None) -> list[Any]:
    """`copydesk budget status`: shared allowances held by the Prefect server."""

    from copydesk_flows.allowance import allowance_statuses as read  # lazy: Prefect's import time

    return asyncio.run(read(name))


def create_allowance(allowance: Any) -> Any:
    """`copydesk budget create NAME ...`: record an allowance (a copydesk.allowance_admin.Created)."""

    from copydesk_flows.allowance import record_allowance  # lazy: Prefect's import time

    return asyncio.run(record_allowance(allowance))


def set_allowance(name: str, *, max_tokens: int | None, period: str | None, timezone: str | None,
                  who: str) -> tuple[Any, Any]:
    """`copydesk budget set NAME ...`: change a recorded allowance; (before, after)."""

    from copydesk_flows.allowance import change_allowance  # lazy: Prefect's import time

    return asyncio.run(change_allowance(name, max_tokens=max_tokens, period=period, timezone=timezone, who=who))


def reset_allowance(name: str, *, who: str) -> list[Any]:
    """`copydesk budget reset NAME`: the current period of that allowance starts again from 0."""

    from copydesk_flows.allowance import reset_allowance as reset  # lazy: Prefect's import time

    return asyncio.run(reset(name, who=who))


def exit_now(code: int) -> None:
    """End `copydesk run` without Python's interpreter finalization, which takes ~1 s with the
    heap a run leaves (the classifier, Prefect, the call store) and frees nothing the OS would
    not. First, whatever must leave the process does: Prefect's log and event workers are
    drained, as their own exit hooks would (a Prefect without that internal API just exits
    the usual way); the run closed its files; stdout and stderr are flushed."""

    flows = sys.modules.get("copydesk_flows.pipeline")
    if flows is not None and not flows.drain_prefect_services():
        return  # the usual exit drains them
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
