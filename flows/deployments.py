"""The deployments `copydesk serve` offers, built from the pipelines folder.

    editor                       copydesk-editor/editor, on demand
    <spec name>                  copydesk-scheduled/<spec name>, for each spec with a schedule: block

Every deployment enforces its parameter schema and loads its flow by module path
(`copydesk_flows.editor.editor`), so the runs that `copydesk serve` starts as
subprocesses find their flow whatever the working folder. Each schema's
`pipeline` is an enum of names: every served pipeline for the editor (the UI draws
a dropdown), the deployment's own pipeline for a scheduled one; the server then
refuses any other value before a run starts. The enum is taken when `copydesk
serve` starts (restart it to offer a new spec); the flow body checks the name
against the folder again at run time. prefect.yaml declares the same deployments
for a work pool (`prefect deploy --all`), without the enum: `prefect deploy`
writes the schema from the flow signature, so there the signature's name pattern
and the flow body's check protect the form.

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
from copydesk.settings import Settings
from copydesk_flows.allowance import form_note, note_on
from copydesk_flows.editor import editor, scheduled

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
    plan.deployments.append(
        editor.to_deployment(
            name=EDITOR_DEPLOYMENT,
            parameters={"review_timeout": editor_review_timeout},
            description=(
                "Write articles on demand: pick a pipeline from the pipelines folder, give topics, "
                "optionally override vars and the token budget."
            ),
            tags=[*TAGS, "editor"],
            enforce_parameter_schema=True,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
    )
    found = load_catalog(settings.pipelines_dir)
    plan.problems.extend(found.problems)
    offer_pipelines(plan.deployments[0], found.names)
    note_allowances(plan.deployments[0], list(found.specs.values()))
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
        offer_pipelines(plan.deployments[-1], [spec.name])
        plan.described.append(
            (
                f"copydesk-scheduled/{spec.name}",
                f"cron {schedule.cron!r} ({schedule.timezone}), {len(schedule.topics)} topic(s)",
            )
        )
    return plan
