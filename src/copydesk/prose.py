"""Prose out of Markdown for the checks, read from markdown-it's tokens (`copydesk.markup`).

    doc = document(body)                 # one parse of a text, shared by every view of it
    prose = doc.prose()                  # what LanguageTool reads, mapped back to the Markdown
    plain = doc.prose(keep_code=True, keep_data=True).text   # every readable word

The blocks come from markdown-it (one parse per text: `document` keeps the last ones, and a
`Draft` keeps its sections'); each line of a block is read without its container markers
(quotes, list items) and without inline Markdown, every character mapped back to the source.

- by default (grammar) it keeps prose only. YAML front matter, fenced and indented code,
  tables, HTML comments, lines that are one HTML tag, images, horizontal rules, link
  reference definitions and footnote markers go; heading, list, quote and emphasis markers
  go; links keep their text; inline code keeps its text (so the sentence around it stays
  whole) but is masked: not judged, not counted. Every heading, list item and paragraph
  becomes its own paragraph.
- `keep_code=True` keeps the lines of code blocks; `keep_data=True` keeps table cells,
  image alt text and the text of HTML comments.
"""

from __future__ import annotations

import re
import weakref
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from copydesk.markup import body_start, parse

if TYPE_CHECKING:
    from markdown_it.token import Token

__all__ = ["Block", "Document", "Prose", "document", "extract_prose", "plain_text", "strip_inline"]


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


_ATX_LINE = re.compile(r"^#{1,6}\s*")


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


class _Blocks:
    """The prose being written, block by block (a blank line between blocks)."""

    def __init__(self, b: _Builder) -> None:
        self.b = b
        self.blocks: list[Block] = []
        self.kind: str | None = None
        self.start = 0

    def open(self, kind: str) -> None:
        self.close()
        if self.blocks or self.b.length:
            self.b.insert("\n\n")
        self.kind, self.start = kind, self.b.length

    def close(self) -> None:
        if self.kind is not None and self.b.length > self.start:
            self.blocks.append(Block(self.kind, self.start, self.b.length))
        self.kind = None

    def next_line(self, kind: str) -> None:
        """Open a `kind` block unless one is open (then start a new line in it)."""
        if self.kind != kind:
            self.open(kind)
        elif self.b.length > self.start:
            self.b.insert("\n")

    def verbatim(self, kind: str, start: int, end: int) -> None:
        """A line of code or of a comment: copied as is, one source line per line."""
        self.next_line(kind)
        self.b.copy(start, end)

    def text(self, kind: str, start: int, end: int) -> None:
        """A line of text, without inline Markdown."""
        self.next_line(kind)
        _inline(self.b, start, end)


#: A line that is one block-level HTML tag (`<div>`, `</details>`): no prose in it.
_TAG_LINE = re.compile(r" {0,3}</?(?:div|p|table|tr|td|th|thead|tbody|ul|ol|li|pre|details|summary|section|figure|img"
                       r"|br|hr)\b[^>]*>[ \t]*", re.I)
_ATX = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)[ \t]*")
_ATX_CLOSE = re.compile(r"[ \t]+#+[ \t]*$|^#+[ \t]*$")
_LIST = re.compile(r"([ \t]*)([-*+]|\d{1,9}[.)])([ \t]+|$)(\[[ xX]\][ \t]+)?")
_QUOTE = re.compile(r" {0,3}>[ \t]?")
_FOOTNOTE_DEF = re.compile(r" {0,3}\[\^[^\]]+\]:[ \t]*")
#: The kind of a paragraph, by its innermost container.
_KINDS = {"list_item_open": "list", "blockquote_open": "quote"}


