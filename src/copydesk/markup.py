"""Markdown read once: the one markdown-it configuration, its tokens, and front matter.

    tokens = parse(body)                   # markdown-it tokens (CommonMark, raw HTML, tables, ~~)
    header, body = split_front_matter(md)  # the YAML between `---` lines, and the rest

Every reader of Markdown structure uses `parser()`: the article's prose for the checks
(`copydesk.prose`, through the `Draft`), the Markdown check (`copydesk.qc.markdown`) and
the sanitizer's proof that kept code is code (`copydesk.sanitize`). Link destinations are
all valid here (`validateLink`), as a permissive renderer would take them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

__all__ = ["body_start", "parse", "parser", "split_front_matter"]


@lru_cache(maxsize=1)
def parser() -> MarkdownIt:
    """The one markdown-it instance (CommonMark with raw HTML, tables and strikethrough). markdown-it
    is imported here, on first use: `copydesk validate` reaches this module through the checks and
    parses no Markdown."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # see every destination, as a permissive renderer would
    return md


def parse(markdown: str) -> list[Token]:
    """markdown-it's block tokens of `markdown`, with one source line per line of `markdown`:
    a lone carriage return (a line break to markdown-it, none to `str.split("\\n")`) is read as
    a space, so that each token's `map` counts the same lines as the text."""
    return parser().parse(markdown.replace("\r\n", "\n").replace("\r", " "))


_FRONT_MATTER_END = re.compile(r"(?:---|\.\.\.)[ \t]*\r?")


def _front_matter(text: str) -> tuple[int, int, int] | None:
    """(where its YAML starts, where its closing line starts, where the Markdown after it starts), or None."""
    start = 1 if text.startswith("\ufeff") else 0
    first_end = text.find("\n", start)
    if first_end == -1 or text[start:first_end].rstrip("\r \t") != "---":
        return None
    pos = first_end + 1
    while pos < len(text):
        end = text.find("\n", pos)
        line_end = len(text) if end == -1 else end
        if _FRONT_MATTER_END.fullmatch(text, pos, line_end):
            return first_end + 1, pos, min(len(text), line_end + 1)
        pos = line_end + 1
    return None  # no closing line: not front matter


def body_start(text: str) -> int:
    """Where the Markdown after a YAML front matter begins (after a byte order mark; 0 with neither).
    The front matter opens with a `---` line and closes with a `---` or `...` line (the last line may
    lack its line break); without a closing line there is none."""
    found = _front_matter(text)
    return found[2] if found else (1 if text.startswith("\ufeff") else 0)


def split_front_matter(text: str) -> tuple[str | None, str]:
    """(the YAML text of the front matter, or None when there is none; the rest of the file)."""
    found = _front_matter(text)
    if found is None:
        return None, text
    return text[found[0] : found[1]], text[found[2] :]
