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

from copydesk.allowance import AllowanceStatus, period_end, period_key
from copydesk.errors import InputError
from copydesk.spec import PipelineSpec

#: The largest budget a form may send at all (the schema's bound; the spec's cap is the real one).
MAX_FORM_BUDGET = 10**9


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
        raise InputError("budget must be at least 1 token (leave it empty to use the pipeline's budget)")
    if budget > cap:
        shown = f"{budget:,}" if budget <= MAX_FORM_BUDGET else f"more than {MAX_FORM_BUDGET:,}"
        raise InputError(
            f"budget {shown} is above pipeline {spec.name}'s budget.max_total_tokens ({cap:,}): a form may only "
            "lower it; the operator can raise it with `copydesk run --budget` or in the spec"
        )
    return budget


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
             "`copydesk budget status` shows them live):"]
    for name in sorted(pipelines):
        names = ", ".join(sorted(pipelines[name]))
        status = held.get(name)
        if status is None:
            lines.append(f"- {name} ({names}): not recorded by the operator (`copydesk budget create {name} ...`); "
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
