"""The served flows: `editor` (on demand, a form in the UI) and `scheduled` (one deployment per spec).

    copydesk-editor/editor          an editor picks a pipeline, types topics, optionally
                                    overrides vars and the budget, and presses Run
    copydesk-scheduled/<spec name>  the spec's schedule: block (cron, timezone, topics, vars)

Both name the pipeline by its spec's `name:` (`tech-blog`), one of the pipelines
served from COPYDESK_PIPELINES_DIR (`copydesk.catalog`), never by a path; they
write to COPYDESK_OUTPUT_DIR and run `copydesk_flows.pipeline.execute`: the same steps as
`copydesk run`. A form's `budget` may only lower the spec's cap (`copydesk.form`).

Parameters are typed and bounded in the signatures and described in the
docstrings (Prefect turns both into the deployment's parameter schema; `copydesk
serve` adds the enum of served pipeline names, which the UI draws as a
dropdown); the deployments enforce that schema, so the server refuses a bad value
before a run starts. The flow bodies check the name and the budget again: a run
started some other way (prefect.yaml's deployments, whose schema has the name
pattern but no enum; `editor.fn`) gets the same answer.

The run id of a served run is derived from the flow run (`<pipeline>-<date>-<8
hex of the flow run id>`), so a retry of the same flow run resumes its own run
folder instead of paying again for finished calls.

When the served pipelines name shared allowances, every served run (editor or
scheduled) ends by writing what is left of them into the editor's form and its own
deployment's (copydesk_flows.allowance.refresh_form).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError
from pydantic import Field

from copydesk.catalog import MAX_NAME_LENGTH, load_catalog, resolve_served
from copydesk.errors import CopydeskError, InputError
from copydesk.form import MAX_FORM_BUDGET, form_budget
from copydesk.request import RunRequest, check_run_id
from copydesk.rundir import RUN_ID_PATTERN
from copydesk.settings import Settings
from copydesk.spec import NAME_PATTERN
from copydesk_flows.allowance import refresh_form
from copydesk_flows.pipeline import execute

Topic = Annotated[str, Field(min_length=1, max_length=500)]
#: A served pipeline, by name (the schema's pattern refuses paths; serve adds the enum of names).
PipelineName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]
FormBudget = Annotated[int | None, Field(ge=1, le=MAX_FORM_BUDGET)]
FormMode = Literal["realtime", "batch", "auto"] | None
MAX_TOPICS = 1000
#: The editor deployment (copydesk serve and prefect.yaml name it alike).
EDITOR_FORM = "copydesk-editor/editor"
#: A week: longer than any editor's weekend, shorter than forever.
MAX_REVIEW_TIMEOUT = 7 * 24 * 3600


def _run_id(pipeline_name: str) -> str | None:
    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:
        return None
    created = flow_run.created or flow_run.expected_start_time
    stamp = f"{created:%Y%m%d-%H%M%S}-" if created else ""
    return f"{pipeline_name}-{stamp}{flow_run.id.hex[:8]}"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The flow run's logger; a plain one when called outside a flow run (`editor.fn(...)`)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("copydesk.editor")


async def run_named_pipeline(
    pipeline: str,
    topics: list[str],
    *,
    vars: dict[str, Any] | None = None,
    budget: int | None = None,
    review_timeout: int = 0,
    run_id: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Run the served pipeline named `pipeline` as the current flow run.

    The name must be one of the pipelines served now (`copydesk.catalog.resolve_served`)
    and `budget` may only lower the spec's cap (`copydesk.form.form_budget`): both are
    checked before anything is called or written; a refusal is logged and raised as an
    InputError (exit-2 class) whose message quotes no path the caller supplied.
    """
    logger = _logger()
    settings = Settings()
    try:
        path, spec = resolve_served(pipeline, settings.pipelines_dir)
        request = RunRequest(
            spec_path=str(path),
            topics=topics,
            out_dir=str(settings.output_dir.resolve()),
            run_id=check_run_id(run_id, field="run_id (the form's field)") if run_id else _run_id(spec.name),
            budget=form_budget(budget, spec),
            vars=vars or {},
            mode=mode,
        )
    except CopydeskError as exc:
        logger.error("%s", exc)
        raise
    logger.info("pipeline %s (%s): %d topic(s) → %s", spec.name, path, len(request.topics), settings.output_dir)
    result = await execute(request, settings=settings, review_timeout=review_timeout)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result["by_status"].items()))
    logger.info("run %s: %s; %d of %d tokens; folder %s", result["run_id"], counts, result["budget_spent"],
                result["budget_limit"], result["run_dir"])
    if result.get("stopped_by_budget"):
        logger.warning("stopped by the budget: %s; everything so far is exported. Start the run again with "
                       "run_id=%s and a larger budget to finish it (a form goes up to the spec's "
                       "budget.max_total_tokens; beyond it, the operator's `copydesk run --budget`)",
                       result.get("budget_message"), result["run_id"])
    return result


