"""The served flows: `editor` (on demand, a form in the UI) and `scheduled` (one deployment per spec).

    copydesk-editor/<spec name>     each pipeline's own form: its variables as typed fields
                                    (copydesk.form.editor_schema), topics, budget, mode
    copydesk-editor/editor          any served pipeline by name (scripts, the Prefect CLI)
    copydesk-scheduled/<spec name>  the spec's schedule: block (cron, timezone, topics, vars)

Both name the pipeline by its spec's `name:` (`tech-blog`), one of the pipelines
served from COPYDESK_PIPELINES_DIR (`copydesk.catalog`), never by a path; they
write to COPYDESK_OUTPUT_DIR and run `copydesk_flows.pipeline.execute`: the same steps as
`copydesk run`. A form's `budget` may only lower the spec's cap (`copydesk.form`); its
`vars` may only set the variables the spec declares, each of its type; empty topic rows
are dropped. An error the form's values cause ends the flow run Failed with that error as
its one-line message (no traceback); called outside a flow run (`editor.fn`), it raises.

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
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.runtime import deployment as current_deployment
from prefect.states import Failed
from pydantic import Field

from copydesk.catalog import MAX_NAME_LENGTH, load_catalog, resolve_served
from copydesk.errors import CopydeskError, InputError
from copydesk.form import (
    AS_THE_SPEC_SAYS,
    MAX_FORM_BUDGET,
    MAX_FORM_TOPICS,
    MAX_REVIEW_TIMEOUT,
    MAX_TOPIC_CHARS,
    form_budget,
    form_mode,
    form_topics,
)
from copydesk.request import RunRequest, check_run_id
from copydesk.rundir import RUN_ID_PATTERN
from copydesk.settings import Settings
from copydesk.spec import NAME_PATTERN, PipelineSpec
from copydesk_flows.allowance import refresh_form
from copydesk_flows.pipeline import execute

#: A topic row; an empty one is dropped (copydesk.form.form_topics).
Topic = Annotated[str, Field(max_length=MAX_TOPIC_CHARS)]
#: A served pipeline, by name (the schema's pattern refuses paths; serve adds the enum of names).
PipelineName = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN)]

# Optional fields are `X | None` here (a run started from prefect.yaml's deployment may leave
# them out or send null); the deployments `copydesk serve` makes draw them as plain fields whose
# empty value means the pipeline's own (copydesk_flows.deployments.plain_fields).
FormBudget = Annotated[int | None, Field(ge=1, le=MAX_FORM_BUDGET)]
FormMode = Literal["as the spec says", "realtime", "batch", "auto"]
FormRunId = Annotated[str | None, Field(pattern=f"^{RUN_ID_PATTERN.pattern}$")]
MAX_TOPICS = MAX_FORM_TOPICS
#: The editor deployment (copydesk serve and prefect.yaml name it alike).
EDITOR_FORM = "copydesk-editor/editor"


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
    checked before anything is called or written, as are the topics (empty rows dropped) and
    the vars (only the declared ones, each of its type: `PipelineSpec.check_vars`). A refusal
    is raised as an InputError (exit-2 class) whose message quotes no path the caller
    supplied; the flows log it and end Failed with it (`_refused`).
    """
    logger = _logger()
    settings = Settings()
    try:
        path, spec = resolve_served(pipeline, settings.pipelines_dir)
        topics = form_topics(topics)
        if not topics:
            raise InputError("no topics: write at least one topic (empty rows are left out)")
        request = RunRequest(
            spec_path=str(path),
            topics=topics,
            out_dir=str(settings.output_dir.resolve()),
            run_id=check_run_id(run_id, field="run_id (the form's field)") if run_id else _run_id(spec.name),
            budget=form_budget(budget, spec),
            vars=spec.check_vars(vars or {}, origin="vars"),
            mode=form_mode(mode),
        )
    except CopydeskError as exc:
        if not isinstance(exc, InputError):
            logger.error("%s", exc)
        raise
    logger.info("pipeline %s (%s): %d topic(s) → %s", spec.name, path, len(request.topics), settings.output_dir)
    result = await execute(request, settings=settings, review_timeout=review_timeout)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result["by_status"].items()))
    logger.info("run %s: %s; %d of %d tokens; folder %s", result["run_id"], counts, result["budget_spent"],
                result["budget_limit"], result["run_dir"])
    if result.get("stopped_by_budget"):
        logger.warning("stopped by the budget: %s; everything so far is exported. To finish it, start the "
                       "run again with %s in \"Finish an earlier run\" and a larger budget (a form goes up to "
                       "the pipeline's cap; beyond it, ask the operator)",
                       result.get("budget_message"), result["run_id"])
    return result


