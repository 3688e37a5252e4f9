"""Model output made inert on every Markdown engine a site uses, by construction.

A static-site generator renders Markdown with its own engine (markdown-it and other
CommonMark engines, python-markdown as MkDocs runs it, mistune, Hugo's goldmark with
`unsafe = true`), and every engine passes raw HTML through. Engines disagree about
what is code (a fence inside a list item, a `~~~` fence in a blockquote, a code span
over two lines), so a rewrite that trusts one parser's reading is not enough.
`inert_markdown` therefore rewrites the text so that nothing is active whatever the
engine decides:

* code is kept as written only where every engine agrees it is code: a fence at the
  start of a line, after a blank line, whose opening line is the fence and at most a
  language word (normalised to that) and whose closing line is exactly the opening
  fence (added at the end when missing); a list item's fence indented 1-3 spaces is
  moved to the start of its lines first. An indented block at the top level after a
  paragraph that no engine can read as a list's, quote's, footnote's or admonition's
  continuation; a code span closed on the same line, with no bare URL just before it
  (a linkifier would take its backtick). Code holding an `&#` that is no whole
  character reference is not kept (python-markdown's HTML reader loses track after
  one). Everything else is text, even where one engine would show it as code (a fence
  in a quote shows `&lt;` there);
* in text every `<` that could open a tag (`\\<` too) becomes `&lt;` (and a broken `&#`
  `&amp;#`), except inline `ALLOWED_TAGS` written bare (`<b>`, `</em>`, `<br/>`) in the
  middle of a line and `<https://…>` / `<mailto:…>` / `<a@b.c>` autolinks of plain URL
  characters;
* a backtick that does not open or close such a code span is escaped (`\\``), so no
  engine can pair it with another one and turn code into text or text into code; a
  `~~~` fence that is not code everywhere starts with `&#126;` instead, so it is no fence;
* every `{` in text is escaped (`\\{`): no attribute list (kramdown, python-markdown's
  attr_list, goldmark) and no Hugo shortcode can start there; in code, Hugo's
  shortcode openers `{{<` and `{{%` get a space (`{{ <`), since Hugo expands them even
  inside code; pymdownx.snippets' `--8<--` (an include of a local file, read even
  inside code) becomes `--8 <--` everywhere;
* a link's or image's destination, or a reference definition's, whose scheme (after
  entities, backslashes, spaces and control characters are taken out) is not http,
  https or mailto becomes `#`; a `](` whose destination is never closed is escaped.

The result is checked with markdown-it-py (the kept code must still be code there);
when it is not, less is kept, down to no code at all. `inert_text` is the version for
one line of text that is not Markdown (front matter values, table cells).
tests/test_render_engines.py renders a hostile corpus with all four engines.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from typing import Any

from copydesk.markup import parser as _parser

ALLOWED_TAGS = frozenset({"b", "i", "em", "strong", "u", "s", "del", "ins", "sub", "sup", "small", "mark",
                          "kbd", "code", "br"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
BLOCKED_URL = "#"

# `<` that a browser or a Markdown engine may take as markup: a tag, an end tag, a comment,
# a declaration or a processing instruction (the HTML tokenizer's "tag open" state).
_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
_ALLOWED_TAG = re.compile(r"</?(?:%s) ?/?>" % "|".join(sorted(ALLOWED_TAGS)), re.IGNORECASE)
# Autolinks of plain URL characters only: no brackets, parentheses, quotes, backticks or
# backslashes that another construct could claim.
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#@!$&+,;=%]"
_SAFE_AUTOLINK = re.compile(r"<(?:https?://|mailto:)%s+>" % _URL_CHARS, re.IGNORECASE)
_EMAIL_AUTOLINK = re.compile(r"<[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                             r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*>")
# What may stand before a block on its line: indentation, quote and list markers (any engine's).
_LINE_PREFIX = re.compile(r"(?:[ \t]*(?:>|(?:[-*+:]|\d+[.)])(?=[ \t]|$)))*[ \t]*")
_SPECIAL = re.compile(r"[\\`<{\]~&]")
# `&#` that is not a whole numeric character reference (python-markdown's HTML reader loses
# track of the text after one at the start of a line).
_BROKEN_CHARREF = re.compile(r"&#(?!\d{1,7};|[xX][0-9a-fA-F]{1,6};)")
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
_INVISIBLE = re.compile(r"[\s\x00-\x20\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                        r"\u2066-\u206f\ufeff]+")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_WORD_BEFORE = re.compile(r"\S+\Z")
_LINKIFIED = re.compile(r"[:@]|www\.", re.IGNORECASE)
_ACTIVE_BRACES = re.compile(r"\{(?=[^{}]*(?:=|on[a-z])[^{}]*\})", re.IGNORECASE)
_SHORTCODE = re.compile(r"\{\{(?=[<%])")
# pymdownx.snippets' marker (`--8<-- "file"` includes a file of the site's machine; it runs
# before any other Markdown reading, so in code too): its `8<` gets a space.
_SNIPPET = re.compile(r"(-8)<(?=-)")
# A fence at the start of a line (CommonMark: a backtick fence's info has no backtick).
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})(.*)")
_INDENTED_FENCE = re.compile(r"( {1,3})(`{3,}|~{3,})(.*)")
_LANGUAGE = re.compile(r"[ \t]*\.?([\w#+\-][\w#.+\-]*)")
# A line after which python-markdown (with MkDocs' extensions) may continue a block with indented
# lines: lists, quotes, definitions (def_list), footnotes, admonitions, details, tabs.
_LISTISH = re.compile(r"[ \t]*(?:>|(?:[-*+]|\d+[.)])(?:[ \t]|$)|:[ \t]|\[\^|!!!|\?\?\?|===)")
# Lines python-markdown takes out of the text: reference and abbreviation definitions.
_DEFINITION = re.compile(r"[ \t]*\*?\[[^\]^][^\]]*\]:")
# A reference definition: optional container markers, [label]:, then its destination and
# whatever follows on that line (on the same line or the next).
_REFERENCE = re.compile(
    r"(?m)^(?P<lead>(?:[ \t]*(?:>|[-+*]|\d+[.)]))*[ \t]*\[(?:[^\[\]\\\n]|\\.)+\]:[ \t]*\n?[ \t>]*)"
    r"(?P<dest>[^\s][^\n]*)"
)


# ------------------------------------------------------------------------------ public


def safe_url(url: str) -> bool:
    """False for a URL whose scheme is not http, https or mailto, however it is spelled
    (entities, backslash escapes, spaces and control characters anywhere)."""
    text = _INVISIBLE.sub("", html.unescape(_unescape_backslashes(url))).lower()
    match = _SCHEME.match(text.removeprefix("<"))
    return match is None or match.group(1) in SAFE_SCHEMES


def inert_text(text: str) -> str:
    """One line of text that no HTML or Markdown renderer takes as markup: every tag opener
    (`\\<` too) becomes `&lt;`, the `{` of an attribute list that sets a value or an
    event handler `&#123;`, a Hugo shortcode's `{{<` `{{ <`, a Markdown link to a script
    or data URL points to `#`, and in a line with a link every backtick is `&#96;` (python-markdown
    puts a code span that starts in a link's title back into the link's attribute unescaped)
    (a theme may run a title through Markdown, and Hugo's `markdownify` expands shortcodes)."""
    text = re.sub(r"\\?<(?=[A-Za-z/!?])", "&lt;", text)
    if "](" in text:
        text = text.replace("`", "&#96;")
    text = _ACTIVE_BRACES.sub("&#123;", text)  # no attribute list where a theme renders it as Markdown
    text = _SHORTCODE.sub("{{ ", text)  # nor a Hugo shortcode (`markdownify` expands them)
    out: list[str] = []
    i = 0
    while (found := text.find("](", i)) >= 0:
        out.append(text[i : found + 2])
        end = _target_end(text, found + 2)
        if end is not None and not safe_url(text[found + 2 : end]):
            out.append(BLOCKED_URL)
            i = end
        elif end is None and not safe_url(text[found + 2 :]):
            out[-1] = out[-1][:-1] + "\\("
            i = found + 2
        else:
            i = found + 2
    return "".join(out) + text[i:]


def inert_markdown(markdown: str) -> str:
    """`markdown` with nothing active on any engine; see the module doc."""
    if not any(char in markdown for char in "<:&{"):
        return markdown  # nothing could be active: no tag, no scheme (plain or encoded), no braces
    markdown = _SNIPPET.sub(r"\1 <", markdown)  # no snippet include, in text or code
    lines, fences = _normalise_fences(markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    # First guess: the code of the text once no raw HTML is left (HTML blocks swallow fences).
    code = _code_lines([line.replace("<", "&lt;") for line in lines], frozenset(range(len(lines))), fences)
    for _ in range(6):
        out = _rewrite(lines, code, spans=True)
        confirmed = _code_lines(out, code, fences)
        if confirmed == code:
            return "\n".join(out)
        code = confirmed
    return "\n".join(_rewrite(lines, frozenset(), spans=False))


def active_parts(markdown: str) -> list[str]:
    """What markdown-it (CommonMark, raw HTML on) would render active (empty: nothing)."""
    return _active_parts(_parser().parse(markdown))


# ------------------------------------------------------------------------------ code every engine agrees on


def _normalise_fences(lines: list[str]) -> tuple[list[str], frozenset[tuple[int, int]]]:
    """Every fence that starts a line made one that python-markdown (fenced_code and
    superfences) reads as CommonMark does: a blank line before it, the opening line the
    fence and at most a language word, the closing line exactly the opening fence, and a
    fence left open closed at the end. Also returns each fence's [first, last + 1) lines.
    Fences pair as in CommonMark without HTML blocks (which the rewrite leaves none of)."""
    lines = list(lines)
    out: list[str] = []
    spans: set[tuple[int, int]] = set()
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.fullmatch(lines[i])
        if opened is None and _dedent_fence(lines, i):
            continue  # a list item's fence, now at the start of its lines: read it again
        if opened is None or (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            out.append(lines[i])
            i += 1
            continue
        fence = opened.group(1)
        language = _LANGUAGE.match(opened.group(2))
        if out and out[-1].strip():
            out.append("")
        out.append(fence + (language.group(1) if language else ""))
        first = len(out) - 1
        closing = re.compile(r" {0,3}%s{%d,}[ \t]*" % (re.escape(fence[0]), len(fence)))
        j = i + 1
        while j < len(lines) and not closing.fullmatch(lines[j]):
            j += 1
        out.extend(lines[i + 1 : j])
        if j == len(lines) and out[-1] == "":
            out[-1] = fence
            spans.add((first, len(out)))
            out.append("")
        else:
            out.append(fence)
            spans.add((first, len(out)))
        i = j + 1
    return out, frozenset(spans)


def _dedent_fence(lines: list[str], i: int) -> bool:
    """A fence indented by 1-3 spaces (a list item's) whose lines all keep that indentation and
    whose closing line has it too, moved to the start of its lines in place (the list ends
    there on every engine; python-markdown's fenced_code reads no indented fence). False,
    and nothing changed, for anything else."""
    opened = _INDENTED_FENCE.fullmatch(lines[i])
    if opened is None or (opened.group(2)[0] == "`" and "`" in opened.group(3)):
        return False
    indent, fence = opened.group(1), opened.group(2)
    closing = re.compile(r" *%s{%d,}[ \t]*" % (re.escape(fence[0]), len(fence)))
    for j in range(i + 1, len(lines)):
        if lines[j].strip() and not lines[j].startswith(indent):
            return False
        if closing.fullmatch(lines[j]):
            if len(lines[j]) - len(lines[j].lstrip(" ")) != len(indent):
                return False
            lines[i : j + 1] = [line[len(indent) :] for line in lines[i : j + 1]]
            if j + 1 < len(lines) and lines[j + 1].strip():
                lines.insert(j + 1, "")
            return True
    return False


def _code_lines(lines: list[str], allowed: frozenset[int], fences: frozenset[tuple[int, int]]) -> frozenset[int]:
    """The lines among `allowed` that are code on every engine, read from markdown-it's parse
    of `lines`: top-level fences that are one of `fences` (normalised ones), and top-level
    indented blocks after a paragraph that is no list or quote on any engine."""
    if not fences and not any(line.startswith("    ") for line in lines):
        # Neither can be: no fence to match, and an indented block's lines all start with four
        # spaces (`_plain_indented_block`). Most articles: no parse (~13 ms of CPU each).
        return frozenset()
    tokens = _parser().parse("\n".join(lines))
    found: set[int] = set()
    for token in tokens:
        if token.level != 0 or token.map is None or token.type not in ("fence", "code_block"):
            continue
        begin, end = token.map
        end = min(end, len(lines))
        if token.type == "fence":
            if (begin, end) not in fences:
                continue
        elif not _plain_indented_block(lines, begin, end) or any(map(_BROKEN_CHARREF.search, lines[begin:end])):
            continue
        block = set(range(begin, end))
        if block <= allowed:
            found |= block
    return frozenset(found)


def _plain_indented_block(lines: list[str], begin: int, end: int) -> bool:
    """An indented code block (4 spaces, no tabs) after a blank line, whose earlier chunks
    back to one that starts a line hold no list or quote marker (python-markdown would
    continue a list there)."""
    if begin == 0 or lines[begin - 1].strip() or any(
        line.strip() and not line.startswith("    ") or "\t" in line[: len(line) - len(line.lstrip())]
        for line in lines[begin:end]
    ):
        return False
    k = begin - 1
    while k >= 0:
        while k >= 0 and not lines[k].strip():
            k -= 1
        start = k
        while start > 0 and lines[start - 1].strip():
            start -= 1
        if k < 0:
            return True
        if any(_LISTISH.match(line) for line in lines[start : k + 1]):
            return False
        if not lines[start][:1].isspace() and not any(_DEFINITION.match(line) for line in lines[start : k + 1]):
            return True  # a paragraph that starts a line and does not vanish (definitions do)
        k = start - 1
    return True


# ------------------------------------------------------------------------------ the rewrite


def _rewrite(lines: list[str], code: frozenset[int], *, spans: bool) -> list[str]:
    """`lines` with code kept (Hugo's shortcode openers broken) and every other run of lines
    made inert as text; the number of lines does not change."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in code:
            out.append(_SHORTCODE.sub("{{ ", lines[i]))
            i += 1
            continue
        j = i
        while j < len(lines) and j not in code:
            j += 1
        chunk = _REFERENCE.sub(_block_reference, "\n".join(lines[i:j]))
        out.extend(_inline(chunk, spans=spans).split("\n"))
        i = j
    return out


def _inline(text: str, *, spans: bool) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ASCII_PUNCT:
            out.append("&lt;" if text[i + 1] == "<" else text[i : i + 2])
            i += 2
        elif char == "`":
            i = _backticks(text, i, out, spans)
        elif char == "<":
            i = _angle(text, i, out)
        elif char == "{":
            out.append("\\{")
            i += 1
        elif char == "]" and text.startswith("](", i):
            i = _link_target(text, i, out)
        elif char == "&" and _BROKEN_CHARREF.match(text, i):
            out.append("&amp;")
            i += 1
        elif char == "~" and text.startswith("~~~", i) and _at_block_start(text, i):
            out.append("&#126;")  # a fence that is not code everywhere (in a quote, a list) is no fence
            i += 1
        else:
            plain = _SPECIAL.search(text, i + 1)
            end = plain.start() if plain else n
            out.append(text[i:end])
            i = end
    return "".join(out)


def _backticks(text: str, i: int, out: list[str], spans: bool) -> int:
    """A code span closed on the same line is kept (Hugo's shortcodes broken), unless a bare
    URL or e-mail address that a linkifier (mistune's, goldmark's) would run over its opening
    backtick stands just before it; any other backtick run is escaped, so that no engine
    pairs it."""
    j = i
    while j < len(text) and text[j] == "`":
        j += 1
    if spans and not _linkified_before(text, i):
        line_end = text.find("\n", j)
        closing = re.compile(r"(?<!`)`{%d}(?!`)" % (j - i)).search(text, j, len(text) if line_end < 0 else line_end)
        if closing is not None and closing.start() > j and not _BROKEN_CHARREF.search(text, j, closing.start()):
            out.append(_SHORTCODE.sub("{{ ", text[i : closing.end()]))
            return closing.end()
    out.append("\\`" * (j - i))
    return j


def _at_block_start(text: str, i: int) -> bool:
    """Only indentation and quote or list markers before `i` on its line."""
    return _LINE_PREFIX.fullmatch(text, text.rfind("\n", 0, i) + 1, i) is not None


def _linkified_before(text: str, i: int) -> bool:
    """Could a bare URL or address that a linkifier takes end after `i`? (Its word, the run of
    non-space characters before `i`, has a scheme's colon, an `@` or `www.`; a word longer
    than 2,000 characters counts as one.)"""
    start = max(0, i - 2000)
    word = _WORD_BEFORE.search(text, start, i)
    if word is None:
        return False
    return word.start() == start > 0 or _LINKIFIED.search(word.group(0)) is not None


def _angle(text: str, i: int, out: list[str]) -> int:
    at_block_start = _at_block_start(text, i)
    match = _SAFE_AUTOLINK.match(text, i) or (
        None if at_block_start else _EMAIL_AUTOLINK.match(text, i) or _ALLOWED_TAG.match(text, i)
    )
    if match:
        out.append(match.group(0))
        return match.end()
    out.append("&lt;" if _TAG_OPENER.match(text, i) else "<")
    return i + 1


def _link_target(text: str, i: int, out: list[str]) -> int:
    """`](` at `i`: the parenthesised destination and title made inert, or `#` when the
    destination is not safe; `]\\(` when the parenthesis is never closed and what follows
    is not safe."""
    start = i + 2
    end = _target_end(text, start)
    if end is None:
        line_end = text.find("\n", start)
        rest = text[start:] if line_end < 0 else text[start:line_end]
        out.append("](" if safe_url(rest) else "]\\(")
        return start
    target = text[start:end]
    if safe_url(target):
        out.append("](" + _inline(target, spans=False) + ")")
    else:
        out.append("](" + BLOCKED_URL + "\n" * target.count("\n") + ")")
    return end + 1


def _target_end(text: str, start: int) -> int | None:
    """Index of the `)` closing a link's parenthesis opened just before `start` (nested
    parentheses balanced, backslash escapes skipped), None when a blank line, the end of
    the text or 2,000 characters come first."""
    depth, k, n = 0, start, min(len(text), start + 2000)  # no destination is longer
    while k < n:
        char = text[k]
        if char == "\\":
            k += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return k
            depth -= 1
        elif char == "\n":
            following = text.find("\n", k + 1)
            if not text[k + 1 : n if following < 0 else following].strip():
                return None
        k += 1
    return None


def _block_reference(match: re.Match[str]) -> str:
    if safe_url(match.group("dest")):
        return match.group(0)
    return match.group("lead") + BLOCKED_URL


def _unescape_backslashes(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


# ------------------------------------------------------------------------------ markdown-it's view


def _all(tokens: Sequence[Any]) -> Iterator[Any]:
    for token in tokens:
        yield token
        yield from token.children or ()


def _active_parts(tokens: Sequence[Any]) -> list[str]:
    found: list[str] = []
    for token in _all(tokens):
        if token.type in ("html_block", "html_inline"):
            content = token.content
            for opener in _TAG_OPENER.finditer(content):
                if not _ALLOWED_TAG.match(content, opener.start()):
                    found.append(content[opener.start() : opener.start() + 60])
        elif token.type in ("link_open", "image"):
            url = str(token.attrGet("href") or token.attrGet("src") or "")
            if not safe_url(url):
                found.append(url[:60])
    return found
