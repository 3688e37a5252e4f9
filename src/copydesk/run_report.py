"""How a run ended, written into its folder: the CSV, the QC report, the summary, the metrics.

    summary = RunReport(context, articles, started=...).write()

`RunReport` writes `articles.csv` (one row per article, its estimated cost included),
`qc_report.json` (every article's checks), `summary.json` (`RunSummary`: tokens, calls,
budget, cost, batches, how the run ended) and the run's Prometheus textfile, and adds the
run to the output folder's cumulative metrics. The file names are `copydesk.rundir`'s;
`copydesk.runner.PipelineRun.finish()` calls it once every article is exported.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from copydesk import rundir
from copydesk.allowance import period_end
from copydesk.article import Article, Status
from copydesk.errors import ApiError
from copydesk.metrics import RUN_TEXTFILE
from copydesk.pricing import Price, estimate_cost
from copydesk.resources import RunResources, accumulate_metrics
from copydesk.run_context import RunContext


@dataclass
class RunSummary:
    """How a run ended; `summary.json` and what the CLI prints."""

    run_id: str
    run_dir: str
    pipeline: str
    articles: int
    by_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    budget_limit: int
    budget_spent: int
    est_cost_usd: float | None
    calls: int
    cached_calls: int
    retries: int
    rate_limited: int
    seconds: float
    stopped_by_budget: bool = False
    budget_message: str | None = None
    fatal_error: str | None = None
    fatal_exit_code: int | None = None
    fallbacks: dict[str, str] = field(default_factory=dict)
    #: The shared allowance at the end of the run (name, limit, used, period_end), if any.
    shared_budget: dict[str, Any] | None = None
    #: realtime, or batch (the OpenAI Batch API); with the batches and their last state.
    mode: str = "realtime"
    batches: dict[str, Any] = field(default_factory=dict)
    #: Prompt tokens the API served from its prompt cache (usage.prompt_tokens_details.cached_tokens).
    cached_prompt_tokens: int = 0
    #: What the preflight or the run changed on its own (copydesk.preflight; auto's switch to realtime).
    notes: list[str] = field(default_factory=list)
    #: The first incomplete article's reason (topic order), when any article is incomplete.
    first_incomplete_reason: str | None = None

    @property
    def nothing_produced(self) -> bool:
        """Every article incomplete, and not because the budget stopped the run."""
        return (self.articles > 0 and self.by_status.get(Status.INCOMPLETE.value, 0) == self.articles
                and not self.stopped_by_budget)

    @property
    def exit_code(self) -> int:
        """0 finished (whatever QC decided, some articles incomplete included), 1 nothing was produced,
        3 stopped by the budget, or the fatal API error's own code."""
        if self.fatal_exit_code is not None:
            return self.fatal_exit_code
        if self.stopped_by_budget:
            return 3
        return 1 if self.nothing_produced else 0

    def failure(self) -> str | None:
        """The run's one-line failure when it produced nothing (see `nothing_produced`), else None."""
        if not self.nothing_produced:
            return None
        reason = " ".join((self.first_incomplete_reason or "no reason recorded").split())
        return f"no article was produced: all {self.articles} incomplete; the first: {reason[:300]}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def article_cost(article: Article, prices: dict[str, Price], mode: str) -> float | None:
    """USD for the article's calls (at batch prices in batch mode), or None when a model's price is unknown."""
    cost = 0.0
    for (_, model), usage in article.usage_by_call.items():
        part = estimate_cost(model, usage.prompt_tokens, usage.completion_tokens, prices,
                             cached_prompt_tokens=usage.cached_prompt_tokens, batch=mode == "batch")
        if part is None:
            return None
        cost += part
    return cost


def final_mode(context: RunContext) -> tuple[str, str | None]:
    """The mode the run's costs are counted at, and a note when `mode: auto` switched to realtime
    after a failed batch (realtime prices: an upper bound for what the batches did before)."""
    switched = getattr(context.resources.gateway, "realtime", None)
    if switched:
        return "realtime", f"mode: auto: the Batch API failed ({switched}); the rest of the run used realtime calls"
    return context.mode, None