@flow(name="copydesk-editor", log_prints=False, validate_parameters=True)
async def editor(
    pipeline: PipelineName,
    topics: Annotated[list[Topic], Field(min_length=1, max_length=MAX_TOPICS)],
    vars: dict[str, Any] = {},  # noqa: B006 - never mutated; a JSON object in the form
    budget: FormBudget = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
    run_id: FormRunId = None,
    mode: FormMode = AS_THE_SPEC_SAYS,
) -> Any:
    """Write one article per topic with a pipeline, check it and export it (Markdown and CSV).

    Args:
        pipeline: One of the served pipelines, by name (e.g. tech-blog).
        topics: One article per topic: add a row for each. Empty rows are left out.
        vars: The pipeline's variables to change, e.g. {"audience": "students"}; only the ones the
            pipeline has. Each pipeline's own form shows them as fields.
        budget: The most tokens this run may use, at most the pipeline's cap. Empty: the cap.
        review_timeout: How long the run waits for you to approve or reject articles that need a
            look before it ends (seconds). 0: it does not wait; they stay held for review later.
        run_id: The id of an earlier run of this pipeline to finish (what it already wrote is not
            paid for again). Empty: a new run.
        mode: How the articles are written: realtime, batch (the Batch API: about half the price,
            articles within 24 hours) or auto (batch where the server has it).
    """
    try:
        return await run_named_pipeline(
            pipeline, topics, vars=vars, budget=budget, review_timeout=review_timeout, run_id=run_id, mode=mode
        )
    except InputError as exc:
        return _refused(exc)
    finally:
        await _refresh_form(pipeline)


def _refused(exc: InputError) -> Any:
    """An error the form's values caused: the flow run ends Failed with it as its one-line
    message (the log has the same line, no traceback); outside a flow run, the exception."""
    _logger().error("%s", exc)
    if FlowRunContext.get() is None:
        raise exc
    return Failed(message=" ".join(str(exc).split()))


async def _refresh_form(pipeline: str) -> None:
    """After a served run: the form that started it (and the `editor` form) says again what is
    left of the shared allowances (copydesk_flows.allowance.refresh_form). A pipeline's own form
    speaks of its own allowance; the `editor` form of every served pipeline's."""
    context = FlowRunContext.get()
    deployment_id = context.flow_run.deployment_id if context and context.flow_run else None
    if deployment_id is None:
        return
    try:
        specs = list(load_catalog(Settings().pipelines_dir).specs.values())
    except Exception as exc:  # noqa: BLE001 - the note never changes a run's outcome
        _logger().warning("could not refresh the form's note on the shared allowances: %s", exc)
        return
    if not any(spec.budget.shared for spec in specs):
        return
    if current_deployment.name == pipeline:  # the pipeline's own form
        await refresh_form(deployment_id, _only(specs, pipeline))
        await _refresh_named(EDITOR_FORM, specs)
    else:
        await refresh_form(deployment_id, specs, also=EDITOR_FORM)


def _only(specs: list[PipelineSpec], name: str) -> list[PipelineSpec]:
    return [spec for spec in specs if spec.name == name] or specs


async def _refresh_named(name: str, specs: list[PipelineSpec]) -> None:
    try:
        async with get_client() as client:
            other = await client.read_deployment_by_name(name)
    except ObjectNotFound:
        return
    except Exception as exc:  # noqa: BLE001 - the note never changes a run's outcome
        _logger().warning("could not refresh the form's note on the shared allowances: %s", exc)
        return
    await refresh_form(other.id, specs)


@flow(name="copydesk-scheduled", log_prints=False, validate_parameters=True)
async def scheduled(
    pipeline: PipelineName,
    topics: Annotated[list[Topic] | None, Field(max_length=MAX_TOPICS)] = None,
    vars: dict[str, Any] | None = None,
    budget: FormBudget = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
    mode: FormMode = AS_THE_SPEC_SAYS,
) -> Any:
    """Run a pipeline on its schedule: the topics and vars of the spec's schedule: block.

    Args:
        pipeline: The scheduled pipeline, by name (one of the served pipelines).
        topics: Topics for this run. Empty: the pipeline's scheduled topics.
        vars: The pipeline's variables to change for this run, on top of its schedule's.
        budget: The most tokens this run may use, at most the pipeline's cap. Empty: the cap.
        review_timeout: How long the run waits for an editor's decisions on articles that need a
            look (seconds). 0: it does not wait.
        mode: How the articles are written: realtime, batch (the Batch API: about half the price,
            within 24 hours, the natural choice overnight) or auto (batch where the server has it).
    """
    settings = Settings()
    try:
        _, spec = resolve_served(pipeline, settings.pipelines_dir)
        schedule = spec.schedule
        topics = form_topics(topics or [])
        if not topics and (schedule is None or not schedule.topics):
            raise InputError(f"pipeline {spec.name} has no scheduled topics and no topics were given")
        merged = {**(schedule.vars if schedule else {}), **(vars or {})}
        return await run_named_pipeline(
            pipeline,
            list(topics or schedule.topics),  # type: ignore[union-attr]
            vars=merged,
            budget=budget,
            review_timeout=review_timeout,
            mode=mode,
        )
    except InputError as exc:
        return _refused(exc)
    finally:
        await _refresh_form(pipeline)
