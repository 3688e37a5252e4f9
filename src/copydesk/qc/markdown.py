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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from copydesk.qc.check import BaseCheck, CheckPolicy, Draft, Repair, repair_each
from copydesk.qc.content import CheckResult
from copydesk.qc.evidence import finding, place
from copydesk.text import FENCE, SETEXT

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


def _lines_outside_fences(body: str) -> tuple[list[tuple[int, str]], int | None]:
    """(1-based line number, line) of every line outside fenced code, and the line of an
    unclosed fence (None when every fence is closed)."""
    out: list[tuple[int, str]] = []
    fence: str | None = None
    opened = 0
    for n, line in enumerate(body.split("\n"), start=1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence, opened = m.group(1), n
                continue
            out.append((n, line))
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
            fence = None
    return out, (opened if fence is not None else None)


#: The lines of a section outside fenced code (public: other checks read headings with it).
lines_outside_fences = _lines_outside_fences


def _extra_headings(body: str) -> list[tuple[int, str, str]]:
    """(line number, kind, text) of `#`/`##` and setext headings outside code."""
    lines, _ = _lines_outside_fences(body)
    found = []
    previous: tuple[int, str] | None = None
    for n, line in lines:
        m = _TOP_HEADING.match(line)
        if m:
            found.append((n, "atx", line))
        elif (
            SETEXT.match(line) and previous is not None and previous[0] == n - 1 and previous[1].strip()
            and not _TOP_HEADING.match(previous[1]) and not _LIST_ITEM.match(previous[1])
            and not (set(line.strip()) == {"-"} and len(line.strip()) < 2)
        ):
            found.append((n, "setext", previous[1]))
        previous = (n, line)
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
    lines = body.strip().split("\n")
    for line in lines:
        m = FENCE.match(line)
        if m and line.strip()[len(m.group(1)):].strip().lower() in ("markdown", "md"):
            return line
    if len(lines) >= 2 and FENCE.match(lines[0]) and FENCE.match(lines[-1]):
        inner, unclosed = _lines_outside_fences("\n".join(lines[1:-1]))
        if unclosed is None and not any(FENCE.match(x) for _, x in inner):
            return lines[0]
    return None


def markdown_findings(sections: Sequence[tuple[str, str]], *, headings_allowed: bool = False) -> list[dict]:
    found = []
    for i, (heading, body) in enumerate(sections, start=1):
        lines, unclosed = _lines_outside_fences(body)
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
        blank_before = True
        for n, line in lines:
            prose = _INLINE_CODE.sub("", line)
            if _HTML_COMMENT.search(prose):
                found.append(finding(i, heading, line, problem="HTML comment (hidden when rendered)", line=n))
            elif any(_raw_html(m) for m in _HTML_TAG.finditer(_AUTOLINK.sub("", prose))):
                found.append(finding(i, heading, line, problem="raw HTML (shown as text once exported)", line=n))
            elif _LINK_DEF.match(line):
                found.append(finding(i, heading, line, problem="link reference definition (not shown)", line=n))
            elif blank_before and line.startswith("    ") and line.strip() and not _LIST_ITEM.match(line):
                found.append(finding(i, heading, line, problem="indented line renders as code", line=n))
            blank_before = not line.strip()
    return found


def check_markdown(sections: Sequence[tuple[str, str]], demoted: Sequence[dict] = ()) -> CheckResult:
    """Soft failure for anything that renders differently from the text; `demoted` is recorded."""
    passed = (f"demoted {len(demoted)} heading(s) inside sections to ###" if demoted
              else "Markdown renders as written")
    return CheckResult.from_findings(
        "markdown", markdown_findings(sections), passed,
        lambda first: f"{first['problem']} in {place(first)} line {first['line']}: \"{first['text']}\"",
        recorded=demoted)


class MarkdownPolicy(CheckPolicy):
    #: A heading inside a section at the level of the article's own (# or ##): demote it to ###, or hold the article.
    extra_headings: Literal["demote", "review"] = "demote"


class MarkdownCheck(BaseCheck):
    name = key = "markdown"
    Policy = MarkdownPolicy

    def repair(self, draft: Draft) -> Repair | None:
        if self.policy.extra_headings != "demote":
            return None
        repaired, found = repair_each(draft, demote_headings, "demoted to ###")
        return Repair(repaired, found, f"{len(found)} heading(s) inside sections demoted to ###")

    def run(self, draft: Draft) -> CheckResult:
        return check_markdown(draft.sections, draft.repaired.get(self.name, ()))