class RunReport:
    """The files that say how a run ended (see the module docstring); written once, at its end."""

    def __init__(self, context: RunContext, articles: Sequence[Article], *, started: float) -> None:
        """`started`: the run's `time.perf_counter()` when it was prepared."""
        self.context = context
        self.articles = list(articles)
        self.started = started
        self.mode, switched = final_mode(context)
        self.notes = [*context.resources.notes, *([switched] if switched else [])]

    def write(self) -> RunSummary:
        """Write the CSV, the QC report, the summary and the metrics; say how the run ended."""
        context, resources = self.context, self.context.resources
        exporter, metrics = resources.exporter, resources.metrics
        rows, total_cost, cost_known = [], 0.0, True
        for article in self.articles:
            cost = article_cost(article, context.prices, self.mode)
            if cost is None and article.usage_by_call:
                cost_known = False
            total_cost += cost or 0.0
            rows.append(exporter.row(article, cost))
            metrics.record_article(article.status.value)
        exporter.remove_stale({a.path for a in self.articles})
        if context.spec.export.csv:
            exporter.write_csv(rows, bom=context.spec.export.csv_bom)
        exporter.write_json(
            rundir.QC_REPORT_NAME,
            {"run_id": context.run_id, "articles": [
                {"topic": a.topic, "slug": a.slug, "status": a.status.value, "reasons": a.reasons, "qc": a.qc}
                for a in self.articles
            ]},
        )
        summary = self.summary(round(total_cost, 6) if cost_known else None)
        exporter.write_json(rundir.SUMMARY_NAME, summary.to_dict())
        budget = context.budget
        metrics.set_budget(budget.limit, budget.remaining)
        if resources.shared is not None and resources.shared.last is not None:
            metrics.set_shared_budget(resources.shared.name, resources.shared.last.limit, resources.shared.last.used)
        metrics.write_textfile(context.run_dir / RUN_TEXTFILE)
        accumulate_metrics(metrics, context.run_dir)
        return summary

    def summary(self, est_cost_usd: float | None) -> RunSummary:
        """The run's `RunSummary`, from its articles, its budget and its gateway's counts."""
        context, resources = self.context, self.context.resources
        usage_total = [a.usage for a in self.articles]
        stats = resources.gateway.stats
        incomplete = [a for a in self.articles if a.status == Status.INCOMPLETE]
        fatal = resources.gateway.fatal
        budget = context.budget
        return RunSummary(
            run_id=context.run_id,
            run_dir=str(context.run_dir),
            pipeline=context.spec.name,
            articles=len(self.articles),
            by_status=rundir.status_counts(a.status for a in self.articles),
            prompt_tokens=sum(u.prompt_tokens for u in usage_total),
            completion_tokens=sum(u.completion_tokens for u in usage_total),
            total_tokens=sum(u.total_tokens for u in usage_total),
            budget_limit=budget.limit,
            budget_spent=budget.spent,
            est_cost_usd=est_cost_usd,
            calls=stats.calls,
            cached_calls=stats.cached,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            seconds=round(time.perf_counter() - self.started, 3),
            stopped_by_budget=budget.closed,
            budget_message=budget.refused_reason,
            fatal_error=str(fatal) if fatal else None,
            fatal_exit_code=fatal.exit_code if isinstance(fatal, ApiError) else None,
            fallbacks=dict(stats.fallbacks),
            shared_budget=_shared_summary(resources),
            mode=self.mode,
            batches=dict(getattr(resources.gateway, "batches", {})),
            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in usage_total),
            notes=self.notes,
            first_incomplete_reason=(incomplete[0].reasons or [None])[0] if incomplete else None,
        )


def _shared_summary(resources: RunResources) -> dict[str, Any] | None:
    shared = resources.shared
    if shared is None or shared.last is None:
        return None
    end = period_end(shared.allowance.period, shared.allowance.timezone)
    return {"name": shared.name, "limit": shared.last.limit, "used": shared.last.used,
            "charged_by_this_run": shared.charged, "period_end": end.isoformat() if end else None}
