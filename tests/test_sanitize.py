"""Model output made inert (copydesk.sanitize), in exported Markdown and in Prefect artifacts.

The exported files are rendered the way a static-site generator that allows raw HTML
would (markdown-it-py, CommonMark, html on, no link validation), and the HTML is
inspected with the standard library's parser: no script, no on*= attribute, no
script or data URL survives; code stays code; clean articles come out unchanged."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

import copydesk.sanitize as sanitize
from copydesk.article import Article, Section, Status
from copydesk.export import RunExporter
from copydesk.sanitize import active_parts, inert_markdown, inert_text, safe_url

HOSTILE = [
    "Hello <script>alert(1)</script> world.",
    "<script>\nalert(document.cookie)\n</script>",
    "An image <img src=x onerror=alert(1)> here.",
    '<div onmouseover="alert(1)">hover</div>',
    "<svg onload=alert(1)>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "[click](javascript:alert(1)) and [case](JaVaScRiPt:alert(1)) and [enc](&#106;avascript:alert(1))",
    "[colon](javascript&colon;alert(1)) [hex](javascript&#x3A;alert(1)) [angle](<javascript:alert(1)>)",
    "![pixel](data:image/png;base64,iVBORw0KGgo=) ![svg](data:image/svg+xml;base64,PHN2Zz4=)",
    "[vb](vbscript:msgbox(1)) <javascript:alert(1)> <DATA:text/html,<script>alert(1)</script>>",
    "[ref link][evil]\n\n[evil]: javascript:alert(1)",
    "> [quoted][q]\n>\n> [q]:\n>   data:text/html;base64,PHNjcmlwdD4=",
    "<!-- <script>alert(1)</script> --> <?php system('x') ?>",
    "| a | b |\n|---|---|\n| <script>x</script> | [l](javascript:y) |",
    "<b>\n`<script>alert(1)</script>`",
    "<div>`\n<script>alert(1)</script>\n`</div>",
    "<a href='javascript:alert(1)'>x</a> <A HREF=\"jav&#x09;ascript:alert(1)\">y</A>",
]


class _Inspector(HTMLParser):
    """Every element, attribute and URL of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((name, value or "") for name, value in attrs)

    handle_startendtag = handle_starttag

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_pi(self, data: str) -> None:
        self.comments.append(data)


def render_like_an_ssg(markdown: str) -> str:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.validateLink = lambda url: True  # a permissive renderer: every URL goes out as written
    return md.render(markdown)


def assert_inert(html: str) -> _Inspector:
    page = _Inspector()
    page.feed(html)
    assert "script" not in page.tags and "iframe" not in page.tags and "svg" not in page.tags, page.tags
    assert not [name for name, _ in page.attrs if name.lower().startswith("on")], page.attrs
    for name, value in page.attrs:
        if name in ("href", "src"):
            squeezed = "".join(value.split()).lower()
            assert not squeezed.startswith(("javascript:", "data:", "vbscript:")), value
    assert not page.comments
    return page


def _article(sections: list[str], title: str = "A Title", **changes: object) -> Article:
    article = Article(index=0, topic="topic", key="topic\x001", title=title, slug="a-title",
                      status=Status.PUBLISHED, generated=True)
    article.outline = [f"Part {i}" for i in range(1, len(sections) + 1)]
    article.sections = [Section(h, body, "stop", True) for h, body in zip(article.outline, sections, strict=True)]
    article.note_model("gpt-4o-mini")
    for key, value in changes.items():
        setattr(article, key, value)
    return article


def _export(tmp_path: Path, article: Article) -> tuple[dict, str]:
    exporter = RunExporter(tmp_path / "run", run_id="run", language="en-US", pipeline="basic")
    text = exporter.write_article(article).read_text(encoding="utf-8")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


# ------------------------------------------------------------------------------ the exported Markdown


@pytest.mark.parametrize("hostile", HOSTILE)
def test_nothing_active_survives_in_an_exported_article(tmp_path: Path, hostile: str) -> None:
    raw = render_like_an_ssg(hostile)
    assert "<script" in raw or " on" in raw or "javascript:" in raw.lower() or "data:" in raw.lower() \
        or "<!--" in raw or "<?" in raw, "the sample is not hostile without the fix"

    _, body = _export(tmp_path, _article(["Intro text.", hostile]))
    assert_inert(render_like_an_ssg(body))
    assert active_parts(body) == []


