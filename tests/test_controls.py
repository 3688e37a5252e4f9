"""Control, bidi and zero-width characters (copydesk.controls) and where they are dropped:
model output (postprocess), topics (request), slugs, and the files the exporter writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from copydesk.article import Article, Section, Status
from copydesk.controls import clean_line, clean_text, clean_value
from copydesk.export import RunExporter
from copydesk.postprocess import clean_section, clean_title, parse_outline
from copydesk.request import clean_topics
from copydesk.slugs import make_slug

OSC_TITLE = "Good title \x1b]0;pwned\x07 with \u202eevil\u202c and zero\u200bwidth"
FORBIDDEN = ["\x1b", "\x07", "\x00", "\x9b", "\x85", "\u202e", "\u202c", "\u2066", "\u2069", "\u200e", "\u200f",
             "\u061c", "\u202a"]


def test_clean_text_keeps_newlines_and_tabs() -> None:
    assert clean_text("a\r\nb\tc\x07\u2066d\x1b[31me\x1b[0m\x00") == "a\nb\tcde"
    assert clean_text("plain text\n\tindented") == "plain text\n\tindented"
    assert clean_text("zero\u200bwidth \u200d joiner") == "zero\u200bwidth \u200d joiner"  # bodies keep them


def test_clean_line_drops_escape_sequences_whole_and_zero_width() -> None:
    assert clean_line(OSC_TITLE) == "Good title  with evil and zerowidth"
    assert clean_line("a\nb\tc\u2028d") == "a b c d"
    assert clean_line("x\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\ y") == "xlink y"  # OSC 8 hyperlink
    assert clean_line("\ufeffBOM \u2060word\u200c") == "BOM word"
    assert clean_line("异步编程 — ok") == "异步编程 — ok"


def test_clean_value_walks_reports() -> None:
    data = {"k\x1b": ["a\u202eb", {"c": "d\x00"}], "n": 3, "t": ("\x9b2Jx",)}
    assert clean_value(data) == {"k": ["ab", {"c": "d"}], "n": 3, "t": ("x",)}


def test_model_output_is_cleaned_at_the_source() -> None:
    title = clean_title(OSC_TITLE)
    assert title == "Good title with evil and zerowidth"
    headings = parse_outline("1. Why \u202eit\u200b matters\x07\n2. How \x1b[1mit\x1b[0m works\n3. Next",
                             min_sections=3, max_sections=7)
    assert headings == ["Why it matters", "How it works", "Next"]
    body = clean_section("First line\x1b]0;x\x07 here\r\n\n\tcode\u202e", "Heading")
    assert body == "First line here\n\n\tcode"


def test_topics_and_slugs_lose_them() -> None:
    assert clean_topics(["Topic \u202ewith\u200b marks\x1b[2J"]) == ["Topic with marks"]
    assert make_slug("zero\u200bwidth \u202etitle") == make_slug("zerowidth title") == "zerowidth-title"


def test_every_file_the_exporter_writes_is_clean(tmp_path: Path) -> None:
    """The last line of defence: an article whose fields were never cleaned (a hand-made
    Article, a resumed run's old text) still writes no such character."""
    article = Article(index=0, topic="topic \u202e\x1b[31m", key="t\x001", title=OSC_TITLE, slug="good-title",
                      status=Status.NEEDS_REVIEW, generated=True, reasons=["markdown: \x07 \u2066odd\u2069"])
    article.outline = ["Part \u202e1"]
    article.sections = [Section("Part \u202e1", "Body \x1b]0;t\x07 text\u200f here.", "stop", True)]
    exporter = RunExporter(tmp_path / "run", run_id="run", language="en-US", pipeline="basic")
    text = exporter.write_article(article).read_text(encoding="utf-8")
    exporter.write_csv([exporter.row(article)])
    exporter.write_json("qc_report.json", {"articles": [{"detail": "quote \x1b[2J\u202e"}]})
    csv_text = (tmp_path / "run" / "articles.csv").read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    report = (tmp_path / "run" / "qc_report.json").read_text(encoding="utf-8")
    for content in (text, csv_text, json.dumps(json.loads(report), ensure_ascii=False)):
        assert not [c for c in FORBIDDEN if c in content], content
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["title"] == "Good title  with evil and zerowidth"
    assert pd.read_csv(tmp_path / "run" / "articles.csv", encoding="utf-8-sig")["reasons"][0] == "markdown:  odd"
