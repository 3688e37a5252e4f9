"""Grammar and spelling of an article's prose, checked by a LanguageTool server.

    with languagetool_url(settings) as url, GrammarChecker(url, "en-US") as checker:
        report = checker.check(markdown)        # a GrammarReport

Only prose is checked: `copydesk.text.extract_prose` turns the Markdown into
plain text (no code, tables, images or markup) and keeps, for every character,
where it came from, so that issues point back at the Markdown and
autocorrections are applied to the Markdown itself. On top of that:

- inline code is shown to LanguageTool so the sentence around it stays
  grammatical ("an `init` call"), but issues inside it are dropped;
- headings get no added full stop: LanguageTool does not ask for final
  punctuation at the end of a paragraph in en, de or zh (measured), and
  "missing punctuation at paragraph end" (PUNCTUATION_PARAGRAPH_END, active
  in some languages) is dropped on headings and list items, as is
  "sentence starts lower-case" (UPPERCASE_SENTENCE_START) at the start of a
  list item, where lower-case fragments are ordinary style;
- an issue that touches the place where something was removed (two spaces
  left around an image) or lies wholly on inserted separators is dropped.

`ignore_rules` are switched off on the server and filtered again here.
`autocorrect=True` applies only unambiguous spelling fixes (a spelling rule's
match with exactly one suggestion, not on all-caps or digit-bearing words) to
the Markdown, returns it as `corrected_text`, and counts issues on the
corrected text.

Words are counted with `copydesk.text.count_words` on the prose (inline code
left out): the same definition as the CSV's word_count.

Everything the server or language_tool_python raises becomes a
`copydesk.errors.ServiceError`, including a language the server does not
support; the QC gate turns that into needs_review.
"""

from __future__ import annotations

import asyncio
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from pydantic import Field

from copydesk.errors import ServiceError
from copydesk.qc.check import Policy
from copydesk.text import Prose, count_words, extract_prose

__all__ = [
    "GrammarChecker",
    "GrammarPolicy",
    "GrammarReport",
    "is_spelling_rule",
]

#: Rule ids of spelling checkers (MORFOLOGIK_RULE_EN_US, GERMAN_SPELLER_RULE, HUNSPELL_RULE, ...).
_SPELLING_RULE = re.compile(r"MORFOLOGIK|SPELLER|HUNSPELL|SPELLING")
#: Rules that misread Markdown structure as prose at the start/end of a heading or list item.
_START_RULES = frozenset({"UPPERCASE_SENTENCE_START"})
_END_RULES = frozenset({"PUNCTUATION_PARAGRAPH_END"})
TOP_RULES = 5


class GrammarPolicy(Policy):
    enabled: bool = True
    max_issues_per_100_words: float = Field(1.0, ge=0)
    ignore_rules: list[str] = Field(default_factory=list)
    autocorrect: bool = False


def is_spelling_rule(rule_id: str) -> bool:
    return bool(_SPELLING_RULE.search(rule_id))


# =========================================================================== report


@dataclass(frozen=True)
class GrammarReport:
    """What LanguageTool found in one article's prose."""

    words: int
    issues: int
    issues_per_100_words: float
    #: The most frequent rule ids, at most five, most frequent first.
    top_rules: list[tuple[str, int]]
    #: One small dict per issue: rule_id, message, text (the offending text),
    #: context, replacements (up to 3), category, line (1-based, in the Markdown).
    matches: list[dict[str, Any]]
    #: The Markdown with unambiguous spelling fixes applied (autocorrect only), else None.
    corrected_text: str | None = None
    language: str = ""
    #: Spelling fixes applied by autocorrect.
    corrections: int = 0
    ignored_rules: tuple[str, ...] = field(default=())


def _overlaps(start: int, end: int, ranges: Iterable[tuple[int, int]]) -> bool:
    return any(start < r_end and end > r_start for r_start, r_end in ranges)


def _touches_seam(start: int, end: int, seams: Sequence[int]) -> bool:
    i = bisect_right(seams, end)
    return i > 0 and seams[i - 1] >= start


def _all_inserted(prose: Prose, start: int, end: int) -> bool:
    return all(prose.index[k] < 0 for k in range(start, min(end, len(prose.index))))


def _context(text: str, start: int, end: int, width: int = 40) -> str:
    left = max(0, start - width)
    right = min(len(text), end + width)
    snippet = text[left:right].replace("\n", " ")
    return ("…" if left > 0 else "") + snippet + ("…" if right < len(text) else "")