def test_the_whole_set_at_once_and_in_the_title(tmp_path: Path) -> None:
    title = "<script>alert('t')</script> Title <img src=x onerror=alert(2)>"
    front, body = _export(tmp_path, _article(HOSTILE, title=title, reasons=["<b onclick=x>r</b>"]))
    assert_inert(render_like_an_ssg(body))
    # front matter values are text a template may print raw: no tag opener left, still valid YAML
    for value in (front["title"], front["reasons"][0]):
        assert "<" not in value.replace("&lt;", "")
        assert_inert(value)
    assert front["title"] == "&lt;script>alert('t')&lt;/script> Title &lt;img src=x onerror=alert(2)>"
    assert "# &lt;script>" in body  # escaped, so the reader still sees what the model wrote


def test_code_still_shows_script_as_code(tmp_path: Path) -> None:
    section = (
        "Never do this:\n\n```html\n<script>alert(1)</script>\n<img src=x onerror=alert(1)>\n```\n\n"
        "Inline, `<script>` is harmless too.\n\n    <script>indented()</script>\n"
    )
    _, body = _export(tmp_path, _article([section]))
    assert section in body  # untouched
    html = render_like_an_ssg(body)
    assert_inert(html)
    assert '<pre><code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;' in html
    assert "<code>&lt;script&gt;</code>" in html
    assert "<pre><code>&lt;script&gt;indented()&lt;/script&gt;" in html


def test_clean_articles_are_unchanged(tmp_path: Path) -> None:
    sections = [
        "Plain text with **bold**, _emphasis_ and a [link](https://example.com/a?b=c) or <https://example.com>.",
        "Mail <team@example.com> or [write](mailto:team@example.com). A [relative](../other.md) link, "
        "an [anchor](#part-1), and ![a chart](images/chart.png \"Chart\").",
        "Maths: 3 < 4 and 5 > 2; the data: 42 rows. Time 10:30. A <b>bold</b> word and a line<br>break.",
        "```python\nif a < b:\n    print('<tag>')\n```",
        "| x | y |\n|---|---|\n| 1 | 2 |",
        "中文段落，没有任何标记。",
    ]
    article = _article(sections)
    _, body = _export(tmp_path, article)
    assert body == "\n" + article.body_markdown()
    for section in sections:
        assert inert_markdown(section) is section or inert_markdown(section) == section


@pytest.mark.parametrize(
    ("url", "safe"),
    [("https://x", True), ("HTTP://x", True), ("mailto:a@b", True), ("/rel", True), ("#a", True), ("a/b:c", True),
     ("javascript:x", False), (" JavaScript:x", False), ("java\tscript:x", False), ("&#106;avascript:x", False),
     ("javascript&colon;x", False), ("data:text/html,x", False), ("vbscript:x", False), ("file:///etc", False),
     ("\x01javascript:x", False)],
)
def test_safe_url(url: str, safe: bool) -> None:
    assert safe_url(url) is safe


def test_inert_text_escapes_only_tag_openers() -> None:
    assert inert_text("3 < 4, a<b>c, <!-- x -->, </p>, <?x") == "3 < 4, a&lt;b>c, &lt;!-- x -->, &lt;/p>, &lt;?x"
    assert inert_text("clean") == "clean"


def test_pathological_input_is_still_inert() -> None:
    # nesting made to confuse a rewrite: whatever path is taken, the result renders inert
    nasty = "`<b>`" * 50 + "<script>x</script>" + "[a](" * 200 + "javascript:x" + ")" * 200
    assert_inert(render_like_an_ssg(inert_markdown(nasty)))
    spaces = " " * 5000 + "x"
    assert inert_markdown(spaces) == spaces  # no catastrophic backtracking


# ------------------------------------------------------------------------------ Prefect artifacts


