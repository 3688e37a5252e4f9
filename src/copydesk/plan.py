"""`copydesk plan`: the most a run can spend, computed without calling any API.

For each call the run could make, the bound is the same one the budget reserves
at run time (`copydesk.budget.call_token_bound`): the rendered prompt's UTF-8
bytes plus fixed chat-template overheads, plus the stage's `max_tokens`. The calls
are the writer's own description of them (`copydesk.callplan`), each at its largest
(`TopicCalls.worst_case`: the longest title and headings, `max_sections` sections,
every outline attempt, every section rewritten as often as `qc.repair.max_attempts`
allows with the longest note). The result is therefore an upper bound of what a
run without retries can spend; retried attempts that the API may have billed
(timeouts) are still capped by the budget.

With `mode="batch"` costs are at the models' batch prices (copydesk.pricing), and each
stage says how its batch meets the budget: a batch is reserved whole before it is
submitted, so `fits` (every earlier stage's worst case and this one's fit),
`split` (it is submitted in parts as settled usage frees room) or `refused` (not even
one of its requests fits: nothing would be sent).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from copydesk.budget import call_token_bound
from copydesk.callplan import CallPlan
from copydesk.pricing import estimate_cost, resolve_prices
from copydesk.prompts import PromptLibrary
from copydesk.request import clean_topics
from copydesk.spec import PipelineSpec


@dataclass
class StagePlan:
    stage: str
    model: str
    calls: int
    max_prompt_tokens: int
    max_completion_tokens: int
    worst_case_tokens: int
    est_cost_usd: float | None = None
    #: batch mode: "fits", "split" or "refused" (see the module docstring); None in realtime.
    batch: str | None = None


@dataclass
class Plan:
    pipeline: str
    topics: int
    budget: int
    worst_case_total_tokens: int
    fits: bool
    stages: dict[str, StagePlan] = field(default_factory=dict)
    est_cost_usd: float | None = None
    mode: str = "realtime"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": {k: asdict(v) for k, v in self.stages.items()}}


def make_plan(
    spec: PipelineSpec,
    topics: list[str],
    *,
    budget: int | None = None,
    overrides: dict[str, Any] | None = None,
    model_override: str | None = None,
    mode: str = "realtime",
) -> Plan:
    topics = clean_topics(topics)
    prompts = PromptLibrary(spec)
    prompts.check(overrides)
    call_plan = CallPlan.of(spec, model_override)
    price_overrides = resolve_prices(dict(spec.pricing))

    totals = {name: [0, 0, 0] for name in call_plan.stages}  # calls, prompt, completion
    largest = dict.fromkeys(totals, 0)  # the largest single call per stage
    for topic in topics:
        for call in call_plan.topic(prompts, topic, overrides).worst_case():
            messages, _ = call.render(prompts)
            max_tokens = call.max_tokens
            bound = call_token_bound(messages, max_tokens)
            largest[call.stage] = max(largest[call.stage], bound)
            totals[call.stage][0] += 1
            totals[call.stage][1] += bound - max_tokens
            totals[call.stage][2] += max_tokens

    limit = budget or spec.budget.max_total_tokens
    stages: dict[str, StagePlan] = {}
    cost_total: float | None = 0.0
    batch = mode == "batch"
    before = 0  # the worst case of the earlier stages
    for stage, (calls, prompt_tokens, completion_tokens) in totals.items():
        model = call_plan.stages[stage].model
        cost = estimate_cost(model, prompt_tokens, completion_tokens, price_overrides, batch=batch)
        cost_total = None if cost is None or cost_total is None else cost_total + cost
        worst_stage = prompt_tokens + completion_tokens
        verdict = None
        if batch:
            verdict = ("fits" if before + worst_stage <= limit else "split" if before + largest[stage] <= limit
                       else "refused")
        before += worst_stage
        stages[stage] = StagePlan(stage, model, calls, prompt_tokens, completion_tokens,
                                  worst_stage, None if cost is None else round(cost, 6), verdict)
    worst = sum(s.worst_case_tokens for s in stages.values())
    return Plan(
        pipeline=spec.name,
        topics=len(topics),
        budget=limit,
        worst_case_total_tokens=worst,
        fits=worst <= limit,
        stages=stages,
        est_cost_usd=None if cost_total is None else round(cost_total, 6),
        mode="batch" if batch else "realtime",
    )
