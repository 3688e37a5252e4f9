"""The publish gate: grammar, moderation and content checks decide an article's status.

    published     every check ran and passed
    needs_review  a soft check failed, or a check could not run (never published silently)
    rejected      moderation flagged something, or a hard check failed

Hard and soft, and why (a content team's view: *rejected* means "regenerate,
no editor time", *needs_review* means "an editor can fix or approve this"):

    moderation        flagged -> hard. Nothing flagged goes out, and an editor
                      should not have to read abuse to find out.
                      Local classifier on a non-English article -> could not run
                      (it cannot read the text), so needs_review.
    grammar           issues per 100 words above the policy -> soft: an editor fixes
                      typos faster than a model regenerates an article.
    length            no text at all -> hard; under min_words / over max_words -> soft.
    outline_coverage  empty outline or more than half of the sections missing or
                      empty -> hard (it is not the article that was asked for);
                      fewer missing -> soft.
    repetition        scored per section (loops happen inside one generation; wording
                      shared between sections is not a loop): above max_repetition ->
                      soft; at 0.6 or more (or above max_repetition if that is
                      higher) -> hard: a degenerate loop.
    truncation        a section cut off by max_tokens -> soft (finish the sentence), or with
                      `qc.truncation: trim` cut back to its last complete sentence (recorded,
                      copydesk.qc.truncation); stopped by the provider's content filter -> hard.
    editorial         section by section (copydesk.qc.editorial): prompt echo, meta-talk,
                      refusals (hard), placeholders, Markdown, language, duplicated
                      sections, links, thin sections, relevance -> soft unless noted.
                      Their repairs (meta-talk trimmed, headings demoted, links stripped)
                      reach the article through `Verdict.section_bodies`.
    originality       the article is a near-duplicate (MinHash, copydesk.qc.originality)
                      of one published earlier in this run or under the same output
                      folder -> soft.

A check that raises is recorded with `ran=False` and its error; a disabled
check (`enabled: false`, `require_outline_coverage: false`) is skipped and
listed in `Verdict.skipped`.

Every check except grammar, moderation and originality is a component
(`copydesk.qc.check`) registered in `copydesk.qc.registry.CHECKS`. `assess` runs the
text checks' repairs (truncation's trim), then the editorial phase (its checks'
repairs, then their runs; not with `editorial=False`), grammar and moderation concurrently,
the text checks, and originality, in that order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copydesk.qc.check import CheckEnv, Draft, apply_repairs, run_checks
from copydesk.qc.content import CheckResult
from copydesk.qc.editorial import run_editorial
from copydesk.qc.evidence import excerpt
from copydesk.qc.language import LanguageDetector
from copydesk.qc.moderation import LocalModerator, ModerationResult, Moderator
from copydesk.qc.originality import ArticleIndex
from copydesk.qc.registry import QCSpec, build_checks
from copydesk.rundir import Status
from copydesk.text import primary_language

#: Grammar matches kept in a verdict's `grammar` dict (and so in the QC report).
MAX_REPORTED_MATCHES = 100


@dataclass(frozen=True)
class Verdict:
    status: Status
    reasons: list[str]
    checks: list[CheckResult]
    grammar_issues: int | None
    moderation_flagged: bool | None
    moderation: dict[str, Any] | None
    grammar: dict[str, Any] | None
    seconds: float
    #: Checks switched off by the policy.
    skipped: list[str] = field(default_factory=list)
    #: The grammar checker's corrected text, when `grammar.autocorrect` is on and it changed something:
    #: the article takes it (`Article.apply_corrections`) before it is exported.
    corrected_markdown: str | None = None
    #: The section bodies after the editorial repairs, when any was made (else None):
    #: the article takes them before `corrected_markdown`, which was computed on them.
    section_bodies: list[str] | None = None
    #: What the editorial repairs did, one line each.
    repairs: list[str] = field(default_factory=list)


def _reason(check: CheckResult) -> str:
    if not check.ran:
        return f"{check.name} check could not run: {check.detail}"
    return f"{check.name}: {check.detail}"


def decide(checks: Sequence[CheckResult]) -> tuple[Status, list[str]]:
    """The status the checks add up to, and the reasons (rejections first).

    Any moderation flag or failed hard check rejects; a failed soft check or a
    check that could not run sends the article to review; otherwise it is published.
    """
    rejecting = [
        c for c in checks if c.ran and not c.passed and (c.severity == "hard" or c.name == "moderation")
    ]
    reviewing = [c for c in checks if c not in rejecting and (not c.ran or not c.passed)]
    reasons = [_reason(c) for c in rejecting + reviewing]
    if rejecting:
        return Status.REJECTED, reasons
    if reviewing:
        return Status.NEEDS_REVIEW, reasons
    return Status.PUBLISHED, reasons


# --------------------------------------------------------------------------- helpers


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Plain JSON data from whatever a checker returned (dataclasses, pydantic, Match objects)."""
    if depth > 6:
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(), depth + 1)
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v, depth + 1) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def _format_rules(top_rules: Any, limit: int = 3) -> str:
    if isinstance(top_rules, Mapping):
        items = list(top_rules.items())
    else:
        items = list(top_rules or [])
    parts = []
    for item in items[:limit]:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            parts.append(f"{item[0]} ({item[1]})")
        else:
            parts.append(str(item))
    return ", ".join(parts)


