"""Text handling in one place: Markdown to plain text, word counts, cutting text.

    prose = extract_prose(markdown)          # what LanguageTool reads, mapped back to the Markdown
    plain = plain_text(markdown)             # every readable word: moderation, repetition, headings
    line = strip_inline("**Title:** [x](u)") # one line without inline Markdown: titles, headings
    words = count_words(plain, "zh-CN")      # the count the CSV and the length check show

There is one Markdown reader, `extract_prose`; the other views are options of it:

- by default (grammar) it keeps prose only. YAML front matter, fenced and
  indented code, tables, HTML comments and blocks, images, horizontal rules,
  link reference definitions and footnote markers go; heading, list, quote and
  emphasis markers go; links keep their text; inline code keeps its text (so
  the sentence around it stays whole) but is masked: not judged, not counted.
  Every heading, list item and paragraph becomes its own paragraph, and every
  character of the result knows where it came from in the Markdown.
- `keep_code=True` keeps the lines of code blocks; `keep_data=True` keeps table
  cells, image alt text and the text of HTML comments. `plain_text` is both:
  moderation must see every word a reader could (repetition drops code).

Words (`count_words`, `words`): one definition for every caller.

- CJK ideographs (every Han block, and the marks 々 〇) count one word each in
  every language: Chinese and Japanese are written without spaces, and length
  in characters is their usual measure.
- In Japanese (`ja`), kana count one each too, for the same reason; in other
  languages a kana run is part of a whitespace word.
- Everything else counts per whitespace-separated word that holds at least one
  letter or digit ("well-known", "3.14", "e.g." are one word; "—" or "-" none).
  Korean is written with spaces: a Hangul word is one word. Thai, Lao, Khmer
  and Burmese are also written without spaces but are not segmented here: a
  run of them counts as one word (an undercount).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "Block",
    "Prose",
    "alnum_runs",
    "count_words",
    "extract_prose",
    "is_cjk_language",
    "plain_text",
    "primary_language",
    "script_counts",
    "split_sentences",
    "strip_inline",
    "truncate",
    "words",
]

# =========================================================================== prose


@dataclass(frozen=True)
class Block:
    """One paragraph of prose: its kind and its [start, end) range in `Prose.text`."""

    kind: str  # "paragraph" | "heading" | "list" | "quote"; with keep_code "code", with keep_data "table" | "comment"
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


#: 0, 1, 2, ...: `_Builder.copy` extends an index with a slice of it (a memory copy) rather than
#: with a range (one Python int per character). Replaced, never changed, when a longer one is needed.
_POSITIONS = array("l", range(1 << 16))


def _positions(length: int) -> array:
    global _POSITIONS
    positions = _POSITIONS
    if len(positions) < length:
        positions = _POSITIONS = array("l", range(max(length, 2 * len(positions))))
    return positions


class _Builder:
    def __init__(self, source: str, *, keep_data: bool = False, keep_html: bool = False) -> None:
        self.source = source
        self.keep_data = keep_data
        self.keep_html = keep_html
        self.parts: list[str] = []
        self.length = 0
        self.index = array("l")
        self.masked: list[tuple[int, int]] = []
        self.seams: list[int] = []
        self._positions = _positions(len(source))

    def copy(self, start: int, end: int) -> None:
        if end <= start:
            return
        self.parts.append(self.source[start:end])
        self.index.extend(self._positions[start:end])
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
#: Block syntax other modules read lines with (the Markdown check): one definition.
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)[ \t]*")
_ATX_CLOSE = re.compile(r"[ \t]+#+[ \t]*$|^#+[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^([ \t]*)([-*+]|\d{1,9}[.)])([ \t]+|$)(\[[ xX]\][ \t]+)?")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_TABLE_DELIM = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]^][^\]]*\]:[ \t]*\S")
_FOOTNOTE_DEF = re.compile(r"^ {0,3}\[\^[^\]]+\]:[ \t]*")
_HTML_COMMENT_START = re.compile(r"^[ \t]*<!--")
_HTML_BLOCK = re.compile(r"^ {0,3}</?(?:div|p|table|tr|td|th|thead|tbody|ul|ol|li|pre|details|summary|section|figure|img|br|hr)\b[^>]*>[ \t]*$", re.I)

#: A table cell: the text between unescaped pipes.
_CELL = re.compile(r"(?:\\.|[^|\\])+")

#: Inline syntax. The leading lookahead names every alternative's first character, so
#: that the scan skips plain text quickly (ten times faster on long paragraphs).
_INLINE = re.compile(
    r"""
    (?=[`!\[<\\*_~])
    (?:
      (?P<code>(?P<ticks>`+)(?P<codebody>.+?)(?<!`)(?P=ticks)(?!`))
    | (?P<image>!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\]))
    | (?P<footref>\[\^[^\]]+\])
    | (?P<link>\[(?P<linktext>[^\]]+)\](?:\((?P<target>[^)]*)\)|\[[^\]]*\]))
    | (?P<autolink><(?:https?|ftp|mailto):[^>\s]+>)
    | (?P<br><br\s*/?>)
    | (?P<html></?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--.*?-->)
    | (?P<escape>\\[\\`*_{}\[\]()#+\-.!|>~])
    | (?P<emph>(?<!\s)\*{1,3}|\*{1,3}(?!\s)|~~|(?<![^\W_])_{1,3}|_{1,3}(?![^\W_]))
    )
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
        elif kind == "image" and b.keep_data:
            b.seam()
            _inline(b, m.start() + 2, m.start() + 2 + m.group("image")[2:].index("]"))
            b.seam()
        elif kind == "html" and b.keep_html:
            b.copy(m.start(), m.end())
        elif kind == "html" and b.keep_data and m.group().startswith("<!--"):
            b.seam()
            b.copy(m.start() + 4, m.end() - 3)
            b.seam()
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


def extract_prose(markdown: str, *, keep_code: bool = False, keep_data: bool = False) -> Prose:
    """The prose of a Markdown document, one paragraph per block (see the module docstring).

    `keep_code`: the lines of fenced and indented code blocks stay, as "code" blocks.
    `keep_data`: table cells ("table" blocks), image alt text and HTML comments stay.

    The QC checks read the same section several times: the last results are kept
    (`PROSE_CACHE` of them), and one `Prose` may be returned to several callers: do not
    change its `index`.
    """
    return _extract_prose(markdown, keep_code, keep_data)


#: Results of `extract_prose` kept: every view of every section of a few articles at once.
PROSE_CACHE = 128


@lru_cache(maxsize=PROSE_CACHE)
def _extract_prose(markdown: str, keep_code: bool, keep_data: bool) -> Prose:
    b = _Builder(markdown, keep_data=keep_data)
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

    def add_verbatim(kind: str, content_start: int, content_end: int) -> None:
        # A line of code or of a comment: copied as is, one source line per line.
        if current is None or current["kind"] != kind:
            open_block(kind)
        elif b.length > current["start"]:
            b.insert("\n")
        b.copy(content_start, content_end)

    def add_row(row_start: int, row_end: int) -> None:
        # A table row: its cells, separated by spaces, each without inline Markdown.
        if current is None or current["kind"] != "table":
            open_block("table")
        elif b.length > current["start"]:
            b.insert("\n")
        cells = [m.span() for m in _CELL.finditer(markdown, row_start, row_end) if m.group().strip()]
        for k, (cell_start, cell_end) in enumerate(cells):
            if k:
                b.insert(" ")
            cell = markdown[cell_start:cell_end]
            lead = len(cell) - len(cell.lstrip())
            _inline(b, cell_start + lead, cell_start + len(cell.rstrip()))

    i = 0
    n = len(lines)
    while i < n:
        start, end = lines[i]
        line = markdown[start:end]
        stripped = line.strip()

        fence = FENCE.match(line)
        if fence:
            close_block()
            marker = fence.group(1)
            i += 1
            while i < n:
                inner = markdown[lines[i][0] : lines[i][1]].strip()
                if inner.startswith(marker[0] * len(marker)) and inner.strip(marker[0]) == "":
                    break
                if keep_code and inner:
                    add_verbatim("code", *lines[i])
                i += 1
            close_block()
            i += 1
            in_list = False
            continue

        if not stripped:
            close_block()
            i += 1
            continue

        if _HTML_COMMENT_START.match(line):
            close_block()
            opening = start + line.index("<!--") + 4
            while i < n:
                line_start, line_end = lines[i]
                closing = markdown.find("-->", max(line_start, opening), line_end)
                if keep_data:
                    inner_start = max(line_start, opening)
                    inner_end = closing if closing != -1 else line_end
                    if markdown[inner_start:inner_end].strip():
                        add_verbatim("comment", inner_start, inner_end)
                i += 1
                if closing != -1:
                    break
            close_block()
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
                if keep_code:
                    line_start, line_end = lines[i]
                    code = markdown[line_start:line_end]
                    add_verbatim("code", line_start + len(code) - len(code.lstrip()), line_end)
                i += 1
            close_block()
            continue

        if _is_table_start(markdown, lines, i):
            close_block()
            first = i
            while i < n and "|" in markdown[lines[i][0] : lines[i][1]]:
                if keep_data and i != first + 1:  # the delimiter row (|---|) is no data
                    add_row(*lines[i])
                i += 1
            close_block()
            in_list = False
            continue

        setext = SETEXT.match(line)
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



def plain_text(markdown: str, *, keep_code: bool = True) -> str:
    """Every word a reader of the Markdown could see, without its syntax, one line per
    source line (blocks separated by a blank line).

    Code is kept by default (words in code are words, and moderation must see them);
    `keep_code=False` drops it (repetition: code repeats itself legitimately).
    """
    return extract_prose(markdown, keep_code=keep_code, keep_data=True).text


_ATX_LINE = re.compile(r"^#{1,6}\s*")


def strip_inline(line: str) -> str:
    """One line (a title, a heading) without a heading marker or inline Markdown:
    `## **Intro** to [asyncio](u)` -> `Intro to asyncio`. Markup that looks like HTML
    stays as it is (`Vec<T>`): making HTML safe is the exporter's business, not this."""
    line = _ATX_LINE.sub("", line.strip(), count=1)
    b = _Builder(line, keep_data=True, keep_html=True)
    _inline(b, 0, len(line))
    return b.text().strip()


# =========================================================================== words

#: Han ideographs (CJK Unified Ideographs, extensions A to H, compatibility ideographs)
#: and the ideographic marks 々 〇 〡-〩 〸-〻: one word each, in every language.
_IDEOGRAPHS = "\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: Hiragana and katakana letters (not their punctuation ゠ ・): one word each in Japanese.
_KANA = "\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9d"

_PER_CHARACTER = {
    False: re.compile(f"[{_IDEOGRAPHS}]|[^\\s{_IDEOGRAPHS}]+"),
    True: re.compile(f"[{_IDEOGRAPHS}{_KANA}]|[^\\s{_IDEOGRAPHS}{_KANA}]+"),
}
_ALNUM = re.compile(r"[^\W_]")


def primary_language(language: str) -> str:
    """The primary subtag of a language tag, lower case: "zh-CN", "zh_cn" -> "zh"."""
    return re.split(r"[-_]", language.strip(), maxsplit=1)[0].lower()


def is_cjk_language(language: str) -> bool:
    """Chinese, Cantonese or Japanese: written without spaces between words."""
    return primary_language(language) in {"zh", "yue", "ja"}


_IDEOGRAPH_RE = re.compile(f"[{_IDEOGRAPHS}]")
_KANA_RE = re.compile(f"[{_KANA}]")
_LETTER_RE = re.compile(r"[^\W\d_]")


@lru_cache(maxsize=256)  # the language check asks three times about each section
def script_counts(text: str) -> tuple[int, int, int]:
    """(Han ideographs, kana, letters of any script) in `text`: what a language check
    needs to tell Chinese or Japanese from text written in other scripts."""
    return len(_IDEOGRAPH_RE.findall(text)), len(_KANA_RE.findall(text)), len(_LETTER_RE.findall(text))


@lru_cache(maxsize=64)
def _is_japanese(language: str) -> bool:
    return primary_language(language) == "ja"


def words(text: str, language: str = "") -> list[str]:
    """The words of plain `text` in order, as `count_words` counts them (see the module
    docstring): single CJK characters, and whitespace words holding a letter or digit."""
    units = _PER_CHARACTER[_is_japanese(language)].findall(text)
    return [unit for unit in units if unit.isalnum() or _ALNUM.search(unit)]  # (isalnum: the quick yes)


#: The runs of letters and digits of `words`: a CJK character that is a letter, or a run of
#: letters and digits (`[^\W_]` is exactly `str.isalnum`) of other scripts.
_ALNUM_RUNS = {
    False: re.compile(f"(?=[^\\W_])[{_IDEOGRAPHS}]|[^\\W_{_IDEOGRAPHS}]+"),
    True: re.compile(f"(?=[^\\W_])[{_IDEOGRAPHS}{_KANA}]|[^\\W_{_IDEOGRAPHS}{_KANA}]+"),
}


def alnum_runs(text: str, language: str = "") -> list[str]:
    """Each word of `words(text, language)` split at every character that is not a letter or
    digit, in order, empty parts left out: `words("os.path don't 中文")` -> `["os.path", "don't",
    "中", "文"]`, `alnum_runs` of it -> `["os", "path", "don", "t", "中", "文"]`."""
    return _ALNUM_RUNS[_is_japanese(language)].findall(text)


def count_words(text: str, language: str = "") -> int:
    """How many words plain `text` holds, for an article in `language` (a BCP 47 tag such
    as "en-US", "zh-CN" or "ja"; "" for no particular language)."""
    return len(words(text, language))


# =========================================================================== sentences

# English sentence ends need a following space (so 3.14 stays whole); Chinese
# ones do not. Closing quotes and brackets stay with their sentence. Line breaks
# always end a sentence (headings, list items).
_SENTENCE_END = re.compile(r"""[.!?]["'”’)\]]*(?=\s)|[。！？；!?]["'”’」』）)\]]*""")


def split_sentences(text: str) -> list[str]:
    """Split plain text into sentences at . ! ? (followed by a space), 。！？； and line breaks."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for match in _SENTENCE_END.finditer(line):
            sentences.append(line[start : match.end()])
            start = match.end()
        sentences.append(line[start:])
    return [s.strip() for s in sentences if s.strip()]


def truncate(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, at a word boundary when there is one in its
    second half, plus "…" when anything was cut: at most `limit + 1` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-–—") + "…"
