"""copydesk.prose and copydesk.markup: Markdown read from markdown-it's tokens, one parse per text,
kept on the Draft; the one front-matter reader."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import copydesk
from copydesk import markup, prose, rundir, sanitize
from copydesk.prose import PROSE_CACHE, document, extract_prose, plain_text
from copydesk.qc.check import Draft
from copydesk.qc.heading_depth import too_deep
from copydesk.qc.markdown import demote_headings, markdown_findings
from copydesk.qc.placeholders import placeholder_findings

LIST_WITH_CODE = "Intro.\n\n1. Run it:\n\n    ```python\n    ## not a heading\n    print('[Insert name]')\n    ```\n\n2. Done.\n"


def _draft(*bodies: str) -> Draft:
    return Draft("topic", "Title", [f"S{k}" for k in range(len(bodies))],
                 [(f"S{k}", body) for k, body in enumerate(bodies)], "en-US")


def test_a_fence_inside_a_list_item_is_code_for_every_reader():
    """The tokens see the fence a list item holds (indented 4 spaces): not prose, no heading, no placeholder."""
    assert extract_prose(LIST_WITH_CODE).text == "Intro.\n\nRun it:\n\nDone."
    assert "print(" in plain_text(LIST_WITH_CODE)  # code is kept where asked for
    assert markdown_findings([("S", LIST_WITH_CODE)]) == []
    assert demote_headings(LIST_WITH_CODE) == (LIST_WITH_CODE, [])
    assert too_deep(LIST_WITH_CODE.replace("## not", "#### not"), 3) == []
    assert placeholder_findings([("S", LIST_WITH_CODE)]) == []


def test_one_parse_per_text_shared_by_the_draft_and_every_view(monkeypatch):
    parsed: list[str] = []
    real = prose.parse
    monkeypatch.setattr(prose, "parse", lambda text: parsed.append(text) or real(text))
    bodies = ("First *unique* body for the parse count.\n\n## Extra\n", "Second unique body, `code` and [a link](u).\n")
    draft = _draft(*bodies)
    docs = draft.documents
    assert [doc.markdown for doc in docs] == list(bodies)
    for body in bodies:
        extract_prose(body)
        plain_text(body, keep_code=False)
        markdown_findings([("h", body)])
        demote_headings(body)
    assert len(parsed) == 2
    assert all(document(body) is doc for body, doc in zip(bodies, docs, strict=True))
    assert docs[0].prose() is extract_prose(bodies[0])


def test_a_draft_keeps_its_parse_when_the_cache_has_moved_on():
    body = "A body the cache will forget, held by its draft.\n"
    draft = _draft(body)
    held = draft.documents[0]
    for k in range(PROSE_CACHE + 10):
        document(f"filler {k}\n")
    assert document(body) is held
    del draft, held
    gc.collect()
    for k in range(PROSE_CACHE + 10):
        document(f"other filler {k}\n")
    assert document(body).markdown == body  # parsed again: nothing keeps the old one


def test_tokens_count_the_lines_of_the_text():
    """A lone carriage return is no line break to the line readers: nor to the tokens' `map`."""
    doc = document("one\rstill one\n\n```\ncode\n```\n")
    assert doc.lines_outside_fences() == ([(1, "one\rstill one"), (2, ""), (6, "")], None)
    assert [t.map for t in doc.tokens if t.type == "fence"] == [[2, 5]]


def test_an_unclosed_fence_is_found_on_its_line():
    assert document("text\n\n```\ncode\n").lines_outside_fences() == ([(1, "text"), (2, "")], 3)


def test_the_one_parser_is_shared_with_the_sanitizer():
    assert sanitize._parser is markup.parser
    assert markup.parser() is markup.parser()


@pytest.mark.parametrize(("text", "expected"), [
    ("---\na: 1\n---\nbody", ("a: 1\n", "body")),
    ("---\r\na: 1\r\n...\r\nbody", ("a: 1\r\n", "body")),
    ("\ufeff---\na: 1\n---", ("a: 1\n", "")),
    ("---\na: 1\nno closing line", (None, "---\na: 1\nno closing line")),
    ("text\n---\n", (None, "text\n---\n")),
])
def test_the_one_front_matter_reader(text, expected):
    assert markup.split_front_matter(text) == expected
    assert rundir.split_front_matter is markup.split_front_matter


def test_front_matter_is_not_prose_and_keeps_line_numbers():
    text = "---\ntitle: x\n---\n## Extra\nBody.\n"
    assert extract_prose(text).text == "Extra\n\nBody."
    assert markdown_findings([("S", text)])[0]["line"] == 4


def test_one_markdown_it_instance_in_the_package():
    """Only copydesk.markup builds a markdown-it parser: every reader shares its configuration."""
    package = Path(copydesk.__file__).parent
    builders = sorted(str(path.relative_to(package)) for path in package.rglob("*.py")
                      if "MarkdownIt(" in path.read_text(encoding="utf-8"))
    assert builders == ["markup.py"]


@pytest.mark.parametrize(("body", "problems"), [
    ("Intro.\n\n- item\n\n    the item's second paragraph, indented.\n", []),  # a list's, not code
    ("Write \\<div> as text; `<div class=\"x\">` is code.\n", []),  # escaped, and in code: no raw HTML
    ("Text.\n\n\tindented with a tab\n", [("indented line renders as code", 3)]),
    ("Text <span class=\"n\">x</span> and\n<img src=x\nonerror=alert(1)> here.\n",
     [("raw HTML (shown as text once exported)", 1), ("raw HTML (shown as text once exported)", 2)]),
    ("Para\n<!-- hidden -->\n\nSee [the docs][d].\n\n[d]: https://example.com\n",
     [("HTML comment (hidden when rendered)", 2), ("link reference definition (not shown)", 6)]),
])
def test_the_markdown_check_reads_hidden_markup_from_the_tokens(body, problems):
    assert [(f["problem"], f["line"]) for f in markdown_findings([("S", body)])] == problems