def test_artifacts_are_inert(tmp_path: Path) -> None:
    from copydesk_flows.artifacts import article_markdown, build_artifacts, summary_markdown

    exporter = RunExporter(tmp_path / "run", run_id="run", language="en-US", pipeline="basic")
    article = _article(HOSTILE, title="<script>t()</script>", topic="<img src=x onerror=alert(1)>",
                       status=Status.NEEDS_REVIEW, reasons=["<script>why()</script>"])
    article.qc = {"checks": [{"name": "links", "ran": True, "passed": False, "severity": "soft",
                              "detail": "[bad](javascript:alert(1)) <script>d()</script>"}]}
    exporter.write_article(article)
    exporter.write_csv([exporter.row(article)])
    exporter.write_json("qc_report.json", {"articles": [{"slug": article.slug, "qc": article.qc}]})
    summary = {"run_id": "run", "pipeline": "basic", "fatal_error": "<script>fatal()</script>",
               "budget_message": "[x](javascript:alert(1))", "stopped_by_budget": True}

    artifacts = build_artifacts(tmp_path / "run", summary)
    for artifact in artifacts:
        if artifact.type == "table":
            for row in artifact.table:
                for cell in row.values():
                    assert "<" not in str(cell).replace("&lt;", ""), cell
        else:
            assert_inert(render_like_an_ssg(artifact.markdown))
        assert_inert(render_like_an_ssg(artifact.description or ""))
    assert_inert(render_like_an_ssg(summary_markdown(summary)))
    row = json.loads(json.dumps(exporter.row(article)))
    assert_inert(render_like_an_ssg(article_markdown({k: str(v) for k, v in row.items()},
                                                     "<script>raw()</script>", {"qc": article.qc})))


@pytest.mark.parametrize(
    "text",
    ['A paragraph.\n{: onclick="alert(1)"}', '[l](https://x){: onmouseover="a()"}', "# Heading {#id .cls onclick=x}",
     '![i](https://x/i.png){style="position:fixed" src="javascript:x"}'],
)
def test_attribute_lists_that_set_active_attributes_stay_text(text: str) -> None:
    """kramdown (Jekyll), Pandoc and goldmark (Hugo) read `{...}` after an element as its
    attributes; escaped, every renderer shows the braces as text instead."""
    out = inert_markdown(text)
    assert "\\{" in out and out.replace("\\{", "{") == text
    assert "{" in render_like_an_ssg(out)  # CommonMark shows the same text as before
    # not in code (a code span on one line: one over two lines is not code on every engine)
    assert inert_markdown("`" + text.replace("`", "").replace("\n", " ") + "`").count("\\{") == 0


def test_random_mixtures_of_markup_render_inert() -> None:
    """Seeded mixtures of hostile samples and Markdown punctuation (code fences and spans cut
    in odd places, brackets, containers): whatever the rewrite does, the page is inert."""
    import random

    pieces = [*HOSTILE, "`", "``", "```", "\n", "\n\n", "> ", "- ", "1. ", "    ", "[", "]", "(", ")", "<", ">",
              "\\", "&", ":", "<b>", "</b>", "javascript:", "data:", "&#106;", "![", "](", "]: ", "{: onclick=x}",
              "|", "---\n", "~~~\n", "<!--", "-->", '"']
    rng = random.Random(11)
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 25)))
        assert_inert(render_like_an_ssg(inert_markdown(text)))


def test_text_without_code_lines_is_not_parsed_for_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fence and no four-space line: nothing can be code, so no markdown-it parse (issue 25:
    an article's artifact was parsed twice for nothing); the result is the full path's."""
    text = "# Title: <b>x</b>\n\nSome prose with a [link](javascript:alert(1)) and {: .x}\n\n  two spaces\n"
    full = inert_markdown(text)
    monkeypatch.setattr(sanitize, "_parser", lambda: pytest.fail("parsed although no line can be code"))
    assert inert_markdown(text) == full
    assert "javascript" not in full


def test_code_lines_are_still_found_with_the_shortcut() -> None:
    """A fence or an indented block still goes through the parse: their `<` stays code."""
    fenced = inert_markdown("Intro: x\n\n```html\n<script>alert(1)</script>\n```\n")
    indented = inert_markdown("Intro: x\n\n    <script>alert(1)</script>\n")
    assert "<script>alert(1)</script>" in fenced
    assert "    <script>alert(1)</script>" in indented
    assert active_parts(fenced) == [] and active_parts(indented) == []
