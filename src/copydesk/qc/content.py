"""Content checks of the publish gate: pure functions over plain data, no I/O.

Every check returns a `CheckResult`. `severity` says what a failure costs:

    hard  the article is rejected (nothing an editor can reasonably rescue)
    soft  the article goes to a human (needs_review)

A check that could not run says so with `ran=False`; the gate sends such an
article to review, never to publication.

Which failures are hard (see also `copydesk.qc.gate`):

    check_length           empty article (0 words) hard; under min_words / over max_words soft
    check_outline_coverage empty outline, or more than half the outline sections missing or
                           empty: hard; any other missing section: soft
    repetition             above max_repetition soft; above HARD_REPETITION (0.6, or
                           max_repetition if that is higher) hard: a degenerate loop
    check_truncation       a section cut off by max_tokens (finish_reason "length") soft;
                           a section stopped by the provider's content filter
                           (finish_reason "content_filter") hard
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from copydesk.text import count_words, is_cjk_language, plain_text, split_sentences, words

Severity = Literal["hard", "soft"]

#: Repetition at or above this share is a degenerate generation loop, not style.
HARD_REPETITION = 0.6
#: Losing more than this share of the outline's sections makes the article unusable.
HARD_MISSING_SHARE = 0.5
#: Word n-gram length for repetition in space-separated languages.
WORD_NGRAM = 5
#: Character n-gram length for Chinese and Japanese (about five words' worth).
CHAR_NGRAM = 8


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome for one article."""

    name: str
    passed: bool
    severity: Severity
    detail: str
    value: float | int | None = None
    ran: bool = True
    #: Wall-clock seconds the check took, where the gate measured it.
    seconds: float | None = None
    #: What was found and where (section, offending text, ...): the QC report's evidence.
    evidence: tuple[dict[str, Any], ...] = ()

    @property
    def failed_hard(self) -> bool:
        return self.ran and not self.passed and self.severity == "hard"

    @property
    def failed_soft(self) -> bool:
        return self.ran and not self.passed and self.severity == "soft"

    @classmethod
    def not_run(cls, name: str, why: str, severity: Severity = "soft") -> CheckResult:
        return cls(name=name, passed=False, severity=severity, detail=why, value=None, ran=False)

    @classmethod
    def found(cls, name: str, detail: str, found: Sequence[Any], *, severity: Severity = "soft",
              evidence: Sequence[dict[str, Any]] | None = None, more: str = "more") -> CheckResult:
        """A failed check that found `found` (its value: how many); `detail` describes the first,
        and says how many more there are."""
        if len(found) > 1:
            detail += f" (+{len(found) - 1} {more})"
        return cls(name, False, severity, detail, len(found), evidence=tuple(found if evidence is None else evidence))

    @classmethod
    def from_findings(cls, name: str, found: Sequence[dict[str, Any]], passed: str,
                      describe: Callable[[dict[str, Any]], str], *, recorded: Sequence[dict[str, Any]] = (),
                      repaired: str | None = None, more: str = "more") -> CheckResult:
        """A soft check's outcome from its findings: passed with the detail `passed` when there are
        none, else failed with `describe(first finding)`. `recorded` (what a repair changed) is kept
        as evidence either way; when there is any, `repaired` (a `repair_note`) is the detail of a pass."""
        if not found:
            detail = repair_note(repaired, recorded) if recorded and repaired else passed
            return cls(name, True, "soft", detail, 0, evidence=tuple(recorded))
        return cls.found(name, describe(found[0]), found, evidence=[*found, *recorded], more=more)


def findings_check(name: str, findings: Callable[[Sequence[tuple[str, str]]], list[dict[str, Any]]], passed: str,
                   describe: Callable[[dict[str, Any]], str], *, more: str = "more") -> Callable[..., CheckResult]:
    """A soft check of an article's sections made from the function that finds what it fails on:
    `check(sections, recorded=(), repaired=None)` is `CheckResult.from_findings(name, findings(sections),
    ...)`, with what a repair changed (`recorded`) kept as evidence and `repaired` the detail of a pass
    after a repair (the check component, which owns the repair, says it)."""
    def check(sections: Sequence[tuple[str, str]], recorded: Sequence[dict[str, Any]] = (), *,
              repaired: str | None = None) -> CheckResult:
        return CheckResult.from_findings(name, findings(sections), passed, describe, recorded=recorded,
                                         repaired=repaired, more=more)

    return check


