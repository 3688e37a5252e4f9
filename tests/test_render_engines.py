"""Hostile model output, through the real `copydesk run`, rendered by four Markdown engines.

The fake API answers with the payloads of tests/fixtures/hostile/payloads.json: as
section bodies, titles, outline headings, and in topics. Every file copydesk writes
(published and held) is then rendered with markdown-it-py, python-markdown as MkDocs
and mkdocs-material run it, mistune, and Hugo's goldmark (a real `hugo build` with
`unsafe = true`); the HTML is parsed with the standard library's parser and must hold
no active element, event attribute or script/data URL. The same run's files must hold
no control, bidi or zero-width character where the issue forbids them.
"""

from __future__ import annotations

import json
from html import unescape
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import FIXTURES, SECRET_KEY, run_cli
from fake_openai import SENTENCES, FakeOpenAI
import render_engines
from render_engines import PYTHON_ENGINES, hugo_build, hugo_site, problems

from copydesk.sanitize import inert_markdown, inert_text

PAYLOADS: list[str] = json.loads((FIXTURES / "hostile" / "payloads.json").read_text(encoding="utf-8"))["payloads"]
PER_ARTICLE = 3
ARTICLES = math.ceil(len(PAYLOADS) / PER_ARTICLE)
CLEAN_TOPIC = "HX999 writing clean tests"

#: Characters no file may carry (finding 10): C0 but tab and newline, DEL, C1, bidi controls.
FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")


def _one_line(text: str) -> str:
    return text.split("\n", 1)[0]


def _filler(n: int) -> str:
    """Four sentences of plain prose, different for each n (the gate's repetition check)."""
    return " ".join(SENTENCES[(n * 4 + i) % len(SENTENCES)] for i in range(4))


def _payload(n: int) -> str:
    return PAYLOADS[n % len(PAYLOADS)]


def reply(body: dict[str, Any]) -> str:
    """Title, outline or section for topic HX<k>: the payloads of article k."""
    user = body["messages"][-1]["content"]
    found = re.search(r"HX(\d{3})", user)
    k = int(found.group(1)) if found else 999
    if k == 999:
        if "Write the section" in user:
            return _filler(int(re.search(r"section (\d+)/", user).group(1)))
        if "Make an outline" in user:
            return "1. Why tests matter\n2. How to name them\n3. What to check first"
        return "Writing Clean Tests"
    if "Write the section" in user:
        index = int(re.search(r"section (\d+)/", user).group(1)) - 1
        payload = _payload(k * PER_ARTICLE + index)
        return f"{payload}\n\n{_filler(k + index)}" if index % 2 == 0 else \
            f"{_filler(k + index)}\n\n{payload}\n\n{_filler(k + index + 3)}"
    if "Make an outline" in user:
        return "\n".join(f"{j}. Part {j} {_one_line(_payload(k * PER_ARTICLE + 40 + j))}" for j in (1, 2, 3))
    return f"Title {k} {_one_line(_payload(k * PER_ARTICLE))}"


def _topics() -> list[str]:
    topics = [f"HX{k:03d} " + (_one_line(_payload(k + 7)) if k % 3 == 0 else "topic") for k in range(ARTICLES)]
    return [*topics, CLEAN_TOPIC]


