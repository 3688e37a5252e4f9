"""Export: Markdown articles with front matter, `articles.csv`, the QC report.

Layout of one run folder::

    <out>/<run_id>/
        articles.csv          one row per requested topic, whatever happened to it
        published/<slug>.md   passed QC: a static-site generator can take this folder as is
        held/<slug>.md        needs_review, rejected and incomplete articles, with their reasons
        qc_report.json        every check's result per article
        summary.json          counts, tokens, budget
        calls.jsonl           the call store that lets `--run-id` resume
        metrics.prom          Prometheus text format (textfile-collector convention)

The CSV is UTF-8 with a byte-order mark (Excel then reads Chinese correctly) and
neutralises any text cell that a spreadsheet would run as a formula.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from copydesk.article import Article, Status
from copydesk.text import count_words

CSV_NAME = "articles.csv"
CSV_COLUMNS = [
    "run_id",
    "topic",
    "title",
    "slug",
    "status",
    "reasons",
    "word_count",
    "sections",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "grammar_issues",
    "moderation_flagged",
    "model",
    "path",
    "est_cost_usd",
    "fallback_from",
    "cached_calls",
]
_UMASK = os.umask(0)
os.umask(_UMASK)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def neutralise(cell: Any) -> Any:
    """Prefix a text cell that a spreadsheet would evaluate (OWASP's CSV injection advice)."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def atomic_write(path: Path, data: str | bytes, encoding: str = "utf-8") -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode(encoding) if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; exports are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunExporter:
    def __init__(self, run_dir: Path, *, run_id: str, language: str, pipeline: str) -> None:
        self.run_dir = run_dir
        self.run_id = run_id
        self.language = language
        self.pipeline = pipeline
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # -- articles -----------------------------------------------------------------

    def folder_for(self, status: Status) -> str:
        return "published" if status == Status.PUBLISHED else "held"

    def write_article(self, article: Article, *, created: datetime | None = None) -> Path:
        """Write (or rewrite) one article's Markdown; removes its copy in the other folder."""
        folder = self.folder_for(article.status)
        path = self.run_dir / folder / f"{article.slug}.md"
        other = self.run_dir / ("held" if folder == "published" else "published") / f"{article.slug}.md"
        other.unlink(missing_ok=True)
        atomic_write(path, self.markdown(article, created=created))
        article.path = path.relative_to(self.run_dir).as_posix()
        return path

    def markdown(self, article: Article, *, created: datetime | None = None) -> str:
        usage = article.usage
        front: dict[str, Any] = {
            "title": article.display_title,
            "topic": article.topic,
            "slug": article.slug,
            "status": article.status.value,
            "language": self.language,
            "model": ", ".join(article.models) or None,
            "tokens": {
                "prompt": usage.prompt_tokens,
                "completion": usage.completion_tokens,
                "total": usage.total_tokens,
            },
            "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
            "pipeline": self.pipeline,
            "run_id": self.run_id,
        }
        if article.reasons:
            front["reasons"] = list(article.reasons)
        if article.grammar_issues is not None:
            front["grammar_issues"] = article.grammar_issues
        if article.moderation_flagged is not None:
            front["moderation_flagged"] = article.moderation_flagged
        if article.fallback_from:
            front["fallback_from"] = article.fallback_from
        header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000)
        return f"---\n{header}---\n\n{article.body_markdown()}"

    # -- the index and the reports ----------------------------------------------------

    def row(self, article: Article, est_cost_usd: float | None = None) -> dict[str, Any]:
        usage = article.usage
        words = count_words("\n".join(s.body for s in article.sections), self.language) if article.sections else 0
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
        }

    def write_csv(self, rows: Iterable[dict[str, Any]], *, bom: bool = True) -> Path:
        import pandas as pd  # imported here: it costs ~0.3 s and only the CSV needs it

        frame = pd.DataFrame(list(rows), columns=CSV_COLUMNS)
        for column in frame.columns:
            frame[column] = frame[column].map(neutralise)
        frame["grammar_issues"] = frame["grammar_issues"].astype("Int64")
        path = self.run_dir / CSV_NAME
        atomic_write(path, frame.to_csv(index=False, lineterminator="\r\n"), encoding="utf-8-sig" if bom else "utf-8")
        return path

    def write_json(self, name: str, data: Any) -> Path:
        path = self.run_dir / name
        atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
        return path

    def remove_stale(self, keep: set[str]) -> None:
        """Drop Markdown files of an earlier attempt of this run that no article owns now."""
        for folder in ("published", "held"):
            for path in (self.run_dir / folder).glob("*.md"):
                if path.relative_to(self.run_dir).as_posix() not in keep:
                    path.unlink(missing_ok=True)
