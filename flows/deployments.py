"""The deployments `copydesk serve` offers, built from the pipelines folder.

    <spec name>                  copydesk-editor/<spec name>: the pipeline's own form, on demand
    editor                       copydesk-editor/editor: any served pipeline by name, on demand
    <spec name>                  copydesk-scheduled/<spec name>, for each spec with a schedule: block

A pipeline's own form (`copydesk.form.editor_schema`) has its variables as typed fields
(dropdowns for choices, number fields, switches, text), the budget bounded by its cap, and
no `pipeline` field: the deployment's parameters name it. The other forms draw every
optional field as a plain field whose empty value means the pipeline's own (`plain_fields`).

Every deployment enforces its parameter schema and loads its flow by module path
(`copydesk_flows.editor.editor`), so the runs that `copydesk serve` starts as
subprocesses find their flow whatever the working folder. Each schema's
`pipeline` is an enum of names: every served pipeline for the editor (the UI draws
a dropdown), the deployment's own pipeline for a scheduled one; the server then
refuses any other value before a run starts. The enum is taken when `copydesk
serve` starts (restart it to offer a new spec); the flow body checks the name
against the folder again at run time. prefect.yaml declares the same deployments
for a work pool (`prefect deploy --all`): a pipeline's own form there has the same
schema (its flow, `copydesk_flows.forms:<name>`, carries it); the `editor` has no
enum, since `prefect deploy` writes the schema from the flow signature, so there the
signature's name pattern and the flow body's check protect the form.

When a served pipeline names a shared allowance, the editor's form says what is left
of it (its description and the `budget` field's help): read when `copydesk serve`
starts, and written again by every served run (editor or scheduled) when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prefect.deployments.runner import EntrypointType
from prefect.schedules import Cron

from copydesk.catalog import load_catalog
from copydesk.form import editor_description
from copydesk.settings import Settings
from copydesk.spec import PipelineSpec
from copydesk_flows.allowance import form_note, note_on
from copydesk_flows.editor import editor, pipeline_flow, scheduled

log = logging.getLogger("copydesk.serve")

EDITOR_DEPLOYMENT = "editor"
TAGS = ["copydesk"]


@dataclass
class DeploymentPlan:
    deployments: list[Any] = field(default_factory=list)
    #: (deployment name, what it does) for the start-up message.
    described: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def offer_pipelines(deployment: Any, names: list[str]) -> None:
    """Make the deployment's `pipeline` parameter a choice among `names` (a JSON-schema enum).

    With no names (no valid spec yet) the schema keeps only its name pattern: an empty enum
    would refuse every run without saying why, and the flow body names what is served.
    """
    if not names:
        return
    prop = deployment._parameter_openapi_schema.properties["pipeline"]
    prop["enum"] = list(names)


def plain_fields(deployment: Any) -> None:
    """Draw every optional field of the deployment's form as a plain field: an `X | None` field
    (which the Prefect UI draws with a type switch) becomes X, without the `null` default (the
    UI would send it); an empty field is left out, and the flow uses the pipeline's own value.
    Bounds go into `allOf`, the one place where the UI's form checks them. Topic rows start empty."""
    for prop in deployment._parameter_openapi_schema.properties.values():
        branches = prop.get("anyOf")
        if isinstance(branches, list) and {"type": "null"} in branches and len(branches) == 2:
            (kept,) = [branch for branch in branches if branch != {"type": "null"}]
            del prop["anyOf"]
            prop["allOf"] = [kept]
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        for schema in (prop, *prop.get("allOf", [])):
            items = schema.get("items")
            if isinstance(items, dict) and items.get("type") == "string":
                items.setdefault("default", "")


