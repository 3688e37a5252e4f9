"""One run of a pipeline over a batch of topics, as library calls with no Prefect.

`PipelineRun` owns everything a run shares (spec, prompts, client, budget,
limiter, call store, exporter, metrics) and offers the steps a flow strings
together: `write()` an article, `review()` it, `export()` it, `finish()` the
run. `run_batch()` strings them together with plain asyncio; `flows/` does the
same with Prefect tasks. Data flows one way: spec + topics → prompts → calls →
article → verdict → export.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from copydesk import events, rundir
from copydesk.article import Article, Status
from copydesk.budget import TokenBudget
from copydesk.calls import CallGateway, RetryPolicy
from copydesk.client import ApiEndpoint, ChatClient
from copydesk.errors import ApiError, CopydeskError, TopicError
from copydesk.export import RunExporter
from copydesk.limiter import AdaptiveLimiter, RateLimiter
from copydesk.metrics import CUMULATIVE_TEXTFILE, RUN_TEXTFILE
from copydesk.prompts import PromptLibrary
from copydesk.settings import Settings
from copydesk.slugs import SlugRegistry
from copydesk.spec import PipelineSpec, load_spec
from copydesk.store import CallStore
from copydesk.writer import ArticleWriter

log = logging.getLogger("copydesk.runner")

#: Calls in flight at most against the embedded llama.cpp server (it queues the rest).
LOCAL_MODEL_CONCURRENCY = 2

RUN_ID_PATTERN = rundir.RUN_ID_PATTERN


class RunRequest(BaseModel):
    """Everything that defines a run; JSON-serialisable, so it can be a flow parameter."""

    spec_path: str = Field(description="Path of the pipeline spec (YAML).")
    topics: list[str] = Field(min_length=1, description="One article per topic.")
    out_dir: str | None = Field(None, description="Folder that receives the run folder (default: outputs/).")
    run_id: str | None = Field(None, description="Names the run; the same id resumes it.")
    budget: int | None = Field(None, ge=1, description="Overrides budget.max_total_tokens.")
    concurrency: int | None = Field(None, ge=1, le=1024, description="Overrides concurrency.")
    vars: dict[str, Any] = Field(default_factory=dict, description="Overrides of the spec's vars.")


@dataclass
class RunSummary:
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

    @property
    def exit_code(self) -> int:
        if self.fatal_exit_code is not None:
            return self.fatal_exit_code
        return 3 if self.stopped_by_budget else 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


# ------------------------------------------------------------------------------ input


def clean_topics(topics: list[str]) -> list[str]:
    cleaned = []
    for number, topic in enumerate(topics, 1):
        text = re.sub(r"\s+", " ", str(topic)).strip()
        if not text:
            raise TopicError(f"topic {number} is empty; every topic needs some text")
        cleaned.append(text)
    if not cleaned:
        raise TopicError("no topics given: use --topic T (repeatable) or --topics-file F")
    return cleaned


def read_topics_file(path: str | Path) -> list[str]:
    """One topic per line; blank lines and lines starting with # are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TopicError(f"{path}: no such topics file") from None
    except UnicodeDecodeError as exc:
        raise TopicError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TopicError(f"{path}: cannot read: {exc.strerror}") from None
    topics = [line.strip() for line in text.splitlines()]
    topics = [t for t in topics if t and not t.startswith("#")]
    if not topics:
        raise TopicError(f"{path}: no topics in the file")
    return topics


def new_run_id(spec: PipelineSpec) -> str:
    return f"{spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    return rundir.check_run_id(run_id)


# ------------------------------------------------------------------------------ the run


