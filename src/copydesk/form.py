"""What the editor form may ask of a served pipeline, beyond the pipeline's name.

An editor's form (the `editor` deployment in the Prefect UI, or any caller of the
Prefect API) is less trusted than the operator's shell. Its `budget` may lower
the spec's hard cap, `budget.max_total_tokens`, and never raise it: only the
operator's `copydesk run --budget` can. `MAX_FORM_BUDGET` bounds the value in the
deployment's parameter schema too, so the server refuses absurd numbers before a
run starts. The pipeline name's own rule lives in `copydesk.catalog`.

The form also says what is left of the shared allowances its pipelines name
(`allowance_note`): a snapshot the Prefect wiring writes into the deployment's
description and the `budget` field's help when `copydesk serve` starts and after
every served run (`copydesk_flows.allowance.refresh_form`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from copydesk.allowance import AllowanceStatus, period_end, period_key
from copydesk.errors import InputError
from copydesk.spec import PipelineSpec
from copydesk.specvars import MAX_STRING_CHARS, MAX_TEXT_CHARS, VarSpec

#: The largest budget a form may send at all (the schema's bound; the spec's cap is the real one).
MAX_FORM_BUDGET = 10**9
#: The form's `mode` choice that keeps the pipeline's own mode.
AS_THE_SPEC_SAYS = "as the spec says"
FORM_MODES = (AS_THE_SPEC_SAYS, "realtime", "batch", "auto")
MAX_FORM_TOPICS = 1000
MAX_TOPIC_CHARS = 500
#: A pipeline form's topics box: MAX_FORM_TOPICS lines of MAX_TOPIC_CHARS at most.
MAX_TOPICS_TEXT = MAX_FORM_TOPICS * (MAX_TOPIC_CHARS + 1)
#: A week: longer than any editor's weekend, shorter than forever.
MAX_REVIEW_TIMEOUT = 7 * 24 * 3600
MAX_RUN_ID_CHARS = 100


def form_budget(budget: object, spec: PipelineSpec) -> int | None:
    """The run's budget for a form value: None keeps the spec's cap; a smaller value lowers it.

    Raises InputError (exit-2 class) for anything else: not a whole number, below 1,
    or above the spec's `budget.max_total_tokens`.
    """
    if budget is None:
        return None
    cap = spec.budget.max_total_tokens
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise InputError(f"budget must be a whole number of tokens, not {type(budget).__name__}")
    if budget < 1:
        raise InputError("budget must be at least 1 token (leave it empty to use the pipeline's cap)")
    if budget > cap:
        shown = f"{budget:,}" if budget <= MAX_FORM_BUDGET else f"more than {MAX_FORM_BUDGET:,}"
        raise InputError(
            f"budget {shown} is above the {spec.name} pipeline's cap of {cap:,} tokens: a form may only "
            "lower it (the operator can raise the cap)"
        )
    return budget


def form_mode(mode: str | None) -> str | None:
    """The run's mode for a form value: None for empty or "as the spec says", else the value."""
    return None if mode in (None, "", AS_THE_SPEC_SAYS) else mode


def form_topics(topics: str | Iterable[str | None] | None) -> list[str]:
    """The form's topics without the empty ones: rows (an editor's spare row, null or blank, is not a
    topic), or a pipeline form's text box, one topic per line (each line stripped; empty lines left out).

    Raises InputError for a line longer than MAX_TOPIC_CHARS or more than MAX_FORM_TOPICS topics.
    """
    if topics is None:
        return []
    if isinstance(topics, str):
        lines = [line.strip() for line in topics.splitlines()]
        for number, line in enumerate(lines, 1):
            if len(line) > MAX_TOPIC_CHARS:
                raise InputError(f"topics: line {number} is longer than {MAX_TOPIC_CHARS} characters "
                                 "(write one topic per line)")
        found = [line for line in lines if line]
    else:
        found = [topic for topic in topics if topic is not None and topic.strip()]
    if len(found) > MAX_FORM_TOPICS:
        raise InputError(f"topics: {len(found):,} topics; a run from the form takes at most {MAX_FORM_TOPICS:,}")
    return found


# ------------------------------------------------------------------ a pipeline's own form

