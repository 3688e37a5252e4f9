"""Export: an article's Markdown and CSV row, written into its run folder (and, with
`export.target` / `export.dir`, into a site's folder: `copydesk.siteexport`, whose front
matter and layouts are `copydesk.sitetargets`').

The folder's layout, its file names, the CSV format and the front matter are
`copydesk.rundir`'s; this module turns an `Article` into them. Everything the
model wrote passes through `copydesk.sanitize` on its way into a Markdown file:
raw HTML is escaped and script URLs are blocked, so a static-site generator that
renders raw HTML publishes nothing active.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from copydesk import rundir, sitetargets
from copydesk.article import Article
from copydesk.controls import clean_line, clean_value
from copydesk.rundir import CSV_COLUMNS, CSV_NAME, Status, atomic_write, neutralise
from copydesk.sanitize import inert_markdown, inert_text
from copydesk.siteexport import SiteExporter, check_site_dir
from copydesk.sitetargets import Placement
from copydesk.spec import ExportSpec
from copydesk.text import count_words

__all__ = ["CSV_COLUMNS", "CSV_NAME", "RunExporter", "atomic_write", "neutralise"]


def extra_cell(value: str | list[str] | None) -> str:
    """An extra's CSV cell: its text, a list's items joined by ", ", "" when the article has none."""
    if value is None:
        return ""
    return ", ".join(value) if isinstance(value, list) else value


class RunExporter:
    def __init__(self, run_dir: Path, *, run_id: str, language: str, pipeline: str,
                 extras: Sequence[str] = (), export: ExportSpec | None = None) -> None:
        self.run_dir = run_dir
        #: The spec's extra stages, in their declared order: front-matter keys and the CSV's last columns.
        self.extras = tuple(extras)
        self.run_id = run_id
        self.language = language
        self.pipeline = pipeline
        self.run_dir.mkdir(parents=True, exist_ok=True)
        #: What did not reach the site (export.dir), for the summary's notes.
        self.notes: list[str] = []
        #: The site the articles are also written into (`export.target`, `export.dir`), or None.
        self.site: SiteExporter | None = None
        if export is not None and export.markdown and (export.dir is not None or export.target != "plain"):
            if export.dir is None:  # the target's layout, inside the run folder
                root = run_dir / rundir.SITE_DIR
                root.mkdir(exist_ok=True)
            else:
                root = check_site_dir(export.dir)
            self.site = SiteExporter(root, target=export.target, run_id=run_id, render=self._render_site,
                                     section=export.section, drafts=export.drafts, overwrite=export.overwrite,
                                     notes=self.notes)

    # -- articles -----------------------------------------------------------------

    def folder_for(self, status: Status) -> str:
        return rundir.folder_for(status)

    def write_article(self, article: Article, *, created: datetime | None = None) -> Path:
        """Write (or rewrite) one article's Markdown; removes its copy in the other folder."""
        relpath = rundir.article_relpath(article.status, article.slug)
        path = self.run_dir / relpath
        for folder in rundir.ARTICLE_DIRS:
            other = self.run_dir / folder / path.name
            if other != path:
                other.unlink(missing_ok=True)
        atomic_write(path, self.markdown(article, created=created))
        article.path = relpath
        if self.site is not None:
            self.site.write(article)
        return path

    def _render_site(self, article: Article, where: Placement) -> str:
        if self.site is None or self.site.target == "plain":
            return self.markdown(article, created=where.date)
        return sitetargets.render(self.site.target, article, where, run_id=self.run_id, pipeline=self.pipeline,
                                  language=self.language)

    def markdown(self, article: Article, *, created: datetime | None = None) -> str:
        usage = article.usage
        front: dict[str, Any] = {
            "title": inert_text(clean_line(article.display_title)),
            "topic": inert_text(article.topic),
            "slug": article.slug,
            "status": article.status.value,
            "language": self.language,
            "model": inert_text(", ".join(article.models)) or None,
            "tokens": {
                "prompt": usage.prompt_tokens,
                "completion": usage.completion_tokens,
                "total": usage.total_tokens,
            },
            "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
            "pipeline": self.pipeline,
            "run_id": self.run_id,
        }
        for name, value in article.extras.items():  # already inert (copydesk.postprocess)
            front[name] = [inert_text(clean_line(v)) for v in value] if isinstance(value, list) else \
                inert_text(clean_line(value))
        front.update(sitetargets.verdict_fields(article, one_line=False))
        return rundir.render_front_matter(front, "\n" + inert_markdown(article.body_markdown()))

    # -- the index and the reports ----------------------------------------------------

    def word_count(self, article: Article) -> int:
        """The prose's words (the CSV's word_count); kept on the article once its text is released."""
        if article.word_count is not None:
            return article.word_count
        return count_words("\n".join(s.body for s in article.sections), self.language) if article.sections else 0

    def row(self, article: Article, est_cost_usd: float | None = None) -> dict[str, Any]:
        usage = article.usage
        words = self.word_count(article)
        return {
            "run_id": self.run_id,
            "topic": article.topic,
            "title": article.title,
            "slug": article.slug,
            "status": article.status.value,
            "reasons": "; ".join(article.reasons),
            "word_count": words,
            "sections": sum(1 for s in article.sections if s.written),
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "grammar_issues": article.grammar_issues,
            "moderation_flagged": article.moderation_flagged,
            "model": ", ".join(article.models),
            "path": article.path,
            "est_cost_usd": None if est_cost_usd is None else round(est_cost_usd, 6),
            "fallback_from": article.fallback_from or "",
            "cached_calls": article.cached_calls,
            "cached_prompt_tokens": usage.cached_prompt_tokens,
            **{name: extra_cell(article.extras.get(name)) for name in self.extras},
        }

    def write_csv(self, rows: Iterable[dict[str, Any]], *, bom: bool = True) -> Path:
        return rundir.write_csv(self.run_dir, rows, bom=bom, extra_columns=self.extras)

    def write_json(self, name: str, data: Any) -> Path:
        """qc_report.json, summary.json: strings from model output without control or bidi characters."""
        return rundir.write_json(self.run_dir / name, clean_value(data))

    def remove_stale(self, keep: set[str]) -> None:
        """Drop Markdown files of an earlier attempt of this run that no article owns now (in the
        run folder, and this run's own files in the site); then the site's nav (mkdocs)."""
        for folder in rundir.ARTICLE_DIRS:
            for path in (self.run_dir / folder).glob("*.md"):
                if path.relative_to(self.run_dir).as_posix() not in keep:
                    path.unlink(missing_ok=True)
        if self.site is not None:
            self.site.finish(Path(relpath).stem for relpath in keep if relpath)
