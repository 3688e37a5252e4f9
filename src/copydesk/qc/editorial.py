"""The editorial checks of one article, section by section: what a careful editor catches.

    draft = Draft(topic, title, outline, sections, language, outline_prompt=..., section_prompts=[...])
    outcome = run_editorial(draft, spec.qc, detector)
    outcome.checks   # one CheckResult per check, evidence attached
    outcome.bodies   # the section bodies after the repairs the policy allows

Repairs happen first, each recorded in its check's evidence: meta-talk trimmed at a
section's edges (`qc.meta_talk.trim`), extra headings demoted (`qc.markdown.extra_headings:
demote`), links not on the allowlist removed (`qc.links.policy: strip`). Then every
enabled check reads the repaired text:

    prompt_echo    headings/sentences copying the rendered prompt        soft
    meta_talk      preambles and sign-offs left after trimming          soft
    refusal        refusal hard, AI disclaimer soft
    placeholders   [Insert ...], {{ x }}, TODO, lorem ipsum              soft
    markdown       unclosed fence, extra headings (review), hidden markup soft
    language       a section not in the spec's language                 soft
    duplication    a section repeating another of the same article       soft
    links          URLs not on qc.links.allow                           soft
    thin_sections  far shorter than max_tokens allows                   soft
    citations      a study, survey or paper cited (cannot be checked)    soft
    unfinished     a section that stops mid-sentence though "stop"ped     soft
    relevance      title/sections sharing no words with the topic       soft

A check that needs what the draft lacks (prompts, the topic) is listed as skipped; a
check that raises is recorded as not run (the gate sends the article to review).
Near-duplicates across articles need the run's state: `copydesk.qc.originality`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from copydesk.qc.citations import check_citations
from copydesk.qc.content import CheckResult
from copydesk.qc.duplicates import check_section_duplicates
from copydesk.qc.echo import check_prompt_echo
from copydesk.qc.evidence import finding, place
from copydesk.qc.language import LanguageDetector, check_language
from copydesk.qc.links import check_links, strip_links
from copydesk.qc.markdown import check_markdown, demote_headings
from copydesk.qc.metatalk import check_meta_talk, trim_meta_talk
from copydesk.qc.placeholders import check_placeholders
from copydesk.qc.refusal import check_refusal
from copydesk.qc.relevance import check_relevance
from copydesk.qc.thin import check_thin_sections
from copydesk.qc.truncation import unfinished_findings

if TYPE_CHECKING:
    from copydesk.spec import QCSpec


@dataclass(frozen=True)
class Draft:
    """What the editorial checks read of one generated article."""

    topic: str
    title: str
    outline: Sequence[str]
    sections: Sequence[tuple[str, str]]
    language: str
    #: The rendered outline prompt (all messages), and each section's, as sent.
    outline_prompt: str | None = None
    section_prompts: Sequence[str | None] = ()
    #: Values the pipeline filled into the prompts that the text may repeat (topic, title; the outline's
    #: headings are added for the section prompts); not the vars, which are instructions.
    fills: Sequence[str] = ()
    #: The expansion stage's max_tokens: the slot a section had.
    section_max_tokens: int | None = None


@dataclass
class EditorialOutcome:
    checks: list[CheckResult]
    #: Section bodies after the allowed repairs (same order as the draft's sections).
    bodies: list[str]
    skipped: list[str] = field(default_factory=list)
    #: What the repairs did, one line each (empty: the bodies are the draft's).
    repairs: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.repairs)


def timed(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; an exception becomes "could not run" (never a pass)."""
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a bug or a missing model must not publish the article
        result = CheckResult.not_run(name, f"{type(exc).__name__}: {exc}")
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 6))


