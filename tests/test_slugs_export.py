"""copydesk.slugs and copydesk.export: safe file names, the CSV index and the Markdown articles."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from copydesk.article import Article, Section, Status
from copydesk.client import Usage
from copydesk.export import CSV_COLUMNS, RunExporter, neutralise
from copydesk.slugs import MAX_SLUG_LENGTH, SlugRegistry, is_windows_reserved, make_slug

#: The CSV columns the README promises, in order (written out here, not taken from the code).
CONTRACT_COLUMNS = ("run_id topic title slug status reasons word_count sections prompt_tokens completion_tokens "
                    "total_tokens grammar_issues moderation_flagged model path").split()
SAFE_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

# ----------------------------------------------------------------------------- slugs


def test_chinese_is_transliterated() -> None:
    assert make_slug("你好世界") == "ni-hao-shi-jie"
    assert make_slug("Python 异步编程") == "python-yi-bu-bian-cheng"


def test_accents_are_folded() -> None:
    assert make_slug("Café déjà vu") == "cafe-deja-vu"


@pytest.mark.parametrize("text", ["../../etc/passwd", "..\\..\\windows\\system32", "/abs/path", ".hidden", "a/../../b"])
def test_path_like_topics_give_no_slash_or_dot(text: str) -> None:
    slug = make_slug(text)
    assert "/" not in slug and "\\" not in slug and ".." not in slug and "." not in slug
    assert not slug.startswith("-")
    assert re.fullmatch(SAFE_SLUG, slug), slug


@pytest.mark.parametrize("text", ["", "   ", "!!!", "...", "..", "-", "😀😀", "？！。"])
def test_empty_or_punctuation_only_falls_back(text: str) -> None:
    assert make_slug(text) == "article"
    assert make_slug(text, fallback="topic-3") == "topic-3"


@pytest.mark.parametrize("text", ["a" * 500, "word " * 200, "异步编程" * 100, "x-" * 100])
def test_slug_length_is_capped(text: str) -> None:
    slug = make_slug(text)
    assert 0 < len(slug) <= MAX_SLUG_LENGTH == 80
    assert not slug.endswith("-")


def test_collisions_are_made_unique() -> None:
    registry = SlugRegistry()
    slugs = [registry.claim("Hello World") for _ in range(4)]
    assert slugs == ["hello-world", "hello-world-2", "hello-world-3", "hello-world-4"]


def test_collisions_of_long_slugs_stay_within_the_cap() -> None:
    registry = SlugRegistry()
    slugs = [registry.claim("x" * 200) for _ in range(12)]
    assert len(set(slugs)) == 12
    assert all(len(s) <= MAX_SLUG_LENGTH for s in slugs)


def test_collision_with_a_natural_suffix_is_still_unique() -> None:
    registry = SlugRegistry()
    slugs = [registry.claim("hello"), registry.claim("hello 2"), registry.claim("hello")]
    assert len(set(slugs)) == 3


def test_position_makes_suffix_independent_of_finishing_order() -> None:
    first = SlugRegistry()
    a = [first.claim("Same", position=1), first.claim("Same", position=2), first.claim("Same", position=3)]
    assert a == ["same", "same-2", "same-3"]
    second = SlugRegistry()
    b = [second.claim("Same", position=1), second.claim("Same", position=3), second.claim("Same", position=2)]
    assert b[1] == "same-3" and b[2] == "same-2"


def test_fallback_collisions() -> None:
    registry = SlugRegistry()
    assert [registry.claim("???"), registry.claim("!!!")] == ["article", "article-2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("con", "con-1"), ("CON", "con-1"), ("Nul", "nul-1"), ("aux", "aux-1"), ("prn!", "prn-1"),
     ("COM1", "com1-1"), ("com9", "com9-1"), ("LPT1", "lpt1-1"), ("lpt9", "lpt9-1"), ("com0", "com0-1")],
)
def test_windows_device_names_are_never_slugs(text: str, expected: str) -> None:
    slug = make_slug(text)
    assert slug == expected and not is_windows_reserved(slug)


def test_windows_device_names_before_a_dot_and_as_fallback() -> None:
    assert is_windows_reserved("nul.md") and is_windows_reserved("CON.tar.gz") and is_windows_reserved("com1")
    assert not is_windows_reserved("console.md") and not is_windows_reserved("com10")
    assert make_slug("???", fallback="nul") == "nul-1"
    # Words that merely start like a device name are left alone.
    assert [make_slug(t) for t in ("console", "con artist", "com10", "auxiliary")] == [
        "console", "con-artist", "com10", "auxiliary"]


def test_windows_device_name_collisions_stay_safe() -> None:
    registry = SlugRegistry()
    slugs = [registry.claim("con"), registry.claim("CON"), registry.claim("con 1")]
    assert len(set(slugs)) == 3 and not any(is_windows_reserved(s) for s in slugs)


# ----------------------------------------------------------------------------- articles


def article(status: Status = Status.PUBLISHED, **changes: object) -> Article:
    base = Article(
        index=1,
        topic="Python 异步编程",
        key="python-异步编程#1",
        title="异步编程入门",
        outline=["背景", "实践"],
        sections=[Section("背景", "异步编程很重要。", "stop", True), Section("实践", "Use asyncio today.", "stop", True)],
        status=status,
        slug="yi-bu-bian-cheng-ru-men",
    )
    base.add_usage("title", "gpt-4o-mini", Usage(10, 5, 15))
    base.add_usage("expansion", "gpt-4o-mini", Usage(100, 200, 300))
    base.note_model("gpt-4o-mini")
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def exporter(tmp_path: Path) -> RunExporter:
    return RunExporter(tmp_path / "run-1", run_id="run-1", language="zh-CN", pipeline="basic")


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    header, _, body = text[4:].partition("\n---\n")
    data = yaml.safe_load(header)
    assert isinstance(data, dict)
    return data


def test_markdown_front_matter(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    created = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    path = ex.write_article(article(), created=created)
    text = path.read_text(encoding="utf-8")
    data = front_matter(text)
    for field in ("title", "topic", "slug", "status", "language", "model", "tokens", "created"):
        assert field in data, field
    assert data["title"] == "异步编程入门"
    assert data["topic"] == "Python 异步编程"
    assert data["slug"] == "yi-bu-bian-cheng-ru-men"
    assert data["status"] == "published"
    assert data["language"] == "zh-CN"
    assert data["model"] == "gpt-4o-mini"
    assert data["tokens"] == {"prompt": 110, "completion": 205, "total": 315}
    assert str(data["created"]).startswith("2024-05-01T08:30:00")
    # Then the body: # Title and one ## per section.
    body = text.split("\n---\n", 1)[1]
    assert body.lstrip().startswith("# 异步编程入门")
    assert body.count("\n## ") == 2 and "## 背景" in body and "## 实践" in body


def test_front_matter_survives_yaml_special_characters(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    tricky = article(title='Title: "quoted" # not a comment', topic="---\nstatus: published\n- [x]: {y}")
    data = front_matter(ex.write_article(tricky).read_text(encoding="utf-8"))
    assert data["title"] == 'Title: "quoted" # not a comment'
    assert data["topic"] == "---\nstatus: published\n- [x]: {y}"
    assert data["status"] == "published"


def test_published_and_held_folders(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    published = ex.write_article(article(Status.PUBLISHED, slug="a"))
    assert published == tmp_path / "run-1" / "published" / "a.md"
    for i, status in enumerate((Status.NEEDS_REVIEW, Status.REJECTED, Status.INCOMPLETE)):
        art = article(status, slug=f"held-{i}", reasons=["why"])
        path = ex.write_article(art)
        assert path == tmp_path / "run-1" / "held" / f"held-{i}.md"
        assert art.path == f"held/held-{i}.md"
        assert front_matter(path.read_text(encoding="utf-8"))["reasons"] == ["why"]


def test_rewriting_after_a_status_change_removes_the_old_copy(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    art = article(Status.NEEDS_REVIEW)
    held = ex.write_article(art)
    assert held.exists()
    art.status = Status.PUBLISHED
    published = ex.write_article(art)
    assert published.exists() and not held.exists()
    assert art.path == "published/yi-bu-bian-cheng-ru-men.md"
    art.status = Status.REJECTED
    ex.write_article(art)
    assert held.exists() and not published.exists()
    assert sorted(p.relative_to(ex.run_dir).as_posix() for p in ex.run_dir.rglob("*.md")) == [
        "held/yi-bu-bian-cheng-ru-men.md"
    ]


def test_no_temporary_files_left_behind(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    ex.write_article(article())
    ex.write_csv([ex.row(article())])
    leftovers = [p for p in ex.run_dir.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


# ----------------------------------------------------------------------------- CSV


def test_csv_has_bom_and_every_contract_column(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    art = article()
    ex.write_article(art)
    path = ex.write_csv([ex.row(art)])
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\xef\xbb\xbf") == 1
    header = next(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    for column in CONTRACT_COLUMNS:
        assert column in header, column
    assert header == CSV_COLUMNS


def test_csv_chinese_round_trips_with_pandas(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    art = article()
    ex.write_article(art)
    frame = pd.read_csv(ex.write_csv([ex.row(art)]), encoding="utf-8-sig")
    assert list(frame.columns) == CSV_COLUMNS
    row = frame.iloc[0]
    assert row["topic"] == "Python 异步编程"
    assert row["title"] == "异步编程入门"
    assert row["status"] == "published"
    assert row["path"] == "published/yi-bu-bian-cheng-ru-men.md"
    assert (tmp_path / "run-1" / row["path"]).exists()  # path is relative to the CSV
    assert row["total_tokens"] == 315 and row["prompt_tokens"] == 110 and row["completion_tokens"] == 205
    assert row["sections"] == 2
    assert row["word_count"] == 10  # 7 CJK characters + 3 words


@pytest.mark.parametrize("cell", ["=cmd()", "+1", "-2", "@x", "=HYPERLINK(\"http://x\")", "\t=1", "＝1"])
def test_formula_cells_are_neutralised(tmp_path: Path, cell: str) -> None:
    ex = exporter(tmp_path)
    art = article(topic=cell, title=cell, reasons=[cell])
    ex.write_article(art)
    frame = pd.read_csv(ex.write_csv([ex.row(art)]), encoding="utf-8-sig", keep_default_na=False)
    row = frame.iloc[0]
    for column in ("topic", "title", "reasons"):
        value = str(row[column])
        assert value == "'" + cell, (column, value)


def test_safe_cells_and_numbers_are_untouched() -> None:
    assert neutralise("Plain text") == "Plain text"
    assert neutralise("a=b") == "a=b"
    assert neutralise(-5) == -5
    assert neutralise(None) is None


def test_no_topic_disappears_from_the_csv(tmp_path: Path) -> None:
    ex = exporter(tmp_path)
    done = article(slug="done")
    ex.write_article(done)
    empty = Article(index=2, topic="=cmd()", key="k2", slug="article", reasons=["budget"])  # incomplete, nothing written
    ex.write_article(empty)
    frame = pd.read_csv(ex.write_csv([ex.row(done), ex.row(empty)]), encoding="utf-8-sig", keep_default_na=False)
    assert len(frame) == 2
    assert list(frame["status"]) == ["published", "incomplete"]
    assert list(frame["topic"]) == ["Python 异步编程", "'=cmd()"]
    assert frame.iloc[1]["sections"] == 0 and frame.iloc[1]["word_count"] == 0
    assert frame.iloc[1]["path"] == "held/article.md"