@pytest.fixture(scope="module")
def hostile_run(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The run folder of one real `copydesk run` over the whole corpus."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(FIXTURES, root / "fixtures")
    spec_path = root / "fixtures" / "pipelines" / "basic.yaml"
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    spec["budget"] = {"max_total_tokens": 5_000_000}
    spec["concurrency"] = 16
    spec["qc"] = {"grammar": {"enabled": False}, "moderation": {"enabled": True, "provider": "auto"},
                  "min_words": 20, "relevance": {"enabled": False}, "thin_sections": {"enabled": False},
                  "originality": {"enabled": False}, "duplication": {"enabled": False}}
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    topics_file = root / "topics.txt"
    topics_file.write_text("\n".join(_topics()) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "COPYDESK_"))}
    with FakeOpenAI(reply=reply) as fake:
        env.update(OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET_KEY, PREFECT_API_URL=prefect_server,
                   COPYDESK_STATE_DIR=str(root / "state"), COPYDESK_KEEP_SERVERS="false", COLUMNS="200")
        result = run_cli(["run", str(spec_path), "--topics-file", str(topics_file), "--out", str(root / "out"),
                          "--run-id", "hostile"], env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    yield root / "out" / "hostile"


def _articles(run_dir: Path) -> list[Path]:
    return sorted([*run_dir.glob("published/*.md"), *run_dir.glob("held/*.md")])


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _split(text: str) -> tuple[dict[str, Any], str]:
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


# ------------------------------------------------------------------------------ finding 1: XSS


def test_hostile_corpus_is_inert_on_every_engine(hostile_run: Path, tmp_path: Path) -> None:
    files = _articles(hostile_run)
    rows = pd.read_csv(hostile_run / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    assert len(rows) == ARTICLES + 1 and len(files) == ARTICLES + 1
    assert list(hostile_run.glob("published/*.md")) and list(hostile_run.glob("held/*.md"))

    found: list[str] = []
    for path in files:
        front, body = _split(path.read_text(encoding="utf-8"))
        texts = {"body": body, **{f"front matter {i}": s for i, s in enumerate(_strings(front))}}
        for engine, render in PYTHON_ENGINES.items():
            for where, text in texts.items():
                found += [f"{engine} {path.parent.name}/{path.name} {where}: {p}" for p in problems(render(text))]

    site = hugo_site(tmp_path / "site")
    for path in files:
        target = site / "content" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    built = hugo_build(site)
    assert built.returncode == 0, built.stderr[-3000:]
    pages = {p.relative_to(site / "public").as_posix(): p for p in (site / "public").rglob("*.html")}
    for path in files:
        page = f"{path.parent.name}/{path.stem}.html"
        assert page in pages, (page, sorted(pages)[:10])
        found += [f"hugo {page}: {p}" for p in problems(pages[page].read_text(encoding="utf-8"))]
    assert not found, "\n".join(found[:40])


def test_a_reason_quoting_a_link_with_a_backtick_title_is_inert_in_front_matter() -> None:
    """The Markdown check quotes the line it found raw HTML on; two such quotes in one front matter value
    (a link titled with a backtick, then a reference definition) made python-markdown with material's
    extensions close the link's attribute early, leaving `onerror` live. The backticks go (`&#96;`)."""
    reasons = ('raw HTML (shown as text once exported) in section 2 "Part 2" line 3: '
               '"[a](https://x "`") <img src=x onerror=alert(1)> `"; link reference definition (not shown) '
               'in section 3 "Part 3 `a" line 3: "[evil]: javascript:alert(1)"')
    assert problems(PYTHON_ENGINES["python-markdown/material"](reasons))  # live as written
    value = inert_text(reasons)
    assert "`" not in value
    assert {engine: problems(render(value)) for engine, render in PYTHON_ENGINES.items()} == {
        engine: [] for engine in PYTHON_ENGINES}
    assert inert_text("Using `asyncio` well") == "Using `asyncio` well"  # no link: backticks stay


def test_the_corpus_is_live_without_the_sanitizer() -> None:
    """The corpus is hostile: rendered raw, most payloads are active on some engine, and each
    one the issue names is active on python-markdown."""
    live = [p for p in PAYLOADS if any(problems(render(p)) for render in PYTHON_ENGINES.values())]
    assert len(PAYLOADS) >= 100 and len(live) >= 80, len(live)
    named = ["\\<svg/onload=alert(document.domain)>", "> ~~~\n> <img src=x onerror=alert(1)>\n> ~~~",
             "<img src=x\nonerror=alert(1)>", "[x](java\tscript:alert(1))"]
    for payload in named:
        assert payload in PAYLOADS
        assert problems(PYTHON_ENGINES["python-markdown/mkdocs"](payload)), payload


def test_issue_payloads_come_out_inert_on_python_markdown() -> None:
    """The payloads of the issue, one by one and inside list items, as MkDocs renders them."""
    cases = ["\\<svg/onload=alert(document.domain)>", "> ~~~\n> <img src=x onerror=alert(1)>\n> ~~~",
             "<img src=x\nonerror=alert(1)>", "- step\n\n  ```\n  <img src=x onerror=alert(1)>\n  ```",
             "1. step\n\n        <script>alert(1)</script>", "```<img src=x onerror=alert(1)>`",
             "[x](java\tscript:alert(1))"]
    for case in cases:
        for render in PYTHON_ENGINES.values():
            assert problems(render(inert_markdown(case))) == [], case
    assert inert_markdown("[x](java\tscript:alert(1))") == "[x](#)"


def test_the_svg_section_is_held_with_a_markdown_reason(hostile_run: Path) -> None:
    """`\\<svg/onload=…>` was published with no QC reason: now the markdown check holds it."""
    k = PAYLOADS.index("\\<svg/onload=alert(document.domain)>") // PER_ARTICLE
    rows = pd.read_csv(hostile_run / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    row = rows[rows["topic"].str.startswith(f"HX{k:03d} ")].iloc[0]
    assert row["status"] == "needs_review" and "markdown" in row["reasons"], row.to_dict()


def test_ordinary_markdown_comes_out_unchanged() -> None:
    ordinary = ("# A title\n\n## A heading\n\nText with **bold**, _emphasis_, `inline code` and `<div>` in code, "
                "a [link](https://example.com/a?b=c&d=e) and <https://example.com>.\n\n- one\n- two\n\n1. first\n"
                "2. second\n\n> a quote with 3 < 4 and 5 > 2\n\n```python\nif a < b:\n    print('<tag>')\n```\n\n"
                "| x | y |\n|---|---|\n| 1 | 2 |\n")
    assert inert_markdown(ordinary) == ordinary


def test_a_fence_in_a_list_item_stays_code_on_every_engine() -> None:
    """A list item's fence (python-markdown's fenced_code does not read it) is moved to the
    start of its lines: code on every engine, shown as written."""
    text = "1. Install:\n\n   ```html\n   <div class=\"x\">hi</div>\n   ```\n\n2. Done.\n"
    out = inert_markdown(text)
    assert "```html\n<div class=\"x\">hi</div>\n```" in out
    for render in PYTHON_ENGINES.values():
        html = render(out)
        shown = unescape(re.sub(r"<[^>]*>", "", html))  # the text a reader sees (highlighting dropped)
        assert problems(html) == [] and "<pre" in html and '<div class="x">hi</div>' in shown


# ------------------------------------------------------------------------------ finding 10: control characters


def test_no_control_or_bidi_character_reaches_a_file(hostile_run: Path) -> None:
    for path in _articles(hostile_run):
        text = path.read_text(encoding="utf-8")
        assert not FORBIDDEN.search(text), (path.name, FORBIDDEN.findall(text))
        front, body = _split(text)
        assert not ZERO_WIDTH.search(front["title"]) and not ZERO_WIDTH.search(body.split("\n", 2)[1])
        assert re.fullmatch(r"[a-z0-9-]+", front["slug"])
    csv_text = (hostile_run / "articles.csv").read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    assert not FORBIDDEN.search(csv_text), FORBIDDEN.findall(csv_text)
    for name in ("qc_report.json", "summary.json"):
        for string in _strings(json.loads((hostile_run / name).read_text(encoding="utf-8"))):
            assert not FORBIDDEN.search(string), (name, string[:200])
    rows = pd.read_csv(hostile_run / "articles.csv", encoding="utf-8-sig", keep_default_na=False)
    titled = rows[rows["title"].str.contains("Good title")]
    assert len(titled) >= 1 and not titled["title"].str.contains(ZERO_WIDTH.pattern).any()
    assert titled["title"].str.contains("with evil and zerowidth").all(), titled["title"].tolist()


def test_the_hugo_site_renders_raw_html_and_shortcodes(tmp_path: Path) -> None:
    """The Hugo site is the worst case the matrix claims: raw HTML and shortcodes (an iframe)
    are live there without the sanitizer, and inert with it. (goldmark itself drops event
    attributes from attribute lists.)"""
    site = hugo_site(tmp_path / "site")
    raw = "<img src=x onerror=alert(1)>\n\npara\n{onclick=\"alert(1)\"}\n\n{{< youtube dQw4w9WgXcQ >}}\n"
    for name, body in (("raw", raw), ("inert", inert_markdown(raw))):
        (site / "content" / f"{name}.md").write_text(f"---\ntitle: {name}\n---\n{body}", encoding="utf-8")
    built = hugo_build(site)
    assert built.returncode == 0, built.stderr[-3000:]
    found = problems((site / "public" / "raw.html").read_text(encoding="utf-8"))
    assert {"<img onerror=…> event attribute", "<iframe> element"} <= set(found), found
    assert problems((site / "public" / "inert.html").read_text(encoding="utf-8")) == []


PIECES = ["`", "``", "```", "\n", "\n\n", "> ", "- ", "1. ", "    ", "  ", "\t", "[", "]", "(", ")", "<", ">", "\\",
          "&", ":", "<b>", "</b>", "javascript:", "data:", "&#106;", "![", "](", "]: ", "[^1]: ", ": ", "{", "}",
          "{: onclick=x}", "|", "---\n", "~~~\n", "<!--", "-->", '"', "*", "_", "https://x/", "www.x.org",
          "{{<", ">}}", "!!! note\n", "??? note\n", '=== "Tab"\n', "Term\n", "*[HTML]: x", "&#", "&#;",
          "\n   ```\n   <img src=x onerror=alert(1)>\n   ```\n", "\n  ~~~\n"]


def test_random_mixtures_render_inert_on_every_python_engine() -> None:
    """Seeded mixtures of corpus payloads and Markdown punctuation (fences and code spans cut
    in odd places, containers, linkified URLs before backticks): inert on the four Python
    renderings whatever the sanitizer decides. (The Hugo build above covers goldmark.)"""
    import random

    rng = random.Random(20)
    pieces = [*PAYLOADS, *PIECES]
    found = []
    for _ in range(250):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        out = inert_markdown(text)
        found += [(engine, text) for engine, render in PYTHON_ENGINES.items() if problems(render(out))]
    assert not found, found[:3]


@pytest.mark.parametrize("section", [
    '--8<-- "secret.txt"',
    '   --8<-- "secret.txt"',
    "-8<-\nsecret.txt\n-8<-",
    '```\n--8<-- "secret.txt"\n```',
    '- item\n\n    ---8<--- "secret.txt"',
])
def test_no_snippet_include_reaches_a_mkdocs_site(tmp_path: Path, section: str) -> None:
    """pymdownx.snippets (a common MkDocs extension) includes local files named after `--8<--`,
    even inside code: the model's marker is broken, so nothing of the site's machine is read."""
    (tmp_path / "secret.txt").write_text("SECRET-FILE-CONTENT\n", encoding="utf-8")
    config = {"pymdownx.snippets": {"base_path": [str(tmp_path)], "check_paths": False}}
    extensions = [*render_engines.MATERIAL_EXTENSIONS, "pymdownx.snippets"]

    def render(text: str) -> str:
        return render_engines.python_markdown.markdown(text, extensions=extensions, extension_configs=config)

    assert "SECRET-FILE-CONTENT" in render(section)  # the include is real without the sanitizer
    assert "SECRET-FILE-CONTENT" not in render(inert_markdown(section))
