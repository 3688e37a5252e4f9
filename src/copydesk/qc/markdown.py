"""Markdown integrity of a section: what the editor sees is what a reader gets.

    unclosed code fence   swallows every later heading when rendered          -> soft
    extra heading         a `##` heading (or a setext `===`/`---` one) inside a section
                          adds a section the outline does not have: demoted to `###`
                          (`extra_headings: demote`, recorded) or held (`review`)
    second title          a `#` heading inside a section (a repeated or second H1)  -> soft
    code-only section     the whole section in one fenced block, or a fence marked
                          `markdown`/`md` (prose shown as code)                    -> soft
    hidden or raw markup  HTML comments (invisible when rendered), raw HTML elements (the
                          exporter escapes them, so readers see the markup), link
                          reference definitions (vanish), lines indented 4+ spaces after
                          a blank line outside a list (become code)             -> soft

`demote_headings(body)` returns the body with extra headings demoted and what changed.
Everything is read from the body's markdown-it tokens (`copydesk.prose.document`: one parse per
text, the draft's, shared with the prose every other check reads): fences, headings, HTML blocks
and inline tags (a tag is raw HTML by its name and attributes), reference definitions (lines no
block holds) and indented code blocks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft, Repair, repair_each
from copydesk.qc.content import CheckResult, findings_check
from copydesk.qc.evidence import finding, place
from copydesk.prose import Document, document

if TYPE_CHECKING:
    from markdown_it.token import Token

_TOP_HEADING = re.compile(r"^ {0,3}(#{1,2})(?=[ \t]|$)[ \t]*(.*)$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
#: A tag: its name, then what follows it up to `>` or, for a tag split over lines, the line's end
#: (`<svg/onload=…>`, `<img src=x` + `onerror=…>` on the next line).
_HTML_TAG = re.compile(r"</?([a-zA-Z][a-zA-Z0-9-]*)(?=[\s/>]|$)([^<>]*)(>|$)")
#: HTML elements a model writes as markup (the exporter shows them as text: `copydesk.sanitize`).
#: Inline formatting it lets through (`<b>`, `<em>`, `<br>`) is fine; `List<String>` is prose.
_HTML_ELEMENTS = frozenset(
    "a abbr article aside audio blockquote body button caption center div dl dt dd embed fieldset figcaption "
    "figure font footer form h1 h2 h3 h4 h5 h6 head header html iframe img input label li link main meta nav "
    "object ol option p picture pre script section select source span style svg table tbody td textarea tfoot "
    "th thead title tr ul video".split()
)
_INLINE_CODE = re.compile(r"(`+).+?\1")
_AUTOLINK = re.compile(r"<(?:https?|ftp|mailto):[^>\s]+>")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]^][^\]]*\]:[ \t]*\S")


def _raw_html(tag: re.Match[str]) -> bool:
    """A known HTML element, a tag with attributes, or one split over lines with an `=` in it
    (`a <b and c` is prose, `List<String>` too)."""
    name, rest, closed = tag.group(1).lower(), tag.group(2), tag.group(3) == ">"
    return name in _HTML_ELEMENTS or "=" in rest or (closed and bool(rest.strip(" \t/")))


def lines_outside_fences(body: str) -> tuple[list[tuple[int, str]], int | None]:
    """(1-based line number, line) of every line outside fenced code, and the line of an
    unclosed fence (None when every fence is closed): from the body's markdown-it tokens."""
    return document(body).lines_outside_fences()


def _extra_headings(body: str) -> list[tuple[int, str, str]]:
    """(line number, kind, text) of `#`/`##` and setext headings outside code and quotes, from the
    body's tokens; an ATX heading counts where its line starts with it (not a list item's), a setext
    one with the line above its underline (no list item, no lone `-`)."""
    doc = document(body)
    lines = body.split("\n")
    found = []
    for first, token in doc.headings():
        if token.tag not in ("h1", "h2"):
            continue
        if token.markup.startswith("#"):
            if _TOP_HEADING.match(lines[first]):
                found.append((first + 1, "atx", lines[first]))
            continue
        last = first + token.map[1] - token.map[0]
        if (not _TOP_HEADING.match(lines[last - 2]) and not _LIST_ITEM.match(lines[last - 2])
                and lines[last - 1].strip() != "-"):
            found.append((last, "setext", lines[last - 2]))
    return found


def demote_headings(body: str) -> tuple[str, list[str]]:
    """`body` with every `##`/setext heading outside code turned into a `###` heading. A `#`
    heading is a second title, not a sub-heading: it is left for the check to hold."""
    found = [f for f in _extra_headings(body) if not _second_title(f)]
    if not found:
        return body, []
    lines = body.split("\n")
    changed = []
    drop: set[int] = set()
    for n, kind, text in found:
        if kind == "atx":
            m = _TOP_HEADING.match(lines[n - 1])
            assert m is not None
            lines[n - 1] = f"### {m.group(2).strip()}"
        else:
            lines[n - 2] = f"### {text.strip()}"
            drop.add(n - 1)
        changed.append(text.strip())
    return "\n".join(line for k, line in enumerate(lines) if k not in drop), changed


def _second_title(found: tuple[int, str, str]) -> bool:
    m = _TOP_HEADING.match(found[2]) if found[1] == "atx" else None
    return bool(m and len(m.group(1)) == 1)


def _code_only(body: str) -> str | None:
    """The opening line when the whole section is one fenced code block, or a fence marked as
    Markdown (`markdown`, `md`): prose a reader gets as code."""
    doc = document(body)
    lines = body.split("\n")
    for token in doc.tokens:
        if token.type == "fence" and token.map and token.info.strip().lower() in ("markdown", "md"):
            return _as_stripped(lines, doc.offset + token.map[0])
    top = [token for token in doc.tokens if token.level == 0]
    if len(top) == 1 and top[0].type == "fence" and top[0].map and doc.fences[top[0].map[0]][1]:
        first, last = (doc.offset + n for n in top[0].map)
        if not any(line.strip() for line in lines[:first] + lines[last:]):
            return _as_stripped(lines, first)
    return None


