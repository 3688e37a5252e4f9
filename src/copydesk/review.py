"""Human review of a finished run: approve or reject its `needs_review` articles.

Pure file operations on a run folder (see `copydesk.export` for its layout); no
Prefect. The Prefect UI (a paused flow run waiting for a decision form) and the
`copydesk review` command both end up in `apply_review`.

    approve   held/<slug>.md → published/<slug>.md, status published
    reject    stays in held/, status rejected

Each decision updates, in this order: the Markdown file (front matter `status`
and a `review` record), the `articles.csv` row (status, path, reasons),
`qc_report.json`, the counts in `summary.json`, and appends one line to
`reviews.jsonl` (the audit trail). Only `needs_review` articles can be decided;
moderation-rejected or incomplete articles cannot be approved here. A decision
that is already in effect is reported as unchanged, so applying the same
decision twice is harmless. Every slug is checked before anything is changed,
and one run folder is reviewed by one process at a time (a file lock).

A re-run of the same run id (resume) exports every article again and so
replaces earlier review decisions with fresh QC verdicts.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from copydesk.errors import InputError
from copydesk.export import CSV_NAME, atomic_write
from copydesk.locks import file_lock

PENDING = "needs_review"
APPROVED = "published"
REJECTED = "rejected"
REVIEW_LOG = "reviews.jsonl"


class ReviewError(InputError):
    """A review decision that cannot be applied (unknown slug, wrong status, not a run folder)."""


@dataclass(frozen=True)
class PendingArticle:
    slug: str
    title: str
    topic: str
    reasons: str
    path: str


@dataclass
class ReviewOutcome:
    run_dir: str
    approved: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: Articles still waiting for a decision after this one.
    pending: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return self.approved + self.rejected

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ reading


def _read_csv(run_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    path = run_dir / CSV_NAME
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            fields = list(reader.fieldnames or [])
    except FileNotFoundError:
        raise ReviewError(f"{run_dir}: not a run folder (no {CSV_NAME})") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReviewError(f"{path}: cannot read: {exc}") from None
    if not {"slug", "status", "path"} <= set(fields):
        raise ReviewError(f"{path}: missing the slug, status or path column")
    return fields, rows


def pending_reviews(run_dir: str | Path) -> list[PendingArticle]:
    """The run's articles that wait for an editor, in CSV order."""
    _, rows = _read_csv(Path(run_dir))
    return [
        PendingArticle(r["slug"], r.get("title", ""), r.get("topic", ""), r.get("reasons", ""), r["path"])
        for r in rows
        if r["status"] == PENDING
    ]


# ------------------------------------------------------------------------------ writing


def _locked(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    return file_lock(run_dir / ".review.lock")


def _inside(run_dir: Path, relative: str) -> Path:
    path = (run_dir / relative).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise ReviewError(f"{run_dir / CSV_NAME}: path {relative!r} points outside the run folder")
    return path


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---\n"):
        raise ReviewError(f"{path}: no YAML front matter")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise ReviewError(f"{path}: the front matter is not closed with ---")
    try:
        front = yaml.safe_load(text[4 : end + 1]) or {}
    except yaml.YAMLError as exc:
        raise ReviewError(f"{path}: unreadable front matter: {exc}") from None
    if not isinstance(front, dict):
        raise ReviewError(f"{path}: the front matter is not a mapping")
    return front, text[end + 5 :]


def _join_front_matter(front: dict[str, Any], body: str) -> str:
    header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{header}---\n{body}"


def _write_csv(run_dir: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run_dir / CSV_NAME, buffer.getvalue(), encoding="utf-8-sig")


def _update_json(path: Path, update: Any) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # optional reports: a missing or broken one is left alone
    update(data)
    atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def apply_review(
    run_dir: str | Path,
    *,
    approve: Iterable[str] = (),
    reject: Iterable[str] = (),
    reviewer: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ReviewOutcome:
    """Apply editors' decisions to a run folder; see the module docstring."""
    run_dir = Path(run_dir)
    approve = list(dict.fromkeys(s.strip() for s in approve if s and s.strip()))
    reject = list(dict.fromkeys(s.strip() for s in reject if s and s.strip()))
    both = sorted(set(approve) & set(reject))
    if both:
        raise ReviewError(f"both approved and rejected: {', '.join(both)}")
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    with _locked(run_dir) if run_dir.is_dir() else contextlib.nullcontext():
        fields, rows = _read_csv(run_dir)
        by_slug = {row["slug"]: row for row in rows if row.get("slug")}
        pending = [r["slug"] for r in rows if r["status"] == PENDING]
        decisions = [(slug, APPROVED) for slug in approve] + [(slug, REJECTED) for slug in reject]

        # check everything before changing anything
        unknown = [slug for slug, _ in decisions if slug not in by_slug]
        if unknown:
            raise ReviewError(
                f"{run_dir}: no article with slug {', '.join(map(repr, unknown))}; "
                f"waiting for review: {', '.join(pending) or 'none'}"
            )
        outcome = ReviewOutcome(str(run_dir))
        todo: list[tuple[dict[str, str], str]] = []
        for slug, target in decisions:
            row = by_slug[slug]
            if row["status"] == target:
                outcome.unchanged.append(slug)
            elif row["status"] != PENDING:
                verb = "approved" if target == APPROVED else "rejected"
                raise ReviewError(f"{slug} is {row['status']}: only needs_review articles can be {verb}")
            else:
                source = _inside(run_dir, row["path"])
                if not source.is_file():
                    raise ReviewError(f"{source}: the article's Markdown file is missing")
                todo.append((row, target))

        log_lines = []
        for row, target in todo:
            slug = row["slug"]
            decision = "approved" if target == APPROVED else "rejected"
            source = _inside(run_dir, row["path"])
            front, body = _split_front_matter(source.read_text(encoding="utf-8"), source)
            front["status"] = target
            record = {"decision": decision, "at": when}
            if reviewer:
                record["by"] = reviewer
            if note:
                record["note"] = note
            front["review"] = record
            folder = "published" if target == APPROVED else "held"
            destination = run_dir / folder / f"{slug}.md"
            atomic_write(destination, _join_front_matter(front, body))
            if destination.resolve() != source:
                source.unlink(missing_ok=True)
            row["status"] = target
            row["path"] = destination.relative_to(run_dir).as_posix()
            reason = f"{decision} by {reviewer}" if reviewer else f"{decision} by an editor"
            row["reasons"] = "; ".join(part for part in (row.get("reasons", ""), reason) if part)
            (outcome.approved if target == APPROVED else outcome.rejected).append(slug)
            log_lines.append(json.dumps({"slug": slug, **record}, ensure_ascii=False))

        if todo:
            _write_csv(run_dir, fields, rows)
            statuses = {row["slug"]: (row["status"], row["path"]) for row in rows}

            def update_report(data: dict[str, Any]) -> None:
                for article in data.get("articles", []):
                    if article.get("slug") in statuses:
                        article["status"] = statuses[article["slug"]][0]

            def update_summary(data: dict[str, Any]) -> None:
                data["by_status"] = dict(Counter(row["status"] for row in rows))

            _update_json(run_dir / "qc_report.json", update_report)
            _update_json(run_dir / "summary.json", update_summary)
            with open(run_dir / REVIEW_LOG, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in log_lines))
                handle.flush()
                os.fsync(handle.fileno())
        outcome.pending = [r["slug"] for r in rows if r["status"] == PENDING]
        return outcome