class _Reader:
    """One view of a `Document` as prose: its tokens' blocks, line by line."""

    def __init__(self, doc: Document, keep_code: bool, keep_data: bool) -> None:
        self.doc = doc
        self.src = doc.markdown
        self.keep_code = keep_code
        self.keep_data = keep_data
        self.b = _Builder(doc.markdown, keep_data=keep_data)
        self.out = _Blocks(self.b)
        #: How many list items start on each line (their marker is not prose).
        self.items: dict[int, int] = {}

    def read(self) -> Prose:
        containers: list[str] = []
        for token in self.doc.tokens:
            if token.type in _KINDS:
                containers.append(token.type)
                if token.type == "list_item_open" and token.map:
                    self.items[token.map[0]] = self.items.get(token.map[0], 0) + 1
            elif token.type in ("list_item_close", "blockquote_close"):
                containers.pop()
            elif token.map and token.type in _HANDLERS:
                self.out.close()
                _HANDLERS[token.type](self, token, _KINDS[containers[-1]] if containers else "paragraph")
        self.out.close()
        b = self.b
        return Prose(text=b.text(), source=self.src, index=b.index, blocks=tuple(self.out.blocks),
                     masked=tuple(b.masked), seams=tuple(b.seams))

    def content(self, n: int) -> tuple[int, int, bool]:
        """Line `n` without its quote markers and its list items' markers: (start, end, starts an item)."""
        start, end = self.doc.lines[n]
        while q := _QUOTE.match(self.src[start:end]):
            start += q.end()
        items = self.items.get(n, 0)
        if items and (item := _LIST.match(self.src[start:end])):  # the outer marker (`- - x` reads `- x`)
            start += item.end()
        return start, end, items > 0

    def text_lines(self, first: int, last: int, kind: str) -> None:
        """Lines of a paragraph: a list item's or a footnote's first line opens a block of its own."""
        for n in range(first, last):
            start, end, item = self.content(n)
            rest = self.src[start:end]
            if item:
                self.out.open("list")
            elif footnote := _FOOTNOTE_DEF.match(rest):
                self.out.open("paragraph")
                start += footnote.end()
            elif n == first:
                self.out.open(kind)
            self.out.text(self.out.kind or kind, start + len(rest) - len(rest.lstrip(" \t")), end)

    def paragraph(self, token: Token, kind: str) -> None:
        self.text_lines(*token.map, kind)

    def heading(self, token: Token, kind: str) -> None:
        first, last = token.map
        if token.markup.startswith("#"):
            start, end, _ = self.content(first)
            atx = _ATX.match(self.src[start:end])
            text_start = start + (atx.end() if atx else 0)
            closing = _ATX_CLOSE.search(self.src[text_start:end])
            self.out.open("heading")
            _inline(self.b, text_start, text_start + closing.start() if closing else end)
        else:  # setext: the lines above the underline
            self.text_lines(first, last - 1, "heading")
            self.out.kind = "heading"
        self.out.close()

    def fence(self, token: Token, kind: str) -> None:
        first = token.map[0]
        for n in range(first + 1, min(self.doc.fences[first][0], len(self.doc.lines))) if self.keep_code else ():
            start, end = self.doc.lines[n]
            if self.src[start:end].strip():
                self.out.verbatim("code", start, end)

    def code_block(self, token: Token, kind: str) -> None:
        for n in range(*token.map) if self.keep_code else ():
            start, end = self.doc.lines[n]
            code = self.src[start:end]
            if code.strip():
                self.out.verbatim("code", start + len(code) - len(code.lstrip()), end)
            else:
                self.out.close()

    def html_block(self, token: Token, kind: str) -> None:
        first, last = token.map
        start, end = self.doc.lines[first]
        if "<!--" in self.src[start:end] and token.content.lstrip().startswith("<!--"):
            self.comment(first, last, start + self.src[start:end].index("<!--") + 4)
            return
        for n in range(first, last):  # raw HTML is shown as text once exported: its words are prose
            start, end = self.doc.lines[n]
            line = self.src[start:end]
            if _TAG_LINE.fullmatch(line):
                self.out.close()
            elif line.strip():
                self.out.text(self.out.kind or "paragraph", start + len(line) - len(line.lstrip(" \t")), end)

    def comment(self, first: int, last: int, opening: int) -> None:
        for n in range(first, last):
            line_start, line_end = self.doc.lines[n]
            closing = self.src.find("-->", max(line_start, opening), line_end)
            inner_start = max(line_start, opening)
            inner_end = closing if closing != -1 else line_end
            if self.keep_data and self.src[inner_start:inner_end].strip():
                self.out.verbatim("comment", inner_start, inner_end)
            if closing != -1:
                break

    def table(self, token: Token, kind: str) -> None:
        first, last = token.map
        for n in range(first, last) if self.keep_data else ():
            if n != first + 1:  # the delimiter row (|---|) is no data
                self.row(*self.doc.lines[n])

    def row(self, row_start: int, row_end: int) -> None:
        """A table row: its cells, separated by spaces, each without inline Markdown."""
        self.out.next_line("table")
        cells = [m.span() for m in _CELL.finditer(self.src, row_start, row_end) if m.group().strip()]
        for k, (cell_start, cell_end) in enumerate(cells):
            if k:
                self.b.insert(" ")
            cell = self.src[cell_start:cell_end]
            lead = len(cell) - len(cell.lstrip())
            _inline(self.b, cell_start + lead, cell_start + len(cell.rstrip()))


_HANDLERS = {"paragraph_open": _Reader.paragraph, "heading_open": _Reader.heading, "fence": _Reader.fence,
             "code_block": _Reader.code_block, "html_block": _Reader.html_block, "table_open": _Reader.table,
             "hr": lambda reader, token, kind: None}


