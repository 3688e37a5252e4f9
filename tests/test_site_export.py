"""export.target and export.dir (copydesk.sitetargets, copydesk.siteexport): front matter, layouts,
and the rules of a site's folder: nothing foreign replaced or removed, atomic writes, resumes.

Jekyll is checked against its documented rules (https://jekyllrb.com/docs/posts/,
/docs/front-matter/, /docs/posts/#drafts) without Ruby; MkDocs with a real `mkdocs build --strict`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, run_cli
from render_engines import PYTHON_ENGINES, problems

from copydesk import siteexport
from copydesk.article import Article, Section, Status
from copydesk.errors import SpecError
from copydesk.export import RunExporter
from copydesk.siteexport import JOURNAL_NAME, NAV_NAME, SiteFolderError
from copydesk.spec import ExportSpec, load_spec


def article(index: int, title: str, status: Status = Status.PUBLISHED, **extras: Any) -> Article:
    sections = [Section(f"Part {k}", f"Plain prose for part {k}.", written=True) for k in (1, 2)]
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return Article(index=index, topic=f"topic {index}", key=f"topic {index}\x001", title=title, sections=sections,
                   status=status, slug=slug, extras=dict(extras))


def exporter(tmp_path: Path, site: Path | None, run_id: str = "r1", **export: Any) -> RunExporter:
    spec = ExportSpec(dir=site, **export)
    return RunExporter(tmp_path / "out" / run_id, run_id=run_id, language="en-US", pipeline="demo", export=spec)


def split(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    return root


# ------------------------------------------------------------------------------ plain


def test_the_plain_target_writes_todays_files_and_nothing_else(tmp_path: Path) -> None:
    today = RunExporter(tmp_path / "a", run_id="r1", language="en-US", pipeline="demo")
    plain = RunExporter(tmp_path / "b", run_id="r1", language="en-US", pipeline="demo", export=ExportSpec())
    moment = datetime(2026, 1, 2, 3, 4, 5).astimezone()
    for one in (today, plain):
        one.write_article(article(0, "Hello World"), created=moment)
        one.remove_stale({"published/hello-world.md"})
    assert plain.site is None and tree(tmp_path / "a") == tree(tmp_path / "b")
    assert list(tree(tmp_path / "b")) == ["published/hello-world.md"]
    front, body = split(tmp_path / "b" / "published" / "hello-world.md")
    assert list(front) == ["title", "topic", "slug", "status", "language", "model", "tokens", "created", "pipeline",
                           "run_id"]
    assert body.startswith("\n# Hello World\n")


def test_plain_with_a_dir_puts_the_published_files_there(tmp_path: Path, site: Path) -> None:
    run = exporter(tmp_path, site)
    run.write_article(article(0, "Hello World"))
    run.write_article(article(1, "Held", Status.NEEDS_REVIEW))
    assert sorted(tree(site)) == [JOURNAL_NAME, siteexport.LOCK_NAME, "hello-world.md"]
    assert split(site / "hello-world.md")[0]["status"] == "published"


# ------------------------------------------------------------------------------ front matter


def test_hugo_front_matter_holds_what_hugo_reads_and_copydesk_under_one_key(tmp_path: Path, site: Path) -> None:
    run = exporter(tmp_path, site, target="hugo", section="blog/en")
    one = article(0, "Hello <script>alert(1)</script>", description="Short <img src=x onerror=alert(1)>",
                  tags=["python", "", "python", "{{< shortcode >}}"], mood="calm")
    one.reasons = ["a <b>reason</b>"]
    run.write_article(one)
    front, body = split(site / "content" / "blog" / "en" / f"{one.slug}.md")
    assert list(front)[:5] == ["title", "date", "lastmod", "draft", "slug"]
    assert datetime.fromisoformat(front["date"]).utcoffset() == timedelta(0)
    assert front["draft"] is False and front["slug"] == one.slug
    assert front["title"] == "Hello &lt;script>alert(1)&lt;/script>"
    assert front["description"] == front["summary"] == "Short &lt;img src=x onerror=alert(1)>"
    assert front["tags"] == ["python", "{{ < shortcode >}}"]
    own = front["copydesk"]
    assert own["run_id"] == "r1" and own["status"] == "published" and own["pipeline"] == "demo"
    assert own["reasons"] == ["a &lt;b>reason&lt;/b>"] and own["extras"] == {"mood": "calm"}
    assert set(front) & {"status", "run_id", "tokens", "created", "model"} == set()
    assert body.startswith("\n## Part 1\n") and "# Hello" not in body  # Hugo shows the title


def test_mkdocs_pages_keep_their_heading_and_are_never_drafts(tmp_path: Path, site: Path) -> None:
    run = exporter(tmp_path, site, target="mkdocs")
    run.write_article(article(0, "Shown", tags=["a"]))
    run.write_article(article(1, "Held back", Status.NEEDS_REVIEW))
    front, body = split(site / "docs" / "shown.md")
    assert body.startswith("\n# Shown\n\n## Part 1")  # MkDocs themes show the page's own heading
    assert set(front["date"]) == {"created", "updated"} and front["tags"] == ["a"]
    assert not (site / "docs" / "held-back.md").exists()  # MkDocs has no drafts: the run folder keeps it
    assert (tmp_path / "out" / "r1" / "held" / "held-back.md").exists()


# ------------------------------------------------------------------------------ Jekyll's rules

#: https://jekyllrb.com/docs/posts/: "YEAR-MONTH-DAY-title.MARKUP", YEAR four digits, MONTH and DAY two.
JEKYLL_POST = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})-(?P<title>[^/]+)\.md")


def test_jekyll_files_follow_jekylls_documented_rules(tmp_path: Path, site: Path) -> None:
    run = exporter(tmp_path, site, target="jekyll")
    posts = [article(0, "First Post", description="One.", tags=["a b", "c"], categories=["news"]),
             article(1, "Second Post")]
    drafts = [article(2, "Not Yet", Status.NEEDS_REVIEW), article(3, "Flagged", Status.REJECTED)]
    for one in posts + drafts:
        run.write_article(one)
    names = sorted(p.name for p in (site / "_posts").iterdir())
    assert len(names) == 2
    for name, one in zip(names, sorted(posts, key=lambda a: a.slug), strict=True):
        match = JEKYLL_POST.fullmatch(name)
        assert match and match["title"] == one.slug, name
        front, body = split(site / "_posts" / name)  # front matter: the first thing, between --- lines
        date = datetime.fromisoformat(front["date"])
        assert date.strftime("%Y-%m-%d") == match["date"] and date.utcoffset() == timedelta(0)
        assert datetime.fromisoformat(front["last_modified_at"]) >= date
        assert front["title"] == one.title and front["slug"] == one.slug and "draft" not in front
        assert front.get("published", True) is True  # `published: false` would hide it
        assert "layout" not in front and "permalink" not in front  # the site's defaults decide
        assert not body.lstrip().startswith("# ")  # the layout shows page.title
    first = split(next((site / "_posts").glob("*-first-post.md")))[0]
    assert first["tags"] == ["a b", "c"] and first["categories"] == ["news"] and first["description"] == "One."
    # https://jekyllrb.com/docs/posts/#drafts: _drafts/title.MARKUP, no date in the name
    assert sorted(p.name for p in (site / "_drafts").iterdir()) == ["flagged.md", "not-yet.md"]
    assert split(site / "_drafts" / "not-yet.md")[0]["draft"] is True


def test_a_draft_published_on_a_resume_moves_to_posts_and_keeps_its_date(tmp_path: Path, site: Path) -> None:
    one = article(0, "Moving", Status.NEEDS_REVIEW)
    exporter(tmp_path, site, target="jekyll").write_article(one)
    date = split(site / "_drafts" / "moving.md")[0]["date"]
    one.status = Status.PUBLISHED
    resumed = exporter(tmp_path, site, target="jekyll")  # the same run id: a resume
    resumed.write_article(one)
    assert not (site / "_drafts" / "moving.md").exists()
    front = split(next((site / "_posts").glob("*-moving.md")))[0]
    assert front["date"] == date and front["last_modified_at"] >= date


# ------------------------------------------------------------------------------ foreign files


def test_a_foreign_file_is_never_overwritten_and_the_article_takes_the_next_name(tmp_path: Path, site: Path) -> None:
    hand = site / "content" / "posts" / "hello.md"
    hand.parent.mkdir(parents=True)
    hand.write_text("mine\n", encoding="utf-8")
    run = exporter(tmp_path, site, target="hugo")
    run.write_article(article(0, "Hello"))
    assert hand.read_text(encoding="utf-8") == "mine\n"
    front = split(site / "content" / "posts" / "hello-2.md")[0]
    assert front["slug"] == "hello-2" and front["copydesk"]["run_id"] == "r1"
    run.remove_stale(set())  # the run ends owning nothing: only its own file goes
    assert hand.read_text(encoding="utf-8") == "mine\n" and not (site / "content" / "posts" / "hello-2.md").exists()


def test_another_runs_files_are_left_alone(tmp_path: Path, site: Path) -> None:
    first = exporter(tmp_path, site, "first", target="hugo")
    first.write_article(article(0, "Same Title"))
    before = tree(site / "content")
    second = exporter(tmp_path, site, "second", target="hugo")
    second.write_article(article(0, "Same Title"))
    assert split(site / "content" / "posts" / "same-title-2.md")[0]["copydesk"]["run_id"] == "second"
    second.remove_stale(set())  # the second run ends owning nothing: its own file goes, the first run's stays
    assert tree(site / "content") == before


def test_overwrite_true_replaces_a_foreign_file(tmp_path: Path, site: Path) -> None:
    hand = site / "docs" / "hello.md"
    hand.parent.mkdir(parents=True)
    hand.write_text("mine\n", encoding="utf-8")
    exporter(tmp_path, site, target="mkdocs", overwrite=True).write_article(article(0, "Hello"))
    assert split(hand)[0]["copydesk"]["run_id"] == "r1"


def test_a_file_edited_since_is_neither_rewritten_nor_removed(tmp_path: Path, site: Path) -> None:
    run = exporter(tmp_path, site, target="hugo")
    one = article(0, "Edited")
    run.write_article(one)
    path = site / "content" / "posts" / "edited.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nAn editor's line.\n", encoding="utf-8")
    edited = path.read_bytes()
    resumed = exporter(tmp_path, site, target="hugo")
    resumed.write_article(one)
    resumed.remove_stale(set())
    assert path.read_bytes() == edited and not (site / "content" / "posts" / "edited-2.md").exists()
    assert any("edited since copydesk wrote it" in note for note in resumed.notes)


def test_a_resume_rewrites_its_own_files_in_place(tmp_path: Path, site: Path) -> None:
    one = article(0, "Again")
    exporter(tmp_path, site, target="hugo").write_article(one)
    first = split(site / "content" / "posts" / "again.md")[0]
    one.sections[0].body = "Rewritten."
    exporter(tmp_path, site, target="hugo").write_article(one)
    assert sorted(p.name for p in (site / "content" / "posts").iterdir()) == ["again.md"]
    front, body = split(site / "content" / "posts" / "again.md")
    assert "Rewritten." in body and front["date"] == first["date"]


def test_a_failed_write_leaves_the_old_file_whole_and_says_so(tmp_path: Path, site: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    one = article(0, "Whole")
    run = exporter(tmp_path, site, target="hugo")
    run.write_article(one)
    path = site / "content" / "posts" / "whole.md"
    before = path.read_bytes()
    real_replace = os.replace

    def refuse(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    one.sections[0].body = "New text."
    run.write_article(one)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["whole.md"]  # no temporary file left
    assert any("No space left on device" in note for note in run.notes)
    assert (tmp_path / "out" / "r1" / "published" / "whole.md").read_text(encoding="utf-8").count("New text.") == 1


# ------------------------------------------------------------------------------ MkDocs, built for real


def test_mkdocs_builds_strict_with_every_article_in_the_nav(tmp_path: Path, site: Path) -> None:
    (site / "docs").mkdir()
    (site / "docs" / "index.md").write_text("# Team docs\n\nWritten by hand.\n", encoding="utf-8")
    (site / "mkdocs.yml").write_text(f"INHERIT: {NAV_NAME}\nsite_name: Team\ntheme:\n  name: mkdocs\n"
                                     "use_directory_urls: false\n", encoding="utf-8")
    run = exporter(tmp_path, site, target="mkdocs", section="articles")
    articles = [article(0, "Alpha Page", description="A."), article(1, "Beta <b>Page</b>", tags=["x"]),
                article(2, "Held Page", Status.NEEDS_REVIEW)]
    for one in articles:
        run.write_article(one)
    run.remove_stale({a.path for a in articles})
    nav = yaml.safe_load((site / NAV_NAME).read_text(encoding="utf-8"))["nav"]
    assert sorted(next(iter(item.values())) for item in nav) == sorted(f"articles/{a.slug}.md" for a in articles[:2])
    built = subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "-q", "-f",
                            str(site / "mkdocs.yml"), "-d", str(site / "public")],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr[-3000:]
    for one in articles[:2]:
        html = (site / "public" / "articles" / f"{one.slug}.html").read_text(encoding="utf-8")
        assert html.count("<h1") == 1, html
        for other in articles[:2]:  # both pages are in each page's nav
            assert f'href="{other.slug}.html"' in html or f'href="../articles/{other.slug}.html"' in html, other.slug
    assert not (site / "public" / "articles" / "held-page.html").exists()
    assert "&lt;b>" in (site / "public" / "articles" / f"{articles[1].slug}.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ the spec and bad folders


def _spec(basic_spec: Path, export: dict[str, Any]) -> Path:
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["export"] = export
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    return basic_spec


def test_a_relative_export_dir_is_the_spec_folders(basic_spec: Path) -> None:
    spec = load_spec(_spec(basic_spec, {"target": "hugo", "dir": "../site"}))
    assert spec.export.dir == basic_spec.parent.resolve() / ".." / "site"


@pytest.mark.parametrize(("export", "field"), [({"target": "hugo", "markdown": False}, "export"),
                                               ({"target": "gatsby"}, "export.target"),
                                               ({"target": "hugo", "section": "../up"}, "export.section")])
def test_a_bad_export_section_names_its_field(basic_spec: Path, export: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=rf"{re.escape(field)}: "):
        load_spec(_spec(basic_spec, export))


def test_an_unwritable_site_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SiteFolderError, match="export.dir: .* does not exist"):
        siteexport.check_site_dir(tmp_path / "missing")
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(SiteFolderError, match="export.dir: .* is not a folder"):
        siteexport.check_site_dir(tmp_path / "file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(SiteFolderError, match="not writable"):
            siteexport.check_site_dir(locked)


def test_a_missing_site_folder_exits_2_before_any_call(basic_spec: Path, cli_env: dict[str, str], fake_api: Any,
                                                        tmp_path: Path) -> None:
    _spec(basic_spec, {"target": "hugo", "dir": str(tmp_path / "no-site")})
    result = run_cli(["run", str(basic_spec), "--topic", "x", "--out", str(tmp_path / "out")], cli_env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "export.dir" in result.stderr and "does not exist" in result.stderr
    assert fake_api.total_tokens == 0


def test_a_journal_line_naming_a_path_outside_the_site_is_never_acted_on(tmp_path: Path, site: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("not the site's\n", encoding="utf-8")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    lines = [{"op": "write", "path": path, "run_id": "r1", "slug": "gone", "sha256": digest}
             for path in ("../outside.md", str(outside), "content/../../outside.md")]
    (site / JOURNAL_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    run = exporter(tmp_path, site, target="hugo")
    run.write_article(article(0, "Kept"))
    run.remove_stale(set())  # would remove every file of this run the journal names
    assert outside.read_text(encoding="utf-8") == "not the site's\n"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_hostile_output_is_inert_in_every_targets_file(tmp_path: Path) -> None:
    """Every payload of the hostile corpus as title, heading, body, description and tags, through each
    target: every front-matter value and body, rendered by every Python engine, holds nothing active
    (Hugo's own engine: test_site_hugo.py)."""
    payloads = json.loads((FIXTURES / "hostile" / "payloads.json").read_text(encoding="utf-8"))["payloads"]
    texts: dict[str, str] = {}  # text -> where it was first seen (the targets share most values)
    for target in ("hugo", "jekyll", "mkdocs"):
        site = tmp_path / target
        site.mkdir()
        run = exporter(tmp_path, site, target=target)
        for n, payload in enumerate(payloads):
            line = payload.split("\n", 1)[0]
            run.write_article(Article(index=n, topic=payload, key=f"{n}", title=line,
                                      sections=[Section(line, payload, written=True)], status=Status.PUBLISHED,
                                      slug=f"hostile-{n}", extras={"description": payload, "tags": [payload, "x"]}))
            front, body = split(next(site.rglob(f"*hostile-{n}.md")))
            for i, text in enumerate([body, *_strings(front)]):
                texts.setdefault(text, f"{target} payload {n} {'body' if i == 0 else f'front matter {i}'}")
    found = [f"{where} {engine}: {p}" for text, where in texts.items()
             for engine, render in PYTHON_ENGINES.items() for p in problems(render(text))]
    assert not found, "\n".join(found[:30])


def test_a_resume_through_the_command_rewrites_its_own_pages_and_reports_an_edited_one(
        basic_spec: Path, cli_env: dict[str, str], fake_api: Any, tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "docs").mkdir(parents=True)
    _spec(basic_spec, {"target": "mkdocs", "dir": str(site)})
    args = ["run", str(basic_spec), "--topic", "first topic", "--topic", "second topic", "--out", str(tmp_path / "out"),
            "--run-id", "again"]
    assert run_cli(args, cli_env).returncode == 0
    pages = sorted((site / "docs").glob("*.md"))
    assert [p.name for p in pages] == ["a-practical-guide-2.md", "a-practical-guide.md"]  # the fake's one title
    dates = {p.name: split(p)[0]["date"] for p in pages}
    pages[0].write_text(pages[0].read_text(encoding="utf-8") + "\nAn editor's line.\n", encoding="utf-8")
    edited = pages[0].read_bytes()

    result = run_cli(args, cli_env)  # the same run id: a resume, every call from the run's call store
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (site / "docs").glob("*.md")) == [p.name for p in pages]
    assert pages[0].read_bytes() == edited
    front = split(pages[1])[0]
    assert front["date"]["created"] == dates[pages[1].name]["created"]
    summary = json.loads((tmp_path / "out" / "again" / "summary.json").read_text(encoding="utf-8"))
    assert any("edited since copydesk wrote it" in note and pages[0].name in note for note in summary["notes"])
    nav = yaml.safe_load((site / NAV_NAME).read_text(encoding="utf-8"))["nav"]
    assert sorted(next(iter(item.values())) for item in nav) == [p.name for p in pages]
