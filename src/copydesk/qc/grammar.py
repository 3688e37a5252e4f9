"""Grammar and spelling of an article's prose, checked by a LanguageTool server.

    with languagetool_url(settings) as url, GrammarChecker(url, "en-US") as checker:
        report = checker.check(markdown)        # a GrammarReport

Only prose is checked. `extract_prose` turns the Markdown into plain text and
keeps, for every character, where it came from, so that issues point back at
the Markdown and autocorrections are applied to the Markdown itself:

- YAML front matter, fenced and indented code blocks, HTML comments, images,
  horizontal rules, link reference definitions and footnote markers are removed;
- tables are removed whole: cells are data and fragments, not sentences;
- heading, list, blockquote and emphasis markers go; links keep their text;
- inline code keeps its text so the sentence around it stays grammatical
  ("an `init` call"), but issues inside it are dropped and it does not count as words;
- every heading, list item and paragraph becomes its own paragraph.
  Headings get no added full stop: LanguageTool does not ask for final
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

Words are counted with `count_words` (re-exported from `copydesk.text`, the
count the CSV shows): CJK characters one each, other words as letter runs.

Everything the server or language_tool_python raises becomes a
`copydesk.errors.ServiceError`, including a language the server does not
support; the QC gate turns that into needs_review.
"""

from __future__ import annotations

import asyncio
import re
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from copydesk.errors import ServiceError
from copydesk.text import count_words

__all__ = [
    "GrammarChecker",
    "GrammarReport",
    "Prose",
    "count_words",
    "extract_prose",
    "is_spelling_rule",
]

#: Rule ids of spelling checkers (MORFOLOGIK_RULE_EN_US, GERMAN_SPELLER_RULE, HUNSPELL_RULE, ...).
_SPELLING_RULE = re.compile(r"MORFOLOGIK|SPELLER|HUNSPELL|SPELLING")
#: Rules that misread Markdown structure as prose at the start/end of a heading or list item.
_START_RULES = frozenset({"UPPERCASE_SENTENCE_START"})
_END_RULES = frozenset({"PUNCTUATION_PARAGRAPH_END"})
TOP_RULES = 5


def is_spelling_rule(rule_id: str) -> bool:
    return bool(_SPELLING_RULE.search(rule_id))


# =========================================================================== prose


@dataclass(frozen=True)
class Block:
    """One paragraph of prose: its kind and its [start, end) range in `Prose.text`."""

    kind: str  # "paragraph" | "heading" | "list" | "quote"
    start: int
    end: int