def _as_stripped(lines: list[str], n: int) -> str:
    """Line `n` as it stands in the stripped body (the first and last lines lose their outer blanks)."""
    filled = [k for k, line in enumerate(lines) if line.strip()]
    line = lines[n]
    line = line.lstrip() if n == filled[0] else line
    return line.rstrip() if n == filled[-1] else line


def markdown_findings(sections: Sequence[tuple[str, str]], *, headings_allowed: bool = False) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        _, unclosed = lines_outside_fences(body)
        if unclosed is not None:
            text = body.split("\n")[unclosed - 1]
            found.append(finding(i, heading, text, problem="unclosed code fence", line=unclosed))
        wrapped = _code_only(body)
        if wrapped is not None:
            found.append(finding(i, heading, wrapped, problem="section written inside a code block", line=1))
        for n, kind, text in _extra_headings(body):
            if _second_title((n, kind, text)):
                found.append(finding(i, heading, text, problem="a second title (# heading) inside a section", line=n))
            elif not headings_allowed:
                found.append(finding(i, heading, text, problem="heading beyond the outline", line=n))
        text_lines = body.split("\n")
        for n, problem in sorted(_hidden_markup(body).items()):
            found.append(finding(i, heading, text_lines[n - 1], problem=problem, line=n))
    return found


#: What a line may hide, most telling first (one finding a line).
_HIDDEN = ("HTML comment (hidden when rendered)", "raw HTML (shown as text once exported)",
           "link reference definition (not shown)", "indented line renders as code")
#: Tokens that hold a block's lines (a line in none of them is a reference definition, or blank).
_LEAVES = frozenset({"paragraph_open", "heading_open", "fence", "code_block", "html_block", "table_open", "hr"})


def _hidden_markup(body: str) -> dict[int, str]:
    """1-based line -> what it hides or shows raw, read from the body's tokens: HTML comments and
    raw HTML (blocks and inline tags), reference definitions (lines markdown-it takes out of the
    text), the first line of each indented code block (and of each part after a blank line)."""
    doc = document(body)
    found: dict[int, set[str]] = {}
    covered: set[int] = set()

    def add(n: int, problem: str) -> None:
        found.setdefault(doc.offset + n + 1, set()).add(problem)

    for token in doc.tokens:
        if not token.map:
            continue
        first, last = token.map
        if token.type in _LEAVES:
            covered.update(range(first, last))
        if token.type == "html_block":
            for n in range(first, last):
                if problem := _html_problem(doc.line(n)):
                    add(n, problem)
        elif token.type == "inline":
            for n, tag in _inline_html(doc, token):
                add(n, _HIDDEN[0] if tag.startswith("<!--") else _HIDDEN[1])
        elif token.type == "code_block":
            for n in range(first, last):
                if doc.line(n).strip() and (n == first or not doc.line(n - 1).strip()):
                    add(n, _HIDDEN[3])
    for n in range(len(doc.lines)):
        if n not in covered and _LINK_DEF.match(doc.line(n).lstrip(" >")):
            add(n, _HIDDEN[2])
    return {n: min(problems, key=_HIDDEN.index) for n, problems in found.items()}


def _html_problem(line: str) -> str | None:
    """What a line of a raw HTML block shows: a comment, or raw HTML (an element a reader would see)."""
    prose = _INLINE_CODE.sub("", line)
    if _HTML_COMMENT.search(prose):
        return _HIDDEN[0]
    if any(_raw_html(m) for m in _HTML_TAG.finditer(_AUTOLINK.sub("", prose))):
        return _HIDDEN[1]
    return None


def _inline_html(doc: Document, token: Token) -> list[tuple[int, str]]:
    """(0-based line, tag) of each comment and raw HTML tag inside a block's text, found in its source
    lines in order (markdown-it's inline tokens carry no line of their own)."""
    first, last = token.map
    source = "\n".join(doc.line(n) for n in range(first, last))
    out = []
    cursor = 0
    for child in token.children or ():
        if child.type != "html_inline":
            continue
        tag = child.content
        at = source.find(tag.split("\n", 1)[0], cursor)
        if at < 0:
            continue
        cursor = at + 1
        if tag.startswith("<!--") or any(_raw_html(m) for m in _HTML_TAG.finditer(tag)):
            out.append((first + source.count("\n", 0, at), tag))
    return out


#: `check_markdown(sections, demoted=())`: a soft failure for anything that renders differently from the
#: text; the headings `demoted` are recorded.
check_markdown = findings_check(
    "markdown", markdown_findings, "Markdown renders as written",
    lambda first: f"{first['problem']} in {place(first)} line {first['line']}: \"{first['text']}\"")


class MarkdownPolicy(CheckPolicy):
    #: A heading inside a section at the level of the article's own (# or ##): demote it to ###, or hold the article.
    extra_headings: Literal["demote", "review"] = "demote"


class MarkdownCheck(BaseCheck, key="markdown", policy=MarkdownPolicy):
    def repair(self, draft: Draft) -> Repair | None:
        if self.policy.extra_headings != "demote":
            return None
        return repair_each(draft, demote_headings, "demoted to ###",
                           "{changes} heading(s) inside sections demoted to ###")

    def run(self, draft: Draft) -> CheckResult:
        return check_markdown(draft.sections, self.recorded(draft),
                              repaired="demoted {changes} heading(s) inside sections to ###")