def run_editorial(draft: Draft, policy: QCSpec, detector: LanguageDetector | None = None) -> EditorialOutcome:
    """Repair what the policy allows, then run every enabled editorial check on the result."""
    headings = [h for h, _ in draft.sections]
    bodies = [b for _, b in draft.sections]
    repairs: list[str] = []
    trimmed: list[dict] = []
    demoted: list[dict] = []
    stripped: list[dict] = []
    for i, heading in enumerate(headings):
        if policy.meta_talk.enabled and policy.meta_talk.trim:
            bodies[i], cut = trim_meta_talk(bodies[i])
            trimmed += [finding(i + 1, heading, c, action="trimmed") for c in cut]
        if policy.markdown.enabled and policy.markdown.extra_headings == "demote":
            bodies[i], changed = demote_headings(bodies[i])
            demoted += [finding(i + 1, heading, c, action="demoted to ###") for c in changed]
        if policy.links.enabled and policy.links.policy == "strip":
            bodies[i], removed = strip_links(bodies[i], policy.links.allow)
            stripped += [finding(i + 1, heading, u, action="link removed") for u in removed]
    if trimmed:
        repairs.append(f"meta-talk trimmed from {len({t['section'] for t in trimmed})} section(s)")
    if demoted:
        repairs.append(f"{len(demoted)} heading(s) inside sections demoted to ###")
    if stripped:
        repairs.append(f"{len(stripped)} link(s) not on qc.links.allow removed")

    sections = list(zip(headings, bodies))
    language = draft.language
    checks: list[CheckResult] = []
    skipped: list[str] = []

    def run(name: str, enabled: bool, fn: Callable[[], CheckResult], needs: bool = True) -> None:
        if not enabled or not needs:
            skipped.append(name)
        else:
            checks.append(timed(name, fn))

    echo = policy.prompt_echo
    run("prompt_echo", echo.enabled,
        lambda: check_prompt_echo(draft.outline, draft.outline_prompt, sections, draft.section_prompts,
                                  draft.fills, language, echo.heading_words, echo.sentence_words,
                                  echo.sentence_share),
        needs=bool(draft.outline_prompt or any(draft.section_prompts)))
    run("meta_talk", policy.meta_talk.enabled, lambda: check_meta_talk(sections, trimmed))
    run("refusal", policy.refusal.enabled, lambda: check_refusal(sections))
    run("placeholders", policy.placeholders.enabled, lambda: check_placeholders(sections))
    if policy.markdown.enabled:
        checks.append(timed("markdown", lambda: check_markdown(sections, demoted)))
    else:
        skipped.append("markdown")
    detector = detector or LanguageDetector()
    run("language", policy.language.enabled,
        lambda: check_language(sections, language, detector, policy.language.min_chars))
    run("duplication", policy.duplication.enabled,
        lambda: check_section_duplicates(sections, language, policy.duplication.max_section_overlap, draft.topic))
    run("links", policy.links.enabled, lambda: check_links(sections, policy.links.allow, stripped))
    thin = policy.thin_sections
    run("thin_sections", thin.enabled,
        lambda: check_thin_sections(sections, language, draft.section_max_tokens or 0, thin.min_share,
                                    thin.min_words),
        needs=draft.section_max_tokens is not None)
    run("citations", policy.citations.enabled, lambda: check_citations(sections))
    run("unfinished", policy.unfinished.enabled, lambda: check_unfinished(sections))
    run("relevance", policy.relevance.enabled,
        lambda: check_relevance(draft.topic, draft.title, sections, language, policy.relevance.min_shared_terms,
                                policy.relevance.min_article_overlap,
                                min_topic_coverage=policy.relevance.min_topic_coverage,
                                ignore_terms=policy.relevance.ignore_terms),
        needs=bool(draft.topic))
    return EditorialOutcome(checks=checks, bodies=bodies, skipped=skipped, repairs=repairs)


def check_unfinished(sections: Sequence[tuple[str, str]]) -> CheckResult:
    """A section that ends mid-sentence (the server said it stopped, not that max_tokens cut it:
    that is the truncation check's). Soft."""
    found = unfinished_findings(list(sections))
    if not found:
        return CheckResult("unfinished", True, "soft", "every section ends with a complete sentence", 0)
    first = found[0]
    detail = f"{place(first)} stops mid-sentence: \"…{first['text']}\""
    return CheckResult.found("unfinished", detail, found)
