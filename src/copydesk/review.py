"""Human review of a finished run: approve or reject its `needs_review` articles.

File operations on a run folder (its layout and formats are `copydesk.rundir`'s);
no Prefect. The Prefect UI (a paused flow run waiting for a decision form) and
the `copydesk review` command both end up in `apply_review`.

    approve   held/<slug>.md → published/<slug>.md, status published
    reject    stays in held/, status rejected

Only `needs_review` articles can be decided; moderation-rejected or incomplete
articles cannot be approved here. A decision already in effect is reported as
unchanged, so applying the same decision twice is harmless. Every slug is checked
before anything is changed, and one run folder is reviewed by one process at a
time (a file lock).

The CSV is data anyone could have edited: an article's file must be
`published/<slug>.md` or `held/<slug>.md` directly inside the run folder (no
links, no other path). A decision is all-or-nothing:

1. an intent record (`.review-intent.json`) is written, durably, holding every
   new file's content and the new CSV;
2. the Markdown files are written to their folders (front matter `status` and a
   `review` record) and the old copies removed;
3. `articles.csv` is replaced atomically;
4. `qc_report.json`, the counts in `summary.json` and `reviews.jsonl` (the audit
   trail) are brought up to date;
5. the intent record is removed.

Every step can be repeated, so the next `copydesk review` or `pending_reviews` of
the folder (the flow's review calls it) first finishes a decision that was cut
short. An intent whose CSV no longer matches (the run was resumed since, which
exports every article afresh) is dropped instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from copydesk import rundir
from copydesk.errors import CopydeskError
from copydesk.locks import file_lock
from copydesk.rundir import CsvTable, RunFolderError, Status

log = logging.getLogger("copydesk.review")

PENDING = Status.NEEDS_REVIEW.value
APPROVED = Status.PUBLISHED.value
REJECTED = Status.REJECTED.value
REVIEW_LOG = rundir.REVIEW_LOG_NAME
INTENT_VERSION = 1


class ReviewError(RunFolderError):
    """A review decision that cannot be applied (unknown slug, wrong status, not a run folder)."""


class ReviewInterrupted(CopydeskError):
    """The files could not be written (exit 1): nothing changed, or the decision is recorded and
    the next review of the folder finishes it (the message says which)."""


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


@contextlib.contextmanager
def _as_review_errors() -> Iterator[None]:
    """The run folder's own errors, as the review's (same exit code, one type to catch)."""
    try:
        yield
    except ReviewError:
        raise
    except RunFolderError as exc:
        raise ReviewError(str(exc)) from exc


# ------------------------------------------------------------------------------ reading


def _read_csv(run_dir: Path) -> CsvTable:
    with _as_review_errors():
        table = rundir.read_csv(run_dir)
    if not {"slug", "status", "path"} <= set(table.columns):
        raise ReviewError(f"{run_dir / rundir.CSV_NAME}: missing the slug, status or path column")
    return table


def pending_reviews(run_dir: str | Path) -> list[PendingArticle]:
    """The run's articles that wait for an editor, in CSV order (after finishing a decision
    that was cut short). Reads only, unless there is such a decision."""
    run_dir = Path(run_dir)
    rows = _read_csv(run_dir).rows
    if (run_dir / rundir.REVIEW_INTENT_NAME).exists():
        with _locked(run_dir):
            finish_interrupted(run_dir)
            rows = _read_csv(run_dir).rows
    return [
        PendingArticle(r["slug"], r.get("title", ""), r.get("topic", ""), r.get("reasons", ""), r["path"])
        for r in rows
        if r["status"] == PENDING
    ]


# ------------------------------------------------------------------------------ writing


def _locked(run_dir: Path) -> contextlib.AbstractContextManager[None]:
    return file_lock(run_dir / rundir.REVIEW_LOCK_NAME)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _csv_digest(run_dir: Path) -> str | None:
    try:
        return _sha256((run_dir / rundir.CSV_NAME).read_bytes())
    except OSError:
        return None


def apply_review(
    run_dir: str | Path,
    *,
    approve: Iterable[str] = (),
    reject: Iterable[str] = (),
    reviewer: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> ReviewOutcome:
    """Apply editors' decisions to a run folder, all or nothing; see the module docstring."""
    run_dir = Path(run_dir)
    approve = list(dict.fromkeys(s.strip() for s in approve if s and s.strip()))
    reject = list(dict.fromkeys(s.strip() for s in reject if s and s.strip()))
    both = sorted(set(approve) & set(reject))
    if both:
        raise ReviewError(f"both approved and rejected: {', '.join(both)}")
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    _read_csv(run_dir)  # "not a run folder" before a lock file is made in it
    with _locked(run_dir):
        finish_interrupted(run_dir)
        table = _read_csv(run_dir)
        rows = table.rows
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
        todo: list[tuple[dict[str, str], str, Path]] = []
        for slug, target in decisions:
            row = by_slug[slug]
            if row["status"] == target:
                outcome.unchanged.append(slug)
            elif row["status"] != PENDING:
                verb = "approved" if target == APPROVED else "rejected"
                raise ReviewError(f"{slug} is {row['status']}: only needs_review articles can be {verb}")
            else:
                todo.append((row, target, _source(run_dir, row)))

        if todo:
            intent = _intent(run_dir, table, todo, when=when, reviewer=reviewer, note=note)
            for row, target, _ in todo:
                (outcome.approved if target == APPROVED else outcome.rejected).append(row["slug"])
            try:
                rundir.write_json(run_dir / rundir.REVIEW_INTENT_NAME, intent, durable=True)
            except OSError as exc:
                raise ReviewInterrupted(
                    f"{run_dir}: cannot record the review decision ({exc.strerror or exc}); nothing was changed"
                ) from exc
            _carry_out_or_say_so(run_dir, intent)
        outcome.pending = [r["slug"] for r in rows if r["status"] == PENDING]
        return outcome


