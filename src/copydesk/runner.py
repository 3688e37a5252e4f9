"""One run's steps, as library calls with no Prefect: write, check, export, finish.

`PipelineRun.prepare()` checks the input (spec, templates, vars, topics, run id)
before any server starts; `start()` hands it the resources `open_resources()`
built (copydesk.resources); then, per article, `write()` it (copydesk.writer),
`check()` it against the publish gate (copydesk.qc), and `export()` it; and
`finish()` writes the run's CSV, reports and metrics. The order, the run-folder
lock and the clean-up belong to `copydesk.orchestration`. Data flows one way:
spec + topics -> prompts -> calls -> article -> verdict -> export.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from copydesk import events, rundir
from copydesk.article import Article, Status
from copydesk.allowance import AllowanceStore, period_end
from copydesk.budget import TokenBudget
from copydesk.errors import ApiError, BudgetExhausted, CopydeskError, InputError
from copydesk.metrics import RUN_TEXTFILE
from copydesk.pricing import estimate_cost, resolve_prices
from copydesk.prompts import PromptLibrary
from copydesk.qc.editorial import Draft
from copydesk.qc.gate import Verdict, qc_report_entry
from copydesk.qc.repair import repair_note, sections_to_repair
from copydesk.request import RunRequest, check_run_id, clean_topics, new_run_id
from copydesk.resources import RunResources, accumulate_metrics, open_resources
from copydesk.settings import Settings
from copydesk.slugs import SlugRegistry
from copydesk.spec import PipelineSpec, load_spec

log = logging.getLogger("copydesk.runner")

#: Set by the orchestration around each article (copydesk.orchestration.process_articles):
#: called once the article's calls are done, before its checks and export, so that the
#: next article can start its calls while this one is checked.
ARTICLE_WRITTEN: ContextVar[Callable[[], None] | None] = ContextVar("copydesk_article_written", default=None)


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


class PipelineRun:
    """A prepared run (input checked, nothing started) and, once started, its steps."""

    def __init__(self, request: RunRequest, settings: Settings, spec: PipelineSpec) -> None:
        self.request = request
        self.settings = settings
        self.spec = spec
        self.topics = clean_topics(request.topics)
        self.prompts = PromptLibrary(spec)
        self.prompts.check(request.vars)
        self.run_id = check_run_id(request.run_id) if request.run_id else new_run_id(spec.name)
        self.run_dir = Path(request.out_dir or settings.output_dir) / self.run_id
        # may this run use its folder? (checked before anything in it is touched)
        self.manifest = rundir.prepare_folder(self.run_dir, rundir.RunManifest.for_spec(spec, self.prompts.directory,
                                                                                         self.topics))
        #: The mode asked for (realtime | batch | auto); `start()` sets the one the run uses.
        self.mode = request.mode or spec.mode
        if self.mode == "batch" and not settings.api_configured:  # before the embedded model starts
            raise InputError(
                "mode: batch needs the OpenAI Batch API (/v1/files, /v1/batches), but no API is configured and "
                "the embedded local model (llama.cpp) has none; set OPENAI_API_KEY (and OPENAI_BASE_URL), or use "
                "mode: realtime, or mode: auto to fall back to realtime calls"
            )
        limit = request.budget or spec.budget.max_total_tokens
        self.budget = TokenBudget(limit, warn_at=spec.budget.warn_at)
        self.concurrency = request.concurrency or spec.concurrency
        self.prices = resolve_prices(dict(spec.pricing))
        occurrences: Counter[str] = Counter()
        self.articles: list[Article] = []
        for index, topic in enumerate(self.topics):
            occurrences[topic] += 1
            self.articles.append(Article(index=index, topic=topic, key=f"{topic}\x00{occurrences[topic]}"))
        self._slugs = SlugRegistry()
        self.started = time.perf_counter()
        self._resources: RunResources | None = None
        #: The error that stopped the whole run (bad credentials, a missing model), set by `finish()`.
        self.fatal: ApiError | None = None

    @classmethod
    def prepare(cls, request: RunRequest, settings: Settings | None = None) -> PipelineRun:
        """Everything that can fail on bad input, before any server starts or call is made."""
        settings = settings or Settings()
        spec = load_spec(request.spec_path)
        return cls(request, settings, spec)

    # -- resources ------------------------------------------------------------------------

    def open_resources(
        self, *, transport: httpx.AsyncBaseTransport | None = None, allowance_store: AllowanceStore | None = None
    ) -> AbstractAsyncContextManager[RunResources]:
        """The run's resources (copydesk.resources), built for this run; `start()` the run inside."""
        return open_resources(
            spec=self.spec,
            settings=self.settings,
            prompts=self.prompts,
            overrides=self.request.vars,
            run_id=self.run_id,
            run_dir=self.run_dir,
            budget=self.budget,
            concurrency=self.concurrency,
            prices=self.prices,
            transport=transport,
            allowance_store=allowance_store,
            mode=self.mode,
        )

    def claim_folder(self) -> None:
        """Record the run's manifest: the first thing the run writes in its folder (call it
        holding the folder's lock, before the resources open)."""
        rundir.write_manifest(self.run_dir, self.manifest)

    def start(self, resources: RunResources) -> None:
        """Take the open resources and announce the run (progress display, log)."""
        self._resources = resources
        self.concurrency = resources.concurrency
        self.mode = resources.mode
        events.emit(events.RunStarted(self.run_id, len(self.articles), self.budget.limit))
        log.info("run %s: %d topic(s), budget %d tokens, folder %s", self.run_id, len(self.articles),
                 self.budget.limit, self.run_dir)

    @property
    def resources(self) -> RunResources:
        if self._resources is None:
            raise RuntimeError("start() the run with its open resources first")
        return self._resources

    # -- the steps ------------------------------------------------------------------------

    async def write(self, article: Article) -> Article:
        """Title, outline, sections through the API; never raises (failures make it incomplete)."""
        return await self.resources.writer.write(article)

    async def check(self, article: Article) -> Article:
        """The publish gate (grammar, moderation, content checks) decides the article's status."""
        if not article.generated:
            article.status = Status.INCOMPLETE
            return article
        resources = self.resources
        verdict = await self._assess(article)
        verdict, attempts = await self._repair(article, verdict)
        article.status = Status(verdict.status)
        article.reasons.extend(r for r in verdict.reasons if r not in article.reasons)
        article.grammar_issues = verdict.grammar_issues
        article.moderation_flagged = verdict.moderation_flagged
        article.qc = qc_report_entry(verdict)
        article.qc["repair_attempts"] = attempts
        resources.metrics.observe_qc(verdict.seconds)
        if verdict.moderation_flagged:
            resources.metrics.record_moderation_flag()
        return article

    async def _assess(self, article: Article) -> Verdict:
        """The gate's verdict on the article's current text; its repairs and autocorrections applied."""
        gate = await self.resources.quality_gate()
        verdict = await gate.assess(
            article.body_markdown(),
            article.outline,
            [(s.heading, s.body) for s in article.sections],
            article.finish_reasons(),
            draft=self.draft(article),
        )
        if verdict.section_bodies is not None:
            for section, body in zip(article.sections, verdict.section_bodies, strict=True):
                section.body = body
        if verdict.corrected_markdown is not None and not article.apply_corrections(verdict.corrected_markdown):
            log.warning("article %d: the grammar autocorrections could not be applied", article.index + 1)
        return verdict

    async def _repair(self, article: Article, verdict: Verdict) -> tuple[Verdict, list[dict[str, Any]]]:
        """Sections failing a section-level check are written again (`qc.repair.max_attempts`, as
        the writer's CallPlan counts them), the re-ask naming the failure, then the article is
        judged again: the final verdict, and a record of every attempt (for the QC report)."""
        attempts: list[dict[str, Any]] = []
        for attempt in range(1, self.resources.writer.plan.stages["expansion"].rewrites + 1):
            targets = {n: f for n, f in sections_to_repair(verdict.checks).items() if n <= len(article.sections)}
            if verdict.status == "published" or not targets:
                break
            record: dict[str, Any] = {
                "attempt": attempt,
                "status_before": verdict.status,
                "reasons_before": list(verdict.reasons),
                "sections": {str(n): sorted({f["check"] for f in found}) for n, found in targets.items()},
            }
            attempts.append(record)
            results = await asyncio.gather(
                *(self.resources.writer.rewrite_section(article, n - 1, repair_note(found, self.spec.language), attempt)
                  for n, found in targets.items()),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            if any(isinstance(e, asyncio.CancelledError) for e in errors):
                raise next(e for e in errors if isinstance(e, asyncio.CancelledError))
            if errors:
                record["error"] = "; ".join(sorted({f"{type(e).__name__}: {e}" for e in errors}))
                if not isinstance(errors[0], (BudgetExhausted, ApiError, CopydeskError)):
                    log.error("repair of article %d failed", article.index + 1, exc_info=errors[0])
            verdict = await self._assess(article)
            record["status_after"] = verdict.status
            if errors:
                break
        return verdict, attempts

    def draft(self, article: Article) -> Draft:
        """What the gate's editorial checks read: the text, the topic and the prompts that produced it."""
        return Draft(
            topic=article.topic,
            title=article.title,
            outline=list(article.outline),
            sections=[(s.heading, s.body) for s in article.sections],
            language=self.spec.language,
            outline_prompt=article.outline_prompt or None,
            section_prompts=[s.prompt or None for s in article.sections],
            fills=[article.topic, article.title],
            section_max_tokens=self.spec.stages.expansion.max_tokens,
        )

    def export(self, article: Article) -> Article:
        """Give the article its slug and write its Markdown file."""
        if not article.slug:
            article.slug = self._slugs.claim(
                article.title or article.topic, fallback=f"article-{article.index + 1}", position=article.index + 1
            )
        if self.spec.export.markdown:
            self.resources.exporter.write_article(article)
        return article

    async def process(self, article: Article) -> Article:
        """write -> check -> export, for one article. Once it is written, the article gives
        back its writing slot (`ARTICLE_WRITTEN`): its checks do not hold up later articles' calls."""
        await self.write(article)
        written = ARTICLE_WRITTEN.get()
        if written is not None:
            written()
        await self.check(article)
        self.export(article)
        if article.path:  # its file holds the text now; the run keeps its row's figures only
            article.release_text(self.resources.exporter.word_count(article))
        return article

    def finish(self) -> RunSummary:
        """Write the CSV, the QC report, the summary and the metrics; say how the run ended."""
        resources = self.resources
        exporter, metrics = resources.exporter, resources.metrics
        notes = list(resources.notes)
        if switched := getattr(resources.gateway, "realtime", None):  # mode: auto after a failed batch
            self.mode = "realtime"  # costs at realtime prices: an upper bound for what batches did before
            notes.append(f"mode: auto: the Batch API failed ({switched}); the rest of the run used realtime calls")
        for article in self.articles:
            if not article.slug:  # never exported (cancelled before its turn): still gets its row
                article.fail("not exported: the run stopped before this article finished")
                self.export(article)
        rows, total_cost, cost_known = [], 0.0, True
        for article in self.articles:
            cost = self.article_cost(article)
            if cost is None and article.usage_by_call:
                cost_known = False
            total_cost += cost or 0.0
            rows.append(exporter.row(article, cost))
            metrics.record_article(article.status.value)
        exporter.remove_stale({a.path for a in self.articles})
        if self.spec.export.csv:
            exporter.write_csv(rows, bom=self.spec.export.csv_bom)
        exporter.write_json(
            rundir.QC_REPORT_NAME,
            {"run_id": self.run_id, "articles": [
                {"topic": a.topic, "slug": a.slug, "status": a.status.value, "reasons": a.reasons, "qc": a.qc}
                for a in self.articles
            ]},
        )
        usage_total = [a.usage for a in self.articles]
        stats = resources.gateway.stats
        incomplete = [a for a in self.articles if a.status == Status.INCOMPLETE]
        fatal = self.fatal = resources.gateway.fatal
        summary = RunSummary(
            run_id=self.run_id,
            run_dir=str(self.run_dir),
            pipeline=self.spec.name,
            articles=len(self.articles),
            by_status=rundir.status_counts(a.status for a in self.articles),
            prompt_tokens=sum(u.prompt_tokens for u in usage_total),
            completion_tokens=sum(u.completion_tokens for u in usage_total),
            total_tokens=sum(u.total_tokens for u in usage_total),
            budget_limit=self.budget.limit,
            budget_spent=self.budget.spent,
            est_cost_usd=round(total_cost, 6) if cost_known else None,
            calls=stats.calls,
            cached_calls=stats.cached,
            retries=stats.retries,
            rate_limited=stats.rate_limited,
            seconds=round(time.perf_counter() - self.started, 3),
            stopped_by_budget=self.budget.closed,
            budget_message=self.budget.refused_reason,
            fatal_error=str(fatal) if fatal else None,
            fatal_exit_code=fatal.exit_code if isinstance(fatal, ApiError) else None,
            fallbacks=dict(stats.fallbacks),
            shared_budget=_shared_summary(resources),
            mode=self.mode,
            batches=dict(getattr(resources.gateway, "batches", {})),
            cached_prompt_tokens=sum(u.cached_prompt_tokens for u in usage_total),
            notes=notes,
            first_incomplete_reason=(incomplete[0].reasons or [None])[0] if incomplete else None,
        )
        exporter.write_json(rundir.SUMMARY_NAME, summary.to_dict())
        metrics.set_budget(self.budget.limit, self.budget.remaining)
        if resources.shared is not None and resources.shared.last is not None:
            metrics.set_shared_budget(resources.shared.name, resources.shared.last.limit, resources.shared.last.used)
        metrics.write_textfile(self.run_dir / RUN_TEXTFILE)
        accumulate_metrics(metrics, self.run_dir)
        return summary

    def article_cost(self, article: Article) -> float | None:
        """USD for the article's calls, or None when a model's price is unknown."""
        cost = 0.0
        for (_, model), usage in article.usage_by_call.items():
            part = estimate_cost(model, usage.prompt_tokens, usage.completion_tokens, self.prices,
                                 cached_prompt_tokens=usage.cached_prompt_tokens, batch=self.mode == "batch")
            if part is None:
                return None
            cost += part
        return cost


def _shared_summary(resources: RunResources) -> dict[str, Any] | None:
    shared = resources.shared
    if shared is None or shared.last is None:
        return None
    end = period_end(shared.allowance.period, shared.allowance.timezone)
    return {"name": shared.name, "limit": shared.last.limit, "used": shared.last.used,
            "charged_by_this_run": shared.charged, "period_end": end.isoformat() if end else None}
