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
    heading_depth  headings deeper than qc.heading_depth.max_depth (off  soft
                   unless set; `action: flatten` rewrites them, recorded)

The checks and their order are the registry's (`copydesk.qc.registry.CHECKS`, the `editorial`
phase); each check's repair is its own (`Check.repair`), applied in that order.

A check that needs what the draft lacks (prompts, the topic) is listed as skipped; a
check that raises is recorded as not run (the gate sends the article to review).
Near-duplicates across articles need the run's state: `copydesk.qc.originality`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from copydesk.qc.check import Check, CheckEnv, Draft, apply_repairs, run_checks, timed
from copydesk.qc.content import CheckResult
from copydesk.qc.language import LanguageDetector
from copydesk.qc.registry import build_checks
from copydesk.qc.truncation import check_unfinished

__all__ = ["Draft", "EditorialOutcome", "check_unfinished", "editorial_checks", "run_editorial", "timed"]


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


def editorial_checks(checks: list[Check]) -> list[Check]:
    """The editorial phase's checks, in registry order."""
    return [check for check in checks if check.phase == "editorial"]


def run_editorial(draft: Draft, policy: Any, detector: LanguageDetector | None = None,
                  checks: list[Check] | None = None) -> EditorialOutcome:
    """Repair what the policy allows, then run every enabled editorial check on the result.

    `policy` is the spec's `qc:` section; `checks` the gate's built checks (built here without)."""
    if checks is None:
        checks = build_checks(policy, CheckEnv(draft.language, detector or LanguageDetector()))
    editorial = editorial_checks(checks)
    repaired, repairs = apply_repairs(editorial, draft)
    results, skipped = run_checks(editorial, repaired)
    return EditorialOutcome(checks=results, bodies=[body for _, body in repaired.sections], skipped=skipped,
                            repairs=repairs)
