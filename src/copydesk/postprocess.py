"""Post-processing of model output: what each stage makes of the model's text.

Pure functions, no I/O; Markdown and truncation come from `copydesk.text`.

- `clean_title`: one line, no quotes, no markdown, no "Title:" label.
- `parse_outline`: section headings from JSON or from numbered/bulleted lines,
  markdown stripped, duplicates removed, clamped to the spec's bounds.
- `clean_section`: the body of one section, without a repeated heading.
- `clean_extra_text`, `parse_list`: an extra stage's answer (`stages.extras`): one line of
  text, or short items (from JSON or from comma/line separated text), trimmed,
  deduplicated, bounded in number and length, each made inert (`copydesk.sanitize.inert_text`).

Control, bidi and zero-width characters go first (`copydesk.controls`).
"""

from __future__ import annotations

import json
import re
import unicodedata

from copydesk.controls import clean_line, clean_text
from copydesk.sanitize import inert_text
from copydesk.text import strip_inline, truncate

MAX_TITLE_CHARS = 200
MAX_HEADING_CHARS = 120

_QUOTES = "\"'“”‘’«»「」『』《》`"
_LABEL = re.compile(r"^(?:title|headline|标题|題目|题目)\s*[:：]\s*", re.IGNORECASE)
_LIST_MARKER = re.compile(
    r"^\s*(?:[-*+•·]|\d{1,3}[.)、:]|[a-zA-Z][.)]|[ivxIVX]{1,4}[.)]|[一二三四五六七八九十]+[、.．]|#{1,6}|第[一二三四五六七八九十\d]+[部章节]分?[:：、]?)\s*"
)
_JSON_ITEM_NUMBER = re.compile(r"^\s*\d{1,3}[.)、:]\s+")
_HEADING_LABEL = re.compile(r"^(?:section|part|chapter|step|heading)\s*\d+\s*[:：.\-–—]\s*", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^(?:here(?:'s| is| are)\b|sure\b|certainly\b|outline\b|the outline\b|below\b|以下|下面|大纲)", re.IGNORECASE
)
#: A line that is only an interjection ("Sure!", "Certainly.", "好的！") says nothing about the title.
_INTERJECTION = re.compile(
    r"(?:sure|certainly|of course|okay|ok|absolutely|好的|当然)\s*[.!,。！，、…~]*", re.IGNORECASE
)
_MD_HEADING_MARKER = re.compile(r"^(\s*)#{1,6}\s*")


def _strip_quotes(text: str) -> str:
    text = text.strip()
    # '"Async Python".' / '《异步编程》。': the full stop after the closing quote goes first,
    # or the quotes are not recognised as a pair.
    if len(text) >= 3 and text[0] in _QUOTES and text[-1] in ".。" and text[-2] in _QUOTES:
        text = text[:-1].rstrip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text.strip(_QUOTES).strip()


def clean_title(raw: str) -> str:
    """The first meaningful line of the model's answer, as a bare title (no control, bidi
    or zero-width characters)."""
    for raw_line in clean_text(raw).split("\n"):
        line = _LABEL.sub("", strip_inline(clean_line(raw_line)))
        line = _strip_quotes(_LIST_MARKER.sub("", line) if _LIST_MARKER.match(line) and len(line) > 3 else line)
        line = _LABEL.sub("", line)
        line = re.sub(r"\s+", " ", line).strip().rstrip(".。")
        if not line or _INTERJECTION.fullmatch(line):
            continue
        if _PREAMBLE.match(line) and raw_line.rstrip().endswith((":", "：")):
            continue
        # truncate() may add an ellipsis after `limit` characters.
        return line if len(line) <= MAX_TITLE_CHARS else truncate(line, MAX_TITLE_CHARS - 1)
    return ""


def parse_outline(raw: str, *, min_sections: int, max_sections: int) -> list[str]:
    """Headings in order, unique, at most `max_sections`. Fewer than `min_sections`
    is returned as is: the caller decides that such an outline is unusable."""
    headings = _from_json(raw)
    if headings is None:
        headings = _from_lines(raw)
    else:  # a small model under a JSON schema still numbers its items: ["1. Introduction", ...]
        headings = [_JSON_ITEM_NUMBER.sub("", h, count=1) for h in headings]
    unique: list[str] = []
    seen: set[str] = set()
    for heading in headings:
        heading = _clean_heading(heading)
        key = unicodedata.normalize("NFKC", heading).casefold()
        if heading and key not in seen and any(ch.isalpha() for ch in heading):  # "1", "—": no heading
            seen.add(key)
            unique.append(heading)
    return unique[:max_sections]


def _from_json(raw: str, keys: tuple[str, ...] = ("sections", "outline", "headings", "items")) -> list[str] | None:
    text = raw.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        text = fence.group(1).strip()
    # JSON starts a line; a bracket inside a line ("1. What changed [2023]") is just text.
    start = re.search(r"^\s*[\[{]", text, re.MULTILINE)
    if start is None:
        return None
    text = text[start.end() - 1 :]
    try:
        data = json.loads(text)
        whole = True
    except ValueError:
        try:
            data, _ = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return None
        whole = False
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            return None
    if not isinstance(data, list):
        return None
    items = []
    for item in data:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, dict):
            for key in ("heading", "title", "section", "name"):
                if isinstance(item.get(key), str):
                    items.append(item[key])
                    break
    if not items and not whole:
        return None  # e.g. "[1] Intro\n[2] Setup": a JSON-looking prefix of a plain list
    return items


def _from_lines(raw: str) -> list[str]:
    lines = [line for line in raw.replace("\r", "\n").split("\n") if line.strip()]
    marked = [line for line in lines if _LIST_MARKER.match(line) and _strip_list_marker(line).strip()]
    # Nested bullets (indented) are details of the heading above; keep the top level.
    if marked:
        indent = min(len(line) - len(line.lstrip()) for line in marked)
        top = [line for line in marked if len(line) - len(line.lstrip()) == indent]
        return [_strip_list_marker(line) for line in top]
    return [line for line in lines if not _PREAMBLE.match(line.strip())]


def _strip_list_marker(line: str) -> str:
    """Drop a markdown heading marker, then a list marker: `## 1. Intro` -> `Intro`."""
    return _LIST_MARKER.sub("", _MD_HEADING_MARKER.sub(r"\1", line, count=1), count=1)


def _clean_heading(heading: str) -> str:
    heading = strip_inline(clean_line(heading))
    heading = _HEADING_LABEL.sub("", heading)
    heading = _strip_quotes(heading)
    # "Heading: a sentence describing it" -> keep the heading when the rest is long.
    head, sep, rest = heading.partition(": ")
    if sep and len(head) >= 3 and len(rest) > 40:
        heading = head
    heading = re.sub(r"\s+", " ", heading).strip().rstrip(":：.。")
    return truncate(heading, MAX_HEADING_CHARS - 1)


def clean_section(raw: str, heading: str) -> str:
    """The section body: no leading repeat of the heading, no trailing whitespace, no control
    or bidi characters (newlines and tabs kept)."""
    text = clean_text(raw).strip()
    lines = text.split("\n")
    while lines:
        first = strip_inline(lines[0]).strip().rstrip(":：")
        if not first:
            lines.pop(0)
            continue
        if first.casefold() == heading.casefold() or (lines[0].lstrip().startswith("#") and len(first) < 120):
            lines.pop(0)
            continue
        break
    # Demote headings inside the body so the article keeps one ## per section.
    body = "\n".join(re.sub(r"^#{1,2}(\s)", r"###\1", line) for line in lines)
    return re.sub(r"\n{3,}", "\n\n", body).strip()


_EXTRA_LABEL = re.compile(r"^(?:description|summary|excerpt|tags|keywords|描述|摘要|简介|标签|关键词)\s*[:：]\s*",
                          re.IGNORECASE)
_LIST_SPLIT = re.compile(r"[\n,;，；、|]+")
_HASHTAG = re.compile(r"^#(?=\w)")
_LIST_KEYS = ("items", "tags", "keywords", "list", "values", "headings")


def clean_extra_text(raw: str, limit: int) -> str:
    """An extra's `output: text` answer as one inert line of at most `limit` characters (plus
    an ellipsis when cut): its first paragraph (a small model goes on after the answer), without
    label ("Description:"), quotes, Markdown or line breaks."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", clean_text(raw)) if any(ch.isalnum() for ch in p)]
    line = strip_inline(clean_line(paragraphs[0].strip() if paragraphs else ""))
    line = _strip_quotes(_EXTRA_LABEL.sub("", line))
    line = re.sub(r"\s+", " ", line).strip()
    return inert_text(truncate(line, limit)) if any(ch.isalnum() for ch in line) else ""


_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"(\s*:)?')


def _cut_json_strings(raw: str) -> list[str] | None:
    """The whole string values of JSON cut short by `max_tokens` (`{"items": ["a", "b", "c`): keys
    and the unfinished last string left out; None when `raw` does not start as JSON."""
    if not raw.lstrip().startswith(("{", "[")):
        return None
    values = []
    for value, key in _JSON_STRING.findall(raw):
        if not key:
            try:
                values.append(json.loads(f'"{value}"'))
            except ValueError:  # a bad escape: the text as written
                values.append(value)
    return values


def parse_list(raw: str, *, max_items: int, limit: int) -> list[str]:
    """An extra's `output: list` answer: the items of a JSON list (`{"items": [...]}`, `{"tags":
    [...]}` or a bare list; of one cut short, its whole strings), else of comma-, semicolon- or
    line-separated text; each trimmed (list
    markers, `#`, quotes, Markdown, end punctuation), cut to `limit` characters, made inert; empty
    and repeated ones (ignoring case) dropped; at most `max_items`."""
    items = _from_json(raw, _LIST_KEYS)
    if items is None:
        items = _cut_json_strings(raw)
    if items is None:
        text = _EXTRA_LABEL.sub("", clean_text(raw).strip())
        items = [_strip_list_marker(part) for part in _LIST_SPLIT.split(text)]
    kept: list[str] = []
    seen: set[str] = set()
    for item in items:
        item = _strip_quotes(strip_inline(clean_line(item)))
        item = re.sub(r"\s+", " ", _HASHTAG.sub("", item)).strip().rstrip(".。:：!！")
        if not any(ch.isalnum() for ch in item) or _PREAMBLE.match(item):
            continue
        item = inert_text(truncate(item, limit))
        key = unicodedata.normalize("NFKC", item).casefold()
        if key not in seen:
            seen.add(key)
            kept.append(item)
        if len(kept) == max_items:
            break
    return kept