class GrammarChecker:
    """Checks Markdown articles against a LanguageTool server (`remote_server=url`).

    A context manager; `close()` releases the language_tool_python client.
    """

    def __init__(
        self,
        url: str,
        language: str,
        ignore_rules: Iterable[str] = (),
        autocorrect: bool = False,
    ) -> None:
        import language_tool_python  # imported late: it pulls in requests and more
        from language_tool_python.exceptions import LanguageToolError

        self.url = url
        self.language = language
        self.ignore_rules = tuple(dict.fromkeys(r.strip() for r in ignore_rules if r and r.strip()))
        self.autocorrect = autocorrect
        self._errors: tuple[type[BaseException], ...] = (LanguageToolError, OSError, ValueError, KeyError)
        try:
            self._tool = language_tool_python.LanguageTool(language, remote_server=url)
        except ValueError as exc:
            supported = self._supported_languages()
            raise ServiceError(
                f"the LanguageTool server at {url} does not support language {language!r}"
                + (f" (it has: {', '.join(supported)})" if supported else "")
                + "; change the spec's language, or point COPYDESK_LANGUAGETOOL_URL at a server that has it"
            ) from exc
        except Exception as exc:
            raise ServiceError(
                f"cannot reach the LanguageTool server at {url}: {exc}; start one with "
                "`copydesk services start languagetool` or set COPYDESK_LANGUAGETOOL_URL"
            ) from exc
        if self.ignore_rules:
            self._tool.disabled_rules = set(self.ignore_rules)

    def _supported_languages(self) -> list[str]:
        base = self.url.strip().rstrip("/").removesuffix("/v2")
        try:
            response = httpx.get(f"{base}/v2/languages", timeout=10, trust_env=False)
            return sorted({str(lang["longCode"]) for lang in response.json()})
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return []

    # ---- context manager ------------------------------------------------------

    def close(self) -> None:
        tool = getattr(self, "_tool", None)
        if tool is not None:
            tool.close()
            self._tool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- checking ----------------------------------------------------------------

    def check(self, markdown_text: str) -> GrammarReport:
        """Check the prose of `markdown_text` (see the module docstring for what counts as prose)."""
        prose = extract_prose(markdown_text)
        matches = self._matches(prose)
        corrected: str | None = None
        corrections = 0
        if self.autocorrect:
            corrected, corrections = self._apply_spelling_fixes(prose, matches)
            if corrections:
                prose = extract_prose(corrected)
                matches = self._matches(prose)

        words = count_words(prose.countable_text(), self.language)
        issues = len(matches)
        counts = Counter(m.rule_id for m in matches)
        return GrammarReport(
            words=words,
            issues=issues,
            issues_per_100_words=100.0 * issues / max(words, 1),
            top_rules=counts.most_common(TOP_RULES),
            matches=[self._describe(prose, m) for m in matches],
            corrected_text=corrected,
            language=self.language,
            corrections=corrections,
            ignored_rules=self.ignore_rules,
        )

    async def acheck(self, markdown_text: str) -> GrammarReport:
        """`check` in a worker thread."""
        return await asyncio.to_thread(self.check, markdown_text)

    def _raw_matches(self, text: str) -> list[Any]:
        if self._tool is None:
            raise ServiceError("this GrammarChecker is closed")
        if not text.strip():
            return []
        try:
            return list(self._tool.check(text))
        except self._errors as exc:
            raise ServiceError(f"LanguageTool at {self.url} failed to check the text: {exc}") from exc

    def _matches(self, prose: Prose) -> list[Any]:
        kept = []
        ignored = set(self.ignore_rules)
        for m in self._raw_matches(prose.text):
            start, end = m.offset, m.offset + max(m.error_length, 1)
            if m.rule_id in ignored:
                continue
            if _overlaps(start, end, prose.masked) or _touches_seam(start, end, prose.seams):
                continue
            if _all_inserted(prose, start, end):
                continue
            block = prose.block_at(start)
            if block is not None and block.kind in ("heading", "list"):
                if m.rule_id in _END_RULES:
                    continue
                if m.rule_id in _START_RULES and block.kind == "list" and start == block.start:
                    continue
            kept.append(m)
        return kept

    def _describe(self, prose: Prose, m: Any) -> dict[str, Any]:
        start, end = m.offset, m.offset + m.error_length
        return {
            "rule_id": m.rule_id,
            "message": m.message,
            "text": prose.text[start:end],
            "context": _context(prose.text, start, end),
            "replacements": list(m.replacements[:3]),
            "category": m.category,
            "line": prose.source_line(start),
        }

    @staticmethod
    def _apply_spelling_fixes(prose: Prose, matches: Sequence[Any]) -> tuple[str, int]:
        """Apply each spelling match with exactly one suggestion to the Markdown source."""
        edits: list[tuple[int, int, str]] = []
        for m in matches:
            if not is_spelling_rule(m.rule_id) or len(m.replacements) != 1:
                continue
            word = prose.text[m.offset : m.offset + m.error_length]
            if not word.strip() or any(ch.isdigit() for ch in word) or (len(word) > 1 and word.isupper()):
                continue
            span = prose.source_span(m.offset, m.offset + m.error_length)
            if span is not None:
                edits.append((span[0], span[1], m.replacements[0]))
        if not edits:
            return prose.source, 0
        out = prose.source
        last_start = len(out) + 1
        applied = 0
        for start, end, replacement in sorted(edits, reverse=True):
            if end > last_start:  # overlapping edits: keep the later one only
                continue
            out = out[:start] + replacement + out[end:]
            last_start = start
            applied += 1
        return out, applied