def repair_note(note: str, found: Sequence[dict[str, Any]]) -> str:
    """`note` formatted for a repair's findings: `{changes}` (how many), `{sections}` (in how many)."""
    return note.format(changes=len(found), sections=len({item["section"] for item in found}))


# --------------------------------------------------------------------------- text helpers


#: What a word loses to be compared: every character that is not a letter or digit (`str.isalnum`).
_NOT_ALNUM = re.compile(r"[\W_]+")


def _tokens(text: str, language: str) -> list[str]:
    """The words of `text` (`copydesk.text.words`), compared without case or punctuation.
    (Every word holds a letter or digit: none comes out empty.)"""
    return [_NOT_ALNUM.sub("", word).casefold() for word in words(text, language)]


# --------------------------------------------------------------------------- checks


def check_length(words: int, min_words: int, max_words: int | None) -> CheckResult:
    """Word count within [min_words, max_words]. No words at all is a hard failure."""
    if words <= 0:
        return CheckResult("length", False, "hard", "the article has no text", words)
    if words < min_words:
        return CheckResult("length", False, "soft", f"{words} words, fewer than min_words {min_words}", words)
    if max_words is not None and words > max_words:
        return CheckResult("length", False, "soft", f"{words} words, more than max_words {max_words}", words)
    upper = f"..{max_words}" if max_words is not None else "+"
    return CheckResult("length", True, "soft", f"{words} words (allowed {min_words}{upper})", words)


_NUMBERING = re.compile(
    r"^\s*(?:(?:section|part|chapter|第)\s*)?"
    r"(?:\d+(?:\.\d+)*|[ivxlcdm]+|[一二三四五六七八九十百]+|[a-z])\s*(?:章|节|部分)?\s*[.)、:：．]\s*",
    re.IGNORECASE,
)


def normalize_heading(heading: str) -> str:
    """A heading reduced for matching: no Markdown, numbering, punctuation or case."""
    text = plain_text(heading).strip()
    text = _NUMBERING.sub("", text, count=1)
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _has_text(body: str) -> bool:
    return any(ch.isalnum() for ch in plain_text(body))


def check_outline_coverage(outline: Sequence[str], sections: Sequence[tuple[str, str]]) -> CheckResult:
    """Every outline heading present among the sections, each with a non-empty body.

    Headings match after dropping numbering ("1.", "II.", "一、"), Markdown,
    punctuation and case. `value` is the share of the outline covered.
    """
    if not outline:
        return CheckResult("outline_coverage", False, "hard", "the outline is empty", 0.0)
    bodies: dict[str, bool] = {}
    for heading, body in sections:
        key = normalize_heading(heading)
        bodies[key] = bodies.get(key, False) or _has_text(body)
    missing = [h for h in outline if normalize_heading(h) not in bodies]
    empty = [h for h in outline if bodies.get(normalize_heading(h)) is False]
    lost = len(missing) + len(empty)
    covered = (len(outline) - lost) / len(outline)
    if not lost:
        return CheckResult("outline_coverage", True, "soft", f"all {len(outline)} sections written", 1.0)
    listed = _listing(("missing", [repr(h) for h in missing]), ("empty", [repr(h) for h in empty]))
    severity: Severity = "hard" if lost / len(outline) > HARD_MISSING_SHARE else "soft"
    detail = f"{lost} of {len(outline)} outline sections not written ({listed})"
    return CheckResult("outline_coverage", False, severity, detail, round(covered, 4))


def _listing(*groups: tuple[str, Sequence[str]]) -> str:
    """`label: a, b; other: c` for each group that has items, in order."""
    return "; ".join(f"{label}: {', '.join(items)}" for label, items in groups if items)


def _normal_sentence(sentence: str) -> str:
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", sentence).casefold())