def _source(run_dir: Path, row: dict[str, str]) -> Path:
    """The article file of a CSV row, confined to the run's article folders; checked to exist."""
    slug = row["slug"]
    with _as_review_errors():
        source = rundir.article_file(run_dir, row["path"])
    if source.name != f"{slug}.md":
        raise ReviewError(f"{run_dir / rundir.CSV_NAME}: path {row['path']!r} is not the file of slug {slug!r}")
    if not source.is_file():
        raise ReviewError(f"{source}: the article's Markdown file is missing")
    return source


def _intent(
    run_dir: Path,
    table: CsvTable,
    todo: list[tuple[dict[str, str], str, Path]],
    *,
    when: str,
    reviewer: str | None,
    note: str | None,
) -> dict[str, Any]:
    """Everything the decision changes, computed before anything is touched (changes `table`)."""
    base = _csv_digest(run_dir)
    moves, log_lines = [], []
    for row, target, source in todo:
        slug = row["slug"]
        decision = "approved" if target == APPROVED else "rejected"
        with _as_review_errors():
            front, body = rundir.parse_front_matter(source.read_text(encoding="utf-8"), source)
        front["status"] = target
        record = {"decision": decision, "at": when}
        if reviewer:
            record["by"] = reviewer
        if note:
            record["note"] = note
        front["review"] = record
        destination = rundir.article_relpath(target, slug)
        moves.append({
            "slug": slug,
            "source": row["path"],
            "destination": destination,
            "content": rundir.render_front_matter(front, body),
        })
        row["status"] = target
        row["path"] = destination
        reason = f"{decision} by {reviewer}" if reviewer else f"{decision} by an editor"
        row["reasons"] = rundir.neutralise("; ".join(part for part in (row.get("reasons", ""), reason) if part))
        log_lines.append(json.dumps({"slug": slug, **record}, ensure_ascii=False))
    csv_bytes = rundir.render_csv(table)
    return {
        "version": INTENT_VERSION,
        "csv_before": base,
        "csv_after": _sha256(csv_bytes),
        "csv": csv_bytes.decode("utf-8"),
        "moves": moves,
        "statuses": {row["slug"]: row["status"] for row in table.rows if row.get("slug")},
        "by_status": rundir.status_counts(row["status"] for row in table.rows),
        "log": log_lines,
    }


def _move(run_dir: Path, move: dict[str, str]) -> None:
    """Write an article's decided file and remove its old copy (repeatable)."""
    destination = rundir.article_file(run_dir, move["destination"])
    rundir.atomic_write(destination, move["content"], durable=True)
    source = rundir.article_file(run_dir, move["source"])
    if source != destination:
        source.unlink(missing_ok=True)
        rundir.sync_folder(source.parent)


def _carry_out_or_say_so(run_dir: Path, intent: dict[str, Any]) -> None:
    try:
        _carry_out(run_dir, intent)
    except OSError as exc:
        raise ReviewInterrupted(
            f"{run_dir}: the review decision was cut short ({exc.strerror or exc}); it is recorded in "
            f"{rundir.REVIEW_INTENT_NAME}, and the next `copydesk review {run_dir}` finishes it"
        ) from exc


def _carry_out(run_dir: Path, intent: dict[str, Any]) -> None:
    """Steps 2-5 of the module docstring; each one can be repeated after a failure."""
    with _as_review_errors():
        for move in intent["moves"]:
            _move(run_dir, move)
        rundir.atomic_write(run_dir / rundir.CSV_NAME, intent["csv"].encode("utf-8"), durable=True)
    statuses = intent["statuses"]

    def update_report(data: dict[str, Any]) -> None:
        for article in data.get("articles", []):
            if isinstance(article, dict) and article.get("slug") in statuses:
                article["status"] = statuses[article["slug"]]

    def update_summary(data: dict[str, Any]) -> None:
        data["by_status"] = intent["by_status"]

    rundir.update_json(run_dir / rundir.QC_REPORT_NAME, update_report)
    rundir.update_json(run_dir / rundir.SUMMARY_NAME, update_summary)
    _append_log(run_dir / REVIEW_LOG, intent["log"])
    (run_dir / rundir.REVIEW_INTENT_NAME).unlink(missing_ok=True)
    rundir.sync_folder(run_dir)


def _append_log(path: Path, lines: list[str]) -> None:
    """Append the decision's audit lines, skipping any a cut-short attempt already wrote."""
    try:
        present = set(path.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        present = set()
    new = [line for line in lines if line not in present]
    if not new:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in new))
        handle.flush()
        os.fsync(handle.fileno())


def finish_interrupted(run_dir: Path) -> bool:
    """Finish a decision that was cut short (hold the review lock); True when there was one."""
    path = run_dir / rundir.REVIEW_INTENT_NAME
    if not path.exists():
        return False
    intent = rundir.read_json(path)
    if not isinstance(intent, dict) or intent.get("version") != INTENT_VERSION:
        raise ReviewError(
            f"{path}: an interrupted review decision that cannot be read; check the run folder's CSV "
            "and its published/ and held/ folders, then remove this file"
        )
    current = _csv_digest(run_dir)
    if current not in (intent.get("csv_before"), intent.get("csv_after")):
        log.warning("%s: the CSV changed since this review decision was cut short (the run was resumed?); "
                    "dropping the decision", path)
        path.unlink(missing_ok=True)
        return False
    log.warning("%s: finishing a review decision that was cut short", path)
    _carry_out_or_say_so(run_dir, intent)
    return True
