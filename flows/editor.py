"""The served flows: `editor` (on demand, a form in the UI) and `scheduled` (one deployment per spec).

    copydesk-editor/editor          an editor picks a pipeline, types topics, optionally
                                    overrides vars and the budget, and presses Run
    copydesk-scheduled/<spec name>  the spec's schedule: block (cron, timezone, topics, vars)

Both name the pipeline as an editor would (`tech-blog`, looked up in
COPYDESK_PIPELINES_DIR, or a path to a spec file), write to COPYDESK_OUTPUT_DIR,
and run `copydesk_flows.pipeline.execute`: the same steps as `copydesk run`.

Parameters are typed and bounded in the signatures and described in the
docstrings (Prefect turns both into the deployment's parameter schema); the
deployments enforce that schema, so the server refuses a bad value before a run
starts and the UI draws a proper form.

The run id of a served run is derived from the flow run (`<pipeline>-<date>-<8
hex of the flow run id>`), so a retry of the same flow run resumes its own run
folder instead of paying again for finished calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from copydesk.errors import CopydeskError, InputError
from copydesk.request import RunRequest
from copydesk.settings import Settings
from copydesk_flows.pipeline import execute

Topic = Annotated[str, Field(min_length=1, max_length=500)]
MAX_TOPICS = 1000
#: A week: longer than any editor's weekend, shorter than forever.
MAX_REVIEW_TIMEOUT = 7 * 24 * 3600


def _run_id(pipeline_name: str) -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow_run = context.flow_run if context else None
    if flow_run is None:
        return None
    created = flow_run.created or flow_run.expected_start_time
    stamp = f"{created:%Y%m%d-%H%M%S}-" if created else ""
    return f"{pipeline_name}-{stamp}{flow_run.id.hex[:8]}"


async def run_named_pipeline(
    pipeline: str,
    topics: list[str],
    *,
    vars: dict[str, Any] | None = None,
    budget: int | None = None,
    review_timeout: int = 0,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Resolve `pipeline` in the pipelines folder and run it as the current flow run."""
    from copydesk.catalog import resolve_pipeline
    from copydesk.spec import load_spec

    logger = get_run_logger()
    settings = Settings()
    try:
        path = resolve_pipeline(pipeline, settings.pipelines_dir)
        spec = load_spec(path)
        request = RunRequest(
            spec_path=str(path),
            topics=topics,
            out_dir=str(settings.output_dir.resolve()),
            run_id=run_id or _run_id(spec.name),
            budget=budget,
            vars=vars or {},
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
                       "run_id=%s and a larger budget to finish it", result.get("budget_message"), result["run_id"])
    return result


@flow(name="copydesk-editor", log_prints=False, validate_parameters=True)
async def editor(
    pipeline: Annotated[str, Field(min_length=1, max_length=500)],
    topics: Annotated[list[Topic], Field(min_length=1, max_length=MAX_TOPICS)],
    vars: dict[str, Any] = {},  # noqa: B006 - never mutated; a JSON object in the form
    budget: Annotated[int | None, Field(ge=1)] = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
    run_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")] = None,
) -> dict:
    """Write one article per topic with a pipeline, check it and export it (Markdown and CSV).

    Args:
        pipeline: Name of a pipeline spec in the pipelines folder (its `name:` or file name,
            e.g. tech-blog), or a path to a spec file.
        topics: One article per topic (at least one).
        vars: Overrides of the spec's template variables, e.g. {"audience": "students"}.
        budget: Hard cap on the run's total tokens; empty uses the spec's budget.max_total_tokens.
        review_timeout: Seconds to wait for an editor to approve or reject articles that need
            review (0: do not wait; they stay held for `copydesk review`).
        run_id: Resume an earlier run by its id (finished calls are not paid again); empty
            starts a new run.
    """
    return await run_named_pipeline(
        pipeline, topics, vars=vars, budget=budget, review_timeout=review_timeout, run_id=run_id
    )


@flow(name="copydesk-scheduled", log_prints=False, validate_parameters=True)
async def scheduled(
    pipeline: Annotated[str, Field(min_length=1, max_length=500)],
    topics: Annotated[list[Topic] | None, Field(max_length=MAX_TOPICS)] = None,
    vars: dict[str, Any] | None = None,
    budget: Annotated[int | None, Field(ge=1)] = None,
    review_timeout: Annotated[int, Field(ge=0, le=MAX_REVIEW_TIMEOUT)] = 0,
) -> dict:
    """Run a pipeline on its schedule: the topics and vars of the spec's schedule: block.

    Args:
        pipeline: Name of a pipeline spec in the pipelines folder, or a path to a spec file.
        topics: Topics for this run; empty uses the spec's schedule.topics.
        vars: Overrides of the spec's vars, on top of the spec's schedule.vars.
        budget: Hard cap on the run's total tokens; empty uses the spec's budget.
        review_timeout: Seconds to wait for an editor's decisions on articles that need review
            (0: do not wait).
    """
    from copydesk.catalog import resolve_pipeline
    from copydesk.spec import load_spec

    settings = Settings()
    try:
        spec = load_spec(resolve_pipeline(pipeline, settings.pipelines_dir))
    except CopydeskError as exc:
        get_run_logger().error("%s", exc)
        raise
    schedule = spec.schedule
    if not topics and (schedule is None or not schedule.topics):
        raise InputError(f"pipeline {spec.name} has no schedule.topics and no topics were given")
    merged = {**(schedule.vars if schedule else {}), **(vars or {})}
    return await run_named_pipeline(
        pipeline,
        list(topics or schedule.topics),  # type: ignore[union-attr]
        vars=merged,
        budget=budget,
        review_timeout=review_timeout,
    )