def _timed(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a bug in a check must not publish the article, nor sink the run
        result = CheckResult.not_run(name, f"{type(exc).__name__}: {exc}")
    return dataclasses.replace(result, seconds=round(time.perf_counter() - started, 6))


def _patched(markdown: str, before: Sequence[tuple[str, str]], after: Sequence[tuple[str, str]]) -> str:
    """`markdown` with each section body that a repair changed replaced (first occurrence)."""
    for (_, old), (_, new) in zip(before, after):
        if old != new:
            markdown = markdown.replace(old, new, 1)
    return markdown


@dataclass
class _Services:
    """What the grammar and moderation checks give a verdict besides their results."""

    checks: list[CheckResult] = field(default_factory=list)
    grammar: dict[str, Any] | None = None
    grammar_issues: int | None = None
    corrected: str | None = None
    moderation: dict[str, Any] | None = None
    moderation_flagged: bool | None = None


# --------------------------------------------------------------------------- the gate


class QualityGate:
    """Runs every enabled check on one article and returns its `Verdict`.

    `grammar_checker` needs a synchronous `check(markdown)` returning a report with
    `words, issues, issues_per_100_words, top_rules, matches, corrected_text`
    (`copydesk.qc.grammar.GrammarChecker`); it runs in a worker thread. Without
    one, an enabled grammar check "could not run" (needs_review).
    `moderator` is what `choose_moderator` returns; without one, provider
    auto/local uses the local classifier.
    """

    def __init__(
        self,
        policy: QCSpec,
        language: str,
        grammar_checker: Any = None,
        moderator: Moderator | None = None,
        *,
        published_root: Path | None = None,
        run_dir: Path | None = None,
    ) -> None:
        """`published_root`: the output folder whose `<run>/published/*.md` articles a new one
        must not duplicate (`run_dir`, the current run's folder, is left out of that)."""
        self.policy = policy
        self.language = language
        self.grammar_checker = grammar_checker
        self.detector = LanguageDetector()
        self.originality: Any = None
        self._indexed = 0
        self._originality_error: str | None = None
        if policy.originality.enabled:
            try:
                self.originality = ArticleIndex(policy.originality.max_similarity)
                if published_root is not None and policy.originality.against_published:
                    self.originality.load_published(Path(published_root), language, exclude=run_dir)
            except Exception as exc:  # the index cannot be built: articles go to review, not out
                self._originality_error = f"{type(exc).__name__}: {exc}"
        if moderator is None and policy.moderation.enabled:
            if policy.moderation.provider == "openai":
                raise ValueError(
                    "qc.moderation.provider is 'openai': pass moderator=choose_moderator(...) to QualityGate"
                )
            moderator = LocalModerator(policy.moderation.threshold)
        self.moderator = moderator
        #: The registered checks (copydesk.qc.registry), built for this gate.
        self.checks = build_checks(policy, CheckEnv(language, self.detector))
        self._text_checks = [check for check in self.checks if check.phase == "text"]

    async def assess(self, draft: Draft, *, editorial: bool = True) -> Verdict:
        """The verdict on one article, read once from its `draft`: its Markdown, outline, sections
        and their finish reasons, and for the editorial checks its topic, title, rendered prompts and
        slot. The repairs' section bodies come back in `Verdict.section_bodies` (the other checks read
        the repaired text), the grammar checker's corrections in `Verdict.corrected_markdown`: the
        caller applies both (copydesk.article_pipeline). `editorial=False`: the text checks, grammar
        and moderation only (no editorial checks, no originality)."""
        started = time.perf_counter()
        sections = list(draft.sections)
        text = Draft(topic="", title="", outline=list(draft.outline), sections=sections, language=self.language,
                     markdown=draft.markdown, finish_reasons=list(draft.finish_reasons))
        text, repairs = apply_repairs(self._text_checks, text)
        section_bodies = None
        if repairs:
            text = dataclasses.replace(text, markdown=_patched(text.markdown, sections, text.sections))
            section_bodies = [b for _, b in text.sections]
            draft = dataclasses.replace(draft, sections=list(text.sections), markdown=text.markdown,
                                        finish_reasons=list(text.finish_reasons))
        outcome = None
        if editorial:
            draft = dataclasses.replace(draft, repaired=text.repaired)
            outcome = await asyncio.to_thread(run_editorial, draft, self.policy, self.detector, self.checks)
            if outcome.changed:
                section_bodies = list(outcome.bodies)
                repaired = [(h, b) for (h, _), b in zip(text.sections, section_bodies)]
                text = dataclasses.replace(text, markdown=_patched(text.markdown, text.sections, repaired),
                                           sections=repaired)
        skipped = list(outcome.skipped) if outcome is not None else []
        services = await self._services(text.markdown, skipped)
        text_results, text_skipped = run_checks(self._text_checks, text)
        checks = services.checks + text_results
        skipped += text_skipped
        if outcome is not None:
            checks += outcome.checks
            repairs += outcome.repairs
            checks += self._check_originality(text.markdown, skipped)
        status, reasons = decide(checks)
        if status == "published" and editorial and self.originality is not None:
            # Checked and added with no await in between: of two near-duplicates, the second is held.
            # Keys are unique: two articles of a run may share a title.
            self._indexed += 1
            label = f"this run: {draft.title or draft.topic!r} (#{self._indexed})"
            self.originality.add(label, text.markdown, self.language)
        return Verdict(
            status=status, reasons=reasons, checks=checks, grammar_issues=services.grammar_issues,
            moderation_flagged=services.moderation_flagged, moderation=services.moderation,
            grammar=services.grammar, seconds=round(time.perf_counter() - started, 6), skipped=skipped,
            corrected_markdown=services.corrected, section_bodies=section_bodies, repairs=repairs,
        )

    async def _services(self, markdown: str, skipped: list[str]) -> _Services:
        """Grammar and moderation, concurrently (each skipped when switched off)."""

        async def none() -> None:
            return None

        policy = self.policy
        if policy.grammar.enabled:
            grammar_job = self._grammar(markdown)
        else:
            skipped.append("grammar")
            grammar_job = none()
        if policy.moderation.enabled:
            moderation_job = self._moderation(markdown)
        else:
            skipped.append("moderation")
            moderation_job = none()
        (grammar_out, moderation_out) = await asyncio.gather(grammar_job, moderation_job)
        out = _Services()
        if moderation_out is not None:
            check, out.moderation, out.moderation_flagged = moderation_out
            out.checks.append(check)
        if grammar_out is not None:
            check, out.grammar, out.grammar_issues, out.corrected = grammar_out
            out.checks.append(check)
        return out

    def _check_originality(self, markdown: str, skipped: list[str]) -> list[CheckResult]:
        if not self.policy.originality.enabled:
            skipped.append("originality")
            return []
        if self.originality is None:
            return [CheckResult.not_run("originality", f"no article index: {self._originality_error}")]
        return [_timed("originality", lambda: self._originality(markdown))]

    def _originality(self, markdown: str) -> CheckResult:
        matches = self.originality.match(markdown, self.language)
        if not matches:
            return CheckResult("originality", True, "soft", "no near-duplicate among published articles", 0.0)
        key, score = matches[0]
        evidence = tuple({"section": None, "heading": None, "duplicate_of": k, "similarity": round(s, 3),
                          "text": excerpt(markdown)} for k, s in matches[:5])
        detail = f"near-duplicate ({score:.0%} similar) of {key}"
        return CheckResult("originality", False, "soft", detail, round(score, 4), evidence=evidence)

    # -- grammar ------------------------------------------------------------------

    async def _grammar(
        self, markdown: str
    ) -> tuple[CheckResult, dict[str, Any] | None, int | None, str | None]:
        started = time.perf_counter()
        limit = self.policy.grammar.max_issues_per_100_words

        def done(check: CheckResult) -> CheckResult:
            return dataclasses.replace(check, seconds=round(time.perf_counter() - started, 6))

        if self.grammar_checker is None:
            return done(CheckResult.not_run("grammar", "no grammar checker is configured")), None, None, None
        try:
            report = await asyncio.to_thread(self.grammar_checker.check, markdown)
            issues_raw = report.issues
            issues = len(issues_raw) if isinstance(issues_raw, (list, tuple)) else int(issues_raw)
            density = float(report.issues_per_100_words)
        except Exception as exc:  # ServiceError (LanguageTool down) or anything else
            detail = str(exc) or type(exc).__name__
            return done(CheckResult.not_run("grammar", detail)), None, None, None

        matches = list(getattr(report, "matches", None) or [])
        top_rules = getattr(report, "top_rules", None)
        grammar = {
            "words": _jsonable(getattr(report, "words", None)),
            "issues": issues,
            "issues_per_100_words": round(density, 4),
            "max_issues_per_100_words": limit,
            "top_rules": _jsonable(top_rules),
            "matches": _jsonable(matches[:MAX_REPORTED_MATCHES]),
            "matches_truncated": len(matches) > MAX_REPORTED_MATCHES,
            "ignored_rules": list(self.policy.grammar.ignore_rules),
        }
        corrected = None
        if self.policy.grammar.autocorrect:
            text = getattr(report, "corrected_text", None)
            if text and text != markdown:
                corrected = text
        grammar["autocorrected"] = corrected is not None

        if density > limit:
            rules = _format_rules(top_rules)
            detail = f"{density:.2f} issues per 100 words (max {limit:g}), {issues} in all"
            if rules:
                detail += f"; most frequent: {rules}"
            check = CheckResult("grammar", False, "soft", detail, round(density, 4))
        else:
            detail = f"{density:.2f} issues per 100 words (max {limit:g}), {issues} in all"
            check = CheckResult("grammar", True, "soft", detail, round(density, 4))
        return done(check), grammar, issues, corrected

    # -- moderation ---------------------------------------------------------------

    async def _moderation(self, markdown: str) -> tuple[CheckResult, dict[str, Any] | None, bool | None]:
        started = time.perf_counter()
        moderator = self.moderator
        assert moderator is not None

        def done(check: CheckResult) -> CheckResult:
            return dataclasses.replace(check, seconds=round(time.perf_counter() - started, 6))

        try:
            result: ModerationResult = await moderator.moderate([markdown])
        except Exception as exc:  # ApiError, ServiceError, anything: not moderated means not published
            detail = f"{moderator.name}: {exc}" if str(exc) else f"{moderator.name}: {type(exc).__name__}"
            return done(CheckResult.not_run("moderation", detail, "hard")), None, None

        as_dict = result.to_dict()
        top_category, top_score = max(result.category_scores.items(), key=lambda kv: kv[1], default=("", 0.0))
        if result.flagged:
            flagged = ", ".join(
                f"{c} ({result.category_scores.get(c, 0.0):.2f})" for c in result.flagged_categories
            ) or "flagged"
            example = f': "{result.flagged_sentences[0]}"' if result.flagged_sentences else ""
            check = CheckResult("moderation", False, "hard", f"{result.provider} flagged {flagged}{example}", top_score)
            return done(check), as_dict, True

        languages = getattr(moderator, "languages", None)
        if languages is not None and primary_language(self.language) not in languages:
            # The classifier ran but cannot read this language: a pass would be a guess.
            why = (
                f"the {result.provider} classifier reads {', '.join(sorted(languages))} only, "
                f"so this {self.language} article was not moderated "
                "(configure OPENAI_API_KEY for the OpenAI moderation endpoint)"
            )
            as_dict["language_not_supported"] = self.language
            return done(CheckResult.not_run("moderation", why, "hard")), as_dict, None

        not_assessed = len(as_dict["not_assessed"])
        detail = f"{result.provider}: not flagged (highest {top_category} {top_score:.2f})"
        if not_assessed:
            detail += f"; {not_assessed} of {len(result.category_scores)} categories not assessed"
        return done(CheckResult("moderation", True, "hard", detail, top_score)), as_dict, False


def qc_report_entry(verdict: Verdict) -> dict[str, Any]:
    """One article's entry in a run's QC report: every check's result, JSON-ready.

    The caller adds what identifies the article (topic, slug, path).
    """
    return _jsonable(
        {
            "status": verdict.status,
            "reasons": list(verdict.reasons),
            "seconds": verdict.seconds,
            "grammar_issues": verdict.grammar_issues,
            "moderation_flagged": verdict.moderation_flagged,
            "checks": [
                {
                    "name": c.name,
                    "ran": c.ran,
                    "passed": c.passed,
                    "severity": c.severity,
                    "detail": c.detail,
                    "value": c.value,
                    "seconds": c.seconds,
                    "evidence": list(c.evidence),
                }
                for c in verdict.checks
            ],
            "skipped": list(verdict.skipped),
            "moderation": verdict.moderation,
            "grammar": verdict.grammar,
            "autocorrected": verdict.corrected_markdown is not None,
            "repairs": list(verdict.repairs),
        }
    )
