"""The served flows: `editor` (on demand, a form in the UI) and `scheduled` (one deployment per spec).

    copydesk-editor/<spec name>     each pipeline's own form (`pipeline_flow`, loaded as
                                    copydesk_flows.forms.<name>): its variables as typed fields
                                    (copydesk.form.editor_schema), topics (one per line), budget, mode
    copydesk-editor/editor          any served pipeline by name (scripts, the Prefect CLI)
    copydesk-scheduled/<spec name>  the spec's schedule: block (cron, timezone, topics, vars)

Both name the pipeline by its spec's `name:` (`tech-blog`), one of the pipelines
served from COPYDESK_PIPELINES_DIR (`copydesk.catalog`), never by a path; they
write to COPYDESK_OUTPUT_DIR and run `copydesk_flows.pipeline.execute`: the same steps as
`copydesk run`. A form's `budget` may only lower the spec's cap (`copydesk.form`); its
`vars` may only set the variables the spec declares, each of its type; empty topic rows
(and empty lines of a pipeline form's topics box) are dropped. An error the form's values
cause ends the flow run Failed with that error as its one-line message (no traceback);
called outside a flow run (`editor.fn`), it raises.

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

import inspect
import logging
from typing import Annotated, Any, Literal

from prefect import Flow, flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.runtime import deployment as current_deployment
from prefect.states import Failed
from pydantic import MISSING, Field, WithJsonSchema

from copydesk.catalog import MAX_NAME_LENGTH, load_catalog, resolve_served
from copydesk.errors import CopydeskError, InputError
from copydesk.form import (
    AS_THE_SPEC_SAYS,
    MAX_FORM_BUDGET,
    MAX_FORM_TOPICS,
    MAX_REVIEW_TIMEOUT,
    MAX_TOPIC_CHARS,
    editor_description,
    editor_schema,
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
    topics: str | list[str],
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
    supplied; the flows log it and end Failed with it (`refused`).
    """
    logger = _logger()
    settings = Settings()
    try:
        path, spec = resolve_served(pipeline, settings.pipelines_dir)
        topics = form_topics(topics)
        if not topics:
            raise InputError("no topics: write at least one topic (empty rows and lines are left out)")
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
        return refused(exc)
    finally:
        await refresh_after_run(pipeline)


def refused(exc: InputError) -> Any:
    """An error the form's values caused: the flow run ends Failed with it as its one-line
    message (the log has the same line, no traceback); outside a flow run, the exception."""
    _logger().error("%s", exc)
    if FlowRunContext.get() is None:
        raise exc
    return Failed(message=" ".join(str(exc).split()))


async def refresh_after_run(pipeline: str) -> None:
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
        return refused(exc)
    finally:
        await refresh_after_run(pipeline)


# ------------------------------------------------------------------ each pipeline's own form

#: The module whose attributes are the pipelines' own flows (`copydesk_flows.forms.<name>`).
FORMS_MODULE = "copydesk_flows.forms"
#: A pipeline form's parameters: the type the flow run checks, and the default (MISSING: none in
#: the form, so the UI sends nothing and the flow uses the pipeline's own value; a flow run fills
#: in the defaults before it checks the values, hence `| MISSING`).
_FORM_PARAMETERS: dict[str, tuple[Any, Any]] = {
    "topics": (str | list[Topic], inspect.Parameter.empty),
    "vars": (dict[str, Any] | MISSING, MISSING),
    "budget": (int | MISSING, MISSING),
    "mode": (FormMode, AS_THE_SPEC_SAYS),
    "review_timeout": (Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)], 0),
    "run_id": (str | MISSING, MISSING),
}
_own_flows: dict[str, Flow[..., Any]] = {}


def _given(value: Any, default: Any) -> Any:
    return default if value is MISSING or value is None else value


def pipeline_flow(name: str, spec: PipelineSpec | None = None) -> Flow[..., Any]:
    """The `copydesk-editor` flow of the pipeline named `name`, whose parameter schema is the
    pipeline's own form (`copydesk.form.editor_schema`): what `copydesk serve` and `prefect deploy`
    (an entrypoint `copydesk_flows.forms:<name>`) make its deployment's form from.

    Prefect takes the schema from the flow's signature, so the signature carries it: each
    parameter's annotation has its field's schema (WithJsonSchema, and the field's title and help as
    extras), and an optional field without a default has pydantic's MISSING as its default, which
    leaves `default` out of the schema. The spec is `spec`, else the one served under `name` now
    (COPYDESK_PIPELINES_DIR or the project's); a name not served gets the plain fields, and its runs
    end Failed naming the served pipelines. The flow runs `run_named_pipeline(name, ...)`.
    """
    if spec is None and name in _own_flows:
        return _own_flows[name]
    if spec is None:
        try:
            _, spec = resolve_served(name, Settings().pipelines_dir)
        except CopydeskError as exc:
            logging.getLogger("copydesk.editor").warning("pipeline %s: %s; its form has plain fields only", name, exc)
    schema = editor_schema(spec) if spec is not None else {"properties": dict.fromkeys(_FORM_PARAMETERS)}
    parameters = []
    for position, (field, prop) in enumerate(sorted(schema["properties"].items(),
                                                     key=lambda item: (item[1] or {}).get("position", 0))):
        kind, default = _FORM_PARAMETERS[field]
        annotation = kind if prop is None else Annotated[kind, WithJsonSchema({}),
                                                         Field(json_schema_extra={**prop, "position": position})]
        parameters.append(inspect.Parameter(field, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=annotation))

    async def run(topics: Any, vars: Any = None, budget: Any = None, mode: Any = AS_THE_SPEC_SAYS,  # noqa: A002
                  review_timeout: Any = 0, run_id: Any = None) -> Any:
        try:
            return await run_named_pipeline(
                name, topics, vars=_given(vars, {}), budget=_given(budget, None), review_timeout=review_timeout,
                run_id=_given(run_id, None), mode=_given(mode, None))
        except InputError as exc:
            return refused(exc)
        finally:
            await refresh_after_run(name)

    run.__name__ = run.__qualname__ = name
    run.__module__ = FORMS_MODULE
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    own = flow(name="copydesk-editor", description=editor_description(spec) if spec else None, log_prints=False,
               validate_parameters=True)(run)
    _own_flows[name] = own
    return own
