"""Model output made inert: no active HTML or script URL reaches a file or an artifact.

A static-site generator that renders raw HTML in Markdown (Hugo with `unsafe`,
Jekyll, MkDocs, most Markdown libraries by default) would publish whatever a
model wrote: `<script>`, `onerror=`, `javascript:` links. `inert_markdown`
rewrites Markdown so that, rendered with raw HTML enabled:

* raw HTML outside code is escaped (`<` becomes `&lt;`, so it shows as text),
  except `ALLOWED_TAGS` written bare, without attributes (`<b>`, `</em>`, `<br/>`);
* the destination of a link, image, autolink or reference definition whose
  scheme is not http, https or mailto (`javascript:`, `data:`, `vbscript:`, in
  any case, entity-encoded or split by control characters) becomes `#`;
* an attribute list (kramdown's `{: onclick="…"}`, Pandoc's and goldmark's
  `{onclick=…}`) that sets an event handler, a URL or a style gets its `{`
  escaped, so it stays text;
* code (fences, indented blocks, code spans) is left alone: it renders as text;
* Markdown with nothing of the above comes back unchanged, byte for byte.

markdown-it-py (CommonMark, raw HTML on, validation of links off) checks the
result; if anything active survives the rewrite (contrived nesting), a harsher
pass escapes every tag opener and bracket outside fenced and indented code, and
if even that fails the text becomes one code block. `inert_text` is the plain
version for text that is not Markdown (front matter values, table cells).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

ALLOWED_TAGS = frozenset({"b", "i", "em", "strong", "u", "s", "del", "ins", "sub", "sup", "small", "mark",
                          "kbd", "code", "br", "hr"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
BLOCKED_URL = "#"

# `<` that a browser or a Markdown parser may take as markup: a tag, an end tag, a comment,
# a declaration or a processing instruction.
_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
_ALLOWED_TAG = re.compile(r"</?(%s)\s*/?>" % "|".join(sorted(ALLOWED_TAGS)), re.IGNORECASE)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}):[^<>\x00-\x20]*>")
_EMAIL_AUTOLINK = re.compile(
    r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*>"
)
# An attribute list of kramdown, Pandoc or goldmark that would put an active attribute on an element.
_ATTRIBUTE_LIST = re.compile(
    r"\{(?=:?[^{}\n]*?(?:\bon[a-z]+|\b(?:href|src|style|action|formaction|srcdoc|xlink:href))\s*=)",
    re.IGNORECASE,
)
_SPECIAL = re.compile(r"[\\`<\[\]{]")
_LINE_END = re.compile(r"(\r\n|\r|\n)")
_SCHEME = re.compile(r"([a-z][a-z0-9+.\-]*):")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\ufeff]+")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
# A reference definition: optional container markers, [label]:, then its destination
# (on the same line or the next).
_REFERENCE = re.compile(
    r"(?m)^(?P<lead>(?:[ \t]*(?:>|[-+*]|\d{1,9}[.)]))*[ \t]*\[(?:[^\[\]\\]|\\.)+\]:[ \t]*\n?[ \t>]*)"
    r"(?P<dest><[^<>\n]*>|[^\s<][^\s]*)"
)


# ------------------------------------------------------------------------------ public


def safe_url(url: str) -> bool:
    """False for a URL whose scheme is not http, https or mailto, however it is spelled."""
    text = html.unescape(_unescape_backslashes(url))
    text = _CONTROL_OR_SPACE.sub("", text).lower()
    match = _SCHEME.match(text)
    return match is None or match.group(1) in SAFE_SCHEMES


def inert_text(text: str) -> str:
    """Plain text that no HTML renderer takes as markup: every tag opener `<` escaped."""
    return _TAG_OPENER.sub("&lt;", text)


def inert_markdown(markdown: str) -> str:
    """`markdown` with raw HTML escaped and unsafe link destinations blocked; see the module doc."""
    if not any(char in markdown for char in "<:&{"):
        return markdown  # nothing could be active: no tag, no scheme (plain or encoded), no attribute list
    tokens = _parser().parse(markdown)
    rewritten = _rewrite(markdown, tokens, code_spans=True)
    if not _active_parts(tokens if rewritten == markdown else _parser().parse(rewritten)):
        return rewritten
    harsh = _rewrite(markdown, tokens, code_spans=False, brackets=True)
    if not _active_parts(_parser().parse(harsh)):
        return harsh
    fence = "`" * (max((len(run) for run in re.findall(r"`+", markdown)), default=0) + 3)
    return f"{fence}text\n{markdown}\n{fence}\n"


def active_parts(markdown: str) -> list[str]:
    """What would be active if `markdown` were rendered with raw HTML allowed (empty: nothing)."""
    return _active_parts(_parser().parse(markdown))


# ------------------------------------------------------------------------------ the rewrite


@lru_cache(maxsize=1)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # see every destination, as a permissive renderer would
    return md


def _lines(text: str) -> list[str]:
    """Lines with their ends, split where markdown-it splits them (\n, \r\n, \r; not at
    the other breaks `str.splitlines` knows), so its line numbers apply."""
    parts = _LINE_END.split(text)
    lines = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
    return [*lines, parts[-1]] if parts[-1] else lines


def _rewrite(markdown: str, tokens: list[Any], *, code_spans: bool, brackets: bool = False) -> str:
    """`markdown` rewritten chunk by chunk (`tokens` is its parse): code kept, the rest inert."""
    lines = _lines(markdown)
    kinds = _line_kinds(tokens, len(lines))
    out: list[str] = []
    start = 0
    while start < len(lines):
        kind = kinds[start]
        end = start + 1
        while end < len(lines) and kinds[end] == kind and kind[0] != "code":
            end += 1
        chunk = "".join(lines[start:end])
        if kind[0] == "code":
            out.append(chunk)
        else:
            out.append(_rewrite_chunk(chunk, code_spans=code_spans and kind[0] != "html", brackets=brackets))
        start = end
    return "".join(out)


def _line_kinds(tokens: list[Any], count: int) -> list[tuple[str, int]]:
    """Per line: ("code", n) inside a fence or an indented code block, ("html", n) or
    ("text", n) for the n-th other leaf block, ("other", 0) for lines outside any
    (blank lines, reference definitions, container markers)."""
    kinds: list[tuple[str, int]] = [("other", 0)] * count
    for number, token in enumerate(tokens):
        if token.map is None or token.nesting == -1:
            continue
        if token.type in ("fence", "code_block"):
            kind = ("code", number)
        elif token.type == "html_block":
            kind = ("html", number)
        elif token.type in ("paragraph_open", "heading_open", "table_open"):
            kind = ("text", number)
        else:
            continue
        begin, end = token.map
        for line in range(begin, min(end, count)):
            kinds[line] = kind
    return kinds


def _rewrite_chunk(text: str, *, code_spans: bool, brackets: bool) -> str:
    text = _REFERENCE.sub(_block_reference, text)
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ASCII_PUNCT:
            out.append(text[i : i + 2])
            i += 2
        elif char == "`" and code_spans:
            j = i
            while j < n and text[j] == "`":
                j += 1
            closing = re.compile(r"(?<!`)" + "`" * (j - i) + r"(?!`)").search(text, j)
            end = closing.end() if closing else j
            out.append(text[i:end])
            i = end
        elif char == "<":
            match = _AUTOLINK.match(text, i) or _EMAIL_AUTOLINK.match(text, i) or _ALLOWED_TAG.match(text, i)
            if match and (match.re is not _AUTOLINK or safe_url(match.group(0)[1:-1])) and not brackets:
                out.append(match.group(0))
                i = match.end()
            elif _TAG_OPENER.match(text, i):
                out.append("&lt;")
                i += 1
            else:
                out.append(char)
                i += 1
        elif char == "{" and _ATTRIBUTE_LIST.match(text, i):
            out.append("\\{")
            i += 1
        elif char == "[" and brackets:
            out.append("\\[")
            i += 1
        elif char == "]" and text.startswith("](", i):
            end, destination = _destination(text, i + 2)
            out.append("](")
            if destination is not None and not safe_url(_strip_angle(destination)):
                out.append(text[i + 2 : end - len(destination)] + BLOCKED_URL)
            else:
                out.append(text[i + 2 : end])
            i = end
        else:
            plain = _SPECIAL.search(text, i + 1)
            end = plain.start() if plain else n
            out.append(text[i:end])
            i = end
    return "".join(out)


def _block_reference(match: re.Match[str]) -> str:
    destination = match.group("dest")
    if safe_url(_strip_angle(destination)):
        return match.group(0)
    return match.group("lead") + BLOCKED_URL


def _destination(text: str, i: int) -> tuple[int, str | None]:
    """(end, destination) of an inline link's destination starting at `i` (after `](`);
    the destination is None when there is none there."""
    n = len(text)
    j = i
    newline = False
    while j < n and text[j] in " \t\n":
        if text[j] == "\n":
            if newline:
                return i, None
            newline = True
        j += 1
    if j >= n:
        return i, None
    if text[j] == "<":
        k = j + 1
        while k < n and text[k] not in "<>\n":
            k += 2 if text[k] == "\\" else 1
        if k < n and text[k] == ">":
            return k + 1, text[j : k + 1]
        return i, None
    k, depth = j, 0
    while k < n:
        c = text[k]
        if c == "\\" and k + 1 < n:
            k += 2
            continue
        if c <= " " or c == "\x7f":
            break
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        k += 1
    if k == j:
        return i, None
    return k, text[j:k]


def _strip_angle(destination: str) -> str:
    if destination.startswith("<") and destination.endswith(">"):
        return destination[1:-1]
    return destination


def _unescape_backslashes(text: str) -> str:
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


# ------------------------------------------------------------------------------ the check


def _all(tokens: list[Any]) -> Iterator[Any]:
    for token in tokens:
        yield token
        yield from token.children or ()


def _active_parts(tokens: list[Any]) -> list[str]:
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
