"""One article from topic to exported file: write, check, apply the verdict, repair, export.

    pipeline = ArticlePipeline(context)      # one per started run (copydesk.run_context)
    await pipeline.process(article)          # write -> check (gate, edits, repairs) -> export

`write` hands the article to the writer (copydesk.writer: title, outline, sections through
the API). `check` hands the gate (copydesk.qc.gate) the article once, as a `Draft`, and
applies what the verdict says in one place (`_apply`: the repaired section bodies, then the
grammar checker's corrections); sections failing a section-level check are written again
and judged again (`_repair`, `qc.repair.max_attempts`). `export` gives the article its slug
and writes its file (copydesk.export). The pipeline reads the run through its frozen
`RunContext` and never the run object: the run's lifecycle is `copydesk.runner`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from copydesk.article import Article, Status
from copydesk.errors import ApiError, BudgetExhausted, CopydeskError
from copydesk.qc.check import Draft
from copydesk.qc.gate import QualityGate, Verdict, qc_report_entry
from copydesk.qc.repair import repair_note, sections_to_repair
from copydesk.run_context import RunContext
from copydesk.slugs import SlugRegistry

log = logging.getLogger("copydesk.article_pipeline")

#: Set by the orchestration around each article (copydesk.orchestration.process_articles):
#: called once the article's calls are done, before its checks and export, so that the
#: next article can start its calls while this one is checked.
ARTICLE_WRITTEN: ContextVar[Callable[[], None] | None] = ContextVar("copydesk_article_written", default=None)


class ArticlePipeline:
    """The steps of one article, for every article of one started run."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        #: The run's slugs: one file name per article, whatever order they finish in.
        self._slugs = SlugRegistry()

    async def process(self, article: Article) -> Article:
        """write -> check -> export. Once it is written, the article gives back its writing
        slot (`ARTICLE_WRITTEN`): its checks do not hold up later articles' calls."""
        await self.write(article)
        written = ARTICLE_WRITTEN.get()
        if written is not None:
            written()
        await self.check(article)
        self.export(article)
        if article.path:  # its file holds the text now; the run keeps its row's figures only
            article.release_text(self.context.resources.exporter.word_count(article))
        return article

    async def write(self, article: Article) -> Article:
        """Title, outline, sections through the API; never raises (failures make it incomplete)."""
        return await self.context.resources.writer.write(article)

    async def check(self, article: Article) -> Article:
        """The publish gate (grammar, moderation, content checks) decides the article's status."""
        if not article.generated:
            article.status = Status.INCOMPLETE
            return article
        gate = await self.context.resources.quality_gate()
        verdict, entry = await self._judge(gate, article)
        verdict, entry, attempts = await self._repair(gate, article, verdict, entry)
        article.status = Status(verdict.status)
        if article.holds and article.status == Status.PUBLISHED:  # a required extra empty or refused
            article.status = Status.NEEDS_REVIEW
        article.reasons.extend(r for r in [*verdict.reasons, *article.holds] if r not in article.reasons)
        article.grammar_issues = verdict.grammar_issues
        article.moderation_flagged = verdict.moderation_flagged
        article.qc = {**entry, "repair_attempts": attempts}
        metrics = self.context.resources.metrics
        metrics.observe_qc(verdict.seconds)
        if verdict.moderation_flagged:
            metrics.record_moderation_flag()
        return article

    async def _judge(self, gate: QualityGate, article: Article) -> tuple[Verdict, dict[str, Any]]:
        """The gate's verdict on the article's current text and its QC report entry; the
        verdict's edits applied to the article."""
        verdict = await gate.assess(self.draft(article))
        entry = qc_report_entry(verdict)
        self._apply(article, verdict)
        return verdict, entry

    @staticmethod
    def _apply(article: Article, verdict: Verdict) -> None:
        """The one place a verdict changes the article: the section bodies its repairs left,
        then the grammar checker's corrections (computed on those bodies)."""
        if verdict.section_bodies is not None:
            for section, body in zip(article.sections, verdict.section_bodies, strict=True):
                section.body = body
        if verdict.corrected_markdown is not None and not article.apply_corrections(verdict.corrected_markdown):
            log.warning("article %d: the grammar autocorrections could not be applied", article.index + 1)

    async def _repair(self, gate: QualityGate, article: Article, verdict: Verdict,
                      entry: dict[str, Any]) -> tuple[Verdict, dict[str, Any], list[dict[str, Any]]]:
        """Sections failing a section-level check are written again (`qc.repair.max_attempts`, as
        the writer's CallPlan counts them), the re-ask naming the failure, then the article is
        judged again: the final verdict, its report entry, and a record of every attempt."""
        writer, language = self.context.resources.writer, self.context.spec.language
        attempts: list[dict[str, Any]] = []
        for attempt in range(1, writer.plan.stages["expansion"].rewrites + 1):
            if verdict.status == "published":
                break
            targets = {n: f for n, f in sections_to_repair(verdict.checks).items() if n <= len(article.sections)}
            if not targets:
                break
            record: dict[str, Any] = {
                "attempt": attempt,
                "status_before": verdict.status,
                "reasons_before": list(verdict.reasons),
                "sections": {str(n): sorted({f["check"] for f in found}) for n, found in targets.items()},
            }
            attempts.append(record)
            results = await asyncio.gather(
                *(writer.rewrite_section(article, n - 1, repair_note(found, language), attempt)
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
            verdict, entry = await self._judge(gate, article)
            record["status_after"] = verdict.status
            if errors:
                break
        return verdict, entry, attempts

    def draft(self, article: Article) -> Draft:
        """The article as the gate reads it, once: its Markdown, outline, sections and their finish
        reasons, and for the editorial checks the topic, title and the prompts that produced it."""
        spec = self.context.spec
        return Draft(
            topic=article.topic,
            title=article.title,
            outline=list(article.outline),
            sections=[(s.heading, s.body) for s in article.sections],
            language=spec.language,
            outline_prompt=article.outline_prompt or None,
            section_prompts=[s.prompt or None for s in article.sections],
            fills=[article.topic, article.title],
            section_max_tokens=spec.stages.expansion.max_tokens,
            title_finish_reason=article.title_finish_reason,
            markdown=article.body_markdown(),
            finish_reasons=article.finish_reasons(),
        )

    def export(self, article: Article) -> Article:
        """Give the article its slug and write its Markdown file."""
        if not article.slug:
            article.slug = self._slugs.claim(
                article.title or article.topic, fallback=f"article-{article.index + 1}", position=article.index + 1
            )
        if self.context.spec.export.markdown:
            self.context.resources.exporter.write_article(article)
        return article
