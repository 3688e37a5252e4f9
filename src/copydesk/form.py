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
from copydesk.spec import PipelineSpec, SharedBudgetSpec

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

    `statuses` are the current periods' counters (`copydesk.allowance.current_statuses`); an
    allowance without one this period has not been used yet: all of it is left. The text is
    a snapshot: the caller says when it is refreshed.
    """
    now = now or datetime.now(UTC)
    pipelines: dict[tuple[str, str, str], list[str]] = {}
    shared: dict[tuple[str, str, str], SharedBudgetSpec] = {}
    for spec in specs:
        allowance = spec.budget.shared
        if allowance is None:
            continue
        key = (allowance.name, allowance.period, allowance.timezone)
        pipelines.setdefault(key, []).append(spec.name)
        shared[key] = allowance
    if not shared:
        return None
    held = {(s.name, s.period, s.timezone): s for s in statuses}
    lines = [f"{ALLOWANCE_NOTE_HEADING} (as of {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC; "
             "`copydesk budget status` shows them live):"]
    for key in sorted(shared):
        allowance = shared[key]
        status = held.get(key)
        when = _PERIOD_WORDS[allowance.period]
        key_now = period_key(allowance.period, allowance.timezone, now)
        end = period_end(allowance.period, allowance.timezone, now)
        again = f"; it starts again at {end:%Y-%m-%d %H:%M} {allowance.timezone}" if end else ""
        names = ", ".join(sorted(pipelines[key]))
        if status is None or status.key != key_now:
            text = f"{allowance.max_tokens:,} of {allowance.max_tokens:,} tokens left {when} (nothing used yet)"
        elif status.closed:
            text = (f"spent {when}: {status.spent:,} of {status.limit:,} tokens used and a call was refused; "
                    "a run started now makes no call")
        else:
            reserved = f", {status.reserved:,} reserved by runs in progress" if status.reserved else ""
            text = f"{status.left:,} of {status.limit:,} tokens left {when} ({status.spent:,} spent{reserved})"
        lines.append(f"- {allowance.name} ({names}): {text}{again}.")
    return "\n".join(lines)


def with_allowance_note(text: str | None, note: str | None) -> str:
    """`text` with its allowance note (if any) replaced by `note` (or dropped when None)."""
    base = (text or "").split(ALLOWANCE_NOTE_HEADING, 1)[0].rstrip()
    if note is None:
        return base
    return f"{base}\n\n{note}" if base else note
