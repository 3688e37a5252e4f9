"""What each site generator reads: the front matter and file layout of `export.target`.

`plain` is copydesk's own front matter (`copydesk.export.RunExporter.markdown`); the
site targets write the keys their generator reads, and copydesk's own fields under one
key, `copydesk:`, so that none collides with the generator's (MkDocs Material's `status`,
Hugo's `model`, ...):

=========  ================================  ===========================================
target     file (relative to the site)        front matter
=========  ================================  ===========================================
hugo       content/<section>/<slug>.md        title, date, lastmod, draft, slug,
           (section: posts unless set)        description, summary, tags, categories
jekyll     _posts/YYYY-MM-DD-<slug>.md,       title, date, last_modified_at, slug,
           drafts _drafts/<slug>.md           description, tags, categories (draft: true)
mkdocs     docs/[<section>/]<slug>.md         title, description, tags, date {created, updated}
plain      <slug>.md                          copydesk's own (the run folder's format)
=========  ================================  ===========================================

Hugo and Jekyll show the front matter's title: their body starts at the first section
(no `# Title`). MkDocs themes show the page's own first heading, so its body keeps it.
Dates are RFC 3339 in UTC. Every value that came from the model passes through
`copydesk.sanitize.inert_text` (front matter) or `inert_markdown` (body).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from copydesk.article import Article, Status
from copydesk.controls import clean_line
from copydesk.rundir import render_front_matter
from copydesk.sanitize import inert_markdown, inert_text

TARGETS = ("plain", "hugo", "jekyll", "mkdocs")
#: The targets whose generator knows drafts (a held article may go into the site as one).
DRAFT_TARGETS = frozenset({"hugo", "jekyll"})
HUGO_SECTION = "posts"
#: Extras that become top-level front matter keys (where the article has them); others go under `copydesk.extras`.
LIST_EXTRAS = ("tags", "categories", "keywords")
TEXT_EXTRAS = ("description", "summary")


@dataclass(frozen=True)
class Placement:
    """Where and how one article lands in the site."""

    relpath: str  # relative to the site's folder, with /
    site_slug: str
    date: datetime
    lastmod: datetime
    draft: bool


def rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def relpath(target: str, *, slug: str, date: datetime, draft: bool, section: str | None) -> str:
    """The article's file in the site, relative to its folder."""
    if target == "hugo":
        return f"content/{section or HUGO_SECTION}/{slug}.md"
    if target == "jekyll":
        return f"_drafts/{slug}.md" if draft else f"_posts/{date:%Y-%m-%d}-{slug}.md"
    if target == "mkdocs":
        return f"docs/{section}/{slug}.md" if section else f"docs/{slug}.md"
    return f"{slug}.md"


def goes_to_site(target: str, status: Status, *, drafts: bool) -> bool:
    """Published articles always; held ones as drafts where the generator knows drafts (and `drafts`)."""
    return status == Status.PUBLISHED or (drafts and target in DRAFT_TARGETS)


def render(target: str, article: Article, where: Placement, *, run_id: str, pipeline: str, language: str) -> str:
    """The Markdown file of `article` for a site target (not plain)."""
    front = front_matter(target, article, where, run_id=run_id, pipeline=pipeline, language=language)
    return render_front_matter(front, "\n" + inert_markdown(body(target, article)))


def body(target: str, article: Article) -> str:
    """The article's Markdown; without its `# Title` where the generator shows the front matter's title."""
    text = article.body_markdown()
    if target in ("hugo", "jekyll"):
        text = text.partition("\n\n")[2]
    return text


def front_matter(target: str, article: Article, where: Placement, *, run_id: str, pipeline: str,
                 language: str) -> dict[str, Any]:
    front: dict[str, Any] = {"title": inert_text(clean_line(article.display_title))}
    date, lastmod = rfc3339(where.date), rfc3339(where.lastmod)
    if target == "hugo":
        front.update(date=date, lastmod=lastmod, draft=where.draft, slug=where.site_slug)
    elif target == "jekyll":
        front.update(date=date, last_modified_at=lastmod, slug=where.site_slug)
        if where.draft:
            front["draft"] = True
    else:  # mkdocs: Material's blog reads date: {created, updated}; core MkDocs ignores it
        front.update(date={"created": date, "updated": lastmod}, slug=where.site_slug)
    extras = _extras(article)
    if "description" in extras:
        front["description"] = extras.pop("description")
    if target == "hugo" and ("summary" in extras or "description" in front):  # Hugo's .Summary
        front["summary"] = extras.pop("summary", front.get("description"))
    for name in LIST_EXTRAS:
        if name in extras:
            front[name] = extras.pop(name)
    front["copydesk"] = own_fields(article, run_id=run_id, pipeline=pipeline, language=language, rest=extras)
    return front


def own_fields(article: Article, *, run_id: str, pipeline: str, language: str,
               rest: dict[str, str | list[str]]) -> dict[str, Any]:
    """copydesk's fields, under the one `copydesk:` key."""
    usage = article.usage
    own: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": pipeline,
        "status": article.status.value,
        "topic": inert_text(clean_line(article.topic)),
        "language": language,
        "model": inert_text(", ".join(article.models)) or None,
        "tokens": {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens,
                   "total": usage.total_tokens},
    }
    own.update(verdict_fields(article, one_line=True))
    if rest:
        own["extras"] = rest
    return own


def _extras(article: Article) -> dict[str, str | list[str]]:
    """The article's extras, inert, empty ones left out: text as one line, lists as lists of lines."""
    out: dict[str, str | list[str]] = {}
    for name, value in article.extras.items():
        if isinstance(value, str):
            text = inert_text(clean_line(value)).strip()
            if text:
                out[str(name)] = text
        elif isinstance(value, list):
            items = [inert_text(clean_line(str(item))).strip() for item in value]
            items = list(dict.fromkeys(item for item in items if item))
            if items:
                out[str(name)] = items
    return out


def verdict_fields(article: Article, *, one_line: bool) -> dict[str, Any]:
    """The gate's fields an article has (reasons, grammar issues, moderation, fallback), inert; each
    reason on one line when `one_line` (the plain target keeps them as the gate wrote them)."""
    fields: dict[str, Any] = {}
    if article.reasons:
        fields["reasons"] = [inert_text(clean_line(r) if one_line else r) for r in article.reasons]
    if article.grammar_issues is not None:
        fields["grammar_issues"] = article.grammar_issues
    if article.moderation_flagged is not None:
        fields["moderation_flagged"] = article.moderation_flagged
    if article.fallback_from:
        fields["fallback_from"] = inert_text(article.fallback_from)
    return fields