def repetition_score(text: str, language: str) -> float:
    """How much of the text repeats itself, 0 (none) to 1 (one phrase over and over).

    The larger of two shares:

    - repeated sentences: sentences (of at least 4 words, or 6 CJK characters)
      that already occurred earlier, over all such sentences;
    - repeated n-grams: word 5-grams (character 8-grams for zh/ja) that already
      occurred earlier, over all n-grams.

    Fenced code blocks are left out: code repeats itself legitimately (imports,
    client set-up), and a loop there is cut off by max_tokens anyway.
    Technical prose measured 0.01-0.15 (package READMEs; the Chinese seed
    article 0.013); a model stuck in a loop approaches 1.
    """
    plain = plain_text(text, keep_code=False)
    cjk = is_cjk_language(language)
    n = CHAR_NGRAM if cjk else WORD_NGRAM
    min_sentence_tokens = 6 if cjk else 4

    sentence_keys = [
        _normal_sentence(s) for s in split_sentences(plain) if count_words(s, language) >= min_sentence_tokens
    ]
    sentence_share = 0.0
    if len(sentence_keys) >= 2:
        sentence_share = (len(sentence_keys) - len(set(sentence_keys))) / len(sentence_keys)

    tokens = _tokens(plain, language)
    ngram_share = 0.0
    if len(tokens) >= 2 * n:
        grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(grams.values())
        ngram_share = (total - len(grams)) / total
    return round(max(sentence_share, ngram_share), 4)


def check_repetition(text: str, language: str, max_repetition: float) -> CheckResult:
    """Repetition above max_repetition is soft; at HARD_REPETITION (or above a higher max) hard."""
    return _judge_repetition(repetition_score(text, language), max_repetition, "")


def check_section_repetition(
    sections: Sequence[tuple[str, str]], language: str, max_repetition: float
) -> CheckResult:
    """Degenerate loops happen inside one generation, so each section is scored on its own
    and the worst one is judged. Wording shared between sections (a recurring phrase, a
    similar closing line) is not a loop and is not counted against the article."""
    scored = [(heading, repetition_score(body, language)) for heading, body in sections if body.strip()]
    if not scored:
        return check_repetition("", language, max_repetition)
    heading, score = max(scored, key=lambda item: item[1])
    return _judge_repetition(score, max_repetition, f" in section {heading!r}")


def _judge_repetition(score: float, max_repetition: float, where: str) -> CheckResult:
    hard_level = max(HARD_REPETITION, max_repetition)
    if score > max_repetition and score >= hard_level:
        detail = f"repetition {score:.2f}{where} at or above {hard_level:.2f}: the text loops"
        return CheckResult("repetition", False, "hard", detail, score)
    if score > max_repetition:
        return CheckResult("repetition", False, "soft", f"repetition {score:.2f}{where} above {max_repetition:.2f}",
                           score)
    return CheckResult("repetition", True, "soft", f"repetition {score:.2f} (max {max_repetition:.2f})", score)


def check_truncation(finish_reasons: Sequence[str | None], labels: Sequence[str] | None = None) -> CheckResult:
    """Sections whose generation did not end on its own.

    "length" (cut off by max_tokens) is soft: an editor can finish the sentence.
    "content_filter" (the provider's own filter stopped the text) is hard.
    None means the server did not say and is not held against the article.
    `labels` names the calls (for example the section headings) in the detail.
    """
    names = list(labels) if labels is not None and len(labels) == len(finish_reasons) else None

    def name(i: int) -> str:
        return repr(names[i]) if names else f"#{i + 1}"

    cut = [i for i, r in enumerate(finish_reasons) if r == "length"]
    filtered = [i for i, r in enumerate(finish_reasons) if r == "content_filter"]
    if not cut and not filtered:
        return CheckResult("truncation", True, "soft", f"{len(finish_reasons)} generations finished normally", 0)
    listed = _listing(("stopped by the provider's content filter", [name(i) for i in filtered]),
                      ("cut off by max_tokens", [name(i) for i in cut]))
    severity: Severity = "hard" if filtered else "soft"
    return CheckResult("truncation", False, severity, listed, len(cut) + len(filtered))