class Document:
    """One Markdown text, parsed once: its tokens and its views as prose (kept per options)."""

    def __init__(self, markdown: str) -> None:
        self.markdown = markdown
        start = body_start(markdown)
        #: markdown-it's tokens of the text after its front matter; `map` counts `lines`.
        self.tokens: list[Token] = parse(markdown[start:])
        #: (start, end) in `markdown` of each line after the front matter.
        self.lines = _lines(markdown, start)
        #: Lines of front matter before `lines` (line numbers of `tokens` are after it).
        self.offset = markdown.count("\n", 0, start)
        self._prose: dict[tuple[bool, bool], Prose] = {}

    @cached_property
    def fences(self) -> dict[int, tuple[int, bool]]:
        """Each fenced code block, by its opening line (0-based, after the front matter): the line
        after its content (its closing line, or where it stops when it is never closed), and whether
        it is closed."""
        found = {}
        for token in self.tokens:
            if token.type == "fence" and token.map:
                first, last = token.map
                closing = self.line(last - 1).lstrip(" \t>").strip() if last - 1 > first else ""
                closed = closing.startswith(token.markup) and closing.strip(token.markup[0]) == ""
                # A fence never closed at the top level runs to the end of the text (its last line break too).
                end = last - 1 if closed else (last if token.level else self.markdown.count("\n") + 1 - self.offset)
                found[first] = (end, closed)
        return found

    def headings(self) -> list[tuple[int, Token]]:
        """Each heading outside block quotes: (its first line, 0-based in the whole text, its
        `heading_open` token: `tag` h1-h6, `markup` `#`s or a setext `=`/`-`, `map`)."""
        found = []
        quoted = 0
        for token in self.tokens:
            quoted += {"blockquote_open": 1, "blockquote_close": -1}.get(token.type, 0)
            if token.type == "heading_open" and not quoted and token.map:
                found.append((self.offset + token.map[0], token))
        return found

    def lines_outside_fences(self) -> tuple[list[tuple[int, str]], int | None]:
        """(1-based line number, line) of every line of the text outside fenced code (fences included),
        and the line of the first fence never closed (None when every fence is closed)."""
        inside: set[int] = set()
        unclosed = None
        for first, (end, closed) in self.fences.items():
            inside.update(range(self.offset + first, self.offset + end + closed))
            if not closed and unclosed is None:
                unclosed = self.offset + first + 1
        lines = self.markdown.split("\n")
        return [(n, line) for n, line in enumerate(lines, start=1) if n - 1 not in inside], unclosed

    def line(self, n: int) -> str:
        """The text of line `n` (0-based, after the front matter)."""
        start, end = self.lines[n]
        return self.markdown[start:end]

    def prose(self, keep_code: bool = False, keep_data: bool = False) -> Prose:
        """The prose (see the module docstring); one `Prose` is shared: do not change its `index`."""
        key = (keep_code, keep_data)
        if key not in self._prose:
            self._prose[key] = _Reader(self, keep_code, keep_data).read()
        return self._prose[key]


#: Documents kept by `document` besides those a `Draft` holds: every section of a few articles at once.
PROSE_CACHE = 128
#: Every `Document` still held somewhere (by a `Draft`): found again whatever the cache dropped.
_LIVE: weakref.WeakValueDictionary[str, Document] = weakref.WeakValueDictionary()


@lru_cache(maxsize=PROSE_CACHE)
def _recent(markdown: str) -> Document:
    return Document(markdown)


def document(markdown: str) -> Document:
    """The parsed `markdown`: the same object for the same text while a `Draft` holds it (its
    `documents`) or while it is among the last `PROSE_CACHE` ones; parsed again only after that."""
    found = _LIVE.get(markdown)
    if found is None:
        found = _LIVE.setdefault(markdown, _recent(markdown))
    return found


def extract_prose(markdown: str, *, keep_code: bool = False, keep_data: bool = False) -> Prose:
    """The prose of a Markdown document, one paragraph per block (see the module docstring).

    `keep_code`: the lines of fenced and indented code blocks stay, as "code" blocks.
    `keep_data`: table cells ("table" blocks), image alt text and HTML comments stay.
    """
    return document(markdown).prose(keep_code, keep_data)


def plain_text(markdown: str, *, keep_code: bool = True) -> str:
    """Every word a reader of the Markdown could see, without its syntax, one line per
    source line (blocks separated by a blank line).

    Code is kept by default (words in code are words, and moderation must see them);
    `keep_code=False` drops it (repetition: code repeats itself legitimately).
    """
    return extract_prose(markdown, keep_code=keep_code, keep_data=True).text


def strip_inline(line: str) -> str:
    """One line (a title, a heading) without a heading marker or inline Markdown:
    `## **Intro** to [asyncio](u)` -> `Intro to asyncio`. Markup that looks like HTML
    stays as it is (`Vec<T>`): making HTML safe is the exporter's business, not this."""
    line = _ATX_LINE.sub("", line.strip(), count=1)
    b = _Builder(line, keep_data=True, keep_html=True)
    _inline(b, 0, len(line))
    return b.text().strip()