@flow(name="copydesk-editor", log_prints=False, validate_parameters=True)
async def editor(
    pipeline: PipelineName,
    topics: Annotated[list[Topic], Field(min_length=1, max_length=MAX_TOPICS)],
    vars: dict[str, Any] = {},  # noqa: B006 - never mutated; a JSON object in the form
    budget: FormBudget = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
    run_id: Annotated[str | None, Field(pattern=f"^{RUN_ID_PATTERN.pattern}$")] = None,
    mode: FormMode = None,
) -> dict:
    """Write one article per topic with a pipeline, check it and export it (Markdown and CSV).

    Args:
        pipeline: One of the served pipelines, by name (e.g. tech-blog).
        topics: One article per topic (at least one).
        vars: Overrides of the spec's template variables, e.g. {"audience": "students"}.
        budget: Hard cap on the run's total tokens, at most the spec's budget.max_total_tokens
            (a form may lower it, never raise it); empty uses the spec's cap.
        review_timeout: Seconds to wait for an editor to approve or reject articles that need
            review (0: do not wait; they stay held for `copydesk review`).
        run_id: Resume an earlier run by its id (finished calls are not paid again); empty
            starts a new run.
        mode: realtime calls, batch (the OpenAI Batch API: about half the price, articles within
            24 h), or auto (batch where the server has a Batch API); empty uses the spec's mode.
    """
    try:
        return await run_named_pipeline(
            pipeline, topics, vars=vars, budget=budget, review_timeout=review_timeout, run_id=run_id, mode=mode
        )
    finally:
        await _refresh_form()


async def _refresh_form() -> None:
    """After a served run: the editor's form (and the form of the deployment that started the
    run) says again what is left of the served pipelines' shared allowances
    (copydesk_flows.allowance.refresh_form)."""
    context = FlowRunContext.get()
    deployment_id = context.flow_run.deployment_id if context and context.flow_run else None
    if deployment_id is None:
        return
    try:
        specs = list(load_catalog(Settings().pipelines_dir).specs.values())
    except Exception as exc:  # noqa: BLE001 - the note never changes a run's outcome
        _logger().warning("could not refresh the form's note on the shared allowances: %s", exc)
        return
    if any(spec.budget.shared for spec in specs):
        await refresh_form(deployment_id, specs, also=EDITOR_FORM)


@flow(name="copydesk-scheduled", log_prints=False, validate_parameters=True)
async def scheduled(
    pipeline: PipelineName,
    topics: Annotated[list[Topic] | None, Field(max_length=MAX_TOPICS)] = None,
    vars: dict[str, Any] | None = None,
    budget: FormBudget = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
    mode: FormMode = None,
) -> dict:
    """Run a pipeline on its schedule: the topics and vars of the spec's schedule: block.

    Args:
        pipeline: The scheduled pipeline, by name (one of the served pipelines).
        topics: Topics for this run; empty uses the spec's schedule.topics.
        vars: Overrides of the spec's vars, on top of the spec's schedule.vars.
        budget: Hard cap on the run's total tokens, at most the spec's cap; empty uses the spec's.
        review_timeout: Seconds to wait for an editor's decisions on articles that need review
            (0: do not wait).
        mode: realtime, batch (the OpenAI Batch API, half the price, within 24 h: the natural
            choice for an overnight schedule) or auto; empty uses the spec's mode.
    """
    settings = Settings()
    try:
        _, spec = resolve_served(pipeline, settings.pipelines_dir)
    except CopydeskError as exc:
        _logger().error("%s", exc)
        raise
    schedule = spec.schedule
    if not topics and (schedule is None or not schedule.topics):
        raise InputError(f"pipeline {spec.name} has no schedule.topics and no topics were given")
    merged = {**(schedule.vars if schedule else {}), **(vars or {})}
    try:
        return await run_named_pipeline(
            pipeline,
            list(topics or schedule.topics),  # type: ignore[union-attr]
            vars=merged,
            budget=budget,
            review_timeout=review_timeout,
            mode=mode,
        )
    finally:
        await _refresh_form()