_MODE_WORDS = {"realtime": "each article as soon as possible", "batch": "through the Batch API: about half the "
               "price, articles within 24 hours", "auto": "the Batch API where the server has one"}


def var_field(name: str, var: VarSpec, position: int = 0) -> dict[str, Any]:
    """One variable as a form field (JSON schema the Prefect UI draws): a dropdown for a
    choice, a number field, a switch for a bool, a text field; its description and default."""
    field: dict[str, Any] = {"title": name.replace("_", " ").capitalize(), "default": var.default,
                             "position": position}
    if var.description:
        field["description"] = var.description
    if var.type == "choice":
        field.update(type="string", enum=list(var.choices or []))
    elif var.type in ("string", "text"):
        field.update(type="string", maxLength=MAX_TEXT_CHARS if var.type == "text" else MAX_STRING_CHARS)
        if var.type == "string":
            field["pattern"] = r"^[^\n]*$"
    elif var.type in ("number", "integer", "bool"):
        field["type"] = {"bool": "boolean"}.get(var.type, var.type)
    return field  # json: no type; the UI offers a JSON box


def editor_schema(spec: PipelineSpec) -> dict[str, Any]:
    """The parameter schema of the pipeline's own editor form (`copydesk-editor/<name>`).

    Every field is a plain field (no "or None" switch); an empty optional field means what the
    pipeline says. The topics are one text box, a topic per line: the Prefect UI sends a list row
    that was typed into and cleared as null, which a list of text rows cannot accept without the
    UI drawing each row as a JSON box; an emptied text box is left out instead (and an empty one
    is refused by the form: the topics are required). Bounds the form itself checks (the Prefect UI keeps them only inside `allOf`):
    the budget's maximum is the pipeline's cap, the variables are the declared ones, each of its
    type. The server checks the same schema again, and the flow checks the values again."""
    cap = spec.budget.max_total_tokens
    about = f"**{spec.name}**: {spec.description.strip()}\n\n" if spec.description.strip() else f"**{spec.name}**\n\n"
    properties: dict[str, Any] = {
        "topics": {
            "title": "Topics", "position": 0, "type": "string", "minLength": 1, "maxLength": MAX_TOPICS_TEXT,
            "description": about + "One article per topic: write each topic on a line of its own. "
                                   "Empty lines are left out.",
        },
    }
    if spec.var_specs:
        properties["vars"] = {
            "title": "Variables", "position": 1,
            "description": "What the articles are written for; each starts with the pipeline's own value.",
            "allOf": [{"type": "object", "additionalProperties": False,
                       "properties": {name: var_field(name, var, index)
                                      for index, (name, var) in enumerate(spec.var_specs.items())}}],
        }
    properties["budget"] = {
        "title": "Token budget", "position": 2,
        "description": f"The most tokens this run may use: at most {cap:,}, the pipeline's cap. "
                       f"Empty: {cap:,}.",
        "allOf": [{"type": "integer", "minimum": 1, "maximum": cap}],
    }
    properties["mode"] = {
        "title": "Mode", "position": 3, "type": "string", "enum": list(FORM_MODES), "default": AS_THE_SPEC_SAYS,
        "description": f"How the articles are written: realtime ({_MODE_WORDS['realtime']}), batch "
                       f"({_MODE_WORDS['batch']}) or auto ({_MODE_WORDS['auto']}). This pipeline says {spec.mode}.",
    }
    properties["review_timeout"] = {
        "title": "Wait for review (seconds)", "position": 4, "default": 0,
        "description": "How long the run waits for you to approve or reject articles that need a look "
                       "before it ends. 0: it does not wait; they stay held for review later.",
        "allOf": [{"type": "integer", "minimum": 0, "maximum": MAX_REVIEW_TIMEOUT}],
    }
    properties["run_id"] = {
        "title": "Finish an earlier run", "position": 5, "type": "string", "maxLength": MAX_RUN_ID_CHARS,
        "description": "The id of an earlier run of this pipeline to finish (what it already wrote is not "
                       "paid for again). Empty: a new run.",
    }
    return {"title": "Parameters", "type": "object", "properties": properties, "required": ["topics"]}