def pipeline_form(spec: PipelineSpec, *, review_timeout: int) -> Any:
    """The pipeline's own editor deployment, `copydesk-editor/<name>`: its flow,
    `copydesk_flows.forms.<name>`, carries the form generated from the spec (the same flow that
    prefect.yaml's `copydesk_flows.forms:<name>` names)."""
    deployment = pipeline_flow(spec.name, spec).to_deployment(
        name=spec.name,
        parameters={"review_timeout": review_timeout},
        description=editor_description(spec),
        tags=[*TAGS, "editor", spec.name],
        enforce_parameter_schema=True,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    deployment._parameter_openapi_schema.properties["review_timeout"]["default"] = review_timeout
    return deployment


def note_allowances(deployment: Any, specs: list[Any]) -> None:
    """Write what is left of the specs' shared allowances into the deployment's form, as the
    Prefect server holds them now (each served run refreshes it when it ends). A server that
    cannot tell leaves the form without the note (logged), and serving goes on."""
    if not any(spec.budget.shared for spec in specs):
        return
    try:
        with ThreadPoolExecutor(1) as pool:  # a loop of its own, whoever calls this
            note = pool.submit(asyncio.run, form_note(specs)).result(timeout=60)
    except Exception as exc:  # noqa: BLE001
        log.warning("the editor form will not show the shared allowances: %s", exc)
        return
    properties = deployment._parameter_openapi_schema.properties
    description, schema = note_on(deployment.description, {"properties": {"budget": properties.get("budget")}}, note)
    deployment.description = description
    if properties.get("budget") is not None:
        properties["budget"] = schema["properties"]["budget"]


def build_deployments(settings: Settings, *, review_timeout: int = 3600, editor_review_timeout: int = 0) -> DeploymentPlan:
    """`review_timeout`: how long scheduled runs wait, paused, for review decisions;
    `editor_review_timeout`: the editor form's default (0: an editor run waits only when asked to)."""
    plan = DeploymentPlan()
    found = load_catalog(settings.pipelines_dir)
    plan.problems.extend(found.problems)
    for spec in found.specs.values():
        if spec.name == EDITOR_DEPLOYMENT:
            plan.problems.append(f"pipeline {spec.name!r} gets no form of its own (the name is the editor's); "
                                 "it is served in copydesk-editor/editor")
            continue
        plan.deployments.append(pipeline_form(spec, review_timeout=editor_review_timeout))
        note_allowances(plan.deployments[-1], [spec])
        plan.described.append((f"copydesk-editor/{spec.name}", f"on demand: the {spec.name} pipeline's own form"))
    generic = editor.to_deployment(
        name=EDITOR_DEPLOYMENT,
        parameters={"review_timeout": editor_review_timeout},
        description=(
            "Write articles with any served pipeline, named in the form (for scripts and the Prefect CLI; "
            "each pipeline also has a form of its own, with its variables as fields)."
        ),
        tags=[*TAGS, "editor"],
        enforce_parameter_schema=True,
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    plain_fields(generic)
    offer_pipelines(generic, found.names)
    note_allowances(generic, list(found.specs.values()))
    plan.deployments.append(generic)
    plan.described.append((f"copydesk-editor/{EDITOR_DEPLOYMENT}", f"on demand: {', '.join(found.names) or 'no valid spec yet'}"))
    for spec in found.scheduled:
        schedule = spec.schedule
        assert schedule is not None
        plan.deployments.append(
            scheduled.to_deployment(
                name=spec.name,
                schedule=Cron(schedule.cron, timezone=schedule.timezone),
                parameters={"pipeline": spec.name, "review_timeout": review_timeout},
                description=spec.description or f"Scheduled runs of the {spec.name} pipeline.",
                tags=[*TAGS, "scheduled", spec.name],
                enforce_parameter_schema=True,
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
        plain_fields(plan.deployments[-1])
        offer_pipelines(plan.deployments[-1], [spec.name])
        plan.described.append(
            (
                f"copydesk-scheduled/{spec.name}",
                f"cron {schedule.cron!r} ({schedule.timezone}), {len(schedule.topics)} topic(s)",
            )
        )
    return plan
