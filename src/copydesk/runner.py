"""One run's lifecycle, as library calls with no Prefect: prepare, claim, start, process, finish.

`PipelineRun.prepare()` checks the input (spec, templates, vars, topics, run id)
before any server starts; `claim_folder()` writes the run's manifest; `start()`
takes the resources `open_resources()` built (copydesk.resources) and freezes what
the articles need into a `RunContext` (copydesk.run_context); `process()` hands each
article to the `ArticlePipeline` (copydesk.article_pipeline: write, check, export);
`finish()` exports what never got its turn and has the `RunReport`
(copydesk.run_report) write the CSV, reports and metrics. The order, the run-folder
lock and the clean-up belong to `copydesk.orchestration`. Data flows one way:
spec + topics -> prompts -> calls -> article -> verdict -> export -> report.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx

from copydesk import events, rundir
from copydesk.allowance import AllowanceStore
from copydesk.article import Article
from copydesk.article_pipeline import ARTICLE_WRITTEN, ArticlePipeline
from copydesk.budget import TokenBudget
from copydesk.errors import ApiError, InputError
from copydesk.pricing import resolve_prices
from copydesk.prompts import PromptLibrary
from copydesk.request import RunRequest, check_run_id, clean_topics, new_run_id
from copydesk.resources import RunResources, open_resources
from copydesk.run_context import RunContext
from copydesk.run_report import RunReport, RunSummary, article_cost
from copydesk.settings import Settings
from copydesk.siteexport import check_site_dir
from copydesk.spec import PipelineSpec, load_spec

__all__ = ["ARTICLE_WRITTEN", "PipelineRun", "RunSummary"]

log = logging.getLogger("copydesk.runner")


class PipelineRun:
    """A prepared run (input checked, nothing started) and, once started, its lifecycle: its
    articles go through its `ArticlePipeline`, its end is written by a `RunReport`."""

    def __init__(self, request: RunRequest, settings: Settings, spec: PipelineSpec) -> None:
        self.request = request
        self.settings = settings
        self.spec = spec
        self.topics = clean_topics(request.topics)
        self.prompts = PromptLibrary(spec)
        self.prompts.check(request.vars)
        self.run_id = check_run_id(request.run_id) if request.run_id else new_run_id(spec.name)
        self.run_dir = Path(request.out_dir or settings.output_dir) / self.run_id
        if spec.export.dir is not None:  # the site's folder: before anything starts
            check_site_dir(spec.export.dir)
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
        self.started = time.perf_counter()
        self._resources: RunResources | None = None
        self._context: RunContext | None = None
        self._pipeline: ArticlePipeline | None = None
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
        self._context = RunContext(
            spec=self.spec, settings=self.settings, prompts=self.prompts, run_id=self.run_id, run_dir=self.run_dir,
            budget=self.budget, prices=self.prices, mode=self.mode, resources=resources,
        )
        self._pipeline = ArticlePipeline(self._context)
        events.emit(events.RunStarted(self.run_id, len(self.articles), self.budget.limit))
        log.info("run %s: %d topic(s), budget %d tokens, folder %s", self.run_id, len(self.articles),
                 self.budget.limit, self.run_dir)

    @property
    def resources(self) -> RunResources:
        if self._resources is None:
            raise RuntimeError("start() the run with its open resources first")
        return self._resources

    @property
    def context(self) -> RunContext:
        """What the articles and the report read of the started run."""
        if self._context is None:
            raise RuntimeError("start() the run with its open resources first")
        return self._context

    @property
    def pipeline(self) -> ArticlePipeline:
        """The steps every article of this run goes through."""
        if self._pipeline is None:
            raise RuntimeError("start() the run with its open resources first")
        return self._pipeline

    # -- the articles ---------------------------------------------------------------------

    async def process(self, article: Article) -> Article:
        """write -> check -> export, for one article (copydesk.article_pipeline)."""
        return await self.pipeline.process(article)

    def article_cost(self, article: Article) -> float | None:
        """USD for the article's calls, or None when a model's price is unknown."""
        return article_cost(article, self.prices, self.mode)

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> RunSummary:
        """Give every article its row (those the run never reached fail), then write the CSV,
        the QC report, the summary and the metrics (copydesk.run_report); say how the run ended."""
        for article in self.articles:
            if not article.slug:  # never exported (cancelled before its turn): still gets its row
                article.fail("not exported: the run stopped before this article finished")
                self.pipeline.export(article)
        report = RunReport(self.context, self.articles, started=self.started)
        self.mode = report.mode
        self.fatal = self.resources.gateway.fatal
        return report.write()