@dataclass(frozen=True)
class Prose:
    """Plain text extracted from Markdown, mapped back to the Markdown."""

    text: str
    source: str
    #: For each character of `text`, its index in `source`, or -1 when inserted.
    index: array
    blocks: tuple[Block, ...]
    #: [start, end) ranges of `text` that are shown to LanguageTool but not judged (inline code).
    masked: tuple[tuple[int, int], ...]
    #: Offsets of `text` where source content was removed from inside a line.
    seams: tuple[int, ...]

    def source_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The source range of text[start:end] when it was copied verbatim in one piece."""
        if start >= end or end > len(self.index):
            return None
        first = self.index[start]
        if first < 0:
            return None
        for k in range(start, end):
            if self.index[k] != first + (k - start):
                return None
        return first, first + (end - start)

    def source_line(self, offset: int) -> int | None:
        """1-based line of the source at text offset `offset`, if it maps to the source."""
        if not 0 <= offset < len(self.index) or self.index[offset] < 0:
            return None
        return self.source.count("\n", 0, self.index[offset]) + 1

    def countable_text(self) -> str:
        """`text` with masked ranges (inline code) blanked: what words are counted on."""
        if not self.masked:
            return self.text
        chars = list(self.text)
        for start, end in self.masked:
            for k in range(start, end):
                chars[k] = " "
        return "".join(chars)

    def block_at(self, offset: int) -> Block | None:
        starts = [b.start for b in self.blocks]
        i = bisect_right(starts, offset) - 1
        if i >= 0 and self.blocks[i].start <= offset <= self.blocks[i].end:
            return self.blocks[i]
        return None


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str] = []
        self.length = 0
        self.index = array("l")
        self.masked: list[tuple[int, int]] = []
        self.seams: list[int] = []

    def copy(self, start: int, end: int) -> None:
        if end <= start:
            return
        self.parts.append(self.source[start:end])
        self.index.extend(range(start, end))
        self.length += end - start

    def insert(self, text: str) -> None:
        self.parts.append(text)
        self.index.extend([-1] * len(text))
        self.length += len(text)

    def seam(self) -> None:
        self.seams.append(self.length)

    def text(self) -> str:
        return "".join(self.parts)


_FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)[ \t]*")
_ATX_CLOSE = re.compile(r"[ \t]+#+[ \t]*$|^#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])([ \t]+|$)(\[[ xX]\][ \t]+)?")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_TABLE_DELIM = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]^][^\]]*\]:[ \t]*\S")
_FOOTNOTE_DEF = re.compile(r"^ {0,3}\[\^[^\]]+\]:[ \t]*")
_HTML_COMMENT_START = re.compile(r"^[ \t]*<!--")
_HTML_BLOCK = re.compile(r"^ {0,3}</?(?:div|p|table|tr|td|th|thead|tbody|ul|ol|li|pre|details|summary|section|figure|img|br|hr)\b[^>]*>[ \t]*$", re.I)

_INLINE = re.compile(
    r"""
      (?P<code>(?P<ticks>`+)(?P<codebody>.+?)(?<!`)(?P=ticks)(?!`))
    | (?P<image>!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\]))
    | (?P<footref>\[\^[^\]]+\])
    | (?P<link>\[(?P<linktext>[^\]]+)\](?:\((?P<target>[^)]*)\)|\[[^\]]*\]))
    | (?P<autolink><(?:https?|ftp|mailto):[^>\s]+>)
    | (?P<br><br\s*/?>)
    | (?P<html></?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->)
    | (?P<escape>\\[\\`*_{}\[\]()#+\-.!|>~])
    | (?P<emph>(?<!\s)\*{1,3}|\*{1,3}(?!\s)|~~|(?<![^\W_])_{1,3}|_{1,3}(?![^\W_]))
    """,
    re.VERBOSE,
)


def _inline(b: _Builder, start: int, end: int) -> None:
    """Copy source[start:end] (one line's content) without inline Markdown syntax."""
    src = b.source
    pos = start
    for m in _INLINE.finditer(src, start, end):
        b.copy(pos, m.start())
        pos = m.end()
        kind = m.lastgroup
        if kind == "code":
            body_start, body_end = m.span("codebody")
            # Trim the one space CommonMark strips from `` ` x ` ``.
            if body_end - body_start > 2 and src[body_start] == " " and src[body_end - 1] == " ":
                body_start, body_end = body_start + 1, body_end - 1
            mask_start = b.length
            b.copy(body_start, body_end)
            b.masked.append((mask_start, b.length))
        elif kind == "link":
            _inline(b, *m.span("linktext"))
        elif kind == "autolink":
            b.copy(m.start() + 1, m.end() - 1)
        elif kind == "br":
            b.insert(" ")
        elif kind == "escape":
            b.copy(m.start() + 1, m.end())
        elif kind in ("image", "footref", "html"):
            b.seam()
        # emph: the markers are simply dropped
    b.copy(pos, end)


def _lines(source: str, start: int) -> list[tuple[int, int]]:
    """(start, end) of each line of source[start:], end excluding the line break."""
    out = []
    pos = start
    n = len(source)
    while pos < n:
        nl = source.find("\n", pos)
        if nl == -1:
            nl = n
        end = nl - 1 if nl > pos and source[nl - 1] == "\r" else nl
        out.append((pos, end))
        pos = nl + 1
    return out


def _skip_front_matter(source: str) -> int:
    start = 1 if source.startswith("\ufeff") else 0
    first_end = source.find("\n", start)
    if first_end == -1 or source[start:first_end].rstrip("\r \t") != "---":
        return start
    for line_start, line_end in _lines(source, first_end + 1):
        if _FRONT_MATTER_END.match(source[line_start:line_end]):
            return min(len(source), line_end + 1 + (source[line_end : line_end + 1] == "\r"))
    return start  # no closing line: not front matter


def _is_table_start(source: str, lines: list[tuple[int, int]], i: int) -> bool:
    """A header row with '|' followed by a delimiter row (|---|:---:|)."""
    if i + 1 >= len(lines):
        return False
    header = source[lines[i][0] : lines[i][1]]
    delim = source[lines[i + 1][0] : lines[i + 1][1]]
    return "|" in header and "-" in delim and bool(_TABLE_DELIM.match(delim))


def extract_prose(markdown: str) -> Prose:
    """The prose of a Markdown document, one paragraph per block (see the module docstring)."""
    b = _Builder(markdown)
    lines = _lines(markdown, _skip_front_matter(markdown))
    blocks: list[Block] = []
    current: dict[str, Any] | None = None  # {"kind": str, "start": int}
    in_list = False  # the last block was a list item: indented lines continue it

    def open_block(kind: str) -> None:
        nonlocal current
        close_block()
        if blocks or b.length:
            b.insert("\n\n")
        current = {"kind": kind, "start": b.length}

    def close_block() -> None:
        nonlocal current
        if current is not None:
            if b.length > current["start"]:
                blocks.append(Block(current["kind"], current["start"], b.length))
            current = None

    def add_line(content_start: int, content_end: int, kind: str) -> None:
        # A text line continues the open block (paragraph, list item, quote) or opens one.
        if current is None:
            open_block(kind)
        elif b.length > current["start"]:
            b.insert("\n")
        _inline(b, content_start, content_end)

    i = 0
    n = len(lines)
    while i < n:
        start, end = lines[i]
        line = markdown[start:end]
        stripped = line.strip()

        fence = _FENCE.match(line)
        if fence:
            close_block()
            marker = fence.group(1)
            i += 1
            while i < n:
                inner = markdown[lines[i][0] : lines[i][1]].strip()
                if inner.startswith(marker[0] * len(marker)) and inner.strip(marker[0]) == "":
                    break
                i += 1
            i += 1
            in_list = False
            continue

        if not stripped:
            close_block()
            i += 1
            continue

        if _HTML_COMMENT_START.match(line):
            close_block()
            while i < n and "-->" not in markdown[lines[i][0] : lines[i][1]]:
                i += 1
            i += 1
            continue

        if _HTML_BLOCK.match(line) or _LINK_DEF.match(line):
            close_block()
            i += 1
            continue

        indent = len(line) - len(line.lstrip(" \t"))
        expanded_indent = len(line[:indent].expandtabs(4))
        if expanded_indent >= 4 and current is None and not in_list:
            # Indented code block: up to the next blank line.
            while i < n and markdown[lines[i][0] : lines[i][1]].strip():
                i += 1
            continue

        if _is_table_start(markdown, lines, i):
            close_block()
            while i < n and "|" in markdown[lines[i][0] : lines[i][1]]:
                i += 1
            in_list = False
            continue

        setext = _SETEXT.match(line)
        if setext and current is not None and current["kind"] == "paragraph":
            current["kind"] = "heading"
            close_block()
            i += 1
            in_list = False
            continue

        if _HR.match(line):
            close_block()
            i += 1
            in_list = False
            continue

        # Blockquote markers (nested ones too) are dropped; the rest is read as a line.
        content_start = start
        quoted = False
        while q := _QUOTE.match(markdown[content_start:end]):
            content_start += q.end()
            quoted = True
        rest = markdown[content_start:end]

        atx = _ATX.match(rest)
        if atx:
            text_start = content_start + atx.end()
            text_end = end
            closing = _ATX_CLOSE.search(markdown[text_start:end])
            if closing:
                text_end = text_start + closing.start()
            open_block("heading")
            _inline(b, text_start, text_end)
            close_block()
            in_list = False
            i += 1
            continue

        item = _LIST.match(rest)
        if item:
            open_block("list")
            _inline(b, content_start + item.end(), end)
            in_list = True
            i += 1
            continue

        footnote = _FOOTNOTE_DEF.match(rest)
        if footnote:
            open_block("paragraph")
            _inline(b, content_start + footnote.end(), end)
            i += 1
            continue

        text_start = content_start + (len(rest) - len(rest.lstrip(" \t")))
        if current is None:
            continues_list = in_list and indent > 0
            add_line(text_start, end, "quote" if quoted else ("list" if continues_list else "paragraph"))
            in_list = continues_list
        else:
            add_line(text_start, end, current["kind"])
        i += 1

    close_block()
    return Prose(
        text=b.text(),
        source=markdown,
        index=b.index,
        blocks=tuple(blocks),
        masked=tuple(b.masked),
        seams=tuple(b.seams),
    )


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
                + "; add its org.languagetool:language-XX module to scripts/languagetool/pom.xml and run "
                "scripts/fetch-languagetool.sh, or change the spec's language"
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
