"""What the editor form may ask of a served pipeline, beyond the pipeline's name.

An editor's form (the `editor` deployment in the Prefect UI, or any caller of the
Prefect API) is less trusted than the operator's shell. Its `budget` may lower
the spec's hard cap, `budget.max_total_tokens`, and never raise it: only the
operator's `copydesk run --budget` can. `MAX_FORM_BUDGET` bounds the value in the
deployment's parameter schema too, so the server refuses absurd numbers before a
run starts. The pipeline name's own rule lives in `copydesk.catalog`.
"""

from __future__ import annotations

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