class PipelineRun:
    def __init__(self, request: RunRequest, settings: Settings, spec: PipelineSpec) -> None:
        self.request = request
        self.settings = settings
        self.spec = spec
        self.topics = clean_topics(request.topics)
        self.prompts = PromptLibrary(spec)
        self.prompts.check(request.vars)
        self.run_id = check_run_id(request.run_id) if request.run_id else new_run_id(spec)
        self.run_dir = Path(request.out_dir or settings.output_dir) / self.run_id
        # may this run use its folder? (checked before anything in it is touched)
        self.manifest = rundir.prepare_folder(self.run_dir, rundir.RunManifest.for_spec(spec, self.prompts.directory,
                                                                                         self.topics))
        limit = request.budget or spec.budget.max_total_tokens
        self.budget = TokenBudget(limit, warn_at=spec.budget.warn_at)
        self.concurrency = request.concurrency or spec.concurrency
        from copydesk.pricing import resolve_prices

        self.prices = resolve_prices({m: (p.input, p.output) for m, p in spec.pricing.items()})
        self.articles: list[Article] = []
        self.started = time.perf_counter()
        self.gateway: CallGateway | None = None
        self.writer: ArticleWriter | None = None
        self.gate: Any = None
        self.metrics: Any = None
        self.exporter: RunExporter | None = None
        self.endpoint: ApiEndpoint | None = None
        self.local_model: str | None = None
        self._stack = AsyncExitStack()
        self._warm_up: asyncio.Future[None] | None = None

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    def prepare(cls, request: RunRequest, settings: Settings | None = None) -> PipelineRun:
        """Everything that can fail on bad input, before any server starts or call is made."""
        settings = settings or Settings()
        spec = load_spec(request.spec_path)
        return cls(request, settings, spec)

    async def open(self, *, transport: httpx.AsyncBaseTransport | None = None) -> PipelineRun:
        from copydesk.metrics import RunMetrics

        self.run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_manifest(self.run_dir, self.manifest)
        self.exporter = RunExporter(self.run_dir, run_id=self.run_id, language=self.spec.language, pipeline=self.spec.name)
        self.endpoint = await self._endpoint()
        if self.local_model and self.concurrency > LOCAL_MODEL_CONCURRENCY:
            # llama.cpp's server answers one request at a time; a deep queue only turns
            # waiting into timeouts.
            log.info("the embedded model serves one call at a time: concurrency %d -> %d",
                     self.concurrency, LOCAL_MODEL_CONCURRENCY)
            self.concurrency = LOCAL_MODEL_CONCURRENCY
        self.metrics = RunMetrics(self.spec.name, prices=self.prices)
        for stage, _ in self.spec.stages.items():
            self.metrics.prepare(stage, self.local_model or self.spec.model_for(stage))
        self.metrics.set_budget(self.budget.limit, self.budget.remaining)
        self._accumulate_metrics()  # every series exists at 0 in the cumulative file before it moves
        client = ChatClient(
            self.endpoint,
            timeout=self.settings.request_timeout,
            connect_timeout=self.settings.connect_timeout,
            max_connections=max(self.concurrency, 1),
            transport=transport,
        )
        self._stack.push_async_callback(client.aclose)
        store = CallStore(self.run_dir / CallStore.FILENAME)
        self._stack.callback(store.close)
        self.gateway = CallGateway(
            client,
            self.budget,
            AdaptiveLimiter(self.concurrency),
            rate_limiter=RateLimiter(self.spec.rate_limits.rpm, self.spec.rate_limits.tpm),
            store=store,
            retry=RetryPolicy(
                max_attempts=self.settings.max_attempts,
                initial=self.settings.backoff_initial,
                max_delay=self.settings.backoff_max,
            ),
            fallback_model=self.spec.fallback_model,
            metrics=self.metrics,
        )
        self.writer = ArticleWriter(self.spec, self.prompts, self.gateway, self.request.vars, model_override=self.local_model)
        self.gate = await self._quality_gate(client)
        # Heavy, CPU-bound loading (the local classifier, pandas) runs while the first
        # calls wait on the API, instead of after them on the critical path.
        self._warm_up = asyncio.get_running_loop().run_in_executor(None, self._warm)
        slugs = SlugRegistry()
        occurrences: Counter[str] = Counter()
        for index, topic in enumerate(self.topics):
            occurrences[topic] += 1
            article = Article(index=index, topic=topic, key=f"{topic}\x00{occurrences[topic]}")
            self.articles.append(article)
        self._slugs = slugs
        events.emit(events.RunStarted(self.run_id, len(self.articles), self.budget.limit))
        log.info("run %s: %d topic(s), budget %d tokens, folder %s", self.run_id, len(self.articles), self.budget.limit, self.run_dir)
        return self

    def _warm(self) -> None:
        import pandas  # noqa: F401  (the CSV export's)

        load = getattr(self.gate.moderator if self.gate else None, "load", None)
        if load is not None:
            try:
                load()
            except Exception:  # the QC step reports it properly when it runs
                log.debug("warm-up of the moderator failed", exc_info=True)

    async def close(self) -> None:
        if self._warm_up is not None:
            await self._warm_up
        await self._stack.aclose()

    async def __aenter__(self) -> PipelineRun:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _endpoint(self) -> ApiEndpoint:
        if self.settings.api_configured:
            return ApiEndpoint(self.settings.base_url, self.settings.openai_api_key)
        from copydesk.services.llama import local_model_endpoint

        url = await self._stack.enter_async_context(_as_async(local_model_endpoint(self.settings)))
        self.local_model = self.settings.llama_model_alias
        log.info("no OPENAI_API_KEY or OPENAI_BASE_URL set: using the embedded local model at %s", url)
        return ApiEndpoint(url, None)

    async def _quality_gate(self, client: ChatClient) -> Any:
        from copydesk.qc.gate import QualityGate
        from copydesk.qc.moderation import choose_moderator

        qc = self.spec.qc
        grammar = None
        if qc.grammar.enabled:
            from copydesk.qc.grammar import GrammarChecker
            from copydesk.services.languagetool import languagetool_url

            try:
                url = await self._stack.enter_async_context(_as_async(languagetool_url(self.settings)))
                grammar = GrammarChecker(url, self.spec.language, ignore_rules=qc.grammar.ignore_rules,
                                         autocorrect=qc.grammar.autocorrect)
                self._stack.callback(grammar.close)
            except CopydeskError as exc:
                log.warning("the grammar check cannot run: %s; articles will need review", exc)
                grammar = _Unavailable(str(exc))
        moderator = None
        if qc.moderation.enabled:
            moderator = choose_moderator(
                qc.moderation,
                api_key=self.settings.openai_api_key,
                base_url=self.settings.base_url if self.settings.openai_api_key else None,
            )
        return QualityGate(qc, self.spec.language, grammar_checker=grammar, moderator=moderator)

    # -- the steps ------------------------------------------------------------------------

    async def write(self, article: Article) -> Article:
        assert self.writer is not None, "open() the run first"
        return await self.writer.write(article)

    async def review(self, article: Article) -> Article:
        if not article.generated:
            article.status = Status.INCOMPLETE
            return article
        verdict = await self.gate.assess(
            article.body_markdown(),
            article.outline,
            [(s.heading, s.body) for s in article.sections],
            article.finish_reasons(),
        )
        article.status = Status(verdict.status)
        article.reasons.extend(r for r in verdict.reasons if r not in article.reasons)
        article.grammar_issues = verdict.grammar_issues
        article.moderation_flagged = verdict.moderation_flagged
        from copydesk.qc.gate import qc_report_entry

        article.qc = qc_report_entry(verdict)
        self.metrics.observe_qc(verdict.seconds)
        if verdict.moderation_flagged:
            self.metrics.record_moderation_flag()
        return article

    def export(self, article: Article) -> Article:
        assert self.exporter is not None
        if not article.slug:
            article.slug = self._slugs.claim(
                article.title or article.topic, fallback=f"article-{article.index + 1}", position=article.index + 1
            )
        if self.spec.export.markdown:
            self.exporter.write_article(article)
        return article

    async def process(self, article: Article) -> Article:
        """write → review → export, for one article; what `run_batch` does per topic."""
        await self.write(article)
        await self.review(article)
        return self.export(article)

    def finish(self) -> RunSummary:
        """Write the CSV, the QC report, the summary and the metrics; say how the run ended."""
        assert self.exporter is not None and self.gateway is not None
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
            rows.append(self.exporter.row(article, cost))
            self.metrics.record_article(article.status.value)
        self.exporter.remove_stale({a.path for a in self.articles})
        if self.spec.export.csv:
            self.exporter.write_csv(rows, bom=self.spec.export.csv_bom)
        self.exporter.write_json(
            rundir.QC_REPORT_NAME,
            {"run_id": self.run_id, "articles": [
                {"topic": a.topic, "slug": a.slug, "status": a.status.value, "reasons": a.reasons, "qc": a.qc}
                for a in self.articles
            ]},
        )
        usage_total = [a.usage for a in self.articles]
        stats = self.gateway.stats
        fatal = self.gateway.fatal
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
        )
        self.exporter.write_json(rundir.SUMMARY_NAME, summary.to_dict())
        self.metrics.set_budget(self.budget.limit, self.budget.remaining)
        self.metrics.write_textfile(self.run_dir / RUN_TEXTFILE)
        self._accumulate_metrics()
        return summary

    def _accumulate_metrics(self) -> None:
        """Fold this run's metrics into the cumulative file next to the run folders (what a
        textfile collector or `copydesk serve`'s /metrics reads). Never fails the run."""
        path = self.run_dir.parent / CUMULATIVE_TEXTFILE
        try:
            self.metrics.accumulate_textfile(path)
        except (OSError, ValueError) as exc:
            log.warning("could not update %s: %s", path, exc)

    def article_cost(self, article: Article) -> float | None:
        """USD for the article's calls, or None when a model's price is unknown."""
        from copydesk.pricing import estimate_cost

        cost = 0.0
        for (_, model), usage in article.usage_by_call.items():
            part = estimate_cost(model, usage.prompt_tokens, usage.completion_tokens, self.prices)
            if part is None:
                return None
            cost += part
        return cost


class _Unavailable:
    """Stands in for a grammar checker whose server could not be reached: every check 'could not run'."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, text: str) -> Any:
        from copydesk.errors import ServiceError

        raise ServiceError(self.reason)

    def close(self) -> None:
        pass


class _as_async:
    """Use a synchronous context manager from an AsyncExitStack, off the event loop."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm

    async def __aenter__(self) -> Any:
        if hasattr(self._cm, "__aenter__"):
            return await self._cm.__aenter__()
        return await asyncio.to_thread(self._cm.__enter__)

    async def __aexit__(self, *exc: Any) -> Any:
        if hasattr(self._cm, "__aexit__"):
            return await self._cm.__aexit__(*exc)
        return await asyncio.to_thread(self._cm.__exit__, *exc)


async def run_batch(
    request: RunRequest,
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunSummary:
    """The whole run with plain asyncio (the flow in `flows/` does the same with tasks)."""
    run = PipelineRun.prepare(request, settings)
    await run.open(transport=transport)
    try:
        await asyncio.gather(*(run.process(article) for article in run.articles))
        return run.finish()
    finally:
        await run.close()