def editor_description(spec: PipelineSpec) -> str:
    """The pipeline's own editor deployment's description: what it writes and its budget cap."""
    about = spec.description.strip() or f"Articles from the {spec.name} pipeline."
    return (f"{about}\n\nWrite articles with the {spec.name} pipeline: give topics, adjust its variables, "
            f"and press Submit. Each run may use at most {spec.budget.max_total_tokens:,} tokens.")


# ------------------------------------------------------------------ what is left of the shared allowances

#: The note's first words; everything from them on is replaced when the note is refreshed.
ALLOWANCE_NOTE_HEADING = "Left of the shared allowances"
_PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month", "total": "in total"}


def allowance_note(specs: Iterable[PipelineSpec], statuses: Iterable[AllowanceStatus],
                   now: datetime | None = None) -> str | None:
    """What the editor form says about the shared allowances its pipelines name, as the
    Prefect server held them at `now` (None when no pipeline names one).

    `statuses` are the operator's allowances and their current periods' counters
    (`copydesk.allowance_admin.current_statuses`); a status of another period than `now`'s
    means nothing is used yet this period. An allowance the operator has not recorded is
    said to be missing (runs naming it stop before any call). The text is a snapshot: the
    caller says when it is refreshed.
    """
    now = now or datetime.now(UTC)
    specs = [spec for spec in specs if spec.budget.shared is not None]
    pipelines: dict[str, list[str]] = {}
    for spec in specs:
        if spec.budget.shared is not None:
            pipelines.setdefault(spec.budget.shared.name, []).append(spec.name)
    if not pipelines:
        return None
    held = {s.name: s for s in statuses if s.recorded}
    stopped = _disagreeing(specs, held)
    lines = [f"{ALLOWANCE_NOTE_HEADING} (as of {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC; "
             "the operator sees them live):"]
    for name in sorted(pipelines):
        names = ", ".join(sorted(pipelines[name]))
        status = held.get(name)
        if status is None:
            lines.append(f"- {name} ({names}): not set up by the operator yet; "
                         "a run naming it stops before any call.")
            continue
        when = _PERIOD_WORDS[status.period]
        end = period_end(status.period, status.timezone, now)
        again = f"; it starts again at {end:%Y-%m-%d %H:%M} {status.timezone}" if end else ""
        if status.key != period_key(status.period, status.timezone, now):
            text = f"{status.limit:,} of {status.limit:,} tokens left {when} (nothing used yet)"
        elif status.closed:
            text = (f"spent {when}: {status.spent:,} of {status.limit:,} tokens used and a call was refused; "
                    "a run started now makes no call")
        elif not status.spent and not status.reserved:
            text = f"{status.limit:,} of {status.limit:,} tokens left {when} (nothing used yet)"
        else:
            reserved = f", {status.reserved:,} reserved by runs in progress" if status.reserved else ""
            text = f"{status.left:,} of {status.limit:,} tokens left {when} ({status.spent:,} spent{reserved})"
        refused = f" Runs of {', '.join(sorted(stopped[name]))} stop before any call: the spec disagrees with " \
            "the allowance." if stopped.get(name) else ""
        lines.append(f"- {name} ({names}): {text}{again}.{refused}")
    return "\n".join(lines)


def _disagreeing(specs: Iterable[PipelineSpec], held: dict[str, AllowanceStatus]) -> dict[str, list[str]]:
    """Per allowance, the pipelines whose spec repeats a max_tokens, period or timezone that the
    operator's record does not have (their runs exit 2)."""
    found: dict[str, list[str]] = {}
    for spec in specs:
        shared, status = spec.budget.shared, held.get(spec.budget.shared.name if spec.budget.shared else "")
        if shared is None or status is None:
            continue
        said = {"max_tokens": status.limit, "period": status.period, "timezone": status.timezone}
        if any(getattr(shared, field) not in (None, value) for field, value in said.items()):
            found.setdefault(shared.name, []).append(spec.name)
    return found


def with_allowance_note(text: str | None, note: str | None) -> str:
    """`text` with its allowance note (if any) replaced by `note` (or dropped when None)."""
    base = (text or "").split(ALLOWANCE_NOTE_HEADING, 1)[0].rstrip()
    if note is None:
        return base
    return f"{base}\n\n{note}" if base else note
